"""``python -m dapper noise-curve``: the world's ceiling and the label-noise curve
(:mod:`dapper.study.noise_curve`), with figure 6c."""

from __future__ import annotations

from dapper.cli.options import add_profile, add_replace_full, add_workers, command_parser, print_study_run
from dapper.plots import fig6c_noise_curve
from dapper.study.config import GAIN_GOAL
from dapper.study.noise_curve import (
    RESULT_FILES,
    ceiling_config,
    generator_points,
    refuse_smaller_profile,
    run_noise_curve,
)
from dapper.utils import reports_dir

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = command_parser("noise-curve", "The embedded world's ceiling (the renderer as a perfect generator) "
                                           "and the label-noise curve: how good the generator must be.")
    add_profile(parser)
    add_workers(parser)
    add_replace_full(parser)
    parser.add_argument("--boot", type=int, default=2000, help="fold resamples of the curve's intervals")
    args = parser.parse_args(argv)
    try:  # before anything runs
        refuse_smaller_profile(reports_dir("results"), RESULT_FILES, args.profile, args.replace_full)
    except ValueError as e:
        parser.error(str(e))
    config = ceiling_config(args.profile, workers=args.workers)
    out = run_noise_curve(config, n_boot=args.boot, replace_full=args.replace_full)
    gen_points = generator_points(reports_dir("results"))
    fig6c_noise_curve(out["points"], out["curve"], gen_points, path=reports_dir("figures") / "fig6c_noise_curve.png",
                      gain_goal=GAIN_GOAL)
    print_study_run(out)
    return 0
