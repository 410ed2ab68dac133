"""A generator's float16 blocks under bfloat16 autocast on the CPU, against float32: speed and fidelity.

    python bench/generator_bf16.py [--threads 2] [--repeats 3]

Speed: a stylegan2-ada-pytorch generator at 128 px with its ``--cfg=auto`` widths and the float16
blocks every ada training config sets (``num_fp16_res=4``; random weights cost what trained ones
cost), timed in CPU seconds per image for a batch of 8 syntheses without gradients and for one
projection step (synthesis, VGG16-LPIPS distance, backward), float32 and bfloat16 alternated
``--repeats`` times in this process, so anything else on the machine slows both alike.

Fidelity: the shipped toycars generator (trained in float32, 64 px) with its two and its four highest
resolutions in bfloat16: PSNR of those images against the float32 ones on 64 latents, and the
largest pixel difference (of 255). Writes ``bench/results/generator_bf16.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

RESULTS = Path(__file__).resolve().parent / "results" / "generator_bf16.json"


def _speed(repeats: int) -> dict:
    import torch
    from real_fakes import ada_generator_kwargs

    from dapper.inversion.perceptual import VGG16LPIPS, vgg16_trunk
    from dapper.stylegan2.networks import Generator

    torch.manual_seed(0)
    G = Generator(**ada_generator_kwargs(128)).eval().requires_grad_(False)
    lin = {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate((64, 128, 256, 512, 512))}
    distance = VGG16LPIPS({f"features.{k}": v for k, v in vgg16_trunk().state_dict().items()}, lin).eval()
    with torch.no_grad():
        ws = G.mapping(torch.randn(8, G.z_dim), None)
        target = G.synthesis(ws[:4]).clamp(-1, 1)

    def synth() -> float:
        t = time.process_time()
        with torch.no_grad():
            G.synthesis(ws)
        return (time.process_time() - t) / len(ws)

    def step() -> float:
        w = ws[:4].clone().requires_grad_(True)
        t = time.process_time()
        distance(G.synthesis(w), target).sum().backward()
        return (time.process_time() - t) / len(w)

    times = {"fp32": {"synth": [], "step": []}, "bf16": {"synth": [], "step": []}}
    for r in range(repeats + 1):  # the first round warms up and is not counted
        for name, num_res in (("fp32", 0), ("bf16", 4)):
            G.set_cpu_bf16(num_res)
            s, p = synth(), step()
            if r:
                times[name]["synth"].append(s)
                times[name]["step"].append(p)
    med = {k: {m: statistics.median(v) for m, v in d.items()} for k, d in times.items()}
    return {"resolution": 128, "bf16_resolutions": G.set_cpu_bf16(4),
            "cpu_s_per_image": med,
            "synthesis_speedup": med["fp32"]["synth"] / med["bf16"]["synth"],
            "projection_step_speedup": med["fp32"]["step"] / med["bf16"]["step"]}


def _fidelity(n: int = 64) -> list[dict]:
    import torch

    from dapper.stylegan2 import load_generator
    from dapper.utils import default_generator_path

    G = load_generator(default_generator_path(), cpu_bf16=0)
    rows = []
    with torch.no_grad():
        ws = G.mapping(torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(0)), None)
        ref = G.synthesis(ws, noise_mode="const").clamp(-1, 1)
        for num_res in (2, 4):
            res = G.set_cpu_bf16(num_res)
            out = G.synthesis(ws, noise_mode="const").clamp(-1, 1)
            mse = ((out - ref) / 2).pow(2).flatten(1).mean(1)
            psnr = (10 * torch.log10(1 / mse.clamp_min(1e-12))).tolist()
            rows.append({"generator": default_generator_path().name, "resolution": G.img_resolution,
                         "bf16_resolutions": res, "n": n, "psnr_db_median": statistics.median(psnr),
                         "psnr_db_min": min(psnr), "max_abs_diff_255": float(((out - ref).abs() * 127.5).max())})
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    result = {"date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), "threads": args.threads,
              "repeats": args.repeats, "speed": _speed(args.repeats), "fidelity": _fidelity()}
    text = json.dumps(result, indent=1)
    print(text)
    Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
