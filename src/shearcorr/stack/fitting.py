r"""Amortized fits of many correlation maps at once: a grid start and a vectorised Gauss-Newton.

Model of map m (bins b, shape (n_q, n_phi)):

.. math:: c_{mb} = a_m\,s_b\,y_b(\gamma L_m, D_{2,m};\ \phi_0) + o_{mb}

with y the interpolated pair model (:class:`.templates.PairTable`), s_b a known per-bin scale
(1, or A - B for ensemble-normalised data), o_mb a known offset (0, or the finite-N baseline) and
the amplitude a_m (the contrast, times the transit factor of stacks) fitted with the shape.

1. Start: chi^2 with the amplitude profiled (variable projection) on a coarse (gamma L, D2) grid,
   for all maps at once by two matrix products (maps x bins) @ (bins x grid points).
2. Levenberg-Marquardt on (gamma L, D2, a) for every map together (3 x 3 normal equations per map,
   damping per map, bounds by clipping), a fixed number of iterations or until every map converged.
3. Covariance :math:`(J^T W J)^{-1}` per map, and the *gain* :math:`H J^T W` (3 x bins) that maps a
   perturbation of the data to the parameters (linear jackknife of stacks, configuration spread).

No engine call happens here: 20 000 maps of 576 bins take seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ShearcorrError

__all__ = ["MapFits", "fit_maps", "PARAMS", "MIN_DOF_SCALE"]

PARAMS = ("gamma_l", "d2", "amplitude")
#: Maps with at least this many degrees of freedom get their speckle errors scaled by chi2_red
#: (both ways: the error law of averaged maps is approximate, the residuals measure its scale).
MIN_DOF_SCALE = 50
#: Coarse start grid: gamma L values (R0) and D2 values (R0) (clipped to the table).
START_GAMMA = (0.0, 1.0, 2.5, 4.0, 6.0, 9.0, 13.0, 18.0, 25.0, 35.0, 50.0, 70.0, 100.0, 140.0)
START_D2 = (0.0, 0.25, 0.5, 0.8, 1.2, 1.7, 2.3, 3.0)


@dataclass
class MapFits:
    """Per-map results of :func:`fit_maps` (arrays over maps, NaN where a map has too few bins).

    ``params`` (M, 3): gamma L, D2, amplitude; ``cov`` (M, 3, 3); ``chi2``, ``dof``, ``chi2_red``
    (M,); ``prediction`` (M, n_q, n_phi); ``gain`` (M, 3, n_q, n_phi) if requested;
    ``converged`` (M,) bool.
    """

    params: np.ndarray
    cov: np.ndarray
    chi2: np.ndarray
    dof: np.ndarray
    prediction: np.ndarray
    converged: np.ndarray
    gain: np.ndarray | None = None

    @property
    def chi2_red(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.chi2 / self.dof

    @property
    def std(self) -> np.ndarray:
        """Standard errors (M, 3) from ``cov``."""
        return np.sqrt(np.clip(np.diagonal(self.cov, axis1=-2, axis2=-1), 0, None))


def _start(table, phi0, c, w, scale, gmax, dmax):
    g = np.array([v for v in START_GAMMA if v <= gmax] or [0.0])
    d = np.array([v for v in START_D2 if v <= dmax] or [0.0])
    G, D = np.meshgrid(g, d, indexing="ij")
    Y = table.y(G.ravel(), D.ravel(), phi0).reshape(G.size, -1) * scale.reshape(1, -1)  # (K, nb)
    Yf = np.nan_to_num(Y)
    num = (w * c) @ Yf.T  # (M, K)
    den = w @ (Yf * Yf).T
    with np.errstate(invalid="ignore", divide="ignore"):
        a = np.where(den > 0, np.clip(num / den, 0.0, None), 0.0)
        chi = (w * c * c).sum(1)[:, None] - 2 * a * num + a * a * den
    k = np.argmin(np.where(np.isfinite(chi), chi, np.inf), axis=1)
    return np.stack([G.ravel()[k], D.ravel()[k], a[np.arange(k.size), k]], axis=1)


def fit_maps(table, phi0: float, data, sigma, *, scale=None, offset=None, start=None, amplitude_prior=None,
             n_iter: int = 40, return_gain: bool = False, chunk: int = 2000, min_signal=None) -> MapFits:
    r"""Fit (gamma L, D2, amplitude) to every map (see the module docstring).

    Parameters
    ----------
    table : PairTable
        The interpolated pair model (its bins are the maps' bins).
    phi0 : float
        Flow angle (rad, detector azimuth) at which the bins are read.
    data : ndarray (M, n_q, n_phi)
        C - 1 of every map; NaN for unusable bins.
    sigma : ndarray (M, n_q, n_phi)
        Standard errors (NaN or <= 0: bin not used).
    scale : ndarray (n_q, n_phi), optional
        s_b (default 1).
    offset : ndarray (M, n_q, n_phi) or (n_q, n_phi), optional
        o_mb (default 0).
    start : ndarray (M, 3), optional
        Start values; default the grid search.
    amplitude_prior : (mean, std), optional
        Gaussian prior on the amplitude (e.g. the contrast measured at lag 0).
    return_gain : bool
        Also return :math:`H J^T W` per map.
    min_signal : float, optional
        Only maps whose chi^2 gain over the null model (c = offset), :math:`\sum_b w_b (c_b - o_b)^2 -
        \chi^2`, reaches this get the one-sided errors at the bounds and a gain; the others keep
        :math:`(J^TWJ)^{-1}` and a NaN gain (for callers that report only those maps: the one-sided
        search costs 40 model evaluations per map). ``np.inf``: no map (a first pass whose
        covariance is not used). Default: every map.
    """
    c_all = np.asarray(data, dtype=np.float64)
    if c_all.ndim != 3:
        raise ShearcorrError(f"maps must have shape (n_maps, n_q, n_phi), got {c_all.shape}")
    M, nq, nphi = c_all.shape
    s_all = np.broadcast_to(np.asarray(sigma, dtype=np.float64), c_all.shape)
    scale = np.ones((nq, nphi)) if scale is None else np.asarray(scale, dtype=np.float64)
    off_all = np.zeros_like(c_all) if offset is None else np.broadcast_to(np.asarray(offset, dtype=np.float64), c_all.shape)
    out_p = np.full((M, 3), np.nan)
    out_cov = np.full((M, 3, 3), np.nan)
    out_chi = np.full(M, np.nan)
    out_dof = np.zeros(M, dtype=np.int64)
    out_pred = np.full(c_all.shape, np.nan)
    out_conv = np.zeros(M, dtype=bool)
    out_gain = np.full((M, 3, nq, nphi), np.nan) if return_gain else None
    for m0 in range(0, M, int(chunk)):
        sl = slice(m0, min(M, m0 + int(chunk)))
        res = _fit_chunk(table, phi0, c_all[sl], s_all[sl], scale, off_all[sl], None if start is None else start[sl],
                         amplitude_prior, n_iter, return_gain, min_signal)
        out_p[sl], out_cov[sl], out_chi[sl], out_dof[sl], out_pred[sl], out_conv[sl] = res[:6]
        if return_gain:
            out_gain[sl] = res[6]
    return MapFits(out_p, out_cov, out_chi, out_dof, out_pred, out_conv, out_gain)


def _profile_dchi(table, phi0, c, w, sc, x, chi, prior, j, tests):
    """chi^2 rise over ``chi`` with parameter j (0: gamma L, 1: D2) set to ``tests`` (maps,), the other
    held at ``x`` and the amplitude profiled (with its prior)."""
    g, d = (tests, x[:, 1]) if j == 0 else (x[:, 0], tests)
    y = table.y(g, d, phi0).reshape(c.shape[0], -1) * sc
    num, den = (w * c * y).sum(1), (w * y * y).sum(1)
    if prior is None:
        a = np.clip(num / np.maximum(den, 1e-300), 0.0, None)
        ch = (w * (c - a[:, None] * y) ** 2).sum(1)
    else:
        a = np.clip((num + prior[0] / prior[1] ** 2) / (den + 1.0 / prior[1] ** 2), 0.0, None)
        ch = (w * (c - a[:, None] * y) ** 2).sum(1) + ((a - prior[0]) / prior[1]) ** 2
    return ch - chi


#: One-sided error search: geometric bracket steps (fractions of the table's range) and bisection steps.
ONE_SIDED_GRID, ONE_SIDED_BISECT = 40, 10


def _one_sided_sigma(table, phi0, c, w, sc, x, chi, prior, j):
    r"""Distance from the fitted gamma L (j = 0) or D2 (j = 1) to where chi^2 (the other held, the
    amplitude profiled) has risen by 1 above it: a one-sided 1-sigma error near the bound 0, where
    the Jacobian column vanishes (y is even in both).

    A geometric grid of steps up to the table's end brackets the crossing of
    :math:`\Delta\chi^2 = 1`; bisection then places it to :math:`2^{-10}` of the bracket, whatever the
    table's range (at the bound :math:`\Delta\chi^2 \propto \delta^4`: interpolating linearly between
    grid steps, or from 0 to a first step already past the crossing, under-estimates the error).
    """
    top = table.gamma_max if j == 0 else table.d2_max
    steps = np.geomspace(1e-3 * top, top, ONE_SIDED_GRID)
    n = c.shape[0]
    lo = np.zeros(n)  # largest step known below the crossing (0: the fit itself)
    hi = np.full(n, np.nan)  # smallest step known above it
    for s in steps:
        todo = np.isnan(hi)
        if not todo.any():
            break
        dchi = np.full(n, -np.inf)
        dchi[todo] = _profile_dchi(table, phi0, c[todo], w[todo], sc, x[todo], chi[todo], prior, j, x[todo, j] + s)
        hit = todo & (dchi >= 1.0)
        hi[hit] = s
        lo[todo & ~hit] = s
    found = np.isfinite(hi)
    if found.any():
        a, b = lo[found], hi[found]
        for _ in range(ONE_SIDED_BISECT):
            mid = 0.5 * (a + b)
            up = _profile_dchi(table, phi0, c[found], w[found], sc, x[found], chi[found], prior, j, x[found, j] + mid) >= 1.0
            b, a = np.where(up, mid, b), np.where(up, a, mid)
        lo[found] = 0.5 * (a + b)
    return lo  # no crossing up to the table's end: the whole range


def _fit_chunk(table, phi0, c3, s3, scale, off3, start, prior, n_iter, return_gain, min_signal=None):
    M = c3.shape[0]
    nq, nphi = scale.shape
    ok = np.isfinite(c3) & np.isfinite(s3) & (s3 > 0) & np.isfinite(off3) & np.isfinite(scale)[None]
    c = np.where(ok, c3 - off3, 0.0).reshape(M, -1)
    w = np.where(ok, 1.0 / np.where(ok, s3, 1.0) ** 2, 0.0).reshape(M, -1)
    sc = np.nan_to_num(scale).reshape(-1)
    n_used = ok.reshape(M, -1).sum(1)
    gmax, dmax = table.gamma_max, table.d2_max
    x0 = _start(table, phi0, c, w, sc, gmax, dmax) if start is None else np.array(start, dtype=np.float64)
    x0 = np.nan_to_num(np.clip(x0, 0.0, [gmax, dmax, np.inf]))
    pm, ps = (None, None) if prior is None else (float(prior[0]), float(prior[1]))
    # the optimiser works on (gamma L^2, D2^2, a): y is even in gamma L and in D2, so their own
    # Jacobian columns vanish at 0 and a fit that touches 0 would stay there; in the squares it does not
    x = np.c_[x0[:, 0] ** 2, x0[:, 1] ** 2, x0[:, 2]]
    eps = (1e-2, 1e-3)  # below these, gamma L and D2 are evaluated at the floor (y changes by < 1e-5)
    sw = np.sqrt(w)

    def evaluate(z, idx):
        m = z.shape[0]
        g = np.maximum(np.sqrt(z[:, 0]), eps[0])
        d = np.maximum(np.sqrt(z[:, 1]), eps[1])
        y, yg, yd = table.y(g, d, phi0, derivatives=True)
        y, yg, yd = (v.reshape(m, -1) * sc for v in (y, yg, yd))
        yg, yd = yg / (2 * g[:, None]), yd / (2 * d[:, None])  # d/d(gamma L^2), d/d(D2^2)
        r = (c[idx] - z[:, 2:3] * y) * sw[idx]
        J = -np.stack([z[:, 2:3] * yg, z[:, 2:3] * yd, y], axis=1) * sw[idx][:, None, :]  # (m, 3, nb)
        chi = (r * r).sum(1)
        if pm is not None:
            chi = chi + ((z[:, 2] - pm) / ps) ** 2
        return r, J, chi, y

    r, J, chi, y = evaluate(x, slice(None))
    lam = np.full(M, 1e-3)
    conv = np.zeros(M, dtype=bool)
    lo = np.array([0.0, 0.0, 0.0])
    hi = np.array([gmax**2, dmax**2, np.inf])
    for _ in range(int(n_iter)):
        act = np.flatnonzero(~conv)  # only the maps still moving are evaluated again
        if act.size == 0:
            break
        Ja, ra = J[act], r[act]
        JtJ = np.einsum("mib,mjb->mij", Ja, Ja)
        g = np.einsum("mib,mb->mi", Ja, ra)
        if pm is not None:
            JtJ[:, 2, 2] += 1.0 / ps**2
            g[:, 2] += (x[act, 2] - pm) / ps**2
        A = JtJ + lam[act, None, None] * (np.eye(3)[None] * np.diagonal(JtJ, axis1=1, axis2=2)[:, :, None] + 1e-12 * np.eye(3))
        step = -np.linalg.solve(A, g[..., None])[..., 0]
        xn = np.clip(x[act] + step, lo, hi)
        rn, Jn, chin, yn = evaluate(xn, act)
        ca = chi[act]
        better = chin < ca - 1e-12 * (1 + ca)
        small = np.all(np.abs(xn - x[act]) <= 1e-7 * (1 + np.abs(x[act])), axis=1) | (np.abs(ca - chin) <= 1e-10 * (1 + ca))
        conv[act] = small & ~better | (better & (np.abs(ca - chin) <= 1e-9 * (1 + ca)))
        b = act[better]
        x[b], r[b], J[b], y[b], chi[b] = xn[better], rn[better], Jn[better], yn[better], chin[better]
        lam[act] = np.where(better, lam[act] * 0.3, lam[act] * 10.0)
    JtJ = np.einsum("mib,mjb->mij", J, J)
    if pm is not None:
        JtJ[:, 2, 2] += 1.0 / ps**2
    # back to (gamma L, D2, a): Jacobian of the squares T = diag(1/(2 gamma L), 1/(2 D2), 1)
    gam, dd = np.sqrt(x[:, 0]), np.sqrt(x[:, 1])
    T = np.zeros((M, 3, 3))
    T[:, 0, 0] = 1.0 / (2 * np.maximum(gam, eps[0]))
    T[:, 1, 1] = 1.0 / (2 * np.maximum(dd, eps[1]))
    T[:, 2, 2] = 1.0
    covz = np.linalg.pinv(JtJ)
    cov = T @ covz @ T
    x = np.c_[gam, dd, x[:, 2]]
    dof = n_used - 3 + (1 if pm is not None else 0)
    bad = n_used < 5
    x[bad] = np.nan
    cov[bad] = np.nan
    chi = np.where(bad, np.nan, chi)
    pred = (x[:, 2:3] * y).reshape(M, nq, nphi) + np.where(np.isfinite(off3), off3, 0.0)
    extra = ~bad
    if min_signal is not None:
        with np.errstate(invalid="ignore"):
            extra &= (w * c * c).sum(1) - chi >= min_signal
    # gamma L at its lower bound: y is even in gamma L, so the Jacobian column vanishes there; its
    # error is the gamma L where chi^2 (amplitude re-profiled) has risen by 1 (a one-sided 1-sigma)
    for j, top in ((0, gmax), (1, dmax)):  # D2 too is even in the model
        with np.errstate(invalid="ignore"):
            at0 = extra & ((x[:, j] <= 1e-6 * (1.0 + top)) | ~(np.sqrt(np.abs(cov[:, j, j])) < 0.5 * x[:, j]))
        if at0.any():
            cov[at0, j, :] = 0.0
            cov[at0, :, j] = 0.0
            cov[at0, j, j] = _one_sided_sigma(table, phi0, c[at0], w[at0], sc, x[at0], chi[at0], prior, j) ** 2
    out = [x, cov, chi, np.maximum(dof, 0), pred, conv & ~bad]
    if return_gain:
        # d params = -H J^T sqrt(W) (delta c * sqrt(W)) with J already weighted: gain on delta c
        gain = -np.einsum("mij,mjk,mkb->mib", T, covz, J * np.sqrt(w)[:, None, :])
        for j in (0, 1):  # at the bounds the one-sided error holds; no linear gain
            with np.errstate(invalid="ignore"):
                flat = ~bad & (x[:, j] <= 2 * np.sqrt(np.abs(cov[:, j, j])))
            gain[flat, j] = 0.0
        gain[~extra] = np.nan
        out.append(gain.reshape(M, 3, nq, nphi))
    return out
