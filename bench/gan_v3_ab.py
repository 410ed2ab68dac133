"""Source GAN v3: equal-CPU A/B of training recipes, each arm going on from the shipped training state.

    python bench/gan_v3_ab.py --train diffaugment [--cpu-minutes 60 --max-wall-minutes 95]
    python bench/gan_v3_ab.py --evaluate start control diffaugment ...
    python bench/gan_v3_ab.py --report

Every arm starts from ``checkpoints/source_gan_v2_state.safetensors`` (the shipped generator's
networks and counters, fresh optimisers) with the v2 recipe (``checkpoints/source_gan_v2_train.json``)
and one change, and trains for the same CPU time of its process (all threads), one arm after another,
never two at once; the run folder is ``runs/gan_v3_ab/<arm>`` (resumable: a rerun goes on up to the
budget). The arms:

* ``control``: the v2 recipe as it is;
* ``diffaugment``: DiffAugment (colour, translation, cutout) on every image either discriminator
  sees, in the generator's and the discriminator's steps (``dapper.stylegan2.diffaugment``);
* ``projected``: a second, projected discriminator on the frozen multi-scale features of the
  projection's perceptual network (trained on source renders; never an oracle), with fixed random
  channel mixing and the hinge loss, at the generator's 64 px (``dapper.stylegan2.projected``);
* ``both``: DiffAugment and the projected discriminator together.

``--evaluate`` measures each arm's last export (``start``: the shipped generator the arms start
from) the same way: identity and pair kept after projecting the same 300 held-out target views (30
per class, from the mean w: no arm has an encoder of its own) in W, and the first 100 of them (10
per class) in W+, the FD ratio over 2,000 images and pose coverage. Rows go to
``bench/results/gan_v3_ab.csv`` (with each arm's config, kimg and training CPU-seconds), the
per-view hits to ``bench/results/gan_v3_ab_views.csv``, and the paired differences against the
control (bootstrap over views, exact McNemar test) to ``bench/results/gan_v3_ab_paired.csv``; the
figure to ``bench/results/gan_v3_ab.png``. The oracles only measure here. The FD of an arm whose
discriminator sees a feature network is read with care: the decision metric is identity kept in W.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dapper.utils import atomic_save, repo_root  # noqa: E402

ROOT = repo_root()
RESULTS = ROOT / "bench" / "results"
RUNS = ROOT / "runs" / "gan_v3_ab"
BASE_CONFIG = ROOT / "checkpoints" / "source_gan_v2_train.json"
START_STATE = ROOT / "checkpoints" / "source_gan_v2_state.safetensors"
START_GENERATOR = ROOT / "checkpoints" / "source_gan_v2.safetensors"
DIFFAUGMENT = "color,translation,cutout"
ARMS = {
    "control": {},
    "diffaugment": {"diffaugment": DIFFAUGMENT},
    "projected": {"projected_features": "perceptual"},
    "both": {"diffaugment": DIFFAUGMENT, "projected_features": "perceptual"},
}
N_PER_CLASS = 30  # 300 views in W, the decision metric: 100 alone carry about 5 points of noise
N_PER_CLASS_WPLUS = 10  # W+ on 100 of them (a projection costs about 4 CPU-seconds a view)
N_FD = 2000


def arm_config(arm: str):
    from dapper.stylegan2.train import TrainConfig

    cfg = TrainConfig.from_json(BASE_CONFIG)
    return TrainConfig(**{**cfg.__dict__, **ARMS[arm]})


def _own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def train_arm(arm: str, cpu_minutes: float, max_wall_minutes: float) -> dict:
    """Train one arm up to ``cpu_minutes`` of training CPU in all (over every call); record it in
    ``runs/gan_v3_ab/<arm>/arm.json``."""
    from dapper.study.source_gan import FEATURE_NETS, SOURCES
    from dapper.stylegan2.train import train

    out = RUNS / arm
    record_path = out / "arm.json"
    record = json.loads(record_path.read_text()) if record_path.exists() else {"arm": arm, "cpu_seconds": 0.0,
                                                                               "wall_seconds": 0.0, "calls": 0}
    left = cpu_minutes - record["cpu_seconds"] / 60
    if left <= 0:
        print(f"{arm}: its {cpu_minutes} CPU-minutes are spent")
        return record
    cfg = arm_config(arm)
    t0, c0 = time.time(), _own_cpu_seconds()  # the whole call: loading the cached dataset costs seconds
    trainer = train(cfg, out, init=START_STATE, max_cpu_minutes=left, max_minutes=max_wall_minutes,
                    snapshot_minutes=30, sources=SOURCES, feature_nets=FEATURE_NETS)
    record.update(cpu_seconds=record["cpu_seconds"] + _own_cpu_seconds() - c0,
                  wall_seconds=record["wall_seconds"] + time.time() - t0, calls=record["calls"] + 1,
                  kimg=trainer.nimg / 1000, config=cfg.__dict__, budget_cpu_minutes=cpu_minutes)
    out.mkdir(parents=True, exist_ok=True)
    atomic_save(record_path, lambda p: Path(p).write_text(json.dumps(record, indent=1)))
    return record


def arm_generator(arm: str) -> Path:
    return START_GENERATOR if arm == "start" else RUNS / arm / "generator_ema.safetensors"


def arm_record(arm: str) -> dict:
    """kimg, training CPU-seconds and config of an arm (``start``: none trained)."""
    if arm == "start":
        meta = json.loads(START_GENERATOR.with_suffix(".json").read_text())["metadata"]
        return {"kimg": meta["kimg"], "cpu_seconds": 0.0, "config": meta["train_config"]}
    record = json.loads((RUNS / arm / "arm.json").read_text())
    return {"kimg": record["kimg"], "cpu_seconds": record["cpu_seconds"], "config": record["config"]}


def evaluate_arm(arm: str) -> tuple:
    import pandas as pd
    import torch

    from dapper.study import gan_eval
    from dapper.stylegan2 import load_generator
    from dapper.utils import weights_hash

    path = arm_generator(arm)
    G = load_generator(path)
    t0 = time.time()
    res = gan_eval.evaluate(G, n=N_FD, with_projection=False)
    # two single-thread processes project; W (the decision metric) on every view, W+ on the first
    # N_PER_CLASS_WPLUS of each class (the same views for every arm: view i of a class is the same
    # render whatever the count)
    ident = gan_eval.identity_after_projection(G, N_PER_CLASS, spaces=("w",), init="w_avg", workers=2)
    plus = gan_eval.identity_after_projection(G, N_PER_CLASS_WPLUS, spaces=("w+",), init="w_avg", workers=2)["w+"]
    rec = arm_record(arm)
    n = len(ident["w"]["hits"])
    subset = (np.arange(n) % N_PER_CLASS) < N_PER_CLASS_WPLUS  # views are class-major
    hit_plus, pair_plus = np.full(n, np.nan), np.full(n, np.nan)
    hit_plus[subset], pair_plus[subset] = plus["hits"], plus["pair_hits"]
    row = {"arm": arm, "kimg": rec["kimg"], "train_cpu_seconds": round(rec["cpu_seconds"], 1),
           "identity_kept_w": ident["w"]["kept"], "pair_kept_w": ident["w"]["pair_kept"],
           "identity_kept_wplus": plus["kept"], "pair_kept_wplus": plus["pair_kept"],
           "n_views": n, "n_views_wplus": int(subset.sum()), "oracle_on_originals": ident["oracle_on_originals"],
           "fd_ratio": res["fd_ratio"],
           "fd_ratio_source_48px": res["fd_source_resampled"][48] / res["fd_source_halves"],
           "pose_coverage": res["pose_coverage_generated"], "generator": str(path.relative_to(ROOT)),
           "generator_hash": weights_hash(G)[:16], "eval_seconds": round(time.time() - t0, 1),
           "config": json.dumps({k: rec["config"].get(k, "") for k in ("diffaugment", "projected_features",
                                                                         "projected_weight", "r1_gamma", "batch")}),
           "torch": torch.__version__}
    views = pd.DataFrame({"arm": arm, "view": np.arange(n), "hit_w": ident["w"]["hits"],
                          "pair_w": ident["w"]["pair_hits"], "hit_wplus": hit_plus, "pair_wplus": pair_plus})
    print(json.dumps({k: v for k, v in row.items() if k != "config"}, indent=1), flush=True)
    return row, views


def mcnemar_p(a: np.ndarray, b: np.ndarray) -> float:
    """Exact two-sided McNemar p of paired bools (only the discordant pairs count)."""
    from scipy.stats import binomtest

    n01, n10 = int((~a & b).sum()), int((a & ~b).sum())
    return 1.0 if n01 + n10 == 0 else float(binomtest(n01, n01 + n10, 0.5).pvalue)


def paired_table(views):
    """Each arm against the control (and the start) on the same views: difference in share kept,
    a 95% bootstrap interval over views (2,000 resamples) and the exact McNemar p."""
    import pandas as pd

    rng = np.random.default_rng(0)
    rows = []
    for ref in ("control", "start"):
        if ref not in set(views["arm"]):
            continue
        base = views[views["arm"] == ref].sort_values("view")
        for arm, g in views.groupby("arm"):
            if arm == ref:
                continue
            g = g.sort_values("view")
            for col in ("hit_w", "pair_w", "hit_wplus", "pair_wplus"):
                both = base[col].notna().to_numpy() & g[col].notna().to_numpy()  # W+ was measured on a subset
                a, b = base[col].to_numpy()[both].astype(bool), g[col].to_numpy()[both].astype(bool)
                diff = b.astype(float) - a.astype(float)
                boot = diff[rng.integers(0, len(diff), (2000, len(diff)))].mean(1)
                rows.append({"arm": arm, "against": ref, "measure": col, "difference": diff.mean(),
                             "low": np.quantile(boot, 0.025), "high": np.quantile(boot, 0.975),
                             "mcnemar_p": mcnemar_p(a, b), "n_views": len(diff)})
    return pd.DataFrame(rows, columns=["arm", "against", "measure", "difference", "low", "high", "mcnemar_p",
                                       "n_views"])


def plot(df) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    x = np.arange(len(df))
    for i, (col, label) in enumerate((("identity_kept_w", "identity, W"), ("identity_kept_wplus", "identity, W+"),
                                      ("pair_kept_w", "pair, W"))):
        axes[0].bar(x + (i - 1) * 0.27, df[col], 0.27, label=label)
    axes[0].set_xticks(x, [f"{a}\n{k:.0f} kimg" for a, k in zip(df["arm"], df["kimg"])], fontsize=8)
    n_w, n_wplus = int(df["n_views"].iloc[0]), int(df["n_views_wplus"].iloc[0])
    axes[0].set(ylim=(0, 1), ylabel=f"share kept (W: {n_w} views, W+: the first {n_wplus})",
                title="kept after projection (same views for every arm)")
    axes[0].legend(fontsize=8)
    axes[1].bar(x, df["fd_ratio"])
    axes[1].set_xticks(x, list(df["arm"]), fontsize=8)
    axes[1].set(ylabel="FD ratio", title="distance to the source (lower is better)")
    fig.tight_layout()
    atomic_save(RESULTS / "gan_v3_ab.png", lambda p: fig.savefig(p, dpi=110, format="png"))
    plt.close(fig)


def write(rows_df, views_df) -> None:
    order = {a: i for i, a in enumerate(["start", *ARMS])}
    rows_df = rows_df.sort_values("arm", key=lambda s: s.map(order)).reset_index(drop=True)
    atomic_save(RESULTS / "gan_v3_ab.csv", lambda p: rows_df.to_csv(p, index=False, float_format="%.4g"))
    atomic_save(RESULTS / "gan_v3_ab_views.csv", lambda p: views_df.to_csv(p, index=False))
    paired = paired_table(views_df)
    atomic_save(RESULTS / "gan_v3_ab_paired.csv", lambda p: paired.to_csv(p, index=False, float_format="%.4g"))
    plot(rows_df)


def read(name: str):
    import pandas as pd

    path = RESULTS / name
    return pd.read_csv(path) if path.exists() else pd.DataFrame()


def main(argv=None) -> int:
    import pandas as pd
    import torch

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", choices=sorted(ARMS))
    ap.add_argument("--cpu-minutes", type=float, default=60.0)
    ap.add_argument("--max-wall-minutes", type=float, default=95.0)
    ap.add_argument("--evaluate", nargs="+", choices=["start", *ARMS])
    ap.add_argument("--report", action="store_true", help="only rebuild the paired table and the figure")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.train:
        print(json.dumps(train_arm(args.train, args.cpu_minutes, args.max_wall_minutes), indent=1, default=str))
    if args.evaluate:
        rows, views = read("gan_v3_ab.csv"), read("gan_v3_ab_views.csv")
        for arm in args.evaluate:
            row, v = evaluate_arm(arm)
            rows = pd.concat([rows[rows["arm"] != arm] if len(rows) else rows, pd.DataFrame([row])])
            views = pd.concat([views[views["arm"] != arm] if len(views) else views, v])
            write(rows, views)
    if args.report:
        write(read("gan_v3_ab.csv"), read("gan_v3_ab_views.csv"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
