"""Fine-tuning the embedded study's classifier under bf16 autocast against fp32, on this CPU.

    python bench/finetune_bf16.py [--folds 0 1] [--shots 2 8 32] [--threads 1]

The same runs of the full profile's diverse pool (real-only, the study's seeds and steps) are
fine-tuned in fp32 and under bf16 autocast, alternated in one process (so anything else on the
machine slows both alike), with ``threads`` torch threads as the study's workers use. Prints and
writes ``bench/results/finetune_bf16.json``: CPU seconds per run of each, their ratio, and the
paired accuracy differences (bf16 - fp32) on the fold's test images. Run it with the training leg
paused.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

RESULTS = Path(__file__).resolve().parent / "results" / "finetune_bf16.json"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--shots", type=int, nargs="+", default=[2, 8, 32])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)

    import torch

    from dapper.study import experiments as E
    from dapper.utils import atomic_save

    torch.set_num_threads(args.threads)
    config = E.study_config("full", conditions=("real",), scenarios=("diverse",), shots=tuple(args.shots),
                            folds=tuple(args.folds))
    inputs = E.prepare_inputs(config, progress=False)
    variants = {name: dataclasses.replace(inputs, config=dataclasses.replace(
        config, finetune=dataclasses.replace(config.finetune, bf16=on)))
        for name, on in (("fp32", False), ("bf16", True))}
    assert not variants["fp32"].config.finetune.bf16 and variants["bf16"].config.finetune.bf16
    rows = []
    for spec in E.plan_runs(config):
        pair = {}
        order = ("fp32", "bf16") if len(rows) % 2 == 0 else ("bf16", "fp32")  # alternate who goes first
        for name in order:
            cpu, wall = time.process_time(), time.perf_counter()
            row = E.run_one(variants[name], spec)
            pair[name] = {"cpu_s": time.process_time() - cpu, "wall_s": time.perf_counter() - wall,
                          "accuracy": row["accuracy"]}
        rows.append({"fold": spec.fold, "shots": spec.shots, "steps": row["steps"], **{
            f"{k}_{m}": v for k, r in pair.items() for m, v in r.items()}})
        print(rows[-1], flush=True)
    cpu32 = sum(r["fp32_cpu_s"] for r in rows)
    cpu16 = sum(r["bf16_cpu_s"] for r in rows)
    diffs = np.array([r["bf16_accuracy"] - r["fp32_accuracy"] for r in rows])
    out = {"date": datetime.datetime.now().isoformat(timespec="minutes"), "cpu_count": os.cpu_count(),
           "torch": torch.__version__, "threads": args.threads, "runs": rows,
           "fp32_cpu_s": round(cpu32, 2), "bf16_cpu_s": round(cpu16, 2), "speedup_cpu": round(cpu32 / cpu16, 3),
           "accuracy_diff_mean": round(float(diffs.mean()), 4),
           "accuracy_diff_abs_max": round(float(np.abs(diffs).max()), 4), "n_pairs": len(rows)}
    atomic_save(Path(args.out), lambda p: p.write_text(json.dumps(out, indent=1) + "\n"))
    print(f"fp32 {cpu32:.1f} CPU-s, bf16 {cpu16:.1f} CPU-s: bf16 {out['speedup_cpu']:.2f}x; accuracy bf16 - fp32 "
          f"mean {100 * diffs.mean():+.1f} points (max |diff| {100 * np.abs(diffs).max():.1f}) over {len(rows)} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
