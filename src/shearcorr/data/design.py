"""Parameter designs for datasets: which (n_l2, rs, d2, gamma_l) each sample gets.

Three kinds of design over a box of parameter ranges, any parameter optionally fixed:

``"uniform"``
    Independent uniform draws, as in the paper (nL^2 ~ U(100, 200), R_s ~ U(0, 0.3),
    D_2 ~ U(0.5, 3), gamma L ~ U(5, 30)). Sample ``i`` draws its row from its own stream
    ``SeedSequence(seed).spawn(n)[i]``, so a row never depends on ``n``, chunking or workers.
``"lhs"``
    Latin hypercube (:class:`scipy.stats.qmc.LatinHypercube`): each free parameter's range is cut into
    ``n`` equal strata holding exactly one sample each.
``"sobol"``
    Scrambled Sobol' sequence (:class:`scipy.stats.qmc.Sobol`); balanced for ``n`` a power of two.

LHS and Sobol' are joint designs: all ``n`` rows are drawn at once from the root stream of
``SeedSequence(seed)`` (distinct from the per-sample children), on the driver, so they do not depend
on chunking or workers either. A :class:`Design` is saved with the data as JSON (:meth:`Design.to_json`).
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from ..choices import check_choice
from ..errors import ShearcorrError
from ..params import PARAM_NAMES, finite_float
from ..rng import child_seed, seed_sequence

__all__ = ["PAPER_RANGES", "Design", "make_design", "sample_seed"]

#: The paper's ranges (Sec. II C): nL^2 ~ U(100, 200), R_s ~ U(0, 0.3), D_2 ~ U(0.5, 3), gamma L ~ U(5, 30).
PAPER_RANGES: dict[str, tuple[float, float]] = {
    "n_l2": (100.0, 200.0),
    "rs": (0.0, 0.3),
    "d2": (0.5, 3.0),
    "gamma_l": (5.0, 30.0),
}

# Physical limits per parameter: (smallest allowed, largest allowed, what it is); same as SystemParams.
_LIMITS = {
    "n_l2": (0.125, math.inf, "mean particles in the beam, > 0"),
    "rs": (0.0, 1.5, "log-normal width of radii, 0..1.5"),
    "d2": (0.0, math.inf, "non-affine displacement std, >= 0"),
    "gamma_l": (0.0, math.inf, "shear strain x beam size, >= 0"),
}

#: Version of the seeding scheme, stored with every design so a store can never be resumed by code
#: that would draw different values.
SEED_SCHEME = "seedsequence-spawn-v1"


def sample_seed(seed: int, i: int) -> np.random.SeedSequence:
    """The stream of sample ``i``: equal to ``SeedSequence(seed).spawn(n)[i]`` for any ``n > i``.

    Built directly from the spawn key (:func:`shearcorr.rng.child_seed`), so asking for one sample costs O(1).
    """
    return child_seed(seed, i)


def _check_value(name: str, value: Any, what: str) -> float:
    v = finite_float(f"{what} for {name}", value)
    lo, hi, desc = _LIMITS[name]
    if not lo <= v <= hi:
        raise ShearcorrError(f"{what} for {name} is {v:g}, outside the allowed range ({desc})")
    return v


def _check_name(name: str) -> str:
    if name not in PARAM_NAMES:
        raise ShearcorrError(f"unknown parameter {name!r}; use one of {', '.join(PARAM_NAMES)}")
    return name


@dataclass(frozen=True)
class Design:
    """A validated parameter design: ``n`` samples of ``kind`` over ``ranges``, with ``fixed`` values.

    Parameters
    ----------
    n : int
        Number of samples (>= 1).
    seed : int
        Non-negative seed; sample ``i`` uses :func:`sample_seed` ``(seed, i)``.
    kind : {"uniform", "lhs", "sobol"}
    ranges : dict of str to (float, float)
        ``(low, high)`` per free parameter; ``low == high`` is allowed (a constant column).
    fixed : dict of str to float
        Parameters held at one value. Every parameter of ``PARAM_NAMES`` is in exactly one of
        ``ranges`` and ``fixed``.

    Use :func:`make_design` to build one from user input (defaults, validation, one-line errors).
    """

    n: int
    seed: int
    kind: str = "uniform"
    ranges: dict[str, tuple[float, float]] = field(default_factory=lambda: dict(PAPER_RANGES))
    fixed: dict[str, float] = field(default_factory=dict)

    @property
    def free(self) -> tuple[str, ...]:
        """Names of the parameters that vary, in ``PARAM_NAMES`` order."""
        return tuple(p for p in PARAM_NAMES if p in self.ranges)

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-serialisable description (also what a resumed store is compared against)."""
        return {
            "kind": self.kind,
            "n": int(self.n),
            "seed": int(self.seed),
            "ranges": {p: [float(a), float(b)] for p, (a, b) in self.ranges.items()},
            "fixed": {p: float(v) for p, v in self.fixed.items()},
            "seed_scheme": SEED_SCHEME,
        }

    def to_json(self) -> str:
        """JSON text of :meth:`to_dict` (sorted keys, stable across runs)."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Design":
        """Rebuild a design saved by :meth:`to_json`."""
        try:
            d = json.loads(text)
            if d.get("seed_scheme", SEED_SCHEME) != SEED_SCHEME:
                raise ShearcorrError(f"design uses seed scheme {d['seed_scheme']!r}; this shearcorr has {SEED_SCHEME!r}")
            return make_design(d["n"], d["seed"], kind=d["kind"], ranges=d["ranges"], fixed=d["fixed"])
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, ShearcorrError):
                raise
            raise ShearcorrError(f"cannot read the design saved with the data ({type(exc).__name__}: {exc})") from None

    def sample(self) -> dict[str, np.ndarray]:
        """All ``n`` rows: a dict ``name -> float64 array (n,)`` for every parameter in ``PARAM_NAMES``.

        ``uniform`` draws 4 numbers per sample from its own stream (always 4, whichever are fixed, so
        fixing one parameter does not change the others' draws); ``lhs`` / ``sobol`` map a unit
        hypercube sample of dimension ``len(free)`` onto the ranges.
        """
        free = self.free
        n = int(self.n)
        if self.kind == "uniform":
            u = np.empty((n, len(PARAM_NAMES)))
            for i in range(n):
                u[i] = np.random.default_rng(sample_seed(self.seed, i)).random(len(PARAM_NAMES))
            cols = {p: u[:, k] for k, p in enumerate(PARAM_NAMES)}
        elif free:
            from scipy.stats import qmc

            rng = np.random.default_rng(seed_sequence(self.seed))  # root stream, not any sample's
            if self.kind == "lhs":
                unit = qmc.LatinHypercube(d=len(free), rng=rng).random(n)
            else:
                with warnings.catch_warnings():  # "balance properties ... n a power of 2": documented above
                    warnings.simplefilter("ignore", UserWarning)
                    unit = qmc.Sobol(d=len(free), scramble=True, rng=rng).random(n)
            cols = {p: unit[:, k] for k, p in enumerate(free)}
        else:
            cols = {}
        out: dict[str, np.ndarray] = {}
        for p in PARAM_NAMES:
            if p in self.fixed:
                out[p] = np.full(n, float(self.fixed[p]))
            else:
                lo, hi = self.ranges[p]
                out[p] = lo + (hi - lo) * cols[p]
        return out


def make_design(
    n: int,
    seed: int = 0,
    *,
    kind: str = "uniform",
    ranges: Mapping[str, Any] | None = None,
    fixed: Mapping[str, Any] | None = None,
) -> Design:
    """Validate user input and build a :class:`Design` (the paper's ranges for anything not given).

    Parameters
    ----------
    n : int
        Number of samples, >= 1.
    seed : int, default 0
        Non-negative integer.
    kind : {"uniform", "lhs", "sobol"}, default "uniform"
    ranges : mapping of str to (low, high), optional
        Ranges overriding :data:`PAPER_RANGES` for the named parameters.
    fixed : mapping of str to float, optional
        Parameters held at one value (not drawn).

    Raises
    ------
    ShearcorrError
        Unknown kind or parameter, ``low > high``, NaN/inf, values outside the physical range (negative,
        rs > 1.5, n_l2 < 0.125), a parameter both fixed and given a range, n < 1, bad seed.
    """
    check_choice("design", kind)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ShearcorrError(f"number of samples must be a whole number >= 1, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ShearcorrError(f"seed must be a non-negative integer, got {seed!r}")
    ranges = dict(ranges or {})
    fixed = {_check_name(p): _check_value(p, v, "fixed value") for p, v in dict(fixed or {}).items()}
    both = sorted(set(ranges) & set(fixed))
    if both:
        raise ShearcorrError(f"{both[0]} is both fixed and given a range; give one of them")
    checked: dict[str, tuple[float, float]] = {}
    for p in PARAM_NAMES:
        if p in fixed:
            continue
        r = ranges.get(p, PAPER_RANGES[p])
        try:
            lo, hi = r
        except (TypeError, ValueError):
            raise ShearcorrError(f"range for {_check_name(p)} must be (low, high), got {r!r}") from None
        lo, hi = _check_value(p, lo, "low end"), _check_value(p, hi, "high end")
        if lo > hi:
            raise ShearcorrError(f"range for {p} has low {lo:g} > high {hi:g}; give LOW <= HIGH")
        checked[p] = (lo, hi)
    for p in ranges:
        _check_name(p)
    return Design(n=int(n), seed=int(seed), kind=kind, ranges=checked, fixed=fixed)
