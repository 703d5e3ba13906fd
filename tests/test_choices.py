"""One table of choices drives the API checks and the CLI; importing it loads no numerical library."""

import argparse
import subprocess
import sys

import pytest

from shearcorr.choices import CHOICES, check_choice
from shearcorr.errors import ShearcorrError


def test_check_choice_returns_the_value_or_names_the_options():
    assert check_choice("engine", "mc") == "mc"
    with pytest.raises(ShearcorrError, match=r"^engine must be one of analytic, mc, got 'fast'$"):
        check_choice("engine", "fast")
    with pytest.raises(ShearcorrError, match="^mask convention must be one of valid, masked"):
        check_choice("mask_convention", "1", what="mask convention")
    with pytest.raises(ShearcorrError):
        check_choice("engine", ["mc"])  # unhashable, still one clear line


def _cli_choices() -> dict:
    """(command, option dest) -> choices of every argparse action of the CLI."""
    from shearcorr.cli import build_parser

    found = {}

    def walk(parser, prefix):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, prefix + (name,))
            elif action.choices is not None:
                found[prefix + (action.dest,)] = tuple(action.choices)

    walk(build_parser(), ())
    return found


def test_every_cli_choice_comes_from_the_table():
    tables = set(CHOICES.values())
    for where, choices in _cli_choices().items():
        assert choices in tables, f"{where}: {choices} is not a row of shearcorr.choices.CHOICES"


def test_help_imports_no_numerical_library():
    code = ("import sys, shearcorr, shearcorr.cli; shearcorr.cli.build_parser(); "
            "print(sorted(m for m in ('numpy', 'scipy', 'numba', 'xarray', 'sklearn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"
