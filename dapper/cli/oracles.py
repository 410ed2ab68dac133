"""``python -m dapper oracles train|eval identity|pose``: the evaluation oracles (:mod:`dapper.judges.oracles`)."""

from __future__ import annotations

from dapper.cli.judges import judge_command
from dapper.judges import oracles

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    return judge_command(argv, "oracles", oracles.__doc__, oracles.CONFIGS, oracles.train, oracles.evaluate_checkpoint)
