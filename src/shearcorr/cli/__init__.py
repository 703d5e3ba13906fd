"""Command-line interface: ``shearcorr <command> ...``, a thin layer over the Python API.

Each command lives in its own module with ``register(subparsers)``, which adds a sub-parser and
sets ``func(args) -> int | None``. Every :class:`~shearcorr.errors.ShearcorrError` (and argparse
error) is printed as one line ``shearcorr: error: ...`` with exit status 2 and no traceback; so are a
full disk, a read-only folder and too little memory. Anything else is a bug: one line, exit status 1.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys

from ..errors import ShearcorrError
from ._common import OneLineParser

__all__ = ["main", "build_parser"]

#: Command modules, in the order they appear in ``shearcorr --help``.
COMMAND_MODULES = ("simulate", "plot", "dataset", "train", "fit", "analyze", "stack", "reproduce")


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


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _failure(exc: BaseException) -> tuple[str, int]:
    """(message, exit status) of an exception that left a command: 2 for the input and the
    environment (named in the message with the fix), 1 for a bug in shearcorr (docs/reliability.md)."""
    from ..files import is_write_error, write_error

    if isinstance(exc, ShearcorrError):
        return _one_line(exc), 2
    if isinstance(exc, MemoryError):
        detail = f" ({_one_line(exc)})" if str(exc) else ""
        return (f"not enough memory for this input{detail}; use smaller sizes (grid, frames, chunks) or a "
                f"machine with more memory"), 2
    if isinstance(exc, OSError):
        where = exc.filename or "the output"
        if is_write_error(exc):
            return _one_line(write_error(exc, where, kept=False)), 2
        return f"{exc.strerror or _one_line(exc)}: {where}", 2
    if isinstance(exc, RecursionError):
        return "the input is nested too deeply to read (a damaged or hostile file?); check the input files", 2
    return (f"internal error {type(exc).__name__}: {_one_line(exc)} - a bug in shearcorr, please report it "
            f"(set SHEARCORR_DEBUG=1 to see the traceback)"), 1


@contextlib.contextmanager
def _quiet_libraries():
    """Numerical libraries' warnings and log records (numpy's RuntimeWarning, tifffile's log lines, zarr's
    notices) are not messages to a CLI user: shearcorr says what matters in its own lines. With
    SHEARCORR_DEBUG set they are shown."""
    if os.environ.get("SHEARCORR_DEBUG"):
        yield
        return
    import logging
    import warnings

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)


def main(argv: list[str] | None = None) -> int:
    """Run ``shearcorr`` with ``argv``; returns the exit status.

    Every failure is one line on stderr: ``shearcorr: error: ...`` with status 2 for bad input and for
    the environment (missing files, a full disk, too little memory), status 1 for an internal error
    (a bug; ``SHEARCORR_DEBUG=1`` re-raises it with its traceback), 130 when interrupted.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        with _quiet_libraries():
            status = args.func(args)
    except KeyboardInterrupt:
        print("shearcorr: interrupted; files already written are complete (run the same command to resume)", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of stdout went away (e.g. | head): nothing left to say
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as exc:
        if os.environ.get("SHEARCORR_DEBUG") and not isinstance(exc, ShearcorrError):
            raise
        message, code = _failure(exc)
        print(f"shearcorr: error: {message}", file=sys.stderr)
        return code
    return int(status or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
