"""``python -m dapper annotators train|eval pose|detector``: the method's pose annotator and vehicle
detector (:mod:`dapper.judges.annotators`)."""

from __future__ import annotations

from dapper.cli.judges import judge_command
from dapper.judges import annotators

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    return judge_command(argv, "annotators", annotators.__doc__, annotators.CONFIGS, annotators.train,
                         annotators.evaluate_checkpoint)
