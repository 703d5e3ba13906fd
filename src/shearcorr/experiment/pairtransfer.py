r"""The instrument in one configuration's pair correlation: partial coherence, pixels and point spread.

For the configuration term of a pair's error (:func:`shearcorr.experiment.model.configuration_maps`). A beam with
cross-spectral density :math:`J(\mathbf r_1, \mathbf r_2) = a(\mathbf r_1) a(\mathbf r_2) \mu(\mathbf r_1 - \mathbf r_2)`
(Gaussian Schell model, :class:`shearcorr.beam.Beam`) seen through a detector whose pixel and point spread
convolve the intensity in q with a response R (docs/theory.md 7.1) gives, for *one* configuration,

.. math:: I(\mathbf q) = \sum_{ij} w_i w_j\,a_i a_j\,T(\mathbf r_i - \mathbf r_j)\,e^{-i\mathbf q\cdot(\mathbf r_i - \mathbf r_j)},
          \qquad T = \mu\,\hat R_{pix}\,\hat R_{psf}

(w_i = V_i F(qR_i); T is real and even, T(0) = 1, :math:`T^2 = M` the pair transfer of the analytic engine,
:func:`shearcorr.pixels.transfer`). Averaged over the speckles of a bin (the phases
:math:`e^{-i\mathbf q\cdot(\mathbf r_i - \mathbf r_j)}` of distinct particles average out), the product of the
frames before and after holds, besides the mean product P P', the pair term

.. math:: c(\mathbf q) = \sum_{i\ne j} w_i^2 w_j^2\,K_{ij}\,e^{-i\mathbf q\cdot(\Delta\mathbf r_i - \Delta\mathbf r_j)},
          \qquad K_{ij} = s_i s_j\,T(\mathbf r_i - \mathbf r_j)\,T(\mathbf r_i' - \mathbf r_j'),\quad s = a a'

and the speckle variance of one frame is :math:`V(\mathbf q) = \sum_{i\ne j} w_i^2 u_i\,w_j^2 u_j\,M(\mathbf r_i - \mathbf r_j)`
(u = a^2). K is positive semi-definite (the Schur product of two positive semi-definite kernel matrices:
:math:`\hat R \ge 0` and :math:`\hat\mu \ge 0`), so :math:`K = \sum_m v_m v_m^T` (a pivoted Cholesky factor) and

.. math:: c(\mathbf q) = \sum_m \Big|\sum_i v_{im} w_i^2 e^{-i\mathbf q\cdot\Delta\mathbf r_i}\Big|^2
          - \sum_i \tilde K_{ii} w_i^4 ,

a sum of coherent-like pair powers, one per column of the factor (:func:`pair_modes`). The factor stops when the
residual holds less than a fraction ``eps`` of the trace; the subtracted diagonal is that of the kept columns
(:math:`\tilde K`), so the residual's contribution averages to zero over the phases. The coherent beam with point pixels has T = 1 and
K = s s^T of rank one: the formula of the coherent configuration term. Neglected, as in the engine: F(|q - kappa| R)
~ F(qR) over the response kappa (relative (kappa R0)^2 <= 1e-4).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["AmplitudeTransfer", "amplitude_transfer", "lag_matrix", "pair_modes", "transfer_maps", "frame_variance",
           "pair_power_modes", "configuration_y1", "MODE_EPS"]

#: Fraction of the trace of K left in the residual of the low-rank factor of :func:`pair_modes`.
MODE_EPS = 1e-3


class AmplitudeTransfer:
    r"""The amplitude transfer T of the beam's coherence and the detector's response (flow frame, R0).

    .. math:: T(\boldsymbol\rho) = \sum_k w_k e^{-\rho_x^2/2\xi_{xk}^2 - \rho_y^2/2\xi_{yk}^2}
              \prod_{j\in\{col,row\}} \mathrm{sinc}(\boldsymbol\rho\cdot\mathbf j/2)\;
              e^{-\sigma^2\sum_j(\boldsymbol\rho\cdot\mathbf j)^2/2}

    with j the q-vectors of one pixel step turned into the flow frame and sigma the PSF in pixels: the signed
    square root of :func:`shearcorr.pixels.transfer`'s M. Call it with separations (rho_x, rho_y), or use
    :meth:`matrix` for all pairs of a set of points.
    """

    def __init__(self, components, pixel_vectors, psf_sigma_px):
        self.components = components
        self.vectors = pixel_vectors
        self.sig2 = float(psf_sigma_px) ** 2

    def __call__(self, rx, ry) -> np.ndarray:
        rx, ry = np.asarray(rx, dtype=np.float64), np.asarray(ry, dtype=np.float64)
        out = np.ones(np.broadcast_shapes(rx.shape, ry.shape))
        if self.components is not None:
            out = out * sum(w * np.exp(-0.5 * (rx / xx) ** 2 - 0.5 * (ry / xy) ** 2) for w, xx, xy in self.components)
        gauss = 0.0
        for ax, ay in self.vectors:
            proj = rx * ax + ry * ay
            out = out * np.sinc(proj / (2.0 * np.pi))
            gauss = gauss + proj * proj
        return out * np.exp(-0.5 * self.sig2 * gauss) if self.sig2 > 0 else out

    def matrix(self, x, y) -> np.ndarray:
        """T(r_i - r_j) for the points (x, y) (R0), shape (n, n) (numba; the same numbers as calling it with
        the separations, to rounding)."""
        global _MATRIX_KERNEL
        if _MATRIX_KERNEL is None:
            _MATRIX_KERNEL = _compile_matrix()
        comps = np.array(self.components if self.components is not None else [(1.0, np.inf, np.inf)], dtype=np.float64)
        vecs = np.array(self.vectors, dtype=np.float64).reshape(-1, 2)
        x, y = np.ascontiguousarray(x, dtype=np.float64), np.ascontiguousarray(y, dtype=np.float64)
        out = np.empty((x.size, x.size))
        _MATRIX_KERNEL(x, y, comps, self.components is not None, vecs, self.sig2, out)
        return out


def amplitude_transfer(beam, pixel=None, flow_angle: float = 0.0) -> AmplitudeTransfer | None:
    """The :class:`AmplitudeTransfer` of ``beam``'s coherence and the ``pixel`` response (pixels turned by the
    detector azimuth of the flow, ``flow_angle``), or None when it is 1 (coherent beam, point pixels)."""
    comps = None if beam is None else beam.coherence_components
    if comps is None and pixel is None:
        return None
    vectors, psf = (), 0.0
    if pixel is not None:
        c, s = math.cos(flow_angle), math.sin(flow_angle)
        vectors = tuple((c * jx + s * jy, -s * jx + c * jy) for jx, jy in (pixel.col, pixel.row))
        psf = pixel.psf_sigma_px
    return AmplitudeTransfer(comps, vectors, psf)


def lag_matrix(T, x, y) -> np.ndarray:
    """T(r_i - r_j) for the points (x, y) (R0), shape (n, n)."""
    return T.matrix(x, y) if hasattr(T, "matrix") else T(x[:, None] - x[None, :], y[:, None] - y[None, :])


def pair_modes(t_before, t_after, s, eps: float = MODE_EPS):
    r"""Low-rank factor of one configuration's pair matrix :math:`K_{ij} = s_i s_j T(\mathbf r_i - \mathbf r_j)
    T(\mathbf r_i' - \mathbf r_j')` (module docstring): a pivoted Cholesky factor, stopped when the residual (positive
    semi-definite) holds less than a fraction ``eps`` of the trace.

    Parameters
    ----------
    t_before, t_after : ndarray (n, n)
        :func:`lag_matrix` of the particles lit before and after, at their positions before and after.
    s : ndarray (n,)
        Their amplitude weights :math:`\sqrt{u u'}`.

    Returns
    -------
    coef : ndarray (n, n_modes)
        The factor: :math:`\tilde K = coef\,coef^T`.
    diag : ndarray (n,)
        :math:`\tilde K_{ii}`.
    """
    return _pivoted_cholesky(t_before * t_after * (s[:, None] * s[None, :]), eps)


def _pivoted_cholesky(K, eps):
    """Greedy pivoted Cholesky factor F (n, r) of the positive semi-definite K, stopped when the trace of the
    residual K - F F^T (itself positive semi-definite) is below ``eps`` times the trace of K; and diag(F F^T)."""
    n = K.shape[0]
    d = np.diag(K).astype(np.float64).copy()
    total = d.sum()
    F = np.zeros((n, n))
    r = 0
    while r < n and d.sum() > eps * total and total > 0:
        p = int(np.argmax(d))
        if not d[p] > 0:
            break
        F[:, r] = (K[:, p] - F[:, :r] @ F[p, :r]) / np.sqrt(d[p])
        d -= F[:, r] ** 2
        np.clip(d, 0.0, None, out=d)
        d[p] = 0.0
        r += 1
    F = F[:, :max(r, 1)]
    return F, np.sum(F * F, axis=1)


def frame_variance(t_lag, W) -> np.ndarray:
    r"""Speckle variance of one frame of one configuration, :math:`V = \sum_{i\ne j} W_i W_j T(\mathbf r_i - \mathbf r_j)^2`
    per q, for the lit particles (``t_lag``: their :func:`lag_matrix`) with weights ``W`` (n, n_q) =
    :math:`u_i V_i^2 F^2(qR_i)`; shape (n_q,)."""
    return np.einsum("iq,iq->q", W, (t_lag * t_lag) @ W) - np.sum(W * W, axis=0)


def pair_power_modes(q, cos_phi, sin_phi, dx, dy, w, coef, n_modes, off):
    r""":math:`\sum_m |\sum_i c_{im} w_i(q) e^{-i\mathbf q\cdot\Delta\mathbf r_i}|^2` for the particles
    ``off[k]:off[k+1]`` of each sample k, its first ``n_modes[k]`` columns of ``coef`` (float32, (n, n_max)) and
    ``w`` (float32, (n_q, n)); shape (K, n_q, n_phi). The phases as in :func:`.model._pair_power` (error ~1e-6)."""
    global _KERNEL
    if _KERNEL is None:
        _KERNEL = _compile()
    out = np.empty((off.size - 1, q.size, cos_phi.size))
    f64 = lambda v: np.ascontiguousarray(v, dtype=np.float64)  # noqa: E731
    _KERNEL(f64(q), f64(cos_phi), f64(sin_phi), f64(dx), f64(dy), np.ascontiguousarray(w, dtype=np.float32),
            np.ascontiguousarray(np.asarray(coef).T, dtype=np.float32), np.ascontiguousarray(n_modes, dtype=np.int64),
            np.ascontiguousarray(off, dtype=np.int64), out)
    return out


def transfer_maps(T, qc, phs, x, y, xa, ya, ks, lit, both, w2, ub, ua, n):
    """y_1 of each of ``n`` configurations (shape (n, n_q, n_phs)) under the amplitude transfer ``T``: the pair term
    (:func:`pair_modes`, :func:`pair_power_modes`) over the speckle variances of the two frames
    (:func:`frame_variance`), at q ``qc`` (n_q,) and azimuths ``phs`` (flow frame).

    The layout of :func:`shearcorr.experiment.model.configuration_maps`: positions (K, N) before (x, y) and after
    (xa, ya) (R0); ``lit`` (K, N) the particles lit before or after, ``ks`` the configuration of each lit one,
    ``both`` (per lit particle) lit before and after; ``w2`` (n_lit, n_q) = V^2 F^2; ``ub``, ``ua`` (n_lit, 1) the
    footprint intensities before and after."""
    xl, yl, xal, yal = x[lit], y[lit], xa[lit], ya[lit]
    ub1, ua1 = ub[:, 0], ua[:, 0]
    V, Va = np.empty((n, qc.size)), np.empty((n, qc.size))
    coefs, diags, n_modes, counts = [], [], np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
    for k in range(n):
        sel = ks == k
        bk, ak = sel & (ub1 > 0), sel & (ua1 > 0)
        tb, ta = lag_matrix(T, xl[bk], yl[bk]), lag_matrix(T, xal[ak], yal[ak])
        V[k] = frame_variance(tb, w2[bk] * ub[bk])
        Va[k] = frame_variance(ta, w2[ak] * ua[ak])
        cb_, ca_ = both[bk], both[ak]  # the particles lit before and after, within each set (same order)
        coef, diag = pair_modes(tb[np.ix_(cb_, cb_)], ta[np.ix_(ca_, ca_)], np.sqrt(ub1[bk][cb_] * ua1[ak][ca_]))
        coefs.append(coef)
        diags.append(diag)
        n_modes[k], counts[k] = coef.shape[1], cb_.sum()
    off = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=off[1:])
    cb = np.zeros((int(off[-1]), int(n_modes.max())))
    for k, c in enumerate(coefs):
        cb[off[k]:off[k + 1], :c.shape[1]] = c
    order = np.argsort(ks[both], kind="stable")  # particles of each sample contiguous, in sample order
    wb = w2[both][order]
    d = np.concatenate(diags)
    power = pair_power_modes(qc, np.cos(phs), np.sin(phs), (xa - x)[lit][both][order], (ya - y)[lit][both][order],
                             np.ascontiguousarray(wb.T, dtype=np.float32), cb, n_modes, off)
    S = np.stack([np.bincount(np.repeat(np.arange(n), counts), weights=d * wb[:, j] ** 2, minlength=n)
                  for j in range(qc.size)], axis=1)
    return (power - S[..., None]) / np.sqrt(V * Va)[..., None]


def configuration_y1(T, qx, qy, x, y, xa, ya, radius, ub, ua, chunk: int = 4096) -> np.ndarray:
    r"""y_1 of *one* configuration at arbitrary q-vectors under the amplitude transfer ``T`` (the oracle of a pair).

    .. math:: y_1(\mathbf q) = \frac{\sum_m |\sum_i v_{im} w_i^2 e^{-i\mathbf q\cdot\Delta\mathbf r_i}|^2
              - \sum_i \tilde K_{ii} w_i^4}{\sqrt{V(\mathbf q)\,V'(\mathbf q)}},\qquad w_i^2 = V_i^2 F^2(qR_i)

    (module docstring; :func:`pair_modes` of the particles lit before and after, :func:`frame_variance` of each
    frame): the speckle average of :math:`(I - \bar I)(I' - \bar I')` over the speckle variances, i.e. what the
    correlation map of a pair of this configuration estimates at q without speckle or photon noise. ``T`` None
    (a coherent beam and point pixels) gives the coherent formula of :func:`.model.configuration_samples`,
    :math:`(|\sum_i s_i w_i^2 e^{-i\mathbf q\cdot\Delta\mathbf r_i}|^2 - \sum_i s_i^2 w_i^4)/\sqrt{(P^2 - \sum u^2 w^4)(P'^2 - \dots)}`.
    The same numbers as :func:`transfer_maps` at its (q, phi) points (that kernel is float32 in the phase sums).

    Parameters
    ----------
    T : AmplitudeTransfer or None
        :func:`amplitude_transfer` of the instrument (flow frame).
    qx, qy : ndarray (n_points,)
        q-vectors along the flow and across it (1/R0), e.g. every valid pixel's centre.
    x, y, xa, ya : ndarray (N,)
        Positions before and after (R0, flow frame).
    radius : ndarray (N,)
        Radii (R0).
    ub, ua : ndarray (N,)
        Footprint intensities before and after (0: not lit).
    chunk : int
        q-vectors per block (memory ~ 16 N chunk bytes).

    Returns
    -------
    ndarray (n_points,)
    """
    from ..physics import form_factor, sphere_volume

    qx, qy = np.asarray(qx, dtype=np.float64).ravel(), np.asarray(qy, dtype=np.float64).ravel()
    x, y, xa, ya, radius, ub, ua = (np.asarray(v, dtype=np.float64) for v in (x, y, xa, ya, radius, ub, ua))
    lit = (ub > 0) | (ua > 0)  # only these scatter
    x, y, xa, ya, radius, ub, ua = (v[lit] for v in (x, y, xa, ya, radius, ub, ua))
    lb, la = ub > 0, ua > 0
    both = lb & la
    if T is None:
        tb, ta = np.ones((lb.sum(),) * 2), np.ones((la.sum(),) * 2)
    else:
        tb, ta = lag_matrix(T, x[lb], y[lb]), lag_matrix(T, xa[la], ya[la])
    cb, ca = both[lb], both[la]  # the particles lit before and after, within each lit set (same order)
    coef, diag = pair_modes(tb[np.ix_(cb, cb)], ta[np.ix_(ca, ca)], np.sqrt(ub[both] * ua[both]))
    dx, dy = xa[both] - x[both], ya[both] - y[both]
    v2 = sphere_volume(radius) ** 2
    out = np.empty(qx.size)
    for s in range(0, qx.size, int(chunk)):
        sl = slice(s, s + int(chunk))
        q = np.hypot(qx[sl], qy[sl])
        w2 = v2[:, None] * form_factor(radius[:, None] * q[None, :]) ** 2  # (N, chunk)
        var_b = frame_variance(tb, w2[lb] * ub[lb, None])
        var_a = frame_variance(ta, w2[la] * ua[la, None])
        wp = w2[both] * np.exp(-1j * (dx[:, None] * qx[None, sl] + dy[:, None] * qy[None, sl]))
        amp = coef.T @ wp  # (n_modes, chunk)
        num = np.sum(amp.real**2 + amp.imag**2, axis=0) - diag @ (w2[both] ** 2)
        out[sl] = num / np.sqrt(var_b * var_a)
    return out


_KERNEL = None
_MATRIX_KERNEL = None


def _compile_matrix():
    import numba

    @numba.njit(cache=True, nogil=True, error_model="numpy")
    def kernel(x, y, comps, partial, vecs, sig2, out):
        n, nv = x.size, vecs.shape[0]
        h = np.empty((nv, n))
        hs = np.empty((nv, n))
        hc = np.empty((nv, n))
        for v in range(nv):  # sin(h_i - h_j) = sin h_i cos h_j - cos h_i sin h_j: no sine per pair
            for i in range(n):
                h[v, i] = 0.5 * (x[i] * vecs[v, 0] + y[i] * vecs[v, 1])
                hs[v, i] = np.sin(h[v, i])
                hc[v, i] = np.cos(h[v, i])
        for i in range(n):
            out[i, i] = 1.0
            for j in range(i):
                t = 1.0
                if partial:
                    rx, ry = x[i] - x[j], y[i] - y[j]
                    t = 0.0
                    for c in range(comps.shape[0]):
                        t += comps[c, 0] * np.exp(-0.5 * (rx / comps[c, 1]) ** 2 - 0.5 * (ry / comps[c, 2]) ** 2)
                g = 0.0
                for v in range(nv):
                    d = h[v, i] - h[v, j]
                    if abs(d) < 1e-4:
                        t *= 1.0 - d * d / 6.0
                    else:
                        t *= (hs[v, i] * hc[v, j] - hc[v, i] * hs[v, j]) / d
                    g += 4.0 * d * d
                if sig2 > 0:
                    t *= np.exp(-0.5 * sig2 * g)
                out[i, j] = t
                out[j, i] = t

    return kernel


def _compile():
    import numba

    from ..forward.kernels import cis_turn32

    @numba.njit(cache=True, nogil=True, error_model="numpy", fastmath=True)
    def kernel(q, cphi, sphi, dx, dy, w, coef_t, n_modes, off, out):
        inv2pi = 1.0 / (2.0 * np.pi)
        n_k, n_q, n_p = off.size - 1, q.size, cphi.size
        for k in range(n_k):
            a, b = off[k], off[k + 1]
            nm = n_modes[k]
            t = np.empty(b - a)
            wc = np.empty(b - a, dtype=np.float32)
            ws = np.empty(b - a, dtype=np.float32)
            for j in range(n_p):
                for i in range(b - a):
                    t[i] = (cphi[j] * dx[a + i] + sphi[j] * dy[a + i]) * inv2pi
                for iq in range(n_q):
                    for i in range(b - a):
                        ph = q[iq] * t[i]
                        c, s = cis_turn32(np.float32(ph - np.rint(ph)))
                        wc[i] = w[iq, a + i] * c
                        ws[i] = w[iq, a + i] * s
                    acc = 0.0
                    for m in range(nm):
                        re = np.float32(0.0)
                        im = np.float32(0.0)
                        for i in range(b - a):
                            re += coef_t[m, a + i] * wc[i]
                            im += coef_t[m, a + i] * ws[i]
                        acc += float(re) * float(re) + float(im) * float(im)
                    out[k, iq, j] = acc

    return kernel
