"""``python -m dapper``: see :mod:`dapper.cli`."""

from dapper.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
