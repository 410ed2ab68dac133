"""Source-GAN pilots at equal CPU time: which network and losses to train in the long CPU run.

    python bench/gan_pilots.py                  # train every pilot, 45 CPU-minutes each (one thread)
    python bench/gan_pilots.py --evaluate       # measure the kept snapshots -> csv and figure
    python bench/gan_pilots.py --report         # redraw the figure from the csv

Each pilot trains the toycars source GAN from scratch (``runs/pilots/<name>``, resumable) with one
setting changed against the others, one pilot after another, never two at once (they would share
the cores). Budgets are CPU seconds of the training process, so a pilot gets the same compute
whatever else the machine does; one torch thread each, so no thread waits at a barrier while another
job holds the other core. Every ``--eval-every`` CPU-minutes the EMA generator is kept as a snapshot;
``--evaluate`` measures the snapshots afterwards, with the final oracles (not charged to the budget):

* FD ratio: Frechet distance of generated images to fresh source renders in the identity oracle's
  features, over the distance between two halves of source renders (``dapper.study.gan_eval``);
* at the end, identity kept after projection of 100 held-out target views (10 per class) in W and
  in W+ (start at the mean w: no pilot has an encoder), as the oracle judges it.

Rows go to ``bench/results/gan_pilots.csv`` (one per pilot and evaluation, with the pilot's full
config), the curves to ``bench/results/gan_pilots.png``. The oracles only measure here: the method
never reads them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dapper.study.source_gan import SOURCES  # noqa: E402
from dapper.stylegan2.train import TrainConfig, train  # noqa: E402
from dapper.utils import repo_root  # noqa: E402

# The common recipe: the shipped run's losses and schedule, bf16 autocast on the CPU, batch 32.
BASE = dict(resolution=64, z_dim=256, w_dim=256, mapping_layers=2, channel_base=1536, channel_max=128,
            d_channel_base=1024, d_channel_max=128, mbstd_group=4, batch=32, glr=0.0025, dlr=0.0025,
            r1_gamma=0.05, r1_interval=16, pl_weight=2.0, pl_interval=4, pl_batch_shrink=2, pl_decay=0.01,
            style_mixing=0.9, ema_kimg=10.0, ema_rampup=0.05, total_kimg=100000.0, snapshot_kimg=1000.0,
            xflip=True, seed=0, dataset="toycars-source", dataset_size=50000, data_seed=0,
            mixed_precision=True, threads=1)
PILOTS = {
    # wider top layers: 64 channels at 64 px, 128 at 32 px (and a discriminator to match)
    "wide": dict(channel_base=4096, d_channel_base=2048),
    # the shipped width: 24 channels at 64 px, 48 at 32 px
    "shipped": {},
    # wide, with a discriminator held 4x smoother (R1 gamma 0.2): the shipped D won easily
    "wide_r1": dict(channel_base=4096, d_channel_base=2048, r1_gamma=0.2),
}
RESULTS = repo_root() / "bench" / "results"


def pilot_config(name: str) -> TrainConfig:
    return TrainConfig(**{**BASE, **PILOTS[name]})


def cpu_seconds_used(out: Path) -> float:
    """CPU seconds already charged to a pilot (its budget file; 0 for a new one)."""
    f = out / "cpu_seconds.json"
    return json.loads(f.read_text())["cpu_seconds"] if f.exists() else 0.0


def pilot_dir(name: str) -> Path:
    return repo_root() / "runs" / "pilots" / name


def run_pilot(name: str, cpu_minutes: float, eval_every: float) -> None:
    """Train pilot ``name`` up to ``cpu_minutes`` of CPU time, keeping the EMA generator every
    ``eval_every`` CPU-minutes as ``snapshots/g_<minutes>.safetensors`` (resumable)."""
    import shutil

    from dapper.utils import atomic_save

    cfg = pilot_config(name)
    out = pilot_dir(name)
    (out / "snapshots").mkdir(parents=True, exist_ok=True)
    while True:
        used = cpu_seconds_used(out)
        if used >= cpu_minutes * 60 - 1:
            break
        leg = min(eval_every * 60, cpu_minutes * 60 - used)
        c0 = time.process_time()
        trainer = train(cfg, out, max_cpu_minutes=leg / 60, progress=False, sources=SOURCES)
        used += time.process_time() - c0
        stem = out / "snapshots" / f"g_{round(used / 60):03d}"
        for suffix in (".safetensors", ".json"):
            shutil.copyfile(out / f"generator_ema{suffix}", stem.with_suffix(suffix))
        atomic_save(out / "cpu_seconds.json",
                    lambda p, used=used: p.write_text(json.dumps({"cpu_seconds": used, "kimg": trainer.nimg / 1000})))
        print(f"[{name}] {used / 60:.1f} CPU-min, {trainer.nimg / 1000:.1f} kimg", flush=True)


def evaluate_snapshots(names, n_fd: int, n_per_class: int, rows: list, threads: int = 1) -> list:
    """Measure every pilot snapshot not yet in ``rows``; identity after projection for each pilot's
    last snapshot only (the costly part)."""
    from dapper.stylegan2 import load_generator

    torch.set_num_threads(threads)
    have = {(r["pilot"], int(r["snapshot_cpu_minutes"])) for r in rows}
    for name in names:
        snaps = sorted((pilot_dir(name) / "snapshots").glob("g_*.safetensors"))
        for i, path in enumerate(snaps):
            minutes = int(path.stem.split("_")[1])
            if (name, minutes) in have:
                continue
            G = load_generator(path)
            meta = json.loads(path.with_suffix(".json").read_text())["metadata"]
            last = i == len(snaps) - 1
            rows.append(evaluate_pilot(name, G, minutes, meta, n_fd, n_per_class if last else 0))
            write_rows(rows)
    return rows


def evaluate_pilot(name, G, minutes, meta, n_fd, n_per_class) -> dict:
    from dapper.study import gan_eval

    res = gan_eval.evaluate(G, n=n_fd, with_projection=False)
    row = {"pilot": name, "snapshot_cpu_minutes": minutes, "kimg": meta["kimg"],
           "fd_ratio": res["fd_ratio"], "fd_generated_vs_source": res["fd_generated_vs_source"],
           "fd_source_halves": res["fd_source_halves"],
           **{f"fd_ratio_source_{k}px": v / res["fd_source_halves"] for k, v in res["fd_source_resampled"].items()},
           "pose_coverage": res["pose_coverage_generated"]}
    if n_per_class:
        ident = gan_eval.identity_after_projection(G, n_per_class, spaces=("w", "w+"), init="w_avg")
        row.update(identity_kept_w=ident["w"]["kept"], pair_kept_w=ident["w"]["pair_kept"],
                   identity_kept_wplus=ident["w+"]["kept"], pair_kept_wplus=ident["w+"]["pair_kept"],
                   oracle_on_originals=ident["oracle_on_originals"],
                   n_projected=n_per_class * len(ident["w"]["per_class"]))
        own = gan_eval.self_identity_after_projection(G, n=n_per_class * 10, init="w_avg")
        row.update(self_identity_kept_w=own["w"]["kept"], self_pair_kept_w=own["w"]["pair_kept"],
                   self_confidence=own["confidence"])
    row["g_params"] = sum(p.numel() for p in G.parameters())
    row["config"] = json.dumps(meta["train_config"])
    row["torch"] = torch.__version__
    print(json.dumps({k: v for k, v in row.items() if k != "config"}, indent=1), flush=True)
    return row


def read_rows() -> list:
    import pandas as pd

    path = RESULTS / "gan_pilots.csv"
    return pd.read_csv(path).to_dict("records") if path.exists() else []


def write_rows(rows: list) -> None:
    import pandas as pd

    from dapper.utils import atomic_save

    df = pd.DataFrame(rows).sort_values(["pilot", "snapshot_cpu_minutes"])
    atomic_save(RESULTS / "gan_pilots.csv", lambda p: df.to_csv(p, index=False, float_format="%.4g"))
    plot(df)


def plot(df) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dapper.utils import atomic_save

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for name, g in df.groupby("pilot"):
        axes[0].plot(g["snapshot_cpu_minutes"], g["fd_ratio"], "o-", label=name)
        last = g.iloc[-1]
        if "identity_kept_w" in g and np.isfinite(last.get("identity_kept_w", np.nan)):
            axes[1].bar([f"{name}\nW", f"{name}\nW+"], [last["identity_kept_w"], last["identity_kept_wplus"]])
    ref = [c for c in df.columns if c.startswith("fd_ratio_source_")]
    for c in ref:
        axes[0].axhline(df[c].median(), ls="--", lw=0.8, color="grey")
        axes[0].annotate(c.replace("fd_ratio_source_", "source at "),
                         (df["snapshot_cpu_minutes"].min(), df[c].median()),
                         fontsize=7, color="grey", va="bottom")
    axes[0].set(xlabel="training CPU-minutes", ylabel="FD ratio (log)", yscale="log", title="distance to the source")
    axes[0].legend(fontsize=8)
    axes[1].set(ylim=(0, 1), ylabel="share kept", title="identity kept after projection (100 views)")
    axes[1].tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    atomic_save(RESULTS / "gan_pilots.png", lambda p: fig.savefig(p, dpi=110, format="png"))
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="+", choices=sorted(PILOTS), default=None)
    ap.add_argument("--cpu-minutes", type=float, default=45.0)
    ap.add_argument("--eval-every", type=float, default=15.0, help="CPU-minutes between kept snapshots")
    ap.add_argument("--evaluate", action="store_true", help="measure the kept snapshots (not charged to budgets)")
    ap.add_argument("--n-fd", type=int, default=2000, help="generated and source images per FD")
    ap.add_argument("--n-per-class", type=int, default=10, help="held-out views projected per class at the end")
    ap.add_argument("--report", action="store_true", help="only redraw the figure from the csv")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of --evaluate")
    args = ap.parse_args(argv)
    names = args.only or list(PILOTS)
    if args.report:
        write_rows(read_rows())
    elif args.evaluate:
        evaluate_snapshots(names, args.n_fd, args.n_per_class, read_rows(), threads=args.threads)
    else:
        for name in names:
            run_pilot(name, args.cpu_minutes, args.eval_every)
    return 0


if __name__ == "__main__":
    sys.exit(main())
