r"""The pair table's compiled kernels (numba): the control variate averaged over azimuth cells and
bins (:func:`bin_bulk`), and the 4 x 4 interpolation stencil sums of the residual (:func:`stencil_sum`).

:class:`.templates.PairTable` adds to its interpolated residual the bulk term
:math:`y_5 = \mathrm{sinc}^2(q\gamma L\cos\theta/2)\,e^{-q^2D_2^2}` averaged *exactly* over the
azimuth cells of the model's sub-grid (:func:`.templates.bulk_cells`, the NumPy reference): with
:math:`a = q\gamma L/2` and :math:`t = \cos\theta`, the cell average of :math:`\mathrm{sinc}^2(a t)`
between :math:`t_2 < t_1` is the divided difference

.. math:: \overline{\mathrm{sinc}^2} = \frac{F(a t_1) - F(a t_2)}{a (t_1 - t_2)},\qquad
          F(x) = \mathrm{Si}(2x) - \frac{\sin^2 x}{x},\quad F'(x) = \mathrm{sinc}^2 x

(the midpoint value when :math:`|a(t_1 - t_2)| < 10^{-3}`). Fitting 20 000 maps evaluates this at
~10⁵ points (γL, D₂) × 32 q sub-points × 144 cells; NumPy spent ~3 ms per point on temporaries and
on evaluating every cell edge twice (plus an empty second piece per cell). Here one compiled loop per
point: F at every *distinct* cell edge once, the cells from neighbouring edges, the pixel-weighted
bin sums accumulated in place, points in parallel (independent: the numbers do not depend on the
thread count).

F itself: :math:`\mathrm{Si}` has no compiled form in numba, so F is a quintic Hermite interpolant on
nodes :math:`x_k = k/64` for :math:`0 \le x < 200` (F, F', F'' exact at the nodes, from
``scipy.special.sici``; error :math:`\le \max|F^{(6)}|\,h^6/(6!\,64) \approx 10^{-14}` with
:math:`|F^{(6)}| = |(\mathrm{sinc}^2)^{(5)}| \le 2^5`), and beyond by the asymptotic series
(Abramowitz & Stegun 5.2.8, 5.2.34–35) :math:`\mathrm{Si}(z) = \pi/2 - f(z)\cos z - g(z)\sin z`,
:math:`f \sim z^{-1}\sum_k (-1)^k (2k)!/z^{2k}`, :math:`g \sim z^{-2}\sum_k (-1)^k (2k+1)!/z^{2k}`
(z = 2x ≥ 400: terms fall below 1e-17 after a few). F' = sinc² in the Jacobian is the interpolant's
slope (no sine per edge). Measured: F within 2e-15 of scipy, F' within 2e-13
(tests/test_stack_fit.py).
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["sinc2_antiderivative", "f_table", "f_compiled", "bin_bulk", "cell_edges", "stencil_sum"]

#: Fewer points than this run in the calling thread (a parallel launch costs ~10 ms on a loaded machine).
MIN_PARALLEL = 64

#: Node spacing and upper end of the Hermite table of F; the asymptotic series beyond.
F_STEP, F_TABLE_END = 1.0 / 64.0, 200.0

_TABLE: dict = {}


def sinc2_antiderivative(x):
    r""":math:`F(x) = \mathrm{Si}(2x) - \sin^2(x)/x` (odd, F(0) = 0) and its derivatives
    :math:`F' = \mathrm{sinc}^2 x`, :math:`F'' = 2\,\mathrm{sinc}\,x\,\mathrm{sinc}'x` (reference, scipy)."""
    from scipy.special import sici

    x = np.asarray(x, dtype=np.float64)
    tiny = np.abs(x) < 1e-8
    xs = np.where(tiny, 1.0, x)
    s = np.sin(xs)
    sinc = np.where(tiny, 1.0, s / xs)
    dsinc = np.where(tiny, -x / 3.0, (np.cos(xs) - sinc) / xs)
    F = np.where(tiny, x, sici(2 * xs)[0] - s * s / xs)  # F(x) = x + O(x^3)
    return F, sinc * sinc, 2.0 * sinc * dsinc


def f_table() -> np.ndarray:
    """(n, 3) values F, F', F'' at the nodes k * F_STEP, k = 0..F_TABLE_END / F_STEP + 1 (built once)."""
    if "F" not in _TABLE:
        x = np.arange(int(round(F_TABLE_END / F_STEP)) + 2) * F_STEP
        _TABLE["F"] = np.ascontiguousarray(np.stack(sinc2_antiderivative(x), axis=1))
    return _TABLE["F"]


def cell_edges(phi_edges, n_sub: int, phi0: float):
    r"""Azimuth cells of the model's sub-grid relative to the flow, as pieces in t = cos(theta).

    Each bin of ``phi_edges`` is split into ``n_sub`` equal cells (the cells of
    :class:`~shearcorr.experiment.model.BinnedPairModel`'s ``phi_sub``); cell c, shifted into
    [0, pi) by its lower edge, is [lo, min(hi, pi)] and, if it crosses pi, [pi, hi] (equivalent to
    [0, hi - pi]: sinc^2(a cos theta) has period pi). Neighbouring cells share their edge exactly, so
    F is evaluated once per distinct t.

    Returns ``t`` (U,) the distinct t values and per cell (C,): ``i1``, ``i2`` (indices of t1 > t2
    of piece 1), ``w1`` (its share of the cell), ``j1``, ``j2`` (piece 2; -1 when absent).
    """
    pe = np.asarray(phi_edges, dtype=np.float64)
    frac = np.arange(n_sub) / n_sub
    e = np.append((pe[:-1, None] + np.diff(pe)[:, None] * frac[None, :]).ravel(), pe[-1]) - phi0
    lo, hi = e[:-1], e[1:]
    shift = np.floor(lo / np.pi) * np.pi
    lo, hi = lo - shift, hi - shift
    h1 = np.minimum(hi, np.pi)
    w1 = (h1 - lo) / (hi - lo)
    h2 = np.maximum(hi - np.pi, 0.0)
    has2 = h2 > 0
    t_all = np.concatenate([np.cos(lo), np.cos(h1), np.ones(int(has2.sum())), np.cos(h2[has2])])
    t, inv = np.unique(t_all, return_inverse=True)
    C = lo.size
    i1, i2 = inv[:C], inv[C:2 * C]
    j1 = np.full(C, -1, dtype=np.int64)
    j2 = np.full(C, -1, dtype=np.int64)
    n2 = int(has2.sum())
    j1[has2], j2[has2] = inv[2 * C:2 * C + n2], inv[2 * C + n2:]
    return t, i1.astype(np.int64), i2.astype(np.int64), w1, j1, j2


@numba.njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _edge(x, tab, deriv):
    """F(x) and (with ``deriv``) F'(x) = sinc^2(x)."""
    ax = abs(x)
    if ax >= F_TABLE_END:  # asymptotic series of Si(2x) (one sin and one cos for everything)
        s, c = np.sin(ax), np.cos(ax)
        iz = 0.5 / ax
        iz2 = iz * iz
        f, g, tf, tg = 1.0, 1.0, 1.0, 1.0
        for k in range(30):
            tf *= -(2 * k + 1) * (2 * k + 2) * iz2
            tg *= -(2 * k + 2) * (2 * k + 3) * iz2
            f += tf
            g += tg
            if abs(tf) < 1e-18 and abs(tg) < 1e-18:
                break
        v = 0.5 * np.pi - f * iz * (c - s) * (c + s) - g * iz2 * 2.0 * s * c - s * s / ax
        sq = (s / ax) ** 2 if deriv else 0.0
        return (v if x >= 0 else -v), sq
    u = ax * (1.0 / F_STEP)
    k = int(u)
    s = u - k
    s2 = s * s
    s3 = s2 * s
    s4, s5 = s3 * s, s3 * s2
    f0, f1, d0, d1, e0, e1 = tab[k, 0], tab[k + 1, 0], tab[k, 1], tab[k + 1, 1], tab[k, 2], tab[k + 1, 2]
    # quintic Hermite basis (value, slope, curvature at both ends)
    v = ((1.0 - 10.0 * s3 + 15.0 * s4 - 6.0 * s5) * f0 + (10.0 * s3 - 15.0 * s4 + 6.0 * s5) * f1
         + F_STEP * ((s - 6.0 * s3 + 8.0 * s4 - 3.0 * s5) * d0 + (-4.0 * s3 + 7.0 * s4 - 3.0 * s5) * d1)
         + F_STEP * F_STEP * (0.5 * (s2 - 3.0 * s3 + 3.0 * s4 - s5) * e0 + 0.5 * (s3 - 2.0 * s4 + s5) * e1))
    sq = 0.0
    if deriv:  # the interpolant's slope: sinc^2 within ~1e-11
        s1 = 30.0 * (s2 - 2.0 * s3 + s4)
        sq = ((f1 - f0) * s1 * (1.0 / F_STEP) + (1.0 - 18.0 * s2 + 32.0 * s3 - 15.0 * s4) * d0
              + (-12.0 * s2 + 28.0 * s3 - 15.0 * s4) * d1
              + F_STEP * (0.5 * (2.0 * s - 9.0 * s2 + 12.0 * s3 - 5.0 * s4) * e0 + 0.5 * (3.0 * s2 - 8.0 * s3 + 5.0 * s4) * e1))
    return (v if x >= 0 else -v), sq


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _bulk(gam, dd, q, W, n_sub_q, t, i1, i2, w1, j1, j2, itd1, itd2, tab, deriv, y, yg, yd):
    """Bin sums y (and yg, yd) += W * cell average * exp(-q^2 D2^2) for every point.

    Cell average of sinc^2(a t) over a piece [t2, t1]: (F(a t1) - F(a t2)) / (a (t1 - t2)) and its
    a-derivative (t1 F'(a t1) - t2 F'(a t2)) / (a (t1 - t2)) - avg / a; the midpoint value (and its
    derivative) when |a (t1 - t2)| < 1e-3 (as templates._sinc2_t_average). ``itd1``, ``itd2``:
    1 / (t1 - t2) of the pieces."""
    P = gam.size
    nQ, C = W.shape
    n_phi = y.shape[2]
    sp = C // n_phi
    U = t.size
    Fu = np.empty(U)
    Su = np.empty(U)
    for p in range(P):
        for qi in range(nQ):
            iq = qi // n_sub_q
            qq = q[qi]
            a = 0.5 * qq * gam[p]
            aa = a if abs(a) >= 1e-12 else 1e-12
            ia = 1.0 / a if a != 0.0 else 0.0
            iaa = 1.0 / aa
            e = np.exp(-(qq * qq) * dd[p] * dd[p])
            for u in range(U):
                Fu[u], Su[u] = _edge(a * t[u], tab, deriv)
            for pb in range(n_phi):
                acc, accd = 0.0, 0.0
                for c in range(pb * sp, pb * sp + sp):
                    w = W[qi, c]
                    if w == 0.0:
                        continue
                    for piece in range(2):
                        if piece == 0:
                            k1, k2, share, itd = i1[c], i2[c], w1[c], itd1[c]
                        else:
                            if j1[c] < 0:
                                break
                            k1, k2, share, itd = j1[c], j2[c], 1.0 - w1[c], itd2[c]
                        t1, t2 = t[k1], t[k2]
                        if abs(a * (t1 - t2)) < 1e-3:  # too short for the divided difference: the midpoint
                            xm = 0.5 * (a * t1 + a * t2)
                            if abs(xm) < 1e-8:
                                sc, ds = np.sin(1e-8) / 1e-8, -xm / 3.0
                                av = 1.0
                            else:
                                sc = np.sin(xm) / xm
                                ds = (np.cos(xm) - sc) / xm if deriv else 0.0
                                av = sc * sc
                            dv = 2.0 * sc * ds * 0.5 * (t1 + t2)
                        else:
                            av = (Fu[k1] - Fu[k2]) * itd * ia
                            dv = (t1 * Su[k1] - t2 * Su[k2]) * itd * ia - av * iaa
                        acc += w * share * av
                        accd += w * share * dv
                y[p, iq, pb] += acc * e
                if deriv:
                    yg[p, iq, pb] += accd * 0.5 * qq * e
                    yd[p, iq, pb] += (-2.0 * qq * qq * dd[p]) * acc * e


@numba.njit(cache=True, nogil=True, parallel=True, error_model="numpy")
def _bulk_parallel(gam, dd, q, W, n_sub_q, t, i1, i2, w1, j1, j2, itd1, itd2, tab, deriv, y, yg, yd):
    """:func:`_bulk` over blocks of points in parallel (each point's sums in one thread: the numbers
    do not depend on the thread count)."""
    P = gam.size
    block = 16
    nb = (P + block - 1) // block
    for b in numba.prange(nb):
        lo, hi = b * block, min(P, b * block + block)
        _bulk(gam[lo:hi], dd[lo:hi], q, W, n_sub_q, t, i1, i2, w1, j1, j2, itd1, itd2, tab, deriv, y[lo:hi],
              yg[lo:hi] if deriv else yg, yd[lo:hi] if deriv else yd)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _many(x, tab, out):
    for i in range(x.size):
        out[0, i], out[1, i] = _edge(x[i], tab, True)


def f_compiled(x) -> np.ndarray:
    """F(x) and sinc^2(x) as the compiled kernel evaluates them (Hermite table / asymptotic series), (2, n)."""
    x = np.ascontiguousarray(np.asarray(x, dtype=np.float64).ravel())
    out = np.empty((2, x.size))
    _many(x, f_table(), out)
    return out


def bin_bulk(q_sub, n_sub_q: int, phi_edges, n_sub_phi: int, weights, phi0: float, gamma_l, d2, derivatives=False):
    r"""Pixel-weighted bin averages of :math:`\mathrm{sinc}^2(q\gamma L\cos\theta/2)e^{-q^2D_2^2}`
    over the sub-grid cells (module docstring), at points (gamma L, D2) of any equal shapes P.

    Parameters
    ----------
    q_sub : ndarray (n_q * n_sub_q,)
        q sub-points (q R0), bin-major.
    phi_edges : ndarray (n_phi + 1,)
        Azimuth bin edges (rad, detector), each bin split into ``n_sub_phi`` cells.
    weights : ndarray (n_q, n_sub_q, n_phi, n_sub_phi)
        Weights of the cells, summing to 1 per bin.
    phi0 : float
        Flow angle (rad): theta = phi - phi0.

    Returns (P..., n_q, n_phi) (and d/d(gamma L), d/d(D2) with ``derivatives``), as
    :func:`.templates.bulk_cells` followed by the weighted bin average.
    """
    g = np.asarray(gamma_l, dtype=np.float64)
    d = np.asarray(d2, dtype=np.float64)
    shape = np.broadcast_shapes(g.shape, d.shape)
    g = np.ascontiguousarray(np.broadcast_to(g, shape)).ravel()
    d = np.ascontiguousarray(np.broadcast_to(d, shape)).ravel()
    w = np.asarray(weights, dtype=np.float64)
    n_q, n_phi = w.shape[0], w.shape[2]
    W = np.ascontiguousarray(w.reshape(n_q * w.shape[1], n_phi * w.shape[3]))
    t, i1, i2, w1, j1, j2 = cell_edges(phi_edges, int(n_sub_phi), float(phi0))
    with np.errstate(divide="ignore"):
        itd1 = 1.0 / (t[i1] - t[i2])
        itd2 = np.where(j1 >= 0, 1.0 / (t[j1] - t[j2]), 0.0)
    P = g.size
    y = np.zeros((P, n_q, n_phi))
    yg = np.zeros((P, n_q, n_phi)) if derivatives else np.zeros((0, n_q, n_phi))
    yd = np.zeros((P, n_q, n_phi)) if derivatives else np.zeros((0, n_q, n_phi))
    run = _bulk_parallel if P >= MIN_PARALLEL else _bulk
    run(g, d, np.ascontiguousarray(q_sub, dtype=np.float64), W, int(n_sub_q), t, i1, i2, w1, j1, j2, itd1, itd2, f_table(),
        bool(derivatives), y, yg, yd)
    if not derivatives:
        return y.reshape(shape + (n_q, n_phi))
    return tuple(v.reshape(shape + (n_q, n_phi)) for v in (y, yg, yd))


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _stencil(tab, ku, kx, wu, dwu, wx, dwx, deriv, r, dg, dd):
    nb = tab.shape[2]
    for p in range(ku.shape[0]):
        for i in range(4):
            for j in range(4):
                node = tab[ku[p, i], kx[p, j]]
                w = wu[p, i] * wx[p, j]
                for b in range(nb):
                    r[p, b] += w * node[b]
                if deriv:
                    wg, wd = dwu[p, i] * wx[p, j], wu[p, i] * dwx[p, j]
                    for b in range(nb):
                        dg[p, b] += wg * node[b]
                        dd[p, b] += wd * node[b]


@numba.njit(cache=True, nogil=True, parallel=True, error_model="numpy")
def _stencil_parallel(tab, ku, kx, wu, dwu, wx, dwx, deriv, r, dg, dd):
    P = ku.shape[0]
    block = 16
    for b in numba.prange((P + block - 1) // block):
        lo, hi = b * block, min(P, b * block + block)
        _stencil(tab, ku[lo:hi], kx[lo:hi], wu[lo:hi], dwu[lo:hi], wx[lo:hi], dwx[lo:hi], deriv, r[lo:hi],
                 dg[lo:hi] if deriv else dg, dd[lo:hi] if deriv else dd)


def stencil_sum(tab, ku, kx, wu, dwu, wx, dwx, deriv, r, dg, dd):
    r"""Catmull-Rom interpolation of the table's residual, in place:
    :math:`r_p = \sum_{ij} w^u_{pi} w^x_{pj}\,\mathrm{tab}[k^u_{pi}, k^x_{pj}]` (and with the
    derivative weights ``dwu``, ``dwx`` the derivatives ``dg``, ``dd``) — no (P, 4, 4, n_b) gather.
    Shapes: tab (n_u, n_d, n_b); stencils (P, 4) (indices int64); r, dg, dd (P, n_b) float64 (dg, dd
    may have 0 rows without ``deriv``). Blocks of points in parallel from MIN_PARALLEL points."""
    run = _stencil_parallel if ku.shape[0] >= MIN_PARALLEL else _stencil
    run(tab, ku, kx, wu, dwu, wx, dwx, bool(deriv), r, dg, dd)
