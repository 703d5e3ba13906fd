r"""From the correlation map to (gamma L, D2, R_s, flow angle, beta) with uncertainties.

Direct fit (:func:`fit_pair`): weighted least squares of

.. math:: C_b - 1 = \beta\, y_{\rm model}(q_b, \phi_b - \phi_0;\ \gamma L, D_2, R_s)

over the usable bins, with the contrast beta as a nuisance parameter tied to its self-calibrated
estimate by a Gaussian prior (fixed when the user gives it) and eliminated in closed form. Start
values from a coarse (gamma L, D2) grid times a full scan of the flow angle; errors from a variance
law evaluated at the model prediction (two passes), never from the bins' own scatter.
Covariance (J^T J)^-1, scaled by chi2_red when chi2_red > 1. R_s is held at its prior centre by
default (one pair does not constrain it; ``fit_rs=True`` fits it within [0, rs_max] and reports it as
constrained only when its std is below the prior std rs_max/sqrt(12)).

Geometry-specific GPR (:func:`gpr_predict`): a training set of y_model on the data's own
(q, theta-from-flow) bins, drawn by a scrambled Sobol design over the parameter box, cached on disk
(key: hash of bins, usable-bin mask, box, n_train, model constants, shearcorr version) together with
the SVD basis and the fitted state of one :class:`shearcorr.inverse.gpr.PaperGPR` per target. The prediction std adds the GPR posterior std
and the spread of predictions over noise draws of the data.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
from scipy.optimize import least_squares

from .._version import __version__
from ..errors import ShearcorrError
from ..files import atomic_file
from ..params import TARGETS
from .flow import wrap_half
from .model import configuration_samples

__all__ = ["fit_pair", "gpr_predict", "default_cache_dir", "PAIR_ARGS"]

#: The pair model's physical parameters in the order of :meth:`BinnedPairModel.y`'s arguments; also the
#: columns of the GPR's parameter box and Sobol design (results are keyed by name, in ``TARGETS`` order).
PAIR_ARGS = ("gamma_l", "d2", "rs")


def _beta_star(m, c, w, beta0, beta_err):
    """Closed-form contrast for fixed shape m: weighted LS of c = beta m with the prior N(beta0, beta_err)."""
    if not beta_err > 0:
        return beta0
    num = np.sum(w * m * c) + beta0 / beta_err**2
    den = np.sum(w * m * m) + 1.0 / beta_err**2
    return num / den


def fit_pair(cmap, model, *, phi0=None, fit_flow=True, fit_rs=False, rs_max=0.3, gamma_max=80.0, d2_max=6.0,
             grid_gamma=(4.0, 8.0, 14.0, 22.0, 32.0), grid_d2=(0.4, 0.9, 1.6, 2.6), n_scan=90, n_configs=32, seed=0) -> dict:
    r"""Direct physics fit of a :class:`CorrelationMap` with a :class:`BinnedPairModel` (same bins).

    Model :math:`C_b - 1 = \beta\,y(q_b, \phi_b - \phi_0; \gamma L, D_2, R_s)`; beta enters linearly
    and is eliminated in closed form (variable projection, Gaussian prior from the contrast estimate).

    R_s is not identifiable from one pair (docs/experiment.md): by default (``fit_rs=False``) it is
    held at its prior centre rs_max/2 and its influence enters the covariance through the
    configuration spread, which is marginalised over R_s ~ U(0, rs_max). The reported R_s is then
    the prior, rs_max/2 +- rs_max/sqrt(12), with ``rs_constrained = False``.

    1. Start: for every (gamma L, D2) of a coarse grid, y is evaluated once on the fine theta grid and
       the flow angle is scanned over ``n_scan`` values in [0, pi) (``phi0`` fixes it instead).
    2. Pass 1: errors with the per-row variance law at c = 0 (the same for all bins of a row, so the
       weights do not depend on the bins' own fluctuations).
    3. Pass 2: errors from :meth:`CorrelationMap.errors` at the pass-1 prediction, refit.
    Covariance: (J^T J)^-1 of the free parameters (and beta with its prior) at the solution, scaled
    by chi2_red when > 1, plus the intrinsic single-pair term: the spread of ``n_configs``
    single-configuration maps (:func:`.model.configuration_samples`) at the solution, propagated as
    H J^T Cov J H (sandwich); it dominates for gamma L and D2 at these count rates.
    """
    ok = cmap.ok
    if ok.sum() < 8:
        raise ShearcorrError(f"only {int(ok.sum())} usable (q, phi) bins; use fewer bins or check the mask")
    c = cmap.C[ok] - 1.0
    beta0, beta_err = cmap.beta, cmap.beta_err
    err = cmap.errors(np.zeros(cmap.C.shape))[ok]
    rs_fixed = 0.5 * rs_max
    # full vector (gamma L, d2, rs, phi0); `free` are the fitted components
    free = [0, 1] + ([2] if fit_rs else []) + ([3] if fit_flow else [])
    base = np.array([0.0, 0.0, rs_fixed, 0.0 if phi0 is None else float(phi0)])

    def full_of(xf):
        v = base.copy()
        v[free] = xf
        return v

    def shape_at(xf):
        v = full_of(xf)
        return model.y(v[0], v[1], v[2], v[3])[ok]

    def resid(xf, e):
        m = shape_at(xf)
        w = 1.0 / e**2
        bt = _beta_star(m, c, w, beta0, beta_err)
        r = (c - bt * m) / e
        return np.append(r, (bt - beta0) / beta_err) if beta_err > 0 else r

    # 1. start values: coarse grid x flow-angle scan (no engine call per angle)
    scan = np.arange(n_scan) * (np.pi / n_scan) if fit_flow else np.array([base[3]])
    best = (np.inf, None)
    for gl in grid_gamma:
        for d2 in grid_d2:
            for ph in scan:
                v = np.array([gl, d2, rs_fixed, ph])
                cost = float(np.sum(resid(v[free], err) ** 2))
                if cost < best[0]:
                    best = (cost, v[free])
    x0 = best[1]
    lo_f = np.array([0.0, 0.01, 0.0, x0[-1] - np.pi / 4 if fit_flow else 0.0])
    hi_f = np.array([gamma_max, d2_max, rs_max, x0[-1] + np.pi / 4 if fit_flow else 0.0])
    lo_a, hi_a = lo_f[free], hi_f[free]
    xs = np.array([1.0, 0.1, 0.05, 0.01])[free]
    for k in range(3):  # pass 1 (row-constant errors), pass 2 (errors at the prediction), final
        sol = least_squares(resid, np.clip(x0, lo_a + 1e-9, hi_a - 1e-9), bounds=(lo_a, hi_a), args=(err,),
                            x_scale=xs, diff_step=1e-4, xtol=1e-8, ftol=1e-9, max_nfev=200)
        x0 = sol.x
        if k < 2:
            v = full_of(x0)
            m_full = model.y(*v)
            bt = _beta_star(m_full[ok], c, 1.0 / err**2, beta0, beta_err)
            err = cmap.errors(bt * m_full)[ok]
    gl, d2, rs, ph = full_of(sol.x)
    m_full = model.y(gl, d2, rs, ph)
    beta = _beta_star(m_full[ok], c, 1.0 / err**2, beta0, beta_err)
    # covariance of (free parameters, [beta]) from a central-difference Jacobian
    full = np.append(sol.x, [beta] if beta_err > 0 else [])
    nth = sol.x.size

    def resid_full(v):
        m = shape_at(v[:nth])
        bt = v[nth] if beta_err > 0 else beta0
        r = (c - bt * m) / err
        return np.append(r, (bt - beta0) / beta_err) if beta_err > 0 else r

    r0 = resid_full(full)
    steps = np.append(np.array([0.05, 0.005, 0.005, 1e-3])[free], [1e-3 * max(beta, 1e-3)] if beta_err > 0 else [])
    J = np.empty((r0.size, full.size))
    for j in range(full.size):
        vp, vm = full.copy(), full.copy()
        vp[j] += steps[j]
        vm[j] -= steps[j]
        J[:, j] = (resid_full(vp) - resid_full(vm)) / (2 * steps[j])
    n, k = c.size, full.size
    chi2 = float(np.sum(r0**2))
    dof = max(n - k, 1)
    red = chi2 / dof
    H = np.linalg.pinv(J.T @ J)
    cov = H * max(red, 1.0)
    cov_conf = np.zeros_like(cov)
    if n_configs:
        # intrinsic single-pair uncertainty: the pair's own ~n_l2 particles sample the ensemble
        # (configuration_samples); propagated through the linearised fit (sandwich estimator).
        # R_s is not constrained by one pair: the spread is marginalised over its prior U(0, rs_max)
        rs_draw = (np.arange(n_configs) + 0.5) / n_configs * rs_max
        ys = configuration_samples(model, gl, d2, rs_draw, ph, n_samples=n_configs, seed=seed)
        dev = beta * (ys[:, ok] - ys[:, ok].mean(axis=0)) / err  # (K, n) weighted data perturbations
        G = dev @ J[:n]  # each row: J^T d_k
        cov_conf = H @ (G.T @ G / max(n_configs - 1, 1)) @ H
        cov = cov + cov_conf
    std_f = np.sqrt(np.clip(np.diag(cov), 0, None))
    std = np.zeros(4)
    std[free] = std_f[:nth]
    rs_prior = rs_max / np.sqrt(12.0)
    rs_constrained = bool(fit_rs and np.isfinite(std[2]) and std[2] < rs_prior)
    pad = lambda a: [float(v) for v in np.sqrt(np.clip(np.diag(a), 0, None))]  # noqa: E731
    return {
        "gamma_l": (float(gl), float(std[0])), "d2": (float(d2), float(std[1])),
        "rs": (float(rs), float(std[2]) if rs_constrained else float(rs_prior)), "rs_constrained": rs_constrained,
        "rs_fitted": bool(fit_rs),
        "flow_angle": (wrap_half(ph), float(std[3]) if fit_flow else 0.0),
        "beta": (float(beta), float(std_f[-1]) if beta_err > 0 else 0.0),
        "chi2": chi2, "dof": int(dof), "chi2_red": float(red), "n_bins": int(n), "success": bool(sol.success),
        "nfev": int(sol.nfev), "model_y": m_full, "errors": err, "free": [("gamma_l", "d2", "rs", "flow")[i] for i in free],
        "std_speckle": pad(H * max(red, 1.0)), "std_configuration": pad(cov_conf),
    }


def default_cache_dir() -> Path:
    """``$SHEARCORR_CACHE`` or ``$XDG_CACHE_HOME/shearcorr`` or ``~/.cache/shearcorr``."""
    env = os.environ.get("SHEARCORR_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "shearcorr"


def _sobol(n, box, seed):
    from scipy.stats import qmc

    u = qmc.Sobol(len(box), scramble=True, seed=seed).random(n)
    lo, hi = np.array([b[0] for b in box]), np.array([b[1] for b in box])
    return lo + u * (hi - lo)


def _cache_path(model, ok, box, n_train, k, cache_dir, seed):
    key_src = json.dumps({"q": model.q_edges.round(10).tolist(), "phi": model.phi_edges.round(10).tolist(),
                          "ok": np.flatnonzero(ok).tolist(), "box": box, "n": n_train, "k": k, "n_l2": model.n_l2,
                          "disp": model.displacement, "L": model.beam_size, "sub": [model.sq, model.sp, model.n_fine],
                          "seed": seed, "version": __version__}, sort_keys=True)
    key = hashlib.sha256(key_src.encode()).hexdigest()[:24]
    return Path(cache_dir) / f"pairmodel-{key}.npz" if cache_dir is not None else None


def _fitted_state(model, ok, box, n_train, k, cache_dir, seed=0):
    """Training set, SVD basis and the three fitted GPR states for these bins; cached on disk.

    Everything depends only on the geometry (bins, usable-bin mask) and the model constants, not on
    the data, so a second analysis with the same geometry only projects the data and predicts.
    """
    from ..inverse.gpr import PaperGPR

    path = _cache_path(model, ok, box, n_train, k, cache_dir, seed)
    names = ["theta", "mu", "V", "scale"] + [f"{t}_{a}" for t in TARGETS for a in ("X", "alpha", "hyp")]
    if path is not None and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                st = {n: z[n] for n in names}
            gps = {t: PaperGPR.from_state(st[f"{t}_X"], st[f"{t}_alpha"], *st[f"{t}_hyp"]) for t in TARGETS}
            return st, gps, True
        except (OSError, ValueError, KeyError):
            pass  # a damaged or older cache entry is rebuilt
    theta = _sobol(n_train, box, seed)
    Y = np.stack([model.y(t[0], t[1], t[2], 0.0)[ok] for t in theta])
    mu = Y.mean(axis=0)
    _, _, Vt = np.linalg.svd(Y - mu, full_matrices=False)
    V = Vt[: min(k, Vt.shape[0])]
    X = (Y - mu) @ V.T
    scale = X.std(axis=0) + 1e-12
    X = X / scale
    st = {"theta": theta, "mu": mu, "V": V, "scale": scale}
    gps = {}
    for t in TARGETS:
        gp = PaperGPR(optimizer="grid", n_grid=12).fit(X, theta[:, PAIR_ARGS.index(t)])
        gps[t] = gp
        st[f"{t}_X"], st[f"{t}_alpha"] = gp.X_train_, gp.alpha_
        st[f"{t}_hyp"] = np.array([gp.l_, gp.sigma_, gp.y_mean_, gp.y_std_])
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(path) as tmp:
            np.savez(tmp, **st)
    return st, gps, False


def gpr_predict(cmap, model, *, box=((5.0, 30.0), (0.5, 3.0), (0.0, 0.3)), n_train=256, k=8,
                cache_dir=None, n_draws=64, seed=0) -> dict:
    """Geometry-specific GPR inversion of a flow-aligned map (``cmap.phi`` is theta from the flow).

    Features: projections of y = (C - 1)/beta on the first ``k`` SVD vectors of the training set
    (built on the data's own bins). The std adds the GPR posterior std and the spread of the
    predictions over ``n_draws`` noise draws of the data (errors ``cmap.C_err``).
    """
    from ..rng import as_generator

    ok = cmap.ok
    if ok.sum() < 8:
        raise ShearcorrError(f"only {int(ok.sum())} usable (q, theta) bins; use fewer bins or check the mask")
    box = [list(map(float, b)) for b in box]
    st, gps, cached = _fitted_state(model, ok, box, int(n_train), int(k), cache_dir, seed)
    feats = lambda Z: ((Z - st["mu"]) @ st["V"].T) / st["scale"]  # noqa: E731
    rng = as_generator(seed)
    yd = cmap.y[ok]
    draws = yd + (cmap.C_err[ok] / cmap.beta) * rng.standard_normal((n_draws, yd.size))
    Xd = feats(np.vstack([yd, draws]))
    out = {"cached": cached, "n_train": int(n_train), "box": box}
    for name in TARGETS:
        m, s = gps[name].predict(Xd[:1], return_std=True)
        spread = float(np.std(gps[name].predict(Xd[1:])))
        out[name] = (float(m[0]), float(np.hypot(s[0], spread)))
    return out
