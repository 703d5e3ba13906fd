r"""Higher moments of the ensemble, for the statistics of a finite-N estimate of g.

The analytic engine (:mod:`.analytic`) gives the exact first moments E[I] and E[I I'] and hence the
N -> infinity limit of g. A g averaged over N configurations (Monte Carlo, or an experiment) is a
ratio of sample means whose bias and covariance need more (:mod:`shearcorr.inverse.noise`,
docs/theory.md §9). This module provides the ensemble quantities those need:

* :func:`correlation_limits`: :math:`A(q) = E[I^2]/E[I]^2` (g at gamma L = D2 = 0: the before and
  after patterns are identical) and :math:`B(q)` = g with the particles decorrelated (D2 = 25 R0, so
  :math:`c_i = 0`: the finite-N baseline). Both are theta-independent.
* :func:`static_moments`: :math:`E[U^k]`, k = 1..4, of the normalised incoherent intensity of one
  window, :math:`U = P/S = \sum_i m_i w_i^2 / \sum_i m_i V_i^2` (:math:`w = V F(qR)`), exactly, by
  the Laplace-functional method of the engine (docs/theory.md §3): with
  :math:`1/S^k = \int_0^\infty t^{k-1} e^{-tS}\,dt/(k-1)!` and N i.i.d. particles,

  .. math:: E[U^k] = \int_0^\infty \frac{\tau^{k-1}\,d\tau}{(k-1)!\,N^k}
            \sum_{\pi} N^{\underline{|\pi|}}\,\varphi(\tau)^{N-|\pi|}\prod_{B\in\pi}\hat a_{|B|}(\tau)

  over the set partitions :math:`\pi` of k indices (:math:`N^{\underline r}` the falling factorial),
  :math:`\varphi = \tfrac34 + \tfrac14 E_R[e^{-b\tau v}]`,
  :math:`\hat a_j = 4^{j-1} E_R[v^j F^{2j} e^{-b\tau v}]`, b = 4/N, :math:`v = V^2/E[V^2]`.

Units: q in 1/r0; every returned quantity is dimensionless.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..params import QGrid, SystemParams
from ..physics import form_factor
from .analytic import DEFAULT_LAPLACE_NODES, _tau_max, default_resolution, ensemble_arrays
from .quadrature import laplace_nodes, radius_nodes

__all__ = ["D_DECORRELATED", "correlation_limits", "static_moments"]

#: Non-affine displacement (R0) that decorrelates every particle (c_i = exp(-q^2 D2^2 / 2) < 1e-30 at
#: q R0 >= 0.5) while keeping the window edges irrelevant (25 << L / 2): the baseline B(q).
D_DECORRELATED = 25.0

#: Set partitions of k = 1..4 indices by block sizes, with their multiplicities.
_PARTITIONS = {
    1: (((1,), 1),),
    2: (((2,), 1), ((1, 1), 1)),
    3: (((3,), 1), ((2, 1), 3), ((1, 1, 1), 1)),
    4: (((4,), 1), ((3, 1), 4), ((2, 2), 3), ((2, 1, 1), 6), ((1, 1, 1, 1), 1)),
}


def correlation_limits(params: SystemParams, q) -> tuple[np.ndarray, np.ndarray]:
    """(A, B) of shape (n_q,): g at gamma L = D2 = 0 (= E[I^2]/E[I]^2) and g fully decorrelated.

    Parameters
    ----------
    params : SystemParams
        n_l2, rs, displacement convention and beam size are used; gamma_l and d2 are replaced.
    q : array-like (n_q,)
        Positive, increasing q (1/r0).
    """
    grid = QGrid(np.asarray(q, dtype=np.float64), np.zeros(1))
    a = ensemble_arrays(replace(params, gamma_l=0.0, d2=0.0), grid)[1][:, 0]
    b = ensemble_arrays(replace(params, gamma_l=0.0, d2=D_DECORRELATED), grid)[1][:, 0]
    return a, b


def static_moments(params: SystemParams, q, *, resolution: tuple[int, int] | None = None) -> np.ndarray:
    r"""E[U^k] for k = 1..4 of the normalised incoherent intensity U = P/S of one window (module doc).

    U depends on the radii and on which particles are in the window, not on their positions within
    it or on the rearrangement; E[U] = E[I]. Exact up to the quadrature (the engine's rules, with
    the Laplace range widened for the :math:`\tau^{3}` weight).

    Parameters
    ----------
    params : SystemParams
    q : array-like (n_q,)
        q in 1/r0.
    resolution : (n_radius, n_laplace), optional
        Default: the engine's (:func:`~shearcorr.forward.analytic.default_resolution`).

    Returns
    -------
    ndarray (4, n_q)
        Rows E[U], E[U^2], E[U^3], E[U^4].
    """
    q = np.asarray(q, dtype=np.float64)
    n_r, n_l = default_resolution(params, float(q.max())) if resolution is None else resolution
    N = params.n_particles
    z, lam = radius_nodes(params.rs, n_r)
    v6 = np.exp(6.0 * z)
    v = v6 / np.dot(lam, v6)
    F2 = form_factor(q[:, None] * params.r0 * np.exp(z)[None, :]) ** 2  # (nq, nz)
    b = 4.0 / N
    tau, om = laplace_nodes(max(int(n_l), DEFAULT_LAPLACE_NODES) + 12, _tau_max(N) + 30.0)
    E = np.exp(-b * v[:, None] * tau[None, :])  # (nz, nl)
    log_phi = np.log1p(-0.25 * (lam @ (-np.expm1(-b * v[:, None] * tau[None, :]))))  # (nl,)
    # a_hat[j-1] (nq, nl) = 4^(j-1) E_R[v^j F^2j e^{-b tau v}]
    a_hat = [4.0 ** (j - 1) * ((lam * v**j) * F2**j) @ E for j in range(1, 5)]
    out = np.empty((4, q.size))
    fact = 1.0
    for k in range(1, 5):
        fact *= max(k - 1, 1)
        total = np.zeros((q.size, tau.size))
        for sizes, mult in _PARTITIONS[k]:
            r = len(sizes)
            falling = float(np.prod(N - np.arange(r))) if N >= r else 0.0
            if falling == 0.0:
                continue
            term = mult * falling * np.exp((N - r) * log_phi)[None, :]
            for s in sizes:
                term = term * a_hat[s - 1]
            total += term
        out[k - 1] = (total * (om * tau ** (k - 1))[None, :]).sum(axis=1) / (fact * float(N) ** k)
    return out
