r"""Coherent-mode decomposition of a beam (:class:`shearcorr.beam.Beam`) for brute-force rendering.

The Monte Carlo engine (:mod:`.beammc`) and the synthetic-frame renderer (:mod:`shearcorr.experiment.synth`)
compute a partially coherent intensity as an explicit sum over coherent modes of the beam's
cross-spectral density, :math:`I = \sum_k \nu_k |A_k|^2`; no Fourier shortcut of the analytic engine.
"""

from __future__ import annotations

import math

import numpy as np

from ..beam import FWHM_PER_SIGMA, Beam

__all__ = ["coherent_modes", "intensity_at"]


def _modes_1d(amp, xi, half, n=160, eps=1e-5):
    """Coherent modes of J(x1, x2) = a(x1) a(x2) exp(-(x1 - x2)^2 / (2 xi^2)) on [-half, half]:
    eigenvalues and a Nystrom evaluator of the orthonormal modes."""
    from numpy.polynomial.legendre import leggauss

    t, w = leggauss(n)
    xs, ws = half * t, half * w
    ax = amp(xs)
    kern = (lambda d: np.exp(-0.5 * (d / xi) ** 2)) if math.isfinite(xi) else (lambda d: np.ones_like(d))
    sq = np.sqrt(ws)
    A = sq[:, None] * ax[:, None] * kern(xs[:, None] - xs[None, :]) * ax[None, :] * sq[None, :]
    lam, U = np.linalg.eigh(A)
    lam, U = lam[::-1], U[:, ::-1]
    keep = max(1, int(np.searchsorted(np.cumsum(lam) / lam.sum(), 1.0 - eps)) + 1)
    lam, phi_nodes = lam[:keep], U[:, :keep] / sq[:, None]

    def evaluate(x):
        x = np.asarray(x, dtype=np.float64)
        kx = amp(x)[..., None] * kern(x[..., None] - xs) * (ax * ws)
        return (kx @ phi_nodes) / lam

    return lam, evaluate


def coherent_modes(beam: Beam, eps: float = 1e-5):
    r"""Coherent-mode decomposition of the beam's cross-spectral density, for brute-force rendering.

    :math:`J(\mathbf r_1, \mathbf r_2) = \sum_m \nu_m E_m(\mathbf r_1) E_m(\mathbf r_2)`, so a partially
    coherent intensity is :math:`I(\mathbf q) = \sum_m \nu_m |\sum_i w_i E_m(\mathbf r_i) e^{-i\mathbf q\cdot\mathbf r_i}|^2`.
    Separable footprints (slits, Gaussian): products of the 1-D Mercer modes of
    :math:`a(x_1)a(x_2)\mu_x(x_1 - x_2)` (Nystrom on 160 Gauss-Legendre nodes); a measured map:
    :math:`a(\mathbf r)` times the 1-D Mercer modes of :math:`\mu_x, \mu_y` over the map (exact, not
    orthogonal). A mixture of coherence components (:attr:`Beam.coherence_mix`) contributes the modes
    of each, weighted. Modes are kept in order of weight until a fraction ``1 - eps`` of the trace.

    Returns
    -------
    nu : ndarray (n_modes,)
    evaluate : callable (x, y) -> ndarray (n_modes, n) of mode amplitudes at the points.
    """
    if beam.coherent:
        return np.ones(1), lambda x, y: beam.amplitude(x, y)[None, ...]
    hx, hy = beam.half_extent()
    if beam.profile == "measured":  # a(r) times the Mercer modes of mu over the map
        ax = ay = lambda t: np.ones_like(np.asarray(t, dtype=np.float64))  # noqa: E731
    elif beam.is_slit:
        ax = lambda x: (np.abs(x) < 0.5 * beam.size[0]).astype(np.float64)  # noqa: E731
        ay = lambda y: (np.abs(y) < 0.5 * beam.size[1]).astype(np.float64)  # noqa: E731
    else:
        sx, sy = (s / FWHM_PER_SIGMA for s in beam.size)
        ax = lambda x: np.where(np.abs(x) < hx, np.exp(-0.25 * (x / sx) ** 2), 0.0)  # noqa: E731
        ay = lambda y: np.where(np.abs(y) < hy, np.exp(-0.25 * (y / sy) ** 2), 0.0)  # noqa: E731
    parts = []  # a mixture of Gaussian Schell components: J = sum_k w_k J_k, the modes of all of them
    for w, xi_x, xi_y in beam.coherence_components:
        lx, ex = _modes_1d(ax, xi_x, hx, eps=eps)
        ly, ey = _modes_1d(ay, xi_y, hy, eps=eps)
        nu = w * (lx[:, None] * ly[None, :]).ravel()
        parts.append((nu, ex, ey, ly.size))
    allnu = np.concatenate([p[0] for p in parts])
    order = np.argsort(allnu)[::-1]
    keep = np.sort(order[: max(1, int(np.searchsorted(np.cumsum(allnu[order]) / allnu.sum(), 1.0 - eps)) + 1)])
    offsets = np.cumsum([0] + [p[0].size for p in parts])

    def evaluate(x, y):
        cols = []
        for (nu, ex, ey, ny), o0, o1 in zip(parts, offsets[:-1], offsets[1:]):
            sel = keep[(keep >= o0) & (keep < o1)] - o0
            if sel.size:
                cols.append(ex(x)[..., sel // ny] * ey(y)[..., sel % ny])
        e = np.moveaxis(np.concatenate(cols, axis=-1), -1, 0)
        return e * beam.amplitude(x, y)[None, ...] if beam.profile == "measured" else e

    return allnu[keep], evaluate


def intensity_at(qx, qy, x, y, radius, amps, nu) -> np.ndarray:
    r"""Partially coherent intensity at arbitrary q-vectors, every mode at once (unnormalised).

    .. math:: I(\mathbf q) = \sum_k \nu_k \Big|\sum_i E_k(\mathbf r_i) V_i F(|\mathbf q| R_i)
              e^{-i\mathbf q\cdot\mathbf r_i}\Big|^2

    Equal to summing ``nu[k] * |amplitude_at(qx, qy, x, y, radius, weights=amps[k])|**2`` over the
    modes (:func:`shearcorr.forward.montecarlo.amplitude_at`, same float32 phase sums), but the phases
    and form factors are computed once per q-point, not once per mode.

    Parameters
    ----------
    qx, qy : array-like, same shape
        Components of q (1/r0); finite.
    x, y, radius : array-like of shape (n,)
        Particle positions and radii (r0); the particles that scatter.
    amps : array-like of shape (n_modes, n)
        Field of each coherent mode at the particles (the ``evaluate`` of :func:`coherent_modes`).
    nu : array-like of shape (n_modes,)
        Mode weights.

    Returns
    -------
    float64 ndarray of the shape of ``qx`` (units r0^6).
    """
    from ..errors import ShearcorrError
    from . import modekernels

    qx_a, qy_a = np.asarray(qx, dtype=np.float64), np.asarray(qy, dtype=np.float64)
    xs, ys, rs = (np.ascontiguousarray(np.ravel(v), dtype=np.float64) for v in (x, y, radius))
    a = np.ascontiguousarray(np.atleast_2d(amps), dtype=np.float64)
    w = np.ascontiguousarray(np.ravel(nu), dtype=np.float64)
    if qx_a.shape != qy_a.shape or not (np.all(np.isfinite(qx_a)) and np.all(np.isfinite(qy_a))):
        raise ShearcorrError("qx and qy must be finite arrays of the same shape")
    if not (xs.size == ys.size == rs.size) or a.shape != (w.size, xs.size):
        raise ShearcorrError(f"amps must have shape (modes, particles) = ({w.size}, {xs.size}), got {a.shape}")
    out = modekernels.intensity_kernel_modes(np.ascontiguousarray(qx_a.ravel()), np.ascontiguousarray(qy_a.ravel()),
                                         xs, ys, rs, a, w)
    return out.reshape(qx_a.shape)
