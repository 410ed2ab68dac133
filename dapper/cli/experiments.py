"""``python -m dapper experiments``: the five-fold study (:mod:`dapper.study.experiments`), resumable,
with the same results files and figures as notebook 04."""

from __future__ import annotations

import pandas as pd

from dapper import plots
from dapper.cli.options import add_executor, add_profile, add_threads, add_workers, command_parser
from dapper.executor import check_executor
from dapper.study.experiments import (
    GAIN_GOAL,
    SCENARIO_TITLES,
    five_fold_runs,
    study_config,
    study_inputs,
    write_study_outputs,
)
from dapper.utils import reports_dir

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = command_parser("experiments", "Run the five-fold study.")
    add_profile(parser)
    parser.add_argument("--dataset", default="toycars")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--network", default=None)
    add_workers(parser)
    parser.add_argument("--out", default=None, help="results CSV (default: reports_dir('results')/five_fold.csv)")
    add_executor(parser, executor_help="ray: every run and projection batch is a Ray task (pip install -e \".[ray]\")",
                 ray_address_help="the Ray cluster to join ('auto', 'ray://head:10001'); default: a local Ray")
    add_threads(parser, help="torch threads per run (CPUs per Ray task)")
    args = parser.parse_args(argv)
    check_executor(args.executor, args.ray_address)
    config = study_config(args.profile, args.dataset, data_root=args.data_root, network=args.network,
                          workers=args.workers, executor=args.executor, ray_address=args.ray_address)
    inputs = study_inputs(config, path=args.out)
    if inputs.skipped:
        print(inputs.skipped)
    rows = five_fold_runs(config, inputs, path=args.out, threads=args.threads)
    out = write_study_outputs(config, inputs, rows)
    tables = out["tables"]
    figures = reports_dir("figures")
    plots.fig6_accuracy_vs_shots(tables["summary"], path=figures / "fig6_accuracy_vs_shots.png",
                                 scenario_titles=SCENARIO_TITLES)
    if len(out["agreement"]) and len(out["fits"]):
        plots.fig6_gain_vs_label_agreement(out["relation"], out["fits"], gain_goal=GAIN_GOAL,
                                           scenario_titles=SCENARIO_TITLES,
                                           path=figures / "fig6b_gain_vs_label_agreement.png")
    print(out["text"])
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(tables["summary"].to_string(index=False))
    return 0
