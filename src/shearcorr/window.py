r"""Beam-window geometry of one particle: membership probabilities and the pair phase, with edges.

A particle sits uniformly in the box :math:`[-L, L]^2`; it scatters before the move if
:math:`\mathbf r \in W = (-L/2, L/2)^2` (mark ``m``) and after it if
:math:`\mathbf r' = (x + \gamma y + \delta_x,\ y + \delta_y) \in W` (mark ``m'``),
:math:`\delta \sim \mathcal N(0, s^2)` per axis, :math:`\gamma = \gamma L / L`. This module gives,
in closed form (error functions, Dawson and Faddeeva functions, no sampling),

.. math::

    p_{11}(s) = P(m = m' = 1), \qquad
    K(\mathbf q; s) = E\!\left[m\, m'\, e^{i\mathbf q\cdot(\mathbf r' - \mathbf r)}\right],

the two single-particle quantities the semi-analytic engine needs (:mod:`shearcorr.analytic`).
``P(m = 1) = 1/4`` exactly and ``P(m' = 1) = 1/4`` up to terms below :math:`e^{-(L/2)^2/(2s^2)}`.

Derivation (``docs/theory.md`` has the long form). Integrating x over the window exactly,

.. math::

    4L^2 K = \int_{-L/2}^{L/2}\! dy\; A_x(y)\, A_y(y),\quad
    A_x = E_{\delta_x}\!\big[(L - |\gamma y + \delta_x|)\, e^{i q_x(\gamma y + \delta_x)}\big],\quad
    A_y = E_{\delta_y}\!\big[\mathbf 1(|y + \delta_y| < L/2)\, e^{i q_y \delta_y}\big].

With :math:`a = \gamma L/2`, :math:`x = q_x a`, :math:`K = (T_0 + T_1 - T_2)/(4L^2)`:

* :math:`T_0 = e^{-q^2 s^2/2} L^2 [\mathrm{sinc}\,x - \tfrac{\gamma}{2}(\mathrm{sinc}\,x - \tfrac12
  \mathrm{sinc}^2(x/2))]` -- bulk phase plus the shear edge (particles sheared out of the window;
  the weight :math:`L - \gamma|y|`), exact when :math:`s = 0`;
* :math:`T_1` -- the random x-step smooths the kink of :math:`L - |\gamma y + \delta_x|` at y = 0
  (closed form with a Faddeeva tail term when :math:`a \lesssim 10 s`), relative size
  :math:`\le s^2/(\gamma L\, L)`;
* :math:`T_2` -- particles stepping out across the y edges, relative size :math:`\approx 2 s/(\sqrt{2\pi} L)`.

In :math:`T_2` the x factor at the y edges is :math:`L - E|a + \delta_x|` (its q = 0 value), which
makes :math:`p_{11}` exact at :math:`\gamma = 0`. Neglected: the q dependence of that factor and its
:math:`O(\gamma t)` variation across the y-edge layer, relative :math:`\lesssim s^2 q s/L^2`,
and the kink/y-edge overlap, relative :math:`\lesssim 2 s^2/L^2` (checked against brute-force
quadrature of the defining integral to 2e-5 relative for s <= 5 in tests/test_analytic.py).
:math:`K` is real (the geometry is symmetric under :math:`\mathbf r \to -\mathbf r`).

Units: lengths in r0, q in 1/r0.
"""

from __future__ import annotations

import numpy as np
from scipy.special import dawsn, erf, erfc, wofz

__all__ = ["pair_phase", "both_probability", "S_MAX_FRACTION"]

_SQRT2 = np.sqrt(2.0)
_SQRT2PI = np.sqrt(2.0 * np.pi)
_SQRTPI = np.sqrt(np.pi)

#: Displacement stds are clipped at this fraction of L in the edge formulas (only particles with
#: V^2 ~ 1e-13 of the typical one reach it, for rs <= 1.5; see docs/theory.md).
S_MAX_FRACTION = 0.05


def _sinc(x):
    return np.sinc(np.asarray(x) / np.pi)


def _one_minus_exp_over(y):
    """(1 - exp(-y)) / y, = 1 at y = 0, stable for small y >= 0."""
    y = np.asarray(y, dtype=np.float64)
    small = y < 1e-8
    ys = np.where(small, 1.0, y)
    return np.where(small, 1.0 - 0.5 * y, -np.expm1(-ys) / ys)


def _kink_term(k, s, a, gamma, L):
    r"""(1/gamma) * int_{-a}^{a} e^{ik mu - k^2 s^2/2} (|mu| - M(mu + i k s^2)) dmu, real part used.

    Equals L * E_{y,delta}[ ... ] correction of the x factor from the smoothed kink; see module docs.
    Broadcasts over k (=q_x) and s.
    """
    k = np.asarray(k, dtype=np.float64)
    s = np.asarray(s, dtype=np.float64)
    k, s = np.broadcast_arrays(k, s)
    out = np.zeros(k.shape)
    pos = s > 0
    if not np.any(pos):
        return out
    kk = np.abs(k[pos])  # the term is even in k
    ss = s[pos]
    y = 0.5 * (kk * ss) ** 2
    ey = np.exp(-y)
    # Gamma -> 0 branch: (2a/gamma) * (-J(0)), J(0) = E|delta| e^{ik delta} = s sqrt(2/pi) (1 - 2 u F(u))
    u = kk * ss / _SQRT2
    j0 = ss * np.sqrt(2.0 / np.pi) * (1.0 - 2.0 * u * dawsn(u))
    if a <= 0.0:
        out[pos] = -L * j0
        return out
    tiny = a / ss < 1e-3
    # General branch: Q + 4 Re X, all over gamma
    q_main = -2.0 * ss**2 * np.cos(kk * a) * ey + ss**2 * _one_minus_exp_over(y)
    re_x = np.zeros_like(kk)
    tail = a / ss < 10.0
    if np.any(tail):
        kt, st = kk[tail], ss[tail]
        g_a = np.exp(-0.5 * (a / st) ** 2)
        p0 = 0.5 * erfc(a / (st * _SQRT2))
        ks = kt * st
        series = ks < 1e-4
        # E[v^2 1(v<0)] for v ~ N(a, s^2)
        ev2 = (a * a + st * st) * p0 - a * st * g_a / _SQRT2PI
        e0 = 0.5 * g_a * wofz((-kt * st * st + 1j * a) / (st * _SQRT2))
        e1 = (a + 1j * kt * st * st) * e0 - st * g_a / _SQRT2PI
        kts = np.where(series, 1.0, kt)
        full = e1.imag / kts + (e0.real - p0) / kts**2
        re_x[tail] = np.where(series, 0.5 * ev2, full)
    general = (q_main + 4.0 * re_x) / gamma
    out[pos] = np.where(tiny, -L * j0, general)
    return out


def _e_plus(kappa, s):
    """E[e^{i kappa delta} 1(delta > 0)], delta ~ N(0, s^2) = exp(-kappa^2 s^2/2)/2 + i F(kappa s/sqrt2)/sqrt(pi)."""
    return 0.5 * np.exp(-0.5 * (kappa * s) ** 2) + 1j * dawsn(kappa * s / _SQRT2) / _SQRTPI


def _edge_term(kx, ky, s, a, gamma, L):
    r"""T_2 = 2 (L - a) e^{-k_x^2 s^2/2} Re(e^{i k_x a} T): loss across the y edges (see module docs)."""
    kx, ky, s = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (kx, ky, s)))
    eps = kx * gamma
    small = np.abs(eps) * s < 1e-5
    epss = np.where(small, 1.0, eps)
    t_fd = (_e_plus(ky, s) - _e_plus(ky - epss, s)) / (1j * epss)
    u = ky * s / _SQRT2
    t_d = 0.5j * ky * s * s * np.exp(-0.5 * (ky * s) ** 2) + s / _SQRT2PI * (1.0 - 2.0 * u * dawsn(u))
    t = np.where(small, t_d, t_fd)
    # x factor at the y edges (|gamma y| = a): L e^{-k^2 s^2/2} - Re E[|a + delta| e^{i k delta}], the last
    # bridged between its exact a = 0 and a >> s forms (exact at gamma = 0)
    ss = np.maximum(s, 1e-300)
    u0 = kx * s / _SQRT2
    j_a = (a * erf(a / (ss * _SQRT2)) * np.exp(-0.5 * (kx * s) ** 2)
           + s * np.sqrt(2.0 / np.pi) * (1.0 - 2.0 * u0 * dawsn(u0)) * np.exp(-0.5 * (a / ss) ** 2))
    return 2.0 * (L * np.exp(-0.5 * (kx * s) ** 2) - j_a) * np.real(np.exp(1j * kx * a) * t)


def pair_phase(qx, qy, s, gamma_l: float, beam_size: float, *, edges: bool = True) -> np.ndarray:
    r"""Unnormalised pair phase :math:`K(\mathbf q; s) = E[m m' e^{i\mathbf q\cdot(\mathbf r'-\mathbf r)}]`.

    Parameters
    ----------
    qx, qy : array-like
        Components of q along the flow (x) and gradient (y) axes, 1/r0. Broadcast together with ``s``.
    s : array-like
        Per-axis displacement std (r0), >= 0. Clipped at ``S_MAX_FRACTION * beam_size``.
    gamma_l : float
        Shear strain times beam size, r0.
    beam_size : float
        L, r0.
    edges : bool
        ``False`` gives the bulk (no-edge) limit :math:`\tfrac14\,\mathrm{sinc}(q_x\gamma L/2)\,
        e^{-q^2 s^2/2}` (for tests of eq. 5).

    Returns
    -------
    ndarray
        Real, broadcast shape. :math:`K/p_{11}` is the conditional mean phase :math:`c` of the
        paper-style formula; :math:`K(0; s) = p_{11}(s)`.
    """
    L = float(beam_size)
    gamma = float(gamma_l) / L
    a = 0.5 * float(gamma_l)
    qx = np.asarray(qx, dtype=np.float64)
    qy = np.asarray(qy, dtype=np.float64)
    s = np.minimum(np.asarray(s, dtype=np.float64), S_MAX_FRACTION * L)
    x = qx * a
    gauss = np.exp(-0.5 * (qx * qx + qy * qy) * s * s)
    if not edges:
        return 0.25 * _sinc(x) * gauss
    t0 = gauss * L * L * (_sinc(x) - 0.5 * gamma * (_sinc(x) - 0.5 * _sinc(0.5 * x) ** 2))
    t1 = np.exp(-0.5 * (qy * s) ** 2) * _kink_term(qx, s, a, gamma, L)
    t2 = _edge_term(qx, qy, s, a, gamma, L)
    return (t0 + t1 - t2) / (4.0 * L * L)


def both_probability(s, gamma_l: float, beam_size: float, *, edges: bool = True) -> np.ndarray:
    r""":math:`p_{11}(s) = P(m = m' = 1)`, the probability to be in the window before and after (= K(0; s)).

    For s = 0: :math:`(1 - \gamma/4)/4`. Each particle of the box is in the window before with
    probability 1/4 and after with probability 1/4, so :math:`p_{10} = p_{01} = 1/4 - p_{11}` and
    :math:`p_{00} = 1/2 + p_{11}`.
    """
    s = np.asarray(s, dtype=np.float64)
    zero = np.zeros_like(s)
    return pair_phase(zero, zero, s, gamma_l, beam_size, edges=edges)
