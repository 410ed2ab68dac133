"""``python -m dapper settings-sweep``: synthetic share of a batch and images per real one, on the
world's ceiling (:mod:`dapper.study.settings_sweep`)."""

from __future__ import annotations

from dapper.cli.options import add_profile, add_workers, command_parser, print_study_run
from dapper.study.settings_sweep import run_sweep

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = command_parser("settings-sweep", "Synthetic share of a batch and images per real one, measured on "
                                              "the world's ceiling and chosen on training folds only.")
    add_profile(parser)
    add_workers(parser)
    args = parser.parse_args(argv)
    print_study_run(run_sweep(args.profile, workers=args.workers))
    return 0
