"""``python -m dapper classify pretrain``: the embedded classifier, pretrained on source renders
(:mod:`dapper.classify`)."""

from __future__ import annotations

import json

from dapper import classify
from dapper.cli.options import add_seed, add_threads, command_parser

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = command_parser("classify", classify.__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pretrain", help="pretrain the embedded ResNeXt on toycars source renders")
    p.add_argument("--out", default=str(classify.PRETRAINED_PATH))
    p.add_argument("--epochs", type=int, default=classify.PretrainSettings.epochs)
    p.add_argument("--n-train", type=int, default=classify.PretrainSettings.n_train)
    p.add_argument("--n-heldout", type=int, default=classify.PretrainSettings.n_heldout)
    add_threads(p)
    add_seed(p)
    args = parser.parse_args(argv)
    if args.command == "pretrain":
        settings = classify.PretrainSettings(epochs=args.epochs, n_train=args.n_train, n_heldout=args.n_heldout,
                                             threads=args.threads, seed=args.seed)
        record = classify.pretrain(args.out, settings)
        print(json.dumps(record["heldout"], indent=1))
        print(f"saved {args.out} ({record['training']['train_seconds']:.0f} s training)")
    return 0
