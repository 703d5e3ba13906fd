r"""Configuration-conditional moments: the smooth part of the fluctuations of a finite-N estimate of g.

A Monte Carlo (or experimental) g averages N configurations. Split each configuration into its
*marks and moves* Z (radii, which particles are in the window before/after, and every particle's
displacement :math:`\Delta\mathbf r_i`) and the absolute positions inside the window, which only set
the speckle phases. Averaging the positions out exactly as the engine does (docs/theory.md §1), given Z

.. math:: E[I\,|\,Z] = \frac{P}{S},\qquad E[I'\,|\,Z] = \frac{P'}{S'},\qquad
          E[I I'\,|\,Z] = \frac{P P' + |C|^2 - \sum_i m_i m'_i w_i^4}{S S'},\qquad
          C(\mathbf q) = \sum_i m_i m'_i w_i^2\, e^{i\mathbf q\cdot\Delta\mathbf r_i}

with :math:`w_i = V_i F(qR_i)`, :math:`P = \sum m w^2`, :math:`S = \sum m V^2` (primes: after the move).
Their spread over configurations is the part of the estimator noise that is *shared by all grid
points* (a configuration with a rare large particle moves g at every q and theta); the rest, the speckle
noise given Z, is nearly independent between grid points more than a speckle apart
(:mod:`shearcorr.inverse.noise`, docs/theory.md §9).

**Sampling the configurations** (:func:`draw_configurations`). The shared factor is a sample covariance
over K configurations whose terms carry :math:`V^2 \propto R^6` weights; two things make it usable inside
a fit with K = 64:

*Common random numbers.* Configuration k draws from its own stream ``child_seed(seed, k)`` a fixed
ordered pool of particles in blocks of :data:`POOL_BLOCK` (per particle: uniforms for x, y and the radius,
normals for the step), and a system of n particles is the first n of the pool. Radii come from the
inverse CDF, :math:`R = r_0 e^{R_s z}` with :math:`z = \Phi^{-1}(w)`, the steps are :math:`s_i` times fixed
normals, and the shear moves x by :math:`\gamma y`. So for a fixed seed the K configurations move
smoothly with (R_s, D_2, gamma L), and a change of n_l2 adds or removes a few particles instead of
redrawing every configuration.

*Stratification over the largest particle in the window.* Given the positions, the
:math:`n_w` particles in the window before the move have iid radii. Their joint law is that of: the
largest :math:`z_{max} = \Phi^{-1}(u^{1/n_w})`, u uniform, carried by the first of them in pool order,
and the others iid truncated below it, :math:`z = \Phi^{-1}(w\,\Phi(z_{max}))` (exchangeability: which
particle carries the maximum does not change the law). u is stratified: the K configurations come in
H = K/2 pairs, pair s with :math:`u \in [e_s, e_{s+1})` (:func:`strata_edges`: equal-probability strata,
the top one split geometrically, where the heaviest configurations are). For a statistic
:math:`\phi` of a configuration, with stratum probabilities :math:`\pi_s = e_{s+1} - e_s`, the pair
difference :math:`d_s = \phi_{s1} - \phi_{s2}` and :math:`\hat\mu = \sum_s \pi_s (\phi_{s1} + \phi_{s2})/2`,

.. math:: \widehat{\mathrm{Cov}}\,\phi = \sum_s \frac{\pi_s}{2}\sum_{j\in s}(\phi_j - \hat\mu)(\phi_j - \hat\mu)^T
          + \sum_s \frac{\pi_s^2}{4} d_s d_s^T
          = \sum_s \Big[\tfrac{\pi_s}{4} a_s a_s^T + \tfrac{\pi_s(1 + \pi_s)}{4} d_s d_s^T\Big],
          \quad a_s = \phi_{s1} + \phi_{s2} - 2\hat\mu

is exactly unbiased (the first term estimates :math:`E[\phi\phi^T] - \hat\mu\hat\mu^T`, the second
:math:`\mathrm{Var}\,\hat\mu` from the within-pair spread) and still of rank K
(:meth:`ConditionalMoments.covariance_factor`). Particles outside the window before the move (some
enter it after) have unconditioned radii.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange
from scipy.special import ndtr, ndtri

from ..params import QGrid, SystemParams
from ..physics import displacement_std, sphere_volume
from ..rng import child_seed, seed_sequence
from .kernels import _amplitude_sums, _project, particle_weights

__all__ = ["POOL_BLOCK", "TAIL_STRATA", "strata_edges", "draw_configurations", "ConditionalMoments",
           "conditional_moments"]

#: Particles per block of a configuration's ordered pool (fixed: part of the definition of the draws).
POOL_BLOCK = 64
#: Strata of the largest-particle quantile u that split the top equal-probability stratum geometrically.
TAIL_STRATA = 4
#: Uniforms are kept inside [_EPS, 1 - _EPS] (ndtri of 0 or 1 is infinite).
_EPS = 1e-15


def strata_edges(n_strata: int, tail: int = TAIL_STRATA) -> np.ndarray:
    r"""Edges :math:`0 = e_0 < \dots < e_H = 1` of the strata of u, the CDF value of the largest particle.

    ``H - tail`` equal strata of width :math:`\tau = 1/(H - T + 1)` cover :math:`[0, 1 - \tau)`, and the top
    :math:`[1 - \tau, 1)` is split at :math:`1 - \tau 4^{-j}`, j = 1 .. T - 1, so that the rare configurations
    with the largest particles get strata of their own. With fewer than ``2 tail`` strata (or ``tail`` 0)
    all strata are equal. Returns shape (H + 1,).
    """
    H, T = int(n_strata), int(tail)
    if T < 1 or H < 2 * T:
        return np.linspace(0.0, 1.0, H + 1)
    tau = 1.0 / (H - T + 1)
    body = np.linspace(0.0, 1.0 - tau, H - T + 1)
    return np.concatenate([body, 1.0 - tau * 4.0 ** -np.arange(1.0, T), [1.0]])


def draw_configurations(params: SystemParams, n_samples: int, seed=0):
    r"""K configurations of ``params`` with common random numbers and stratified largest particle
    (module docstring).

    Parameters
    ----------
    params : SystemParams
    n_samples : int
        K, rounded up to an even number (pairs per stratum).
    seed : int or SeedSequence
        Configuration k draws from ``child_seed(seed, k)``.

    Returns
    -------
    (x, y, radius, x_after, y_after, edges)
        Arrays (K, n) in units of r0 (n = ``params.n_particles``, the box [-L, L]^2) and the strata edges
        (K/2 + 1,) of :func:`strata_edges`; configurations 2s and 2s + 1 are in stratum s.
    """
    K = 2 * (-(-int(n_samples) // 2))
    H = K // 2
    edges = strata_edges(H)
    ss = seed_sequence(seed)
    n, big, half = params.n_particles, params.beam_size, 0.5 * params.beam_size
    n_blocks = -(-n // POOL_BLOCK)
    unif = np.empty((K, 3, n_blocks * POOL_BLOCK))
    normal = np.empty((K, 2, n_blocks * POOL_BLOCK))
    v = np.empty(K)
    for k in range(K):
        rng = np.random.default_rng(child_seed(ss, k))
        v[k] = rng.random()
        for b in range(n_blocks):
            sl = slice(b * POOL_BLOCK, (b + 1) * POOL_BLOCK)
            unif[k, :, sl] = rng.random((3, POOL_BLOCK))
            normal[k, :, sl] = rng.standard_normal((2, POOL_BLOCK))
    unif, normal = unif[:, :, :n], normal[:, :, :n]
    x = big * (2.0 * unif[:, 0] - 1.0)
    y = big * (2.0 * unif[:, 1] - 1.0)
    w = np.clip(unif[:, 2], _EPS, 1.0 - _EPS)
    inb = (np.abs(x) < half) & (np.abs(y) < half)
    n_w = inb.sum(axis=1)
    s = np.arange(K) // 2
    u = np.clip(edges[s] + v * (edges[s + 1] - edges[s]), _EPS, 1.0 - _EPS)
    # largest of n_w normals: Phi^-1(u^(1/n_w)), via the complement for accuracy near 1
    z_max = -ndtri(-np.expm1(np.log(u) / np.maximum(n_w, 1)))
    z = np.where(inb, ndtri(w * ndtr(z_max)[:, None]), ndtri(w))
    has = n_w > 0
    first = np.argmax(inb, axis=1)
    z[np.flatnonzero(has), first[has]] = z_max[has]
    radius = params.r0 * np.exp(params.rs * z) if params.rs > 0 else np.full((K, n), float(params.r0))
    step = displacement_std(radius, params.d2, params.displacement, params.r0)
    xa = x + params.gamma * y + normal[:, 0] * step
    ya = y + normal[:, 1] * step
    return x, y, radius, xa, ya, edges


@njit(parallel=True, cache=True)
def _pair_phase_power(q, cos_t, sin_t, dx, dy, w2, off):
    """|C(q, theta)|^2 per sample: C = sum_b w2[q, b] exp(i q (dx_b cos + dy_b sin)) over the
    particles ``off[k]:off[k+1]`` of sample k; ``w2`` (n_q, n_total) float32. Returns (K, n_q, n_theta)."""
    nq, nt, K = q.size, cos_t.size, off.size - 1
    out = np.empty((K, nq, nt))
    for k in prange(K):
        o0, o1 = off[k], off[k + 1]
        n = o1 - o0
        t = np.empty(n)
        buf = np.empty(n, dtype=np.float32)
        wk = np.empty((nq, n), dtype=np.float32)  # this sample's weights, contiguous per q (copied once, not per theta)
        for iq in range(nq):
            for i in range(n):
                wk[iq, i] = w2[iq, o0 + i]
        for j in range(nt):
            _project(dx[o0:o1], dy[o0:o1], cos_t[j], sin_t[j], t, n)
            for iq in range(nq):
                re, im = _amplitude_sums(t, wk[iq], q[iq], n, buf)
                out[k, iq, j] = np.float64(re) * re + np.float64(im) * im
    return out


class ConditionalMoments:
    """E[I I' | Z], E[I | Z], E[I' | Z] of K sampled configurations (module docstring).

    Attributes
    ----------
    a : ndarray (K, n_q, n_theta)
        E[I I' | Z_k].
    b, c : ndarray (K, n_q)
        E[I | Z_k] = P/S and E[I' | Z_k] = P'/S' (theta-independent).
    edges : ndarray (K/2 + 1,)
        Strata of the largest particle (:func:`strata_edges`); configurations 2s, 2s + 1 are in stratum s.
    """

    def __init__(self, a: np.ndarray, b: np.ndarray, c: np.ndarray, edges: np.ndarray):
        self.a, self.b, self.c, self.edges = a, b, c, edges

    @property
    def n_samples(self) -> int:
        return int(self.a.shape[0])

    def mean(self, phi: np.ndarray) -> np.ndarray:
        r"""Stratified mean :math:`\hat\mu = \sum_s \pi_s(\phi_{s1} + \phi_{s2})/2` of per-configuration
        values ``phi`` (K, ...): an unbiased estimate of E[phi]."""
        pi = np.diff(self.edges)
        phi = np.asarray(phi, dtype=np.float64)
        pair = phi.reshape(pi.size, 2, *phi.shape[1:]).mean(axis=1)
        return np.tensordot(pi, pair, axes=1)

    def covariance_factor(self, phi: np.ndarray) -> np.ndarray:
        r"""F (K, ...) with :math:`\sum_k F_k F_k^T` the unbiased stratified covariance of ``phi`` (K, ...)
        (module docstring): rows :math:`\sqrt{\pi_s}\,a_s/2` and :math:`\sqrt{\pi_s(1 + \pi_s)}\,d_s/2`."""
        pi = np.diff(self.edges)
        phi = np.asarray(phi, dtype=np.float64)
        pair = phi.reshape(pi.size, 2, *phi.shape[1:])
        mu = self.mean(phi)
        shape = (pi.size,) + (1,) * (phi.ndim - 1)
        out = np.empty_like(phi)
        out[0::2] = np.sqrt(pi).reshape(shape) * (pair[:, 0] + pair[:, 1] - 2.0 * mu) / 2.0
        out[1::2] = np.sqrt(pi * (1.0 + pi)).reshape(shape) * (pair[:, 0] - pair[:, 1]) / 2.0
        return out


def conditional_moments(params: SystemParams, grid: QGrid, n_samples: int = 64, seed=0) -> ConditionalMoments:
    r"""Configuration-conditional moments of ``n_samples`` sampled configurations (module docstring).

    Parameters
    ----------
    params : SystemParams
    grid : QGrid
        q (1/r0) and theta (rad from the flow axis).
    n_samples : int, default 64
        Configurations K (rounded up to even; the rank of the shared-noise factor built from them).
    seed : int, default 0
        Seed of the configurations (:func:`draw_configurations`).

    Returns
    -------
    ConditionalMoments
        Cost O(K x particles in the window x n_q x n_theta) fast float32 phases (~1 ms per sample on
        the paper's grid).
    """
    x, y, radius, xa, ya, edges = draw_configurations(params, n_samples, seed)
    K = x.shape[0]
    q = np.ascontiguousarray(grid.q, dtype=np.float64)
    half = 0.5 * params.beam_size
    inb = (np.abs(x) < half) & (np.abs(y) < half)
    ina = (np.abs(xa) < half) & (np.abs(ya) < half)
    both = inb & ina
    v2 = sphere_volume(radius) ** 2
    S = np.where(inb, v2, 0.0).sum(axis=1)
    Sa = np.where(ina, v2, 0.0).sum(axis=1)
    b = np.empty((K, q.size))
    c = np.empty((K, q.size))
    sw4 = np.empty((K, q.size))
    off = np.zeros(K + 1, dtype=np.int64)
    np.cumsum(both.sum(axis=1), out=off[1:])
    w2_all = np.empty((q.size, int(off[-1])), dtype=np.float32)
    norm = np.sqrt(np.maximum(S * Sa, 1e-300))
    for k in range(K):
        lit = inb[k] | ina[k]  # weights only of the particles in a window (a quarter of the box)
        w = np.empty((q.size, int(lit.sum())), dtype=np.float32)
        particle_weights(q, np.ascontiguousarray(radius[k][lit]), w)
        w2 = w.astype(np.float64) ** 2
        b[k] = (w2 * inb[k][lit]).sum(axis=1) / S[k] if S[k] > 0 else 0.0
        c[k] = (w2 * ina[k][lit]).sum(axis=1) / Sa[k] if Sa[k] > 0 else 0.0
        wb = w2[:, both[k][lit]] / norm[k]
        sw4[k] = (wb**2).sum(axis=1)
        w2_all[:, off[k]:off[k + 1]] = wb
    dx, dy = (xa - x)[both], (ya - y)[both]
    C2 = _pair_phase_power(q, np.cos(grid.theta), np.sin(grid.theta), np.ascontiguousarray(dx),
                           np.ascontiguousarray(dy), w2_all, off)
    a = b[:, :, None] * c[:, :, None] + C2 - sw4[:, :, None]
    return ConditionalMoments(a, b, c, edges)
