"""Argument helpers shared by the CLI commands: one vocabulary for parameters and grids.

Nothing here imports numpy: ``shearcorr --help`` builds every sub-parser from these helpers and
:data:`shearcorr.choices.CHOICES` alone; each command imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import sys

from ..choices import CHOICES

__all__ = ["OneLineParser", "add_system_args", "add_grid_args", "add_overwrite", "params_from_args", "grid_from_args",
           "positive_int", "whole_int", "seed_int", "finite", "show_progress"]


class OneLineParser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line on stderr and exit status 2 (no usage dump)."""

    def error(self, message: str):  # type: ignore[override]
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


def add_system_args(p: argparse.ArgumentParser, *, defaults: tuple = (150.0, 0.0, 1.0, 10.0)) -> None:
    """--n-l2 --rs --d2 --gamma-l --displacement (defaults: the paper's baseline (150, 0, 1, 10))."""
    n_l2, rs, d2, gamma_l = defaults
    g = p.add_argument_group("system parameters (lengths in units of the radius r0)")
    g.add_argument("--n-l2", type=finite, default=n_l2, help=f"mean particles in the beam, nL^2 (default {n_l2:g})")
    g.add_argument("--rs", type=finite, default=rs, help=f"log-normal width of radii R_s (default {rs:g})")
    g.add_argument("--d2", type=finite, default=d2, help=f"non-affine displacement std D_2 (default {d2:g})")
    g.add_argument("--gamma-l", type=finite, default=gamma_l, help=f"shear strain x beam size (default {gamma_l:g})")
    g.add_argument("--displacement", choices=CHOICES["displacement"], default="uniform",
                   help="non-affine step: uniform std d2 (paper text) or d2*sqrt(r0/R) (default uniform)")


def add_grid_args(p: argparse.ArgumentParser) -> None:
    """--q-min --q-max --n-q --n-theta (default: the paper's 100 x 101 grid on [0.5, 5])."""
    g = p.add_argument_group("polar grid")
    g.add_argument("--q-min", type=finite, default=0.5, help="smallest q, 1/r0 (default 0.5)")
    g.add_argument("--q-max", type=finite, default=5.0, help="largest q, 1/r0 (default 5)")
    g.add_argument("--n-q", type=positive_int, default=100, help="number of log-spaced q (default 100)")
    g.add_argument("--n-theta", type=positive_int, default=101, help="number of theta in [0, pi] (default 101)")


def add_overwrite(p: argparse.ArgumentParser, what: str = "output") -> None:
    """--overwrite: the one overwrite rule of every command that writes (an existing output is refused
    without it, and replaced only once the new one is complete with it)."""
    p.add_argument("--overwrite", action="store_true",
                   help=f"replace an existing {what} (only once the new one is complete)")


def show_progress(args: argparse.Namespace) -> bool:
    """Progress bars only on a terminal: a redirected stderr gets no carriage-return spam."""
    return not getattr(args, "no_progress", False) and sys.stderr.isatty()


def params_from_args(args: argparse.Namespace):
    """The :class:`~shearcorr.params.SystemParams` of ``add_system_args``'s options."""
    from ..params import SystemParams

    return SystemParams(n_l2=args.n_l2, rs=args.rs, d2=args.d2, gamma_l=args.gamma_l, displacement=args.displacement)


def grid_from_args(args: argparse.Namespace):
    """The :class:`~shearcorr.params.QGrid` of ``add_grid_args``'s options."""
    from ..params import QGrid

    return QGrid.log(args.q_min, args.q_max, args.n_q, args.n_theta)


def _whole_at_least(minimum: int, name: str = ""):
    """argparse type: an integer >= ``minimum`` (``name`` starts the error message)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name}must be a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{name}must be >= {minimum}, got {value}")
        return value

    return parse


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None


def noise_level(text: str) -> float:
    """argparse type: configurations averaged, a number >= 2, or inf (noise-free)."""
    value = _number(text)
    if not (value == float("inf") or value >= 2):
        raise argparse.ArgumentTypeError(f"must be >= 2 configurations (or inf: noise-free), got {text!r}")
    return value


def finite(text: str) -> float:
    """argparse type: a finite number (nan and inf are refused here, in one line)."""
    value = _number(text)
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


#: argparse types: an integer >= 1, an integer >= 0, and a non-negative integer seed.
positive_int = _whole_at_least(1)
whole_int = _whole_at_least(0)
seed_int = _whole_at_least(0, "seed ")
