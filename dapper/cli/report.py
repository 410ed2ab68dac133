"""``python -m dapper report``: run the numbered notebooks and rebuild ``reports/index.md``
(:mod:`dapper.report`; ``make report``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dapper import report
from dapper.cli.options import add_profile, command_parser
from dapper.study.params import DATASETS

__all__ = ["parser", "main"]


def parser() -> argparse.ArgumentParser:
    p = command_parser("report", "Run the numbered notebooks in order (papermill); rebuild reports/index.md.")
    add_profile(p, default="full")
    p.add_argument("--dataset", choices=DATASETS, default="toycars")
    p.add_argument(
        "-p",
        "--parameter",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "VALUE"),
        help="extra notebook parameter, e.g. -p data_root /data/stanford_cars (repeatable)",
    )
    p.add_argument("--only", metavar="NAME", help="run one notebook (e.g. 03 or 03_augmentation)")
    p.add_argument("--notebooks-dir", type=Path, default=None, help="default: <repo>/notebooks")
    p.add_argument("--reports-dir", type=Path, default=None,
                   help="default: $DAPPER_REPORTS, else <repo>/reports; another dataset than toycars: its own "
                        "folder below that, e.g. reports/stanford_cars")
    p.add_argument("--kernel", default=None, help="Jupyter kernel (default: dapper, else python3)")
    p.add_argument("--index-only", action="store_true", help="only rebuild reports/index.md")
    p.add_argument("--no-progress", action="store_true", help="no per-cell progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    """0: every notebook ran; 1: one failed (the batch stopped there); 2: a problem found before running."""
    args = parser().parse_args(argv)
    reports_dir = args.reports_dir or report.report_folder(args.dataset)
    if args.index_only:
        print(f"wrote {report.write_index(report.prepare_reports_dir(reports_dir))}")
        return 0
    extras = {name: report.parse_value(value) for name, value in args.parameter}
    try:
        timings = report.run_report(
            args.profile,
            args.dataset,
            extras,
            only=args.only,
            notebooks_dir=args.notebooks_dir,
            reports_dir=reports_dir,
            kernel=args.kernel,
            progress=not args.no_progress,
        )
    except report.NotebookFailed as exc:
        report.print_timings(exc.timings, file=sys.stderr)
        print(f"\nFAILED: {exc}", file=sys.stderr)
        return 1
    except report.ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report.print_timings(timings)
    print(f"index: {Path(reports_dir) / 'index.md'}")
    return 0
