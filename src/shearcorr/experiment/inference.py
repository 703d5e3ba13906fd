r"""From the correlation map to (gamma L, D2, R_s, flow angle, beta) with uncertainties.

Direct fit (:func:`fit_pair`): weighted least squares of

.. math:: C_b - 1 = \beta\, y_{\rm model}(q_b, \phi_b - \phi_0;\ \gamma L, D_2, R_s)

over the usable bins (errors C_err), with the contrast beta as a nuisance parameter tied to its
self-calibrated estimate by a Gaussian prior (fixed when the user gives it). Start values from a
coarse grid. Covariance (J^T J)^-1, scaled by chi2_red when chi2_red > 1. R_s is bounded to
[0, rs_max]; when the data do not constrain it (std >= the prior std rs_max/sqrt(12)) its std is
reported as that prior std and ``rs_constrained`` is False.

Geometry-specific GPR (:func:`gpr_predict`): a training set of y_model on the data's own
(q, theta-from-flow) bins, drawn by a scrambled Sobol design over the parameter box, cached on disk
(key: hash of bins, usable-bin mask, box, n_train, model constants, shearcorr version); SVD features
and one :class:`shearcorr.gpr.PaperGPR` per target. The prediction std adds the GPR posterior std
and the spread of predictions over noise draws of the data.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np
from scipy.optimize import least_squares

from .._version import __version__
from ..errors import ShearcorrError
from .flow import wrap_half

__all__ = ["fit_pair", "gpr_predict", "default_cache_dir", "TARGETS"]

TARGETS = ("gamma_l", "d2", "rs")


def fit_pair(cmap, model, *, phi0, fit_flow=True, rs_max=0.3, gamma_max=80.0, d2_max=6.0) -> dict:
    """Direct physics fit of a :class:`CorrelationMap` with a :class:`BinnedPairModel` (same bins)."""
    ok = cmap.ok
    if ok.sum() < 8:
        raise ShearcorrError(f"only {int(ok.sum())} usable (q, phi) bins; use fewer bins or check the mask")
    data, err = cmap.C[ok] - 1.0, cmap.C_err[ok]
    beta_free = cmap.beta_err > 0

    def unpack(x):
        gl, d2, rs = x[0], x[1], x[2]
        i = 3
        ph = phi0
        if fit_flow:
            ph, i = x[i], i + 1
        beta = x[i] if beta_free else cmap.beta
        return gl, d2, rs, ph, beta

    def resid(x):
        gl, d2, rs, ph, beta = unpack(x)
        r = (data - beta * model.y(gl, d2, rs, ph)[ok]) / err
        if beta_free:
            r = np.append(r, (beta - cmap.beta) / cmap.beta_err)
        return r

    best = None
    for gl in (5.0, 10.0, 18.0, 28.0):
        for d2 in (0.5, 1.0, 1.7, 2.6):
            x = [gl, d2, 0.1] + ([phi0] if fit_flow else []) + ([cmap.beta] if beta_free else [])
            c = float(np.sum(resid(np.array(x)) ** 2))
            if best is None or c < best[0]:
                best = (c, np.array(x))
    lo = [0.0, 0.01, 0.0] + ([phi0 - np.pi / 3] if fit_flow else []) + ([1e-3] if beta_free else [])
    hi = [gamma_max, d2_max, rs_max] + ([phi0 + np.pi / 3] if fit_flow else []) + ([1.0] if beta_free else [])
    x0 = np.clip(best[1], np.array(lo) + 1e-9, np.array(hi) - 1e-9)
    sol = least_squares(resid, x0, bounds=(lo, hi), x_scale="jac", diff_step=1e-4, xtol=1e-8, ftol=1e-9, max_nfev=400)
    n, k = data.size, sol.x.size
    chi2 = float(np.sum(sol.fun**2))
    dof = max(n - k, 1)
    red = chi2 / dof
    J = sol.jac
    try:
        cov = np.linalg.pinv(J.T @ J) * max(red, 1.0)
    except np.linalg.LinAlgError:
        cov = np.full((k, k), np.nan)
    std = np.sqrt(np.clip(np.diag(cov), 0, None))
    gl, d2, rs, ph, beta = unpack(sol.x)
    rs_prior = rs_max / np.sqrt(12.0)
    rs_std = float(std[2])
    rs_constrained = bool(np.isfinite(rs_std) and rs_std < rs_prior)
    out = {
        "gamma_l": (float(gl), float(std[0])), "d2": (float(d2), float(std[1])),
        "rs": (float(rs), rs_std if rs_constrained else float(rs_prior)), "rs_constrained": rs_constrained,
        "flow_angle": (wrap_half(ph), float(std[3]) if fit_flow else 0.0),
        "beta": (float(beta), float(std[-1]) if beta_free else 0.0),
        "chi2": chi2, "dof": int(dof), "chi2_red": float(red), "n_bins": int(n), "success": bool(sol.success),
        "nfev": int(sol.nfev), "model_y": model.y(gl, d2, rs, ph),
    }
    return out


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


def _training_set(model, ok, box, n_train, cache_dir, seed=0):
    key_src = json.dumps({"q": model.q_edges.round(10).tolist(), "phi": model.phi_edges.round(10).tolist(),
                          "ok": np.flatnonzero(ok).tolist(), "box": box, "n": n_train, "n_l2": model.n_l2,
                          "disp": model.displacement, "L": model.beam_size, "sub": [model.sq, model.sp],
                          "seed": seed, "version": __version__}, sort_keys=True)
    key = hashlib.sha256(key_src.encode()).hexdigest()[:24]
    path = Path(cache_dir) / f"pairmodel-{key}.npz" if cache_dir is not None else None
    if path is not None and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                return z["theta"], z["Y"], True
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache entry is rebuilt
    theta = _sobol(n_train, box, seed)
    Y = np.stack([model.y(t[0], t[1], t[2], 0.0)[ok] for t in theta])
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".pairmodel.", suffix=".npz", dir=path.parent)
        os.close(fd)
        try:
            np.savez(tmp, theta=theta, Y=Y)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return theta, Y, False


def gpr_predict(cmap, model, *, box=((5.0, 30.0), (0.5, 3.0), (0.0, 0.3)), n_train=256, k=8,
                cache_dir=None, n_draws=64, seed=0) -> dict:
    """Geometry-specific GPR inversion of a flow-aligned map (``cmap.phi`` is theta from the flow)."""
    from ..gpr import PaperGPR
    from ..rng import as_generator

    ok = cmap.ok
    if ok.sum() < 8:
        raise ShearcorrError(f"only {int(ok.sum())} usable (q, theta) bins; use fewer bins or check the mask")
    box = [list(map(float, b)) for b in box]
    theta, Y, cached = _training_set(model, ok, box, int(n_train), cache_dir, seed)
    w = 1.0 / np.maximum(cmap.C_err[ok] / cmap.beta, 1e-6)
    mu = Y.mean(axis=0)
    _, _, Vt = np.linalg.svd((Y - mu) * w, full_matrices=False)
    V = Vt[: min(k, Vt.shape[0])]
    feats = lambda Z: ((Z - mu) * w) @ V.T  # noqa: E731
    X = feats(Y)
    scale = X.std(axis=0) + 1e-12
    X = X / scale
    rng = as_generator(seed)
    yd = cmap.y[ok]
    draws = yd + (cmap.C_err[ok] / cmap.beta) * rng.standard_normal((n_draws, yd.size))
    Xd = feats(np.vstack([yd, draws])) / scale
    out = {"cached": cached, "n_train": int(n_train), "box": box}
    for j, name in enumerate(TARGETS):
        gp = PaperGPR(optimizer="grid", n_grid=12).fit(X, theta[:, j])
        m, s = gp.predict(Xd[:1], return_std=True)
        spread = float(np.std(gp.predict(Xd[1:])))
        out[name] = (float(m[0]), float(np.hypot(s[0], spread)))
    return out
