"""``python -m dapper encoder train``: the encoder that starts projection for a generator
(:mod:`dapper.inversion.encoder`)."""

from __future__ import annotations

from pathlib import Path

from dapper.cli.options import add_model_training, command_parser
from dapper.inversion import encoder

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    ap = command_parser("encoder", encoder.__doc__, as_written=True)
    sub = ap.add_subparsers(dest="action", required=True)
    t = sub.add_parser("train", help="train an encoder for one generator")
    t.add_argument("--network", type=Path, default=None, help="generator checkpoint (default: shipped source GAN)")
    add_model_training(t, out_help="checkpoint path (default checkpoints/encoder_source_gan)")
    args = ap.parse_args(argv)
    encoder.train(args.network, args.out, args.scale, args.threads, args.seed)
    return 0
