"""Ray against the local executor on the quick grid, and the plan of the full real study on N workers.

    python bench/ray_grid.py                          # a few minutes on 2 CPU cores (nothing else running)
    python bench/ray_grid.py --plan-only --device cuda  # on a GPU machine: its step times, and the plan

Part 1, throughput: the quick profile's five-fold grid (toycars), every run executed each time
into a scratch results file, alternately by the local executor (the study's default: 2 worker
processes, 1 thread each) and by a local Ray with 2 CPUs (1-CPU tasks), ``--repeats`` times each;
the ratio is local seconds / Ray seconds (Ray's throughput relative to local), per pair and median.
Ray's start-up is timed apart (a cluster is started once and serves many studies).

Part 2, plan: seconds per fine-tuning step of timm's resnext50_32x4d (the real study's classifier,
its input size and batch) and per projection step of a 512 px config-f generator with VGG16-LPIPS
(random weights: the same cost), measured on ``--device``; then the full real study's tasks
(:mod:`dapper.study.cluster_plan`: Stanford Cars, the ten default classes, ``--per-class`` images
each) and the hours on N such workers.

Writes ``bench/results/ray_grid.json`` and prints both parts.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

OUT = Path(__file__).resolve().parent / "results" / "ray_grid.json"


def throughput(repeats: int) -> dict:
    import ray
    import torch

    from dapper.executor import LocalExecutor, RayExecutor
    from dapper.study import experiments as E

    torch.set_num_threads(1)
    config = E.study_config("quick", workers=2)
    inputs = E.prepare_inputs(config, progress=False)  # cached pools, projections and synthetic images
    n = len(E.plan_runs(config))
    t = time.perf_counter()
    ray.init(address="local", num_cpus=2, _node_ip_address="127.0.0.1", include_dashboard=False, log_to_driver=False)
    ray_start = time.perf_counter() - t
    executors = {"local": LocalExecutor(), "ray": RayExecutor()}
    seconds: dict[str, list[float]] = {"local": [], "ray": []}
    scratch = Path(tempfile.mkdtemp(prefix="dapper-ray-bench-"))
    try:
        for r in range(repeats):
            for name in ("local", "ray"):
                path = scratch / f"{name}-{r}.csv"
                t = time.perf_counter()
                rows = E.five_fold_runs(config, inputs, path=path, progress=False, threads=1,
                                        executor=executors[name])
                seconds[name].append(time.perf_counter() - t)
                assert len(rows) == n, (name, len(rows), n)
                print(f"  {name:<5} repeat {r}: {n} runs in {seconds[name][-1]:.1f} s", flush=True)
    finally:
        ray.shutdown()
    ratios = [a / b for a, b in zip(seconds["local"], seconds["ray"])]
    return {"runs": n, "local_seconds": seconds["local"], "ray_seconds": seconds["ray"],
            "ratios": ratios, "ratio_median": statistics.median(ratios), "ray_start_seconds": ray_start,
            "local": "2 spawned worker processes, 1 torch thread each",
            "ray": "ray.init(num_cpus=2) on 127.0.0.1, 1-CPU tasks, 1 torch thread each; rows appended by the driver"}


def _timed(fn, repeat: int, device) -> float:
    import torch

    fn()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(repeat):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t) / repeat


def step_seconds(device, threads: int, batch: int) -> tuple[float, int]:
    """One fine-tuning step of resnext50_32x4d at its input size: (seconds, input size)."""
    import timm
    import torch

    torch.set_num_threads(threads)
    model = timm.create_model("resnext50_32x4d", pretrained=False, num_classes=10).to(device).train()
    size = model.pretrained_cfg["input_size"][-1]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(batch, 3, size, size, device=device)
    y = torch.randint(0, 10, (batch,), device=device)

    def step():
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    return _timed(step, 3, device), size


def projection_step_seconds(device, threads: int) -> tuple[float, int]:
    """One projection step of a 512 px config-f generator with VGG16-LPIPS: (seconds per step of
    a full batch, the batch :func:`choose_batch_size` picks there)."""
    import torch
    import torchvision

    from dapper.inversion import projection as P
    from dapper.stylegan2 import Generator

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    G = Generator(z_dim=512, c_dim=0, w_dim=512, img_resolution=512, img_channels=3,
                  synthesis_kwargs=dict(channel_base=32768, channel_max=512)).to(device).eval().requires_grad_(False)
    batch = P.choose_batch_size(G, device)
    folder = Path(tempfile.mkdtemp(prefix="dapper-lpips-"))
    torch.save(torchvision.models.vgg16().state_dict(), folder / "vgg16.pth")
    torch.save({f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate((64, 128, 256, 512, 512))},
               folder / "lin.pth")
    settings = P.ProjectionSettings(init="w_avg", early_stop_tol=None, w_avg_samples=256,
                                    vgg16_weights=str(folder / "vgg16.pth"), lpips_weights=str(folder / "lin.pth"))
    images = torch.rand(batch, 3, 512, 512, device=device) * 2 - 1

    def run(steps):
        t = time.perf_counter()
        P.project_images(G, images, settings=settings.replace(steps=steps), cache=False, progress=False,
                         device=device, batch_size=batch)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t

    run(1)  # warm-up
    few, more = run(1), run(4)
    return (more - few) / 3, batch


def plan(device_name: str, threads: int, per_class: int, workers) -> dict:
    import torch

    from dapper.classify import REAL_MODEL
    from dapper.study import cluster_plan as C
    from dapper.study import experiments as E

    device = torch.device(device_name)
    config = E.study_config("full", "stanford_cars", classifier=REAL_MODEL, image_size=512)
    step, size = step_seconds(device, threads, config.finetune.batch_size)
    print(f"  fine-tuning step ({REAL_MODEL}, {size} px, batch {config.finetune.batch_size}): {step:.2f} s", flush=True)
    pstep, batch = projection_step_seconds(device, threads)
    print(f"  projection step (512 px config-f + VGG16-LPIPS, batch {batch}): {pstep:.2f} s", flush=True)
    tasks = C.study_tasks(config, 10, per_class, batch)
    rows = C.study_plan(tasks, workers, step, pstep)
    return {"device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
            "threads": threads, "finetune_step_seconds": step, "classifier_input": size,
            "projection_step_seconds": pstep, "projection_batch": batch, "projection_steps": tasks.projection_steps,
            "images_projected": sum(tasks.projection_batches), "runs": len(tasks.runs),
            "per_class": per_class, "plan": rows}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=2, help="local/Ray pairs of the quick grid")
    ap.add_argument("--plan-only", action="store_true", help="skip the throughput part")
    ap.add_argument("--device", default="cpu", help="where the plan's step times are measured")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads for the plan's step times")
    ap.add_argument("--per-class", type=int, default=82, help="images per class (Stanford Cars: about 82)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    result = json.loads(args.out.read_text()) if args.out.exists() else {}
    if not args.plan_only:
        print("throughput: the quick grid, local vs Ray on this machine", flush=True)
        result["throughput"] = throughput(args.repeats)
        tp = result["throughput"]
        print(f"Ray / local throughput: median {tp['ratio_median']:.3f} (pairs: "
              f"{', '.join(f'{r:.3f}' for r in tp['ratios'])}); Ray start-up {tp['ray_start_seconds']:.1f} s")
    print(f"plan: the full real study, step times on {args.device}", flush=True)
    result["plan"] = plan(args.device, args.threads, args.per_class, args.workers)
    p = result["plan"]
    print(f"{p['images_projected']} images projected in batches of {p['projection_batch']} "
          f"(at most {p['projection_steps']} steps), {p['runs']} fine-tuning runs; per worker like this {p['device']}:")
    print(f"{'workers':>8}{'tasks':>8}{'work h':>10}{'hours':>10}{'efficiency':>12}")
    for r in p["plan"]:
        print(f"{r['workers']:>8}{r['projection_tasks'] + r['run_tasks']:>8}{r['work_hours']:>10.1f}"
              f"{r['hours']:>10.1f}{r['efficiency']:>12.2f}")
    result["torch_threads_note"] = "plan step times use --threads torch threads on --device"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    os.replace(tmp, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
