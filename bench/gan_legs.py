"""The world-v2 source generator's curve, one point per training leg.

    python bench/gan_legs.py [--network checkpoints/source_gan_v2.safetensors] [--threads 2]

Measures the exported generator the way the pilots were measured (``bench/gan_pilots.py``: FD ratio
to source renders in the identity oracle's features over two halves of source renders, pose
coverage, and identity and pair kept after projecting 100 held-out target views in W and in W+,
starting at the mean w; and, as the projection's own ceiling, the share of 100 generated images
the oracle names most confidently that keep that name when projected back in W) and appends one
row to ``bench/results/source_gan_v2_legs.csv`` with the
generator's kimg and the CPU-hours of all its legs (from the legs its JSON records). A row for a
kimg already measured is replaced. The curve, against the pilots' 45-minute points and the issue's
goals, is drawn to ``bench/results/source_gan_v2_legs.png``, and each goal's distance, extrapolated
from the legs (:func:`dapper.study.gan_eval.goal_forecast`), is written to
``bench/results/source_gan_v2_forecast.csv``. Run it with the training leg paused:
it would share the cores.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gan_pilots import RESULTS, evaluate_pilot  # noqa: E402

from dapper.study.gan_eval import GOALS, goal_forecast  # noqa: E402


def legs_record(json_path: Path) -> tuple[float, float, int]:
    """(kimg, CPU-hours of every leg, number of legs) from a generator's JSON."""
    meta = json.loads(json_path.read_text())["metadata"]
    legs = meta.get("legs", [])
    return float(meta["kimg"]), sum(leg.get("cpu_seconds", 0.0) for leg in legs) / 3600, len(legs)


def plot(df) -> None:
    import matplotlib.pyplot as plt

    from dapper.utils import atomic_save

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    axes[0].plot(df["cpu_hours"], df["fd_ratio"], "o-")
    axes[0].set(xlabel="training CPU-hours (2 cores)", ylabel="FD ratio (log)", yscale="log",
                title="distance to the source")
    for col, label in (("identity_kept_w", "identity, W"), ("identity_kept_wplus", "identity, W+"),
                       ("pair_kept_w", "pair, W"), ("pose_coverage", "pose coverage"),
                       ("self_identity_kept_w", "own samples, W")):
        if col in df:
            axes[1].plot(df["cpu_hours"], df[col], "o-", label=label)
    for col in ("identity_kept_w", "identity_kept_wplus", "pose_coverage"):
        goal = GOALS[col]
        axes[1].axhline(goal, ls=":", lw=0.8, color="grey")
    axes[1].set(xlabel="training CPU-hours (2 cores)", ylim=(0, 1), ylabel="share",
                title="kept after projection (100 views); goals dotted")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    atomic_save(RESULTS / "source_gan_v2_legs.png", lambda p: fig.savefig(p, dpi=110, format="png"))
    plt.close(fig)


def main(argv=None) -> int:
    import pandas as pd
    import torch

    from dapper.stylegan2 import load_generator
    from dapper.utils import atomic_save

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--network", type=Path, default=Path("checkpoints/source_gan_v2.safetensors"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n-fd", type=int, default=2000)
    ap.add_argument("--n-per-class", type=int, default=10)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    kimg, cpu_hours, n_legs = legs_record(args.network.with_suffix(".json"))
    G = load_generator(args.network)
    meta = json.loads(args.network.with_suffix(".json").read_text())["metadata"]
    row = evaluate_pilot("source_gan_v2", G, round(cpu_hours * 60), meta, args.n_fd, args.n_per_class)
    row.update(cpu_hours=round(cpu_hours, 3), legs=n_legs)
    path = RESULTS / "source_gan_v2_legs.csv"
    rows = pd.read_csv(path).to_dict("records") if path.exists() else []
    rows = [r for r in rows if abs(float(r["kimg"]) - kimg) > 1e-3] + [row]
    df = pd.DataFrame(rows).sort_values("kimg")
    atomic_save(path, lambda p: df.to_csv(p, index=False, float_format="%.4g"))
    plot(df)
    forecast = goal_forecast(df)
    out = RESULTS / "source_gan_v2_forecast.csv"
    atomic_save(out, lambda p: forecast.to_csv(p, index=False, float_format="%.4g"))
    print(f"wrote {path} ({len(df)} legs measured) and {out}:")
    print(forecast.to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
