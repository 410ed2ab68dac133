"""``python -m dapper world-calibration``: the embedded world measured against its 64 px instruments
(:mod:`dapper.study.world_calibration`), with figure 0."""

from __future__ import annotations

import numpy as np

from dapper import plots
from dapper.cli.options import add_workers, command_parser
from dapper.data import toycars
from dapper.study import world_calibration as wc
from dapper.utils import reports_dir

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    ap = command_parser("world-calibration", wc.__doc__, as_written=True)
    ap.add_argument("--skip-classifier", action="store_true", help="only the oracles (a minute)")
    ap.add_argument("--n-per-class", type=int, default=200, help="held-out views per class for the identity oracle")
    add_workers(ap, help="processes for the classifier's fine-tuning runs")
    args = ap.parse_args(argv)
    table, identity_rows = wc.calibrate(args.skip_classifier, args.n_per_class, workers=args.workers)
    plots.fig0_world_calibration(
        identity_rows, wc.pair_views(), [toycars.TARGET_CLASSES[a] for a, _ in toycars.PAIRS],
        [toycars.TARGET_CLASSES[b] for _, b in toycars.PAIRS], wc.FIGURE_YAWS,
        goals={64: wc.GOALS["identity_oracle_64px"][1], 32: wc.GOALS["identity_oracle_32px"][1],
               16: wc.GOALS["identity_oracle_16px"][1]},
        path=reports_dir("figures") / "fig0_world_calibration.png", world=toycars.WORLD_TAG)
    with np.printoptions(precision=3):
        print(table.to_string(index=False))
    return 0
