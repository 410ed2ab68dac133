"""Real mode's quick profile at 128 px against its budget (15 minutes on 2 CPU cores).

    python bench/real_quick.py            # nothing else running; writes bench/results/real_quick.json
    python bench/real_quick.py --keep DIR # keep the fake data, models and reports in DIR

Part 1, the classifier's step: one fine-tuning step of timm's resnext50_32x4d at its input size
(224 px) and the study's batch, in fp32 and under bf16 autocast, alternated ``--repeats`` times in
this process; the ratio is fp32 seconds / bf16 seconds.

Part 2, the whole run as a user starts it: ``python -m dapper report --profile quick --dataset
stanford_cars`` with every model named, on a fake Stanford Cars of the real one's size (the ten
default classes, 41 + 41 photos each, 480 x 320 px) and model files of real size with random
weights (``tests/real_fakes.py``): a stylegan2-ada-pytorch ``.pkl`` at 128 px with its ``--cfg=auto``
widths, resnext50_32x4d, a Faster R-CNN MobileNetV3 detector, VGG16-LPIPS. Random weights cost what
trained ones cost. The seconds of each notebook come from the run's ``notebook_runs.json``; a run
past ``--limit`` seconds is stopped and the notebooks it finished are reported.

The CPU's speed is part of the result: a machine of the same kind can run the same fp32 step at
very different speeds on different days, and the whole run moves with it. So the classifier's fp32
step is timed again after the run, and every run is added to ``bench/results/real_quick_runs.csv``
(its seconds beside the step's seconds before and after), which the README's status reads.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

OUT = Path(__file__).resolve().parent / "results" / "real_quick.json"
HISTORY = OUT.with_name("real_quick_runs.csv")
HISTORY_COLUMNS = ["date", "commit", "wall_s", "cpu_s", "budget_s", "within_budget", "returncode", "fp32_s_per_step",
                   "fp32_s_per_step_after", "bf16_s_per_step", "notebook_seconds"]
BUDGET_S = 15 * 60


def classifier_steps(repeats: int, threads: int, batch: int, bf16: bool = True) -> dict:
    import timm
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = timm.create_model("resnext50_32x4d", pretrained=False, num_classes=10).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x, y = torch.randn(batch, 3, 224, 224), torch.randint(0, 10, (batch,))

    def step(bf16: bool) -> float:
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return time.perf_counter() - t

    modes = ("fp32", "bf16") if bf16 else ("fp32",)
    for mode in modes:  # warm-up of each path
        step(mode == "bf16")
    seconds = {mode: [] for mode in modes}
    for _ in range(repeats):
        for mode in modes:
            seconds[mode].append(step(mode == "bf16"))
    fp32 = statistics.median(seconds["fp32"])
    out = {"model": "resnext50_32x4d", "input_px": 224, "batch": batch, "threads": threads,
           "fp32_s_per_step": round(fp32, 3), "repeats": repeats}
    if bf16:
        half = statistics.median(seconds["bf16"])
        out.update(bf16_s_per_step=round(half, 3), bf16_speedup=round(fp32 / half, 2))
    return out


def whole_run(work: Path, limit: float) -> dict:
    from real_fakes import ada_generator_kwargs, make_devkit, write_real_mode_models

    from dapper.report import read_runs, report_folder

    data = work / "stanford_cars"
    if not data.exists():
        make_devkit(data, per_class=(41, 41), varied=True, photo_size=(480, 320))
    models = write_real_mode_models(work / "models", generator_kwargs=ada_generator_kwargs(128))
    reports = work / "reports"
    shutil.rmtree(reports, ignore_errors=True)
    env = dict(os.environ, DAPPER_REPORTS=str(reports), DAPPER_CACHE=str(work / "cache"),
               PYTHONPATH=os.pathsep.join(p for p in (str(work / "models"), os.environ.get("PYTHONPATH", "")) if p))
    shutil.rmtree(work / "cache", ignore_errors=True)  # a cold cache, as a user's first run
    args = [sys.executable, "-m", "dapper", "report", "--profile", "quick", "--dataset", "stanford_cars"]
    for name, value in dict(data_root=data, **models).items():
        args += ["-p", name, str(value)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    try:
        proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=limit)
        rc, tail = proc.returncode, (proc.stdout + proc.stderr)[-3000:]
    except subprocess.TimeoutExpired as exc:
        rc, tail = "timeout", str(exc)[-1000:]
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    runs = read_runs(report_folder("stanford_cars", reports))  # real mode's own report folder
    return {"returncode": rc, "wall_s": round(wall, 1),
            "cpu_s": round((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), 1),
            "budget_s": BUDGET_S, "within_budget": rc == 0 and wall <= BUDGET_S,
            "notebook_seconds": {k: v.get("seconds") for k, v in sorted(runs.items())},
            "failed": {k: v.get("error") for k, v in runs.items() if v.get("status") == "FAILED"},
            "generator": ada_generator_kwargs(128), "photos_per_class": 82, "tail": tail if rc != 0 else ""}


def history_row(result: dict) -> dict:
    """One run of the history file: its time beside the speed of the CPU it ran on (the classifier's
    fp32 step, before and after the run), so runs on machines of different speed can be read together."""
    run, step = result["whole_run"], result["classifier_step"]
    return {"date": result["date"], "commit": result.get("commit", ""), "wall_s": run["wall_s"], "cpu_s": run["cpu_s"],
            "budget_s": run["budget_s"],
            "within_budget": run["within_budget"], "returncode": run["returncode"],
            "fp32_s_per_step": step["fp32_s_per_step"],
            "fp32_s_per_step_after": result.get("classifier_step_after", {}).get("fp32_s_per_step"),
            "bf16_s_per_step": step.get("bf16_s_per_step"),
            "notebook_seconds": json.dumps(run.get("notebook_seconds") or {}, sort_keys=True)}


def append_history(result: dict) -> None:
    """Add this run to ``bench/results/real_quick_runs.csv`` (a run of the same date and minute is replaced)."""
    import pandas as pd

    from dapper.utils import atomic_save

    old = pd.read_csv(HISTORY) if HISTORY.exists() else pd.DataFrame(columns=HISTORY_COLUMNS)
    row = history_row(result)
    df = pd.concat([old[old["date"] != row["date"]], pd.DataFrame([row])], ignore_index=True)
    atomic_save(HISTORY, lambda path: df[HISTORY_COLUMNS].to_csv(path, index=False))


def _commit() -> str:
    """The code that ran: the checkout's short commit, ``+`` when its code has uncommitted changes
    (changed results files under ``bench/results`` do not count)."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    head = git("rev-parse", "--short=7", "HEAD")
    changed = [line for line in git("status", "--porcelain", "--untracked-files=no").splitlines()
               if not line[3:].startswith("bench/results/")]
    return head + ("+" if changed else "") if head else ""


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=16,
                   help="batch of the classifier step that measures the CPU's speed (16 in every run of the history)")
    p.add_argument("--limit", type=float, default=2 * BUDGET_S, help="stop the whole run after this many seconds")
    p.add_argument("--keep", type=Path, default=None, help="folder for the fake data, models and reports")
    p.add_argument("--steps-only", action="store_true", help="part 1 only")
    a = p.parse_args(argv)
    result = {"date": time.strftime("%Y-%m-%d %H:%M"), "commit": _commit(), "cpu_count": os.cpu_count(),
              "classifier_step": classifier_steps(a.repeats, a.threads, a.batch)}
    print(json.dumps(result["classifier_step"], indent=1))
    if not a.steps_only:
        work = a.keep or Path(tempfile.mkdtemp(prefix="dapper-real-quick-"))
        work.mkdir(parents=True, exist_ok=True)
        result["whole_run"] = whole_run(work, a.limit)
        # the CPU's speed again, after the run: a machine that slowed down (or sped up) during it shows here
        result["classifier_step_after"] = classifier_steps(max(1, a.repeats // 2), a.threads, a.batch, bf16=False)
        print(json.dumps(result["whole_run"], indent=1))
        append_history(result)
        if a.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
