"""The command line the judges share (``python -m dapper oracles|annotators``): ``train KIND`` or
``eval KIND`` with ``--scale``, ``--threads`` and ``--out``."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path

import torch

from dapper.cli.options import add_scale, add_threads, command_parser

__all__ = ["judge_command"]


def judge_command(argv: list[str] | None, command: str, doc: str, kinds: Iterable[str], train: Callable,
                  evaluate_checkpoint: Callable) -> int:
    """``train(kind, out, scale, threads)``; ``evaluate_checkpoint(kind, out, scale) -> dict`` (printed
    as JSON)."""
    ap = command_parser(command, doc, as_written=True)
    ap.add_argument("action", choices=["train", "eval"])
    ap.add_argument("kind", choices=sorted(kinds))
    add_scale(ap, help="shrink data and steps (smoke tests)")
    add_threads(ap)
    ap.add_argument("--out", type=Path, default=None, help="checkpoint folder (default checkpoints/)")
    args = ap.parse_args(argv)
    if args.action == "train":
        train(args.kind, args.out, args.scale, args.threads)
    else:
        torch.set_num_threads(args.threads)
        print(json.dumps(evaluate_checkpoint(args.kind, args.out, args.scale), indent=1))
    return 0
