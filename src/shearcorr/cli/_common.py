"""Argument helpers shared by the CLI commands: one vocabulary for parameters and grids.

Nothing here imports numpy: ``shearcorr --help`` builds every sub-parser from these helpers and
:data:`shearcorr.choices.CHOICES` alone; each command imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import sys

from ..choices import CHOICES

__all__ = ["OneLineParser", "add_system_args", "add_grid_args", "params_from_args", "grid_from_args",
           "positive_int", "seed_int"]


class OneLineParser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line on stderr and exit status 2 (no usage dump)."""

    def error(self, message: str):  # type: ignore[override]
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


def add_system_args(p: argparse.ArgumentParser, *, defaults: tuple = (150.0, 0.0, 1.0, 10.0)) -> None:
    """--n-l2 --rs --d2 --gamma-l --displacement (defaults: the paper's baseline (150, 0, 1, 10))."""
    n_l2, rs, d2, gamma_l = defaults
    g = p.add_argument_group("system parameters (lengths in units of the radius r0)")
    g.add_argument("--n-l2", type=float, default=n_l2, help=f"mean particles in the beam, nL^2 (default {n_l2:g})")
    g.add_argument("--rs", type=float, default=rs, help=f"log-normal width of radii R_s (default {rs:g})")
    g.add_argument("--d2", type=float, default=d2, help=f"non-affine displacement std D_2 (default {d2:g})")
    g.add_argument("--gamma-l", type=float, default=gamma_l, help=f"shear strain x beam size (default {gamma_l:g})")
    g.add_argument("--displacement", choices=CHOICES["displacement"], default="uniform",
                   help="non-affine step: uniform std d2 (paper text) or d2*sqrt(r0/R) (default uniform)")


def add_grid_args(p: argparse.ArgumentParser) -> None:
    """--q-min --q-max --n-q --n-theta (default: the paper's 100 x 101 grid on [0.5, 5])."""
    g = p.add_argument_group("polar grid")
    g.add_argument("--q-min", type=float, default=0.5, help="smallest q, 1/r0 (default 0.5)")
    g.add_argument("--q-max", type=float, default=5.0, help="largest q, 1/r0 (default 5)")
    g.add_argument("--n-q", type=int, default=100, help="number of log-spaced q (default 100)")
    g.add_argument("--n-theta", type=int, default=101, help="number of theta in [0, pi] (default 101)")


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


#: argparse types: an integer >= 1, and a non-negative integer seed.
positive_int = _whole_at_least(1)
seed_int = _whole_at_least(0, "seed ")
