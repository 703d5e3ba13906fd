r"""Direct physics fit: least squares of the analytic engine to a measured g (a second inversion method).

Model :math:`m(p)` = the analytic engine's g(q, theta) (:func:`shearcorr.forward.analytic.ensemble_arrays`),
reduced to the chosen observable (``"g"``: the full map, ``"g_theta"``: mean over q, ``"g_q"``: mean over
theta). With data d and errors e (ones when none are given) :func:`scipy.optimize.least_squares` (trust
region reflective, bounds = the physical/design ranges) minimises

.. math:: \chi^2(p) = \sum_k \Big(\frac{d_k - m_k(p)}{e_k}\Big)^2 .

Uncertainties from the Jacobian J at the optimum: :math:`C = (J^TJ)^{-1}` (pseudo-inverse), scaled by
the reduced :math:`\chi^2_\nu = \chi^2/(N - n_p)` when no errors are given (the residual scatter then
estimates the error). For noise-free analytic data :math:`\chi^2_\nu \to 0` and so do the errors - they
mean "numerically exact", not "physically certain". A parameter at a bound whose derivative vanishes
(R_s -> 0, where g depends on R_s only through R_s^2) gets an infinite std.

n_l2 hardly changes g (the paper's Fig. 5a): it is held fixed (default 150) unless ``fit_n_l2=True``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import least_squares

from ..choices import check_choice
from ..errors import ShearcorrError
from ..files import JSONRecord
from ..params import QGrid, SystemParams

__all__ = ["FitResult", "fit_g", "FIT_BOUNDS", "START"]

#: Bounds of the fitted parameters (a little wider than the paper's design ranges).
FIT_BOUNDS = {"n_l2": (20.0, 400.0), "rs": (0.0, 0.6), "d2": (0.05, 6.0), "gamma_l": (0.0, 60.0)}

#: Starting point: the centre of the paper's ranges.
START = {"n_l2": 150.0, "rs": 0.15, "d2": 1.75, "gamma_l": 17.5}


@dataclass(frozen=True)
class FitResult(JSONRecord):
    """Outcome of :func:`fit_g`.

    Attributes
    ----------
    values, std : dict of str to float
        Fitted value and standard error per fitted parameter (inf: unconstrained, see the module doc).
    chi2_red : float
        chi^2 / (N - n_p) at the optimum.
    success : bool
        The optimiser's convergence flag.
    n_eval : int
        Engine evaluations (excluding Jacobian columns).
    seconds : float
    message : str
        The optimiser's message.
    fixed : dict of str to float
        Parameters held fixed (n_l2 unless it was fitted).
    """

    values: dict
    std: dict
    chi2_red: float
    success: bool
    n_eval: int
    seconds: float
    message: str = ""
    fixed: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-able copy (an infinite std becomes ``null`` in :meth:`to_json`)."""
        return {"values": dict(self.values), "std": dict(self.std), "chi2_red": self.chi2_red, "success": self.success,
                "n_eval": self.n_eval, "seconds": self.seconds, "message": self.message, "fixed": dict(self.fixed)}


def _reduce(g: np.ndarray, observable: str) -> np.ndarray:
    if observable == "g":
        return g.ravel()
    if observable == "g_theta":
        return g.mean(axis=0)
    return g.mean(axis=1)


def fit_g(data, grid: QGrid, *, observable: str = "g", errors=None, n_l2: float = 150.0, fit_n_l2: bool = False,
          start: dict | None = None, displacement: str = "uniform", max_nfev: int = 200) -> FitResult:
    """Fit (rs, d2, gamma_l[, n_l2]) of the analytic engine to a measured g.

    Parameters
    ----------
    data : array-like
        Measured g(q, theta) of shape grid.shape (``observable="g"``), g(theta) (n_theta,) or g(q) (n_q,).
    grid : QGrid
        Grid of the data.
    observable : {"g", "g_theta", "g_q"}, default "g"
    errors : array-like, optional
        Standard errors of ``data`` (same shape); without them the covariance is scaled by chi^2_nu.
    n_l2 : float, default 150
        Value of n_l2 when it is not fitted (also its start value when it is).
    fit_n_l2 : bool, default False
    start : dict, optional
        Starting values (default the centre of the paper's ranges).
    displacement : {"uniform", "stokes-einstein"}
        Convention of the engine (must match the data's).
    max_nfev : int, default 200
        Budget of engine evaluations (excluding Jacobian columns).

    Returns
    -------
    FitResult
    """
    from ..forward.analytic import ensemble_arrays

    check_choice("observable", observable)
    d = np.asarray(data, dtype=np.float64)
    expected = {"g": grid.shape, "g_theta": (grid.theta.size,), "g_q": (grid.q.size,)}[observable]
    if d.shape != expected:
        raise ShearcorrError(f"{observable} data has shape {d.shape}, the grid needs {expected}")
    e = np.ones_like(d) if errors is None else np.asarray(errors, dtype=np.float64)
    if e.shape != d.shape or np.any(~np.isfinite(e)) or np.any(e <= 0):
        raise ShearcorrError("errors must be positive, finite and shaped like the data")
    d, e = d.ravel(), e.ravel()
    names = ["rs", "d2", "gamma_l"] + (["n_l2"] if fit_n_l2 else [])
    s = dict(START, n_l2=n_l2, **(start or {}))
    lo = np.array([FIT_BOUNDS[n][0] for n in names])
    hi = np.array([FIT_BOUNDS[n][1] for n in names])
    x0 = np.clip(np.array([s[n] for n in names], dtype=np.float64), lo, hi)
    # keep the start strictly inside so the first finite differences are two-sided where possible
    x0 = np.clip(x0, lo + 1e-3 * (hi - lo), hi - 1e-3 * (hi - lo))
    n_eval = 0

    def residual(x):
        nonlocal n_eval
        n_eval += 1
        p = dict(zip(names, x))
        params = SystemParams(n_l2=p.get("n_l2", n_l2), rs=p["rs"], d2=p["d2"], gamma_l=p["gamma_l"],
                              displacement=displacement)
        _, g, _ = ensemble_arrays(params, grid)
        return (d - _reduce(np.asarray(g, dtype=np.float64), observable)) / e

    t0 = time.perf_counter()
    res = least_squares(residual, x0, bounds=(lo, hi), x_scale=hi - lo, max_nfev=max_nfev, method="trf")
    dt = time.perf_counter() - t0
    dof = max(d.size - len(names), 1)
    chi2 = float(np.sum(res.fun**2) / dof)
    J = res.jac
    cov = np.linalg.pinv(J.T @ J)
    with np.errstate(invalid="ignore"):
        std = np.sqrt(np.clip(np.diag(cov), 0, None) * (chi2 if errors is None else 1.0))
    # zero-derivative directions: pinv gives 0 variance; report them as unconstrained
    dead = np.linalg.norm(J, axis=0) == 0
    std[dead] = np.inf
    fixed = {} if fit_n_l2 else {"n_l2": float(n_l2)}
    return FitResult(values={n: float(v) for n, v in zip(names, res.x)}, std={n: float(v) for n, v in zip(names, std)},
                     chi2_red=chi2, success=bool(res.success), n_eval=n_eval, seconds=dt, message=str(res.message),
                     fixed=fixed)
