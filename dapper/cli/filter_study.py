"""``python -m dapper filter-study``: the paper's synthetic images with and without the method's
filter (:mod:`dapper.study.filter_study`), with figure 6d."""

from __future__ import annotations

from dapper.cli.options import add_profile, add_replace_full, add_workers, command_parser, print_study_run
from dapper.plots import fig6_accuracy_vs_shots
from dapper.study.filter_study import filter_config, result_files, run_filter_study
from dapper.study.noise_curve import refuse_smaller_profile
from dapper.utils import reports_dir

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = command_parser("filter-study", "The paper's synthetic images with and without the method's own "
                                            "filter, on the generator and on the world's ceiling.")
    add_profile(parser)
    add_workers(parser)
    add_replace_full(parser)
    parser.add_argument("--filter", default="classifier", choices=("classifier", "nearest"))
    parser.add_argument("--min-confidence", type=float, default=0.0)
    args = parser.parse_args(argv)
    try:  # before anything runs
        refuse_smaller_profile(reports_dir("results"), result_files(args.filter), args.profile, args.replace_full)
    except ValueError as e:
        parser.error(str(e))
    config = filter_config(args.profile, workers=args.workers,
                           filter={"by": args.filter, "min_confidence": args.min_confidence})
    out = run_filter_study(config, replace_full=args.replace_full)
    fig6_accuracy_vs_shots(out["summary"], path=reports_dir("figures") / result_files(args.filter)["figure"])
    print_study_run(out)
    return 0
