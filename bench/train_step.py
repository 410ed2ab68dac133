"""Training-step speed: images/s of ``dapper.stylegan2.train.Trainer.step`` for several batch sizes
and precisions, against the shipped CPU setting measured in the same run.

    python bench/train_step.py --device cuda                     # shipped network, GPU
    python bench/train_step.py --device cpu --threads 2 --steps 8 --variants 32:fp32

Each variant builds the shipped source-GAN networks (``checkpoints/source_gan_v2_train.json``, or
``--config``) with fresh weights, runs ``--warmup`` steps (cuDNN autotuning, allocator, the first
R1 and path-length steps), then times ``--steps`` steps on random "real" images, reading the losses
back only at the end (as the training loop does). ``--steps`` defaults to 48, a multiple of both
lazy-regularisation intervals, so every variant pays R1 and path length at the shipped rates.
The first variant is the baseline (by default the shipped batch, 32, in float32, on the same
device); the table gives each variant's images/s and its ratio to the baseline, and checks that
every loss stayed finite. Variants are ``BATCH:fp32`` (float32 weights and activations; on CUDA
the matrix and convolution units run in TF32, see ``configure_device``) or ``BATCH:bf16`` (bf16
autocast of the main passes, on CUDA or the CPU). ``--channels G_BASE/G_MAX/D_BASE/D_MAX`` widens
the networks (e.g. ``4096/128/2048/128``: 64 channels at 64 px, 128 at 32 px). On a shared CPU,
compare within one run: the variants run one after another in the same process.
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


def time_variants(cfgs: list, device: torch.device, warmup: int, steps: int, rounds: int = 1) -> list[dict]:
    """Time every config's training step; with ``rounds`` > 1 the variants take turns (``steps /
    rounds`` steps each per round), so a load that changes while the bench runs hits them alike."""
    trainers, reals = [], []
    gen = torch.Generator().manual_seed(0)
    for cfg in cfgs:
        trainers.append(Trainer(cfg, device))
        reals.append([torch.rand([cfg.batch, 3, cfg.resolution, cfg.resolution], generator=gen).mul(2).sub(1)
                      .to(device) for _ in range(4)])
    for t, r in zip(trainers, reals):
        for i in range(warmup):
            t.step(r[i % 4], sync=False)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    seconds = [0.0] * len(cfgs)
    history = [[] for _ in cfgs]
    per_round = max(1, steps // rounds)
    for _ in range(rounds):
        for k, (t, r) in enumerate(zip(trainers, reals)):
            t0 = time.perf_counter()
            for i in range(per_round):
                history[k].append(t.step(r[i % 4], sync=False))
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds[k] += time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else float("nan")
    rows = []
    for k, cfg in enumerate(cfgs):
        n = per_round * rounds
        finite = all(math.isfinite(float(v)) for h in history[k] for v in h.values())
        rows.append({"batch": cfg.batch, "precision": "bf16" if cfg.mixed_precision else "fp32",
                     "channels": f"{cfg.channel_base}/{cfg.channel_max}/{cfg.d_channel_base}/{cfg.d_channel_max}",
                     "steps": n, "seconds": seconds[k], "images_per_s": n * cfg.batch / seconds[k],
                     "ms_per_step": 1000 * seconds[k] / n, "peak_mib": peak, "finite": finite})
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, default=None,
                    help="training config (default: checkpoints/source_gan_v2_train.json)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--variants", nargs="+", default=["32:fp32", "64:fp32", "128:fp32", "64:bf16"],
                    help="BATCH:fp32|bf16; the first is the baseline")
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--steps", type=int, default=48)
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch default)")
    ap.add_argument("--channels", default=None, help="G_BASE/G_MAX/D_BASE/D_MAX (default: the config's)")
    ap.add_argument("--rounds", type=int, default=1, help="variants take turns in this many rounds (shared CPUs)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from dapper.utils import repo_root

    base = TrainConfig.from_json(args.config or repo_root() / "checkpoints" / "source_gan_v2_train.json")
    if args.channels:
        gb, gm, db, dm = (int(c) for c in args.channels.split("/"))
        base = dataclasses.replace(base, channel_base=gb, channel_max=gm, d_channel_base=db, d_channel_max=dm)
    device = torch.device(args.device)
    configure_device(device)
    cfgs = []
    for v in args.variants:
        batch, _, precision = v.partition(":")
        if precision not in ("fp32", "bf16"):
            raise SystemExit(f"variant {v!r}: expected BATCH:fp32 or BATCH:bf16")
        cfgs.append(dataclasses.replace(base, batch=int(batch), mixed_precision=precision == "bf16", threads=0))
    rows = time_variants(cfgs, device, args.warmup, args.steps, args.rounds)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    print(f"\ntraining step, {name}, torch {torch.__version__}; baseline {args.variants[0]}")
    print(f"{'channels':>20}{'batch':>6}{'prec':>6}{'ms/step':>9}{'img/s':>9}{'x base':>8}"
          f"{'peak MiB':>10}{'finite':>8}")
    for r in rows:
        r["ratio"] = r["images_per_s"] / rows[0]["images_per_s"]
        print(f"{r['channels']:>20}{r['batch']:>6}{r['precision']:>6}{r['ms_per_step']:>9.1f}{r['images_per_s']:>9.0f}{r['ratio']:>8.2f}"
              f"{r['peak_mib']:>10.0f}{str(r['finite']):>8}")
    if args.json:
        args.json.write_text(json.dumps({"device": name, "torch": torch.__version__, "rows": rows,
                                         "config": dataclasses.asdict(base)}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
