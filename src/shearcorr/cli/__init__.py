"""Command-line interface: ``shearcorr <command> ...``, a thin layer over the Python API.

Each command lives in its own module with ``register(subparsers)``, which adds a sub-parser and
sets ``func(args) -> int | None``. Every :class:`~shearcorr.errors.ShearcorrError` (and argparse
error) is printed as one line ``shearcorr: error: ...`` with exit status 2 and no traceback.
"""

from __future__ import annotations

import importlib
import sys

from ..errors import ShearcorrError
from ._common import OneLineParser

__all__ = ["main", "build_parser"]

#: Command modules, in the order they appear in ``shearcorr --help``.
COMMAND_MODULES = ("simulate", "plot", "dataset", "train", "fit", "analyze", "reproduce")


def build_parser() -> OneLineParser:
    from .._version import __version__

    parser = OneLineParser(
        prog="shearcorr",
        description="Speckle-correlation analysis of sheared colloids (Ding, Chen & Do).",
    )
    parser.add_argument("--version", action="version", version=f"shearcorr {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        status = args.func(args)
    except ShearcorrError as exc:
        print(f"shearcorr: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("shearcorr: interrupted; files already written are complete (run the same command to resume)", file=sys.stderr)
        return 130
    return int(status or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
