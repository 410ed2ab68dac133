"""``python -m dapper <command> [args]``: one front door for the study's command-line tools.

Each command lives in its own module with a ``main(argv: list[str] | None) -> int | None``;
modules are imported only when their command is used, so one missing or heavy module never
breaks the others.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "project": ("dapper.projection", "project real images into the generator's W space"),
    "augment": ("dapper.augment", "write synthetic training images for a fold"),
    "report": ("dapper.report", "run the notebooks with papermill and rebuild reports/index.md"),
}


def _usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = ["usage: python -m dapper <command> [args]", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    lines.append("\n`python -m dapper <command> --help` describes a command.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module_name = COMMANDS[name][0]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # Only the command's own module being absent means "not written yet"; a missing
        # dependency inside it is a real installation problem and must surface as such.
        if exc.name != module_name:
            raise
        print(
            f"`python -m dapper {name}` is not available yet: module {module_name} "
            "has not been written in this checkout.",
            file=sys.stderr,
        )
        return 3
    result = module.main(rest)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
