r"""Beam-window geometry of one particle: membership probabilities and the pair phase, with edges.

A particle sits uniformly in the box :math:`[-L, L]^2`; it scatters before the move if
:math:`\mathbf r \in W = (-L/2, L/2)^2` (mark ``m``) and after it if
:math:`\mathbf r' = (x + \gamma y + \delta_x,\ y + \delta_y) \in W` (mark ``m'``),
:math:`\delta \sim \mathcal N(0, s^2)` per axis, :math:`\gamma = \gamma L / L`. This module gives,
in closed form (error functions, Dawson and Faddeeva functions, no sampling),

.. math::

    p_{11}(s) = P(m = m' = 1), \qquad
    K(\mathbf q; s) = E\!\left[m\, m'\, e^{i\mathbf q\cdot(\mathbf r' - \mathbf r)}\right],

the two single-particle quantities the semi-analytic engine needs (:mod:`shearcorr.forward.analytic`).
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

__all__ = ["pair_phase", "bulk_factor", "edge_correction", "both_probability", "S_MAX_FRACTION"]

_SQRT2 = np.sqrt(2.0)
_SQRT2PI = np.sqrt(2.0 * np.pi)
_SQRTPI = np.sqrt(np.pi)

#: Displacement stds are clipped at this fraction of L in the edge formulas (only particles with
#: V^2 ~ 1e-13 of the typical one reach it, for rs <= 1.5; see docs/theory.md).
S_MAX_FRACTION = 0.05


def _distinct(x: np.ndarray) -> np.ndarray:
    """The smallest view of ``x`` that broadcasts back to it: axes of stride 0 (from broadcasting) cut to length 1."""
    if x.ndim == 0 or all(st or n == 1 for st, n in zip(x.strides, x.shape)):
        return x
    return x[tuple(slice(0, 1) if (st == 0 and n > 1) else slice(None) for st, n in zip(x.strides, x.shape))]


def _on_distinct(f, x: np.ndarray) -> np.ndarray:
    """``f(x)`` for an element-wise ``f``, evaluated once per distinct element of a broadcast ``x`` (the same
    numbers: a factor of only s, or only q_x, is not recomputed for every (q, theta) or every s)."""
    d = _distinct(x)
    return f(x) if d is x else np.broadcast_to(f(d), x.shape)


def _gauss(x2):
    """exp(-x2) for x2 >= 0, flushed to exp(-600) below that (avoids numpy's slow underflow path)."""
    return np.exp(-np.minimum(x2, 600.0))


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
    Broadcasts over k (=q_x) and s; even in k.
    """
    k, s = _on_distinct(np.abs, np.asarray(k, dtype=np.float64)), np.asarray(s, dtype=np.float64)
    pos = s > 0
    full_pos = bool(pos.all())
    near = a / np.maximum(_distinct(s), 1e-100) < 10.0 if a > 0 else None  # a tail term at some s, not at all
    if not full_pos or (a > 0 and near.any() and not near.all()):
        k, s = np.broadcast_arrays(k, s)  # mixed branches: work element-wise on the broadcast arrays
        pos = s > 0
    shape = np.broadcast_shapes(k.shape, s.shape)
    out = np.zeros(shape)
    if not np.any(pos):
        return out
    kk, ss = (k, s) if full_pos else (k[pos], s[pos])

    def j0():  # gamma -> 0 branch: (2a/gamma) * (-J(0)), J(0) = E|delta| e^{ik delta} = s sqrt(2/pi) (1 - 2 u F(u))
        u = kk * ss / _SQRT2
        return ss * np.sqrt(2.0 / np.pi) * (1.0 - 2.0 * u * dawsn(u))

    if a <= 0.0:
        res = -L * j0()
    else:
        y = 0.5 * (kk * ss) ** 2
        # General branch: Q + 4 Re X, all over gamma
        s2 = _on_distinct(lambda t: t**2, ss)
        res = -2.0 * s2 * _on_distinct(lambda t: np.cos(t * a), kk) * _gauss(y) + s2 * _one_minus_exp_over(y)
        tail = a / ss < 10.0
        if np.any(tail):
            all_tail = bool(tail.all())
            kt, st = (kk, ss) if all_tail else (kk[tail], ss[tail])

            def s_only(t):  # e^{-a^2/2s^2}, P(v < 0) and E[v^2 1(v<0)] for v ~ N(a, s^2)
                g = np.exp(-0.5 * (a / t) ** 2)
                p = 0.5 * erfc(a / (t * _SQRT2))
                return np.stack([g, p, (a * a + t * t) * p - a * t * g / _SQRT2PI])

            s_terms = s_only(_distinct(st))
            g_a, p0, ev2 = (np.broadcast_to(v, st.shape) for v in s_terms)
            series = kt * st < 1e-4
            e0 = 0.5 * g_a * wofz((-kt * st * st + 1j * a) / (st * _SQRT2))
            e1_imag = a * e0.imag + kt * st * st * e0.real  # Im[(a + i k s^2) e0 - real]
            kts = np.where(series, 1.0, kt)
            re_x = np.where(series, 0.5 * ev2, e1_imag / kts + (e0.real - p0) / kts**2)
            if all_tail:
                res = res + 4.0 * re_x
            else:
                res = np.broadcast_to(res, np.broadcast_shapes(res.shape, tail.shape)).copy()
                res[tail] += 4.0 * re_x
        res = res / gamma
        tiny = a / ss < 1e-3
        if np.any(tiny):
            res = np.where(tiny, -L * j0(), res)
    if full_pos:
        return np.broadcast_to(res, shape)
    out[pos] = res
    return out


def _mirrored(f, axis, *arrays):
    """``f(*arrays)`` (a tuple of arrays) for arguments whose values are even under reversal of ``axis`` (the caller
    promises it): evaluated on the first half along ``axis``, the rest mirrored (the same numbers up to the last
    bit of the mirrored arguments)."""
    n = arrays[0].shape[axis]
    first = (slice(None),) * (axis % arrays[0].ndim) + (slice(0, (n + 1) // 2),)
    out = []
    for h in f(*(x[first] for x in arrays)):
        out.append(np.concatenate([h, np.flip(np.take(h, np.arange(n // 2), axis=axis), axis=axis)], axis=axis))
    return out


def _edge_term(kx, ky, s, a, gamma, L, mirror_axis=None):
    r"""T_2 = 2 X(k_x) Re(e^{i k_x a} T): loss across the y edges (see module docs), in real arithmetic.

    :math:`T = (E_+(k_y) - E_+(k_y - \epsilon))/(i\epsilon)`, :math:`\epsilon = k_x\gamma`,
    :math:`E_+(\kappa) = E[e^{i\kappa\delta}1(\delta > 0)] = \tfrac12 e^{-\kappa^2s^2/2} + iF(\kappa s/\sqrt2)/\sqrt\pi`
    (F: Dawson), so Re T = Delta Im E_+ / eps, Im T = -Delta Re E_+ / eps (derivative for small eps).
    ``mirror_axis``: k_x is odd and k_y even under reversal of this axis (a theta grid symmetric about pi/2; the
    arrays broadcast to one shape); the factors of k_y alone and the even ones of k_x are then computed on half of it.
    """
    kx, ky, s = (np.asarray(v, dtype=np.float64) for v in (kx, ky, s))
    per_q = _distinct(kx).shape == _distinct(ky).shape  # (q_x, q_y) broadcast over s alike: one pass per q
    eps = _on_distinct(lambda t: t * gamma, kx)
    small = np.abs(eps) * s < 1e-5
    epss = _on_distinct(lambda t: np.where(np.abs(t) < 1e-300, 1.0, t), eps)
    k2 = np.broadcast_to(_distinct(ky) - _distinct(epss), kx.shape) if per_q else ky - epss
    u, u2 = ky * s / _SQRT2, k2 * s / _SQRT2
    if mirror_axis is None:
        gy, fu = _gauss(u * u), dawsn(u)
    else:
        gy, fu = _mirrored(lambda v: (_gauss(v * v), dawsn(v)), mirror_axis, np.broadcast_to(u, kx.shape))
    re_t = (fu - dawsn(u2)) / (_SQRTPI * epss)
    im_t = -0.5 * (gy - _gauss(u2 * u2)) / epss
    if np.any(small) and np.ndim(small) == 0:
        re_t = np.where(small, s / _SQRT2PI * (1.0 - 2.0 * u * fu), re_t)
        im_t = np.where(small, 0.5 * ky * s * s * gy, im_t)
    elif np.any(small):  # a few points (q_x ~ 0): their limits set in place
        at = np.nonzero(small)
        re_t, im_t = np.array(np.broadcast_to(re_t, small.shape)), np.array(np.broadcast_to(im_t, small.shape))
        s_at = np.broadcast_to(s, small.shape)[at]
        re_t[at] = s_at / _SQRT2PI * (1.0 - 2.0 * u[at] * np.broadcast_to(fu, small.shape)[at])
        im_t[at] = 0.5 * np.broadcast_to(ky, small.shape)[at] * s_at * s_at * np.broadcast_to(gy, small.shape)[at]
    # x factor at the y edges (|gamma y| = a): L e^{-k^2 s^2/2} - Re E[|a + delta| e^{i k delta}], the last
    # bridged between its exact a = 0 and a >> s forms (exact at gamma = 0)
    ss = _on_distinct(lambda t: np.maximum(t, 1e-100), s)
    u0 = kx * s / _SQRT2
    if mirror_axis is None:
        gx, dx = _gauss(u0 * u0), 1.0 - 2.0 * u0 * dawsn(u0)
    else:  # both even in k_x
        gx, dx = _mirrored(lambda v: (_gauss(v * v), 1.0 - 2.0 * v * dawsn(v)), mirror_axis,
                           np.broadcast_to(u0, kx.shape))
    j_a = (a * _on_distinct(lambda t: erf(a / (t * _SQRT2)), ss) * gx
           + s * np.sqrt(2.0 / np.pi) * dx * _on_distinct(lambda t: _gauss(0.5 * (a / t) ** 2), ss))
    ka = _distinct(kx) * a  # q_x-only factors, once per q
    return 2.0 * (L * gx - j_a) * (np.broadcast_to(np.cos(ka), kx.shape) * re_t - np.broadcast_to(np.sin(ka), kx.shape) * im_t)


def bulk_factor(qx, gamma_l: float, beam_size: float, *, mirror_axis: int | None = None) -> np.ndarray:
    r"""The s-independent factor :math:`B(q_x) = \tfrac14[\mathrm{sinc}\,x - \tfrac{\gamma}{2}(\mathrm{sinc}\,x
    - \tfrac12\mathrm{sinc}^2(x/2))]`, :math:`x = q_x \gamma L/2`, the factor of :math:`T_0/(4L^2) = B\,e^{-q^2 s^2/2}`.
    ``mirror_axis``: ``qx`` is odd under reversal of this axis; B, even in q_x, is computed on half of it."""
    gamma = float(gamma_l) / float(beam_size)

    def of(v):
        x = v * 0.5 * float(gamma_l)
        return (0.25 * (_sinc(x) - 0.5 * gamma * (_sinc(x) - 0.5 * _sinc(0.5 * x) ** 2)),)

    qx = np.asarray(qx, dtype=np.float64)
    return of(qx)[0] if mirror_axis is None else _mirrored(of, mirror_axis, qx)[0]


def edge_correction(qx, qy, s, gamma_l: float, beam_size: float, *, mirror_axis: int | None = None) -> np.ndarray:
    r""":math:`(T_1 - T_2)/(4L^2) = K - B\,e^{-q^2 s^2/2}`: smoothed shear kink and y-edge loss (small, smooth in ln s).

    ``mirror_axis``: the caller promises that ``qx`` (broadcast) is odd and ``qy`` even under reversal of this axis
    (a theta grid symmetric about pi/2); the kink factor, even in q_x, and the even factors of the y-edge term
    (of q_y alone, and of q_x) are then computed on half of it.
    """
    L = float(beam_size)
    gamma = float(gamma_l) / L
    a = 0.5 * float(gamma_l)
    s = np.minimum(np.asarray(s, dtype=np.float64), S_MAX_FRACTION * L)
    qx, qy, s = np.broadcast_arrays(np.asarray(qx, dtype=np.float64), np.asarray(qy, dtype=np.float64), s)  # views
    if mirror_axis is None:
        kink = _kink_term(qx, s, a, gamma, L)
    else:
        kink = _mirrored(lambda x, t: (_kink_term(x, t, a, gamma, L),), mirror_axis, qx, s)[0]
    t1 = np.exp(-0.5 * (qy * s) ** 2) * kink
    t2 = _edge_term(qx, qy, s, a, gamma, L, mirror_axis)
    return (t1 - t2) / (4.0 * L * L)


def pair_phase(qx, qy, s, gamma_l: float, beam_size: float, *, edges: bool = True,
               mirror_axis: int | None = None) -> np.ndarray:
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
    mirror_axis : int, optional
        The caller promises that ``qx`` is odd and ``qy`` even under reversal of this axis (a theta grid
        symmetric about pi/2): the factors even in q_x are computed on half of it (:func:`edge_correction`).

    Returns
    -------
    ndarray
        Real, broadcast shape. :math:`K/p_{11}` is the conditional mean phase :math:`c` of the
        paper-style formula; :math:`K(0; s) = p_{11}(s)`. With edges,
        :math:`K = B(q_x)\,e^{-q^2 s^2/2}` (:func:`bulk_factor`) + :func:`edge_correction`.
    """
    L = float(beam_size)
    qx = np.asarray(qx, dtype=np.float64)
    qy = np.asarray(qy, dtype=np.float64)
    s = np.minimum(np.asarray(s, dtype=np.float64), S_MAX_FRACTION * L)
    gauss = np.exp(-0.5 * (qx * qx + qy * qy) * s * s)
    if not edges:
        return 0.25 * _sinc(qx * 0.5 * float(gamma_l)) * gauss
    if mirror_axis is not None:  # the mirrored axis must exist in q_x
        qx = np.broadcast_to(qx, np.broadcast_shapes(qx.shape, qy.shape))
    bulk = bulk_factor(qx, gamma_l, L, mirror_axis=mirror_axis)
    return bulk * gauss + edge_correction(qx, qy, s, gamma_l, L, mirror_axis=mirror_axis)


def both_probability(s, gamma_l: float, beam_size: float, *, edges: bool = True) -> np.ndarray:
    r""":math:`p_{11}(s) = P(m = m' = 1)`, the probability to be in the window before and after (= K(0; s)).

    For s = 0: :math:`(1 - \gamma/4)/4`. Each particle of the box is in the window before with
    probability 1/4 and after with probability 1/4, so :math:`p_{10} = p_{01} = 1/4 - p_{11}` and
    :math:`p_{00} = 1/2 + p_{11}`.
    """
    s = np.asarray(s, dtype=np.float64)
    zero = np.zeros_like(s)
    return pair_phase(zero, zero, s, gamma_l, beam_size, edges=edges)
