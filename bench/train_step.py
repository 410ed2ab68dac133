"""Training-step speed: images/s of ``dapper.stylegan2.train.Trainer.step`` for several batch sizes
and precisions, against the shipped CPU setting measured in the same run.

    python bench/train_step.py --device cuda                     # shipped network, GPU
    python bench/train_step.py --device cpu --threads 2 --steps 8 --variants 32:fp32

Each variant builds the shipped source-GAN networks (``checkpoints/source_gan_train.json``, or
``--config``) with fresh weights, runs ``--warmup`` steps (cuDNN autotuning, allocator, the first
R1 and path-length steps), then times ``--steps`` steps on random "real" images, reading the losses
back only at the end (as the training loop does). ``--steps`` defaults to 48, a multiple of both
lazy-regularisation intervals, so every variant pays R1 and path length at the shipped rates.
The first variant is the baseline (by default the shipped batch, 32, in float32, on the same
device); the table gives each variant's images/s and its ratio to the baseline, and checks that
every loss stayed finite. Variants are ``BATCH:fp32`` (float32 weights and activations; on CUDA
the matrix and convolution units run in TF32, see ``configure_device``) or ``BATCH:bf16`` (bf16
autocast; CUDA only).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dapper.stylegan2.train import TrainConfig, Trainer, configure_device  # noqa: E402


def time_variant(cfg: TrainConfig, device: torch.device, warmup: int, steps: int) -> dict:
    trainer = Trainer(cfg, device)
    gen = torch.Generator().manual_seed(0)
    reals = [torch.rand([cfg.batch, 3, cfg.resolution, cfg.resolution], generator=gen).mul(2).sub(1).to(device)
             for _ in range(4)]
    for i in range(warmup):
        trainer.step(reals[i % 4], sync=False)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    history = []
    for i in range(steps):
        history.append(trainer.step(reals[i % 4], sync=False))
    finite = all(math.isfinite(float(v)) for h in history for v in h.values())  # waits for the device
    seconds = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else float("nan")
    return {"batch": cfg.batch, "precision": "bf16" if cfg.mixed_precision and device.type == "cuda" else "fp32",
            "steps": steps, "seconds": seconds, "images_per_s": steps * cfg.batch / seconds,
            "ms_per_step": 1000 * seconds / steps, "peak_mib": peak, "finite": finite}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, default=None, help="training config (default: the shipped CPU one)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--variants", nargs="+", default=["32:fp32", "64:fp32", "128:fp32", "64:bf16"],
                    help="BATCH:fp32|bf16; the first is the baseline")
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--steps", type=int, default=48)
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch default)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from dapper.utils import repo_root

    base = TrainConfig.from_json(args.config or repo_root() / "checkpoints" / "source_gan_train.json")
    device = torch.device(args.device)
    configure_device(device)
    rows = []
    for v in args.variants:
        batch, _, precision = v.partition(":")
        if precision not in ("fp32", "bf16"):
            raise SystemExit(f"variant {v!r}: expected BATCH:fp32 or BATCH:bf16")
        if precision == "bf16" and device.type != "cuda":
            raise SystemExit(f"variant {v!r}: bf16 autocast is used on CUDA only")
        cfg = dataclasses.replace(base, batch=int(batch), mixed_precision=precision == "bf16", threads=0)
        rows.append(time_variant(cfg, device, args.warmup, args.steps))
        print(f"  {v}: {rows[-1]['images_per_s']:.0f} img/s", flush=True)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    print(f"\ntraining step, {name}, torch {torch.__version__}; baseline {args.variants[0]}")
    print(f"{'batch':>6}{'prec':>6}{'ms/step':>9}{'img/s':>9}{'x base':>8}{'peak MiB':>10}{'finite':>8}")
    for r in rows:
        r["ratio"] = r["images_per_s"] / rows[0]["images_per_s"]
        print(f"{r['batch']:>6}{r['precision']:>6}{r['ms_per_step']:>9.1f}{r['images_per_s']:>9.0f}{r['ratio']:>8.2f}"
              f"{r['peak_mib']:>10.0f}{str(r['finite']):>8}")
    if args.json:
        args.json.write_text(json.dumps({"device": name, "torch": torch.__version__, "rows": rows,
                                         "config": dataclasses.asdict(base)}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
