"""Measuring models of the embedded world, trained on toycars renders with ground truth: the study's
evaluation *oracles* (identity, pose), which only ever measure, and the method's *annotators* (pose
annotator, vehicle detector), its stand-ins for the paper's outside-data labellers. Both are small
networks with fixed-step training (:mod:`dapper.fitting`) and one file format (:mod:`dapper.modelfile`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def command_line(argv, prog: str, doc: str, kinds, train, load_and_evaluate) -> None:
    """The shared command line of the judges: ``train KIND`` or ``eval KIND`` with ``--scale``,
    ``--threads`` and ``--out``. ``train(kind, out, scale, threads)``; ``load_and_evaluate(kind,
    out, scale) -> dict`` (printed as JSON)."""
    import torch

    ap = argparse.ArgumentParser(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=["train", "eval"])
    ap.add_argument("kind", choices=sorted(kinds))
    ap.add_argument("--scale", type=float, default=1.0, help="shrink data and steps (smoke tests)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None, help="checkpoint folder (default checkpoints/)")
    args = ap.parse_args(argv)
    if args.action == "train":
        train(args.kind, args.out, args.scale, args.threads)
    else:
        torch.set_num_threads(args.threads)
        print(json.dumps(load_and_evaluate(args.kind, args.out, args.scale), indent=1))
