"""``python -m dapper status [--write]``: the README's status block (:mod:`dapper.study.status`)."""

from __future__ import annotations

from pathlib import Path

from dapper.cli.options import command_parser
from dapper.study import status

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    ap = command_parser("status", status.__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[2], help="the repository")
    ap.add_argument("--write", action="store_true", help="update README.md's status block")
    args = ap.parse_args(argv)
    block = status.status_markdown(args.root)
    if not args.write:
        print(block)
        return 0
    changed = status.write_readme_status(args.root, block)
    print(f"{'updated' if changed else 'unchanged'}: {args.root / 'README.md'}")
    return 0
