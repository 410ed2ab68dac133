"""Time the five-fold study stage by stage: data, generator + pose direction, projection,
synthetic images, fine-tuning runs, statistics.

    python bench/study.py --profile quick            # a couple of minutes on 2 CPU cores
    python bench/study.py --profile full --workers 2 # the budget: within 60 minutes on 2 cores

Runs go to a scratch results file (every run is executed, none skipped) unless ``--results`` names
one; caches (rendered pools, projections, synthetic images, the pose direction) are the normal
ones, so a second invocation measures the warm path. ``--cold`` points the cache at an empty
folder first to measure everything from scratch (the pose direction is fitted again too).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="quick", choices=("quick", "full"))
    parser.add_argument("--dataset", default="toycars")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--results", default=None, help="results CSV (default: a scratch file)")
    parser.add_argument("--cold", action="store_true", help="start from an empty cache")
    args = parser.parse_args(argv)
    if args.cold:
        os.environ["DAPPER_CACHE"] = tempfile.mkdtemp(prefix="dapper-bench-cache-")

    import torch

    from dapper.study import experiments

    torch.set_num_threads(1)
    t_start = time.time()
    config = experiments.study_config(args.profile, args.dataset, workers=args.workers)
    inputs = experiments.prepare_inputs(config, progress=False)
    results = Path(args.results) if args.results else Path(tempfile.mkdtemp(prefix="dapper-bench-")) / "five_fold.csv"
    rows = experiments.five_fold_runs(config, inputs, path=results, progress=False)
    t, cpu = time.time(), time.process_time()
    experiments.study_tables(rows)
    inputs.timings["statistics"] = time.time() - t
    inputs.timings["statistics_cpu"] = time.process_time() - cpu
    total = time.time() - t_start

    from dapper.utils import default_generator_path, display_path

    print(f"profile {args.profile}, dataset {args.dataset}, {args.workers} worker process(es), "
          f"torch {torch.__version__}, {os.cpu_count()} CPUs visible; generator "
          f"{display_path(config.network or default_generator_path())} ({inputs.generator})")
    nan = float("nan")
    run_cpu = float(rows["cpu_seconds"].sum()) if "cpu_seconds" in rows and len(rows) else nan
    inputs.timings["runs_cpu"] = run_cpu
    print(f"{'stage':<22}{'wall s':>10}{'CPU s':>10}")
    cpu_total = 0.0
    for stage in ("data", "generator+direction", "projection", "augment", "runs", "statistics"):
        cpu = inputs.timings.get(stage + "_cpu", nan)
        cpu_total += 0.0 if cpu != cpu else cpu
        print(f"{stage:<22}{inputs.timings.get(stage, nan):>10.1f}{cpu:>10.1f}")
    print(f"{'total':<22}{total:>10.1f}{cpu_total:>10.1f}")
    # CPU seconds do not depend on what else runs on the machine; on 2 dedicated cores the study
    # takes about CPU / 2 (the runs and the projection both keep two cores busy).
    print(f"CPU seconds / 2 cores: {cpu_total / 2 / 60:.1f} min (the full-profile budget is 60 min)")
    n = int(inputs.timings.get("n_runs", 0))
    if n:
        per = rows.groupby(["scenario", "shots_per_class"])[["seconds", "cpu_seconds"]].mean().round(2)
        print(f"{n} runs; mean wall and CPU seconds per run (one process, one thread) by scenario and shots:")
        print(per.to_string())
    print(f"rows written to {results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
