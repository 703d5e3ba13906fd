"""Validated, frozen parameter objects: the system (:class:`SystemParams`) and the polar grid (:class:`QGrid`).

All validation of user input for the forward model lives here, so every engine, the dataset
generator and the CLI reject the same bad values with the same one-line message.

Units: lengths in units of the particle radius scale ``r0`` (natural unit R0 = 1); q in 1/R0;
theta in radians from the flow (x) axis.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .choices import CHOICES, check_choice
from .errors import ShearcorrError

__all__ = ["DISPLACEMENTS", "SystemParams", "QGrid", "PARAM_NAMES", "TARGETS", "finite_float"]

#: The two conventions for the non-affine step (see :func:`shearcorr.physics.displacement_std`).
DISPLACEMENTS = CHOICES["displacement"]

#: The four system parameters of the paper, in the order (nL^2, R_s, D_2, gamma L).
PARAM_NAMES = CHOICES["parameter"]

#: The parameters an inversion recovers, in the one order used everywhere (results, tables, model files).
#: n_l2 can be added to a training run to show that it is not recoverable (the paper's Fig. 5a).
TARGETS = ("rs", "d2", "gamma_l")


def finite_float(name: str, value: Any) -> float:
    """``value`` as a finite float, else a one-line ShearcorrError naming ``name`` (the one number check)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ShearcorrError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v):
        raise ShearcorrError(f"{name} must be finite, got {value!r}")
    return v


@dataclass(frozen=True)
class SystemParams:
    """One parameter set of the sheared dilute dispersion (paper Sec. II A-B).

    Parameters
    ----------
    n_l2 : float
        Mean number of particles in the beam window, nL^2 (> 0). The box [-L, L]^2 holds
        ``n_particles = round(4 * n_l2)`` particles.
    rs : float
        Log-normal width R_s of the radii, ln R ~ N(ln r0, rs) (>= 0); PDI = exp(9 rs^2).
    d2 : float
        Standard deviation D_2 of the non-affine displacement per axis, in units of r0 (>= 0).
    gamma_l : float
        Affine shear strain times beam size, gamma L, in units of r0 (>= 0). gamma = gamma_l / beam_size.
    displacement : {"uniform", "stokes-einstein"}
        ``"uniform"``: every particle is displaced with std ``d2`` (the paper's text);
        ``"stokes-einstein"``: std ``d2 * sqrt(r0 / R_i)`` (the authors' published code).
    r0 : float
        Radius scale R0 (default 1, the natural unit).
    beam_size : float
        Beam window size L in units of r0 (default 800); the window is [-L/2, L/2]^2.
    """

    n_l2: float
    rs: float
    d2: float
    gamma_l: float
    displacement: str = "uniform"
    r0: float = 1.0
    beam_size: float = 800.0

    def __post_init__(self) -> None:
        for name in ("n_l2", "rs", "d2", "gamma_l", "r0", "beam_size"):
            object.__setattr__(self, name, finite_float(name, getattr(self, name)))
        if self.n_l2 <= 0:
            raise ShearcorrError(f"n_l2 must be > 0 (mean particles in the beam), got {self.n_l2:g}")
        if round(4 * self.n_l2) < 1:
            raise ShearcorrError(f"n_l2 = {self.n_l2:g} gives no particle in the box; use n_l2 >= 0.125")
        if self.rs < 0:
            raise ShearcorrError(f"rs must be >= 0 (log-normal width of radii), got {self.rs:g}")
        if self.rs > 1.5:
            raise ShearcorrError(f"rs = {self.rs:g} is outside the physical range; use 0 <= rs <= 1.5")
        if self.d2 < 0:
            raise ShearcorrError(f"d2 must be >= 0 (non-affine displacement std), got {self.d2:g}")
        if self.gamma_l < 0:
            raise ShearcorrError(f"gamma_l must be >= 0 (shear strain x beam size), got {self.gamma_l:g}")
        if self.r0 <= 0:
            raise ShearcorrError(f"r0 must be > 0, got {self.r0:g}")
        if self.beam_size <= 0:
            raise ShearcorrError(f"beam_size must be > 0, got {self.beam_size:g}")
        check_choice("displacement", self.displacement)

    @property
    def n_particles(self) -> int:
        """Particles in the box [-L, L]^2: ``round(4 * n_l2)`` (the window is 1/4 of the box)."""
        return int(round(4 * self.n_l2))

    @property
    def gamma(self) -> float:
        """Shear strain gamma = gamma_l / beam_size (dimensionless)."""
        return self.gamma_l / self.beam_size

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of all fields (JSON-serialisable)."""
        return asdict(self)


#: Tolerances of grid comparisons: relative in q, absolute (rad) in theta. float32 storage (6e-8) passes.
GRID_RTOL, GRID_ATOL = 1e-6, 1e-6


@dataclass(frozen=True)
class QGrid:
    """Polar grid of scattering vectors: magnitudes ``q`` (1/r0) and angles ``theta`` (rad from flow).

    The default is the paper's: 100 q log-spaced in [0.5, 5], 101 theta linear in [0, pi].
    Any positive, finite, strictly increasing q and any finite theta are accepted.
    """

    q: np.ndarray = field(default_factory=lambda: np.geomspace(0.5, 5.0, 100))
    theta: np.ndarray = field(default_factory=lambda: np.linspace(0.0, np.pi, 101))

    def __post_init__(self) -> None:
        q = np.array(self.q, dtype=np.float64, ndmin=1)
        theta = np.array(self.theta, dtype=np.float64, ndmin=1)
        if q.ndim != 1 or q.size == 0:
            raise ShearcorrError("the q grid is empty; give at least one q value > 0")
        if not np.all(np.isfinite(q)) or np.any(q <= 0):
            raise ShearcorrError("q values must be finite and > 0; fix the q grid")
        if q.size > 1 and np.any(np.diff(q) <= 0):
            raise ShearcorrError("q values must be strictly increasing; sort the q grid")
        if theta.ndim != 1 or theta.size == 0:
            raise ShearcorrError("the theta grid is empty; give at least one angle")
        if not np.all(np.isfinite(theta)):
            raise ShearcorrError("theta values must be finite; fix the theta grid")
        q.flags.writeable = False
        theta.flags.writeable = False
        object.__setattr__(self, "q", q)
        object.__setattr__(self, "theta", theta)

    @classmethod
    def log(cls, q_min: float = 0.5, q_max: float = 5.0, n_q: int = 100, n_theta: int = 101) -> "QGrid":
        """Grid with ``n_q`` q log-spaced in [q_min, q_max] and ``n_theta`` theta linear in [0, pi]."""
        q_min, q_max = finite_float("q_min", q_min), finite_float("q_max", q_max)
        if q_min <= 0 or q_max < q_min:
            raise ShearcorrError(f"need 0 < q_min <= q_max, got q_min={q_min:g}, q_max={q_max:g}")
        if int(n_q) < 1 or int(n_theta) < 1:
            raise ShearcorrError(f"need n_q >= 1 and n_theta >= 1, got {n_q} and {n_theta}")
        from .memory import FLOAT, require

        # every use of a grid builds (n_q, n_theta) maps (g, I, errors, ...): at least ten of them
        require(FLOAT * (3 * (int(n_q) + int(n_theta)) + 10 * int(n_q) * int(n_theta)),
                f"a grid of {int(n_q)} q x {int(n_theta)} theta", "use fewer q or theta values (--n-q, --n-theta)")
        return cls(np.geomspace(q_min, q_max, int(n_q)), np.linspace(0.0, np.pi, int(n_theta)))

    @property
    def shape(self) -> tuple[int, int]:
        """(n_q, n_theta)."""
        return (self.q.size, self.theta.size)

    def to_attrs(self) -> dict[str, Any]:
        """Summary of the grid for provenance attrs."""
        return {
            "grid_n_q": int(self.q.size),
            "grid_n_theta": int(self.theta.size),
            "grid_q_min": float(self.q[0]),
            "grid_q_max": float(self.q[-1]),
        }

    def difference(self, other: "QGrid") -> str | None:
        """None if ``other`` is the same grid within :data:`GRID_RTOL` (relative, q) and :data:`GRID_ATOL`
        (rad, theta), else one line naming the largest difference. Grids stored as float32 by other
        codes differ by ~6e-8 relative and count as the same."""
        if self.q.shape != other.q.shape or self.theta.shape != other.theta.shape:
            return (f"{other.q.size} q x {other.theta.size} theta instead of {self.q.size} q x {self.theta.size} "
                    f"theta")
        dq = np.abs(other.q / self.q - 1.0)
        dt = np.abs(other.theta - self.theta)
        if dq.max() > GRID_RTOL:
            i = int(np.argmax(dq))
            return f"q[{i}] = {other.q[i]:.8g} instead of {self.q[i]:.8g} (relative difference {dq[i]:.2g})"
        if dt.max() > GRID_ATOL:
            j = int(np.argmax(dt))
            return f"theta[{j}] = {other.theta[j]:.8g} instead of {self.theta[j]:.8g} (difference {dt[j]:.2g} rad)"
        return None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, QGrid):
            return NotImplemented
        return self.difference(other) is None

    __hash__ = None  # type: ignore[assignment]
