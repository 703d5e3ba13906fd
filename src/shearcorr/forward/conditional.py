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

Configurations are those of the Monte Carlo engine (:func:`shearcorr.forward.montecarlo._draw_chunk`),
so the same ``seed`` gives the same samples on any machine.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..params import QGrid, SystemParams
from ..physics import sphere_volume
from ..rng import seed_sequence
from .kernels import _amplitude_sums, _project, particle_weights
from .montecarlo import CHUNK, _draw_chunk, _in_window

__all__ = ["ConditionalMoments", "conditional_moments"]


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
        wk = np.empty(n, dtype=np.float32)
        for j in range(nt):
            _project(dx[o0:o1], dy[o0:o1], cos_t[j], sin_t[j], t, n)
            for iq in range(nq):
                for i in range(n):
                    wk[i] = w2[iq, o0 + i]
                re, im = _amplitude_sums(t, wk, q[iq], n, buf)
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
    """

    def __init__(self, a: np.ndarray, b: np.ndarray, c: np.ndarray):
        self.a, self.b, self.c = a, b, c

    @property
    def n_samples(self) -> int:
        return int(self.a.shape[0])


def conditional_moments(params: SystemParams, grid: QGrid, n_samples: int = 64, seed=0) -> ConditionalMoments:
    r"""Configuration-conditional moments of ``n_samples`` Monte Carlo configurations (module docstring).

    Parameters
    ----------
    params : SystemParams
    grid : QGrid
        q (1/r0) and theta (rad from the flow axis).
    n_samples : int, default 64
        Configurations K (the rank of the shared-noise factor built from them).
    seed : int, default 0
        Seed of the configurations (the Monte Carlo engine's streams).

    Returns
    -------
    ConditionalMoments
        Cost O(K x particles in the window x n_q x n_theta) fast float32 phases (~1 ms per sample on
        the paper's grid).
    """
    K = int(n_samples)
    ss = seed_sequence(seed)
    q = np.ascontiguousarray(grid.q, dtype=np.float64)
    n_chunks = -(-K // CHUNK)
    parts = [_draw_chunk(params, ss, j) for j in range(n_chunks)]
    x, y, radius, xa, ya = (np.concatenate([p[i] for p in parts])[:K] for i in range(5))
    inb, ina = _in_window(x, y, params.beam_size), _in_window(xa, ya, params.beam_size)
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
        w = np.empty((q.size, radius.shape[1]), dtype=np.float32)
        particle_weights(q, np.ascontiguousarray(radius[k]), w)
        w2 = w.astype(np.float64) ** 2
        b[k] = (w2 * inb[k]).sum(axis=1) / S[k] if S[k] > 0 else 0.0
        c[k] = (w2 * ina[k]).sum(axis=1) / Sa[k] if Sa[k] > 0 else 0.0
        wb = w2[:, both[k]] / norm[k]
        sw4[k] = (wb**2).sum(axis=1)
        w2_all[:, off[k]:off[k + 1]] = wb
    dx, dy = (xa - x)[both], (ya - y)[both]
    C2 = _pair_phase_power(q, np.cos(grid.theta), np.sin(grid.theta), np.ascontiguousarray(dx),
                           np.ascontiguousarray(dy), w2_all, off)
    a = b[:, :, None] * c[:, :, None] + C2 - sw4[:, :, None]
    return ConditionalMoments(a, b, c)
