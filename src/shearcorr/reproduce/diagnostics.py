r"""Diagnostics of the reproduce report: how identifiable R_s is, and Monte Carlo against the analytic engine.

* :func:`rs_identifiability`: Err and predicted std of R_s in bins of the true R_s, and the size of the
  R_s signal in g(theta) next to that of nL^2.
* :func:`rs_degeneracy`: the part of the R_s signal that no monodisperse parameter set can mimic.
* :func:`mc_vs_analytic`: chi^2/dof of Monte Carlo samples against the analytic engine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..params import PARAM_NAMES, QGrid, SystemParams

__all__ = ["RS_BIN_EDGES", "BASELINE", "RsBin", "RsIdentifiability", "rs_identifiability", "Degeneracy",
           "rs_degeneracy", "SpotCheck", "mc_vs_analytic"]

#: Bins of the true R_s for :func:`rs_identifiability` (the paper's range 0..0.3, finer near 0).
RS_BIN_EDGES = (0.0, 0.03, 0.06, 0.1, 0.15, 0.2, 0.25, 0.3)
#: (n_l2, d2, gamma_l) at which signals are measured: the paper's Fig. 3 baseline.
BASELINE = (150.0, 1.0, 10.0)
#: R_s values whose signal in g(theta) is reported.
SIGNAL_RS = (0.02, 0.05, 0.1, 0.2, 0.3)
#: nL^2 compared with the baseline's for the size of the nL^2 signal.
SIGNAL_N_L2 = 200.0
#: Bounds (n_l2, d2, gamma_l) and scales of the monodisperse fit of :func:`rs_degeneracy`.
DEGENERACY_BOUNDS = ((50.0, 0.1, 1.0), (400.0, 5.0, 60.0))
DEGENERACY_SCALE = (50.0, 0.5, 5.0)
#: Relative finite-difference step of that fit (the engine is smooth; 1e-3 beats its ~1e-6 error bound).
DEGENERACY_DIFF_STEP = 1e-3


@dataclass(frozen=True)
class RsBin:
    """Held-out samples with lo <= true R_s < hi: count, Err, mean |error| and mean predicted std."""

    lo: float
    hi: float
    n: int
    err: float
    mean_abs_error: float
    mean_std: float


@dataclass(frozen=True)
class RsIdentifiability:
    """Result of :func:`rs_identifiability`.

    Attributes
    ----------
    bins : list of RsBin
    signal : list of (rs, max |g(theta; rs) - g(theta; 0)|)
        At the baseline (n_l2, d2, gamma_l) = :data:`BASELINE`.
    n_l2_signal : float
        max |g(theta)| change for nL^2 from the baseline to :data:`SIGNAL_N_L2` at R_s = 0.
    """

    bins: list
    signal: list
    n_l2_signal: float


def _g_theta(n_l2: float, rs: float, d2: float, gamma_l: float, grid: QGrid) -> np.ndarray:
    from ..forward.analytic import ensemble_arrays

    return ensemble_arrays(SystemParams(n_l2, rs, d2, gamma_l), grid)[1].mean(axis=0)


def rs_identifiability(true, mean, std, grid: QGrid) -> RsIdentifiability:
    """Err(R_s) and the mean predicted std in bins of the true R_s, and the size of the R_s signal.

    Parameters
    ----------
    true, mean, std : array-like (n,)
        True R_s of held-out samples, predicted mean and std.
    grid : QGrid
        Grid on which the signal sizes are computed (analytic engine).
    """
    from ..inverse.evaluation import relative_error

    t, m, s = (np.asarray(a, dtype=np.float64) for a in (true, mean, std))
    bins = []
    for a, b in zip(RS_BIN_EDGES[:-1], RS_BIN_EDGES[1:]):
        k = (t >= a) & (t < b)
        if k.any():
            bins.append(RsBin(a, b, int(k.sum()), relative_error(t[k], m[k]), float(np.mean(np.abs(t[k] - m[k]))),
                              float(np.mean(s[k]))))
    n0, d0, gl0 = BASELINE
    base = _g_theta(n0, 0.0, d0, gl0, grid)
    signal = [(rs, float(np.max(np.abs(_g_theta(n0, rs, d0, gl0, grid) - base)))) for rs in SIGNAL_RS]
    g_n = _g_theta(SIGNAL_N_L2, 0.0, d0, gl0, grid)
    return RsIdentifiability(bins=bins, signal=signal, n_l2_signal=float(np.max(np.abs(g_n - base))))


@dataclass(frozen=True)
class Degeneracy:
    """One row of :func:`rs_degeneracy`: observable ("g" or "g_theta"), R_s, max |g(R_s) - g(0)| at the
    same other parameters, rms and max residual of the best monodisperse fit, fitted (n_l2, d2, gamma_l)."""

    observable: str
    rs: float
    signal: float
    rms_residual: float
    max_residual: float
    fitted: tuple


def rs_degeneracy(grid: QGrid, *, rs_values=(0.02, 0.05, 0.1, 0.2), base=BASELINE) -> list[Degeneracy]:
    r"""How much of the R_s signal the other parameters can absorb: best monodisperse fit to g(R_s).

    For each R_s, :math:`g_0 = g(n_{L^2}, R_s, D_2, \gamma L)` (analytic engine; the full (q, theta) map,
    and g(theta) alone) is fitted by least squares with R_s fixed at 0 and (n_L2, D_2, gamma L) free:
    :math:`r = \min_{p} \| g(p, R_s{=}0) - g_0 \|`. The residual (rms and max over the grid) is the part
    of the R_s signal no other parameter can mimic - what an inversion can use to tell R_s from 0 - to be
    compared with the input noise (g_err of a Monte Carlo measurement).
    """
    from scipy.optimize import least_squares

    from ..forward.analytic import ensemble_arrays

    n0, d0, gl0 = base
    obs = {"g": lambda g: g.ravel(), "g_theta": lambda g: g.mean(axis=0)}
    g_zero = ensemble_arrays(SystemParams(n0, 0.0, d0, gl0), grid)[1]
    out = []
    for name, f in obs.items():
        for rs in rs_values:
            g0 = f(ensemble_arrays(SystemParams(n0, float(rs), d0, gl0), grid)[1])
            res = least_squares(lambda p: f(ensemble_arrays(SystemParams(p[0], 0.0, p[1], p[2]), grid)[1]) - g0,
                                x0=[n0, d0, gl0], bounds=[list(b) for b in DEGENERACY_BOUNDS],
                                x_scale=list(DEGENERACY_SCALE), diff_step=DEGENERACY_DIFF_STEP)
            r = res.fun
            out.append(Degeneracy(name, float(rs), float(np.max(np.abs(g0 - f(g_zero)))), float(np.sqrt(np.mean(r**2))),
                                  float(np.max(np.abs(r))), tuple(float(v) for v in res.x)))
    return out


@dataclass(frozen=True)
class SpotCheck:
    """One Monte Carlo sample against the analytic engine: its parameters, chi^2/dof and max |difference|."""

    params: SystemParams
    chi2: float
    max_abs: float


def mc_vs_analytic(ds) -> list[SpotCheck]:
    """chi^2/dof of each Monte Carlo sample's g(q, theta) (with its g_err) against the analytic engine.

    ``ds`` is a dataset (dims sample, q, theta) made with engine "mc" and g_err stored.
    """
    from ..forward.analytic import ensemble_arrays
    from ..result import grid_from_dataset

    grid = grid_from_dataset(ds)
    out = []
    for i in range(ds.sizes["sample"]):
        p = SystemParams(*(float(ds[n].values[i]) for n in PARAM_NAMES),
                         displacement=str(ds.attrs.get("displacement", "uniform")))
        ga = ensemble_arrays(p, grid)[1]
        gm = np.asarray(ds["g"].values[i], dtype=np.float64)
        err = np.asarray(ds["g_err"].values[i], dtype=np.float64)
        ok = err > 0
        out.append(SpotCheck(p, float(np.mean(((gm - ga)[ok] / err[ok]) ** 2)), float(np.max(np.abs(gm - ga)))))
    return out
