"""``python -m dapper perceptual train``: the toycars perceptual network used by projection
(:mod:`dapper.inversion.perceptual`)."""

from __future__ import annotations

from dapper.cli.options import add_model_training, command_parser
from dapper.inversion import perceptual

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    ap = command_parser("perceptual", perceptual.__doc__, as_written=True)
    sub = ap.add_subparsers(dest="action", required=True)
    t = sub.add_parser("train", help="train the toycars feature network on source renders")
    add_model_training(t, out_help="checkpoint path (default checkpoints/perceptual_toycars)")
    args = ap.parse_args(argv)
    perceptual.train(args.out, args.scale, args.threads, args.seed)
    return 0
