r"""Slit beams (uniform footprint with hard edges, Lx x Ly): pair phase and pair transfer, both geometries.

Everything here is per particle of the box [-B, B]^2 (area 4B^2) and is used by :mod:`.beamengine`.
Theory: ``docs/theory.md`` section 7.

* 1-2 geometry, coherent: the pair phase :math:`K(\mathbf q; s) = E[m m' e^{i\mathbf q\cdot\Delta}]` of
  :mod:`.window` generalised to a rectangle (:func:`rect_pair_phase`): shear edge, kink and y-edge terms
  with Lx in the x factor and Ly in the y range.
* 1-3 geometry: the displacement along the flow is :math:`t = \gamma(y_d - y_0) + \delta_x` with the depth
  :math:`y_d` uniform over the gap, independent of the in-plane position, so
  :math:`K = E_t[(L_x - |t|)e^{iq_x t}]\,E_\delta[(L_z - |\delta|) e^{iq_z\delta}]/4B^2` (:func:`gap_pair_phase`).
* Partial coherence / pixels (transfer M): the pair factor :math:`\iint k(\mathbf r) k^*(\mathbf r')
  M(\mathbf r - \mathbf r')` replaces :math:`|K|^2`. For the uniform footprint the x-integrals are
  overlaps of intervals :math:`I = W_x \cap (W_x - u)`, and
  :math:`\int d\rho\, M(\rho)\,|I \cap (I' + \rho)| = \Psi(r_1) - \Psi(r_2) - \Psi(r_3) + \Psi(r_4)`
  with :math:`\Psi(r) = \int_r (\rho - r) M(\rho) d\rho` and the breakpoints :math:`r_i` of the overlap
  (:class:`PsiTable`): exact for any M, including pixels at any angle to the flow.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from numpy.polynomial.legendre import leggauss
from scipy.special import dawsn, ndtr

from .window import _edge_term, _kink_term, _sinc

__all__ = ["rect_bulk", "rect_edge_correction", "rect_pair_phase", "gap_pair_phase", "gap_z_factor",
           "GapDisplacement", "PsiTable", "BulkTransfer12", "bulk_transfer_12", "gap_transfer_13"]


@lru_cache(maxsize=32)
def _gl(n: int):
    x, w = leggauss(n)
    x.flags.writeable = False
    w.flags.writeable = False
    return x, w


def gl_nodes(a: float, b: float, n: int):
    """Gauss-Legendre nodes and weights on [a, b]."""
    x, w = _gl(int(n))
    return 0.5 * (b - a) * x + 0.5 * (a + b), 0.5 * (b - a) * w


def panel_nodes(cuts, n: int):
    """Gauss-Legendre nodes on the panels between sorted ``cuts`` (kinks of the integrand)."""
    xs, ws = [], []
    for a, b in zip(cuts[:-1], cuts[1:]):
        if b > a:
            x, w = gl_nodes(a, b, n)
            xs.append(x)
            ws.append(w)
    return np.concatenate(xs), np.concatenate(ws)


# --------------------------------------------------------------------------- 1-2, coherent
def rect_bulk(k, gamma: float, Lx: float, Ly: float, B: float) -> np.ndarray:
    r"""s = 0 bulk factor :math:`\frac{L_xL_y}{4B^2}[\mathrm{sinc}\,x - \frac{\gamma L_y}{2L_x}(\mathrm{sinc}\,x
    - \tfrac12\mathrm{sinc}^2\tfrac x2)]`, :math:`x = kL_y/2`, k = q_x gamma (shear edge included)."""
    x = np.asarray(k, dtype=np.float64) * 0.5 * Ly
    sx = _sinc(x)
    return Lx * Ly / (4.0 * B * B) * (sx - 0.5 * gamma * Ly / Lx * (sx - 0.5 * _sinc(0.5 * x) ** 2))


def rect_edge_correction(qx, qy, s, gamma: float, Lx: float, Ly: float, B: float) -> np.ndarray:
    r""":math:`K - B(q_x\gamma)e^{-q^2s^2/2}`: smoothed shear kink and y-edge loss for the rectangle
    (the terms T1 - T2 of docs/theory.md section 2 with L_y in the y range and L_x in the x factor)."""
    qx, qy, s = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (qx, qy, s)))
    s = np.minimum(s, 0.05 * min(Lx, Ly))
    a = 0.5 * gamma * Ly
    t1 = np.exp(-0.5 * (qy * s) ** 2) * _kink_term(qx, s, a, gamma, Ly)
    t2 = _edge_term(qx, qy, s, a, gamma, Lx)
    return (t1 - t2) / (4.0 * B * B)


def rect_pair_phase(qx, qy, s, gamma: float, Lx: float, Ly: float, B: float) -> np.ndarray:
    """Coherent pair phase K(q; s) of a rectangular slit beam in the 1-2 geometry (real)."""
    qx, qy, s = (np.asarray(v, dtype=np.float64) for v in (qx, qy, s))
    g = np.exp(-0.5 * (qx * qx + qy * qy) * s * s)
    return rect_bulk(qx * gamma, gamma, Lx, Ly, B) * g + rect_edge_correction(qx, qy, s, gamma, Lx, Ly, B)


# --------------------------------------------------------------------------- 1-3, coherent
class GapDisplacement:
    r"""Distribution of the flow displacement :math:`t = \gamma(y_d - y_0) + \delta_x` in the 1-3 geometry:
    :math:`y_d` uniform on [-h/2, h/2], :math:`\delta_x \sim N(0, s^2)`. Density
    :math:`p(t) = [\Phi((t - t_1)/s) - \Phi((t - t_2)/s)]/(t_2 - t_1)`, quadrature on panels split at
    t = 0 (the kink of the footprint overlap) and at the smoothed ends."""

    def __init__(self, gamma: float, gap: float, z0: float, s: float, n: int = 48):
        self.t1, self.t2 = gamma * (-0.5 * gap - z0), gamma * (0.5 * gap - z0)
        self.s = float(s)
        width = self.t2 - self.t1
        self.degenerate = width <= 1e-12 * max(1.0, gap)
        pad = 8.0 * self.s
        lo, hi = self.t1 - pad, self.t2 + pad
        if self.degenerate and self.s <= 0:  # no displacement at all: a point mass at t = 0
            self.t, self.w, self.cuts = np.zeros(1), np.ones(1), [-1e-9, 1e-9]
            return
        cuts = sorted({lo, hi, *[c for c in (0.0, self.t1 + pad, self.t2 - pad) if lo < c < hi]})
        self.t, w = panel_nodes(cuts, n)
        self.cuts = cuts
        self.w = w * self.density(self.t)

    def density(self, t):
        t = np.asarray(t, dtype=np.float64)
        if self.degenerate:
            return np.exp(-0.5 * (t / self.s) ** 2) / (np.sqrt(2 * np.pi) * self.s) if self.s > 0 else np.zeros_like(t)
        if self.s <= 0:
            return ((t >= self.t1) & (t <= self.t2)) / (self.t2 - self.t1)
        return (ndtr((t - self.t1) / self.s) - ndtr((t - self.t2) / self.s)) / (self.t2 - self.t1)

    def phase(self, qx, weight=None) -> np.ndarray:
        r""":math:`\int p(t)\,f(t)\,e^{iq_x t}dt` for f = ``weight(t)`` (default 1); shape of qx."""
        f = self.w if weight is None else self.w * weight(self.t)
        return np.exp(1j * np.asarray(qx, dtype=np.float64)[..., None] * self.t) @ f


def gap_z_factor(qz, s, Lz: float) -> np.ndarray:
    r""":math:`E_\delta[(L_z - |\delta|)e^{iq_z\delta}] = L_z e^{-q_z^2s^2/2} - s\sqrt{2/\pi}(1 - 2uF(u))`,
    u = q_z s/sqrt 2 (F: Dawson), for s << L_z (the footprint edges across the flow)."""
    qz, s = np.asarray(qz, dtype=np.float64), np.asarray(s, dtype=np.float64)
    u = qz * s / np.sqrt(2.0)
    return Lz * np.exp(-0.5 * (qz * s) ** 2) - s * np.sqrt(2.0 / np.pi) * (1.0 - 2.0 * u * dawsn(u))


def gap_pair_phase(qx, qz, s: float, gamma: float, gap: float, z0: float, Lx: float, Lz: float, B: float) -> np.ndarray:
    """Coherent pair phase K(q; s) of a rectangular slit beam in the 1-3 geometry (complex when z0 != 0)."""
    disp = GapDisplacement(gamma, gap, z0, s)
    X = disp.phase(qx, lambda t: np.maximum(Lx - np.abs(t), 0.0))
    return X * gap_z_factor(qz, s, Lz) / (4.0 * B * B)


# --------------------------------------------------------------------------- transfer M: Psi tables
class PsiTable:
    r""":math:`\Psi_j(r) = \int_r^{R}(\rho - r)\,M(\rho, c_j)\,d\rho` on a fine grid of r, one row per value
    :math:`c_j` of the second coordinate (cumulative trapezoid, linear interpolation; both errors
    O(h^2 M) with h = R/2048, below 1e-7 relative). The upper limit R cancels in every overlap sum."""

    def __init__(self, M, second, R: float, n: int = 4097):
        self.R = float(R)
        x = np.linspace(-self.R, self.R, n)
        self.h = x[1] - x[0]
        m = np.asarray(M(x[None, :], np.asarray(second, dtype=np.float64)[:, None]), dtype=np.float64)
        m = np.broadcast_to(m, (np.size(second), n))
        half = 0.5 * self.h
        m0 = np.zeros(m.shape)
        m1 = np.zeros(m.shape)
        m0[:, :-1] = np.cumsum(((m[:, 1:] + m[:, :-1]) * half)[:, ::-1], axis=1)[:, ::-1]
        xm = m * x
        m1[:, :-1] = np.cumsum(((xm[:, 1:] + xm[:, :-1]) * half)[:, ::-1], axis=1)[:, ::-1]
        self.psi = m1 - x * m0

    def overlap(self, j, a1, b1, a2, b2) -> np.ndarray:
        r""":math:`\int d\rho\,M(\rho, c_j)\,|[a_1, b_1] \cap ([a_2, b_2] + \rho)|` (broadcast; j int or array)."""
        return (self._at(j, a1 - b2) - self._at(j, a1 - a2) - self._at(j, b1 - b2) + self._at(j, b1 - a2))

    def _at(self, j, r):
        t = (np.asarray(r, dtype=np.float64) + self.R) / self.h
        i = np.clip(np.floor(t).astype(np.int64), 0, self.psi.shape[1] - 2)
        f = t - i
        row = self.psi[j]
        return np.take_along_axis(row, i, -1) * (1 - f) + np.take_along_axis(row, i + 1, -1) * f if row.ndim > 1 \
            else row[i] * (1 - f) + row[i + 1] * f


def _x_interval(u, Lx):
    """In the footprint before and after an x-shift u: I = [-Lx/2 + max(-u, 0), Lx/2 - max(u, 0)]."""
    return -0.5 * Lx + np.maximum(-u, 0.0), 0.5 * Lx - np.maximum(u, 0.0)


def _cheb_panel(p0, p1, n):
    c = np.cos(np.pi * (np.arange(n) + 0.5) / n)
    return c, 0.5 * (p0 + p1) + 0.5 * (p1 - p0) * c


class BulkTransfer12:
    r"""Pair factor of the s = 0 bulk of a slit beam under the transfer M, 1-2 geometry, per particle:

    .. math:: Q(k;\gamma) = \frac{1}{(4B^2)^2}\int_{-L_y}^{L_y} d\rho_y\, e^{ik\rho_y} D(\rho_y;\gamma),\quad
              D = \int dy\, X^M(y, y - \rho_y),\quad
              X^M(y, y') = \iint_{I(y)\times I(y')} M(x - x', y - y')\,dx\,dx'

    with :math:`I(y) = W_x \cap (W_x - \gamma y)` (shear edge exact). X^M is the overlap sum
    :math:`\sum_i \pm\Psi(r_i)` with breakpoints :math:`r_i = r_i^0 + \gamma c_i(y, y')`,
    :math:`r^0 \in \{-L_x, 0, 0, L_x\}` and :math:`c_i` piecewise linear in y, y'. :math:`\Psi` is smooth,
    so :math:`D = \sum_{m\le 3}\gamma^m D_m(\rho_y)`, :math:`D_m = \frac{1}{m!}\int dy \sum_i \pm c_i^m\Psi^{(m)}(r_i^0)`
    (:math:`\Psi' = -\int_r M`, :math:`\Psi'' = M`, :math:`\Psi''' = \partial_\rho M`), exact up to
    :math:`(\gamma L_y/2)^4\,\partial^2_\rho M/24`, below 1e-6 relative. D is even in rho_y and smooth on
    [0, Ly/2] and [Ly/2, Ly]: tabulated at Chebyshev nodes there once per (M, Lx, Ly). The four Fourier
    transforms :math:`Q_m(k)` are then tabulated on a k grid of 32 points per period 2 pi / L_y (extended
    when a larger k is asked for) and interpolated with cubic splines (relative error ~ (pi/16)^4/384, below
    4e-6), so every gamma and k costs four spline evaluations. For M = 1 it reproduces :func:`rect_bulk`
    squared exactly.
    """

    #: k-grid points per period 2 pi / L_y of the tabulated Fourier transforms.
    K_PER_PERIOD = 32

    def __init__(self, M, Lx: float, Ly: float, B: float, *, n_cheb: int = 32, n_x: int = 96):
        self.M, self.Lx, self.Ly, self.B = M, float(Lx), float(Ly), float(B)
        self.panels = ((0.0, 0.5 * Ly), (0.5 * Ly, Ly))
        self.coef = []
        for p0, p1 in self.panels:
            c, rho = _cheb_panel(p0, p1, n_cheb)
            D = self._d_m(rho, n_x)  # (4, n_cheb)
            self.coef.append(np.polynomial.chebyshev.chebfit(c, D.T, n_cheb - 1))  # (n_cheb, 4)

    def _d_m(self, rho, n_x):
        M, Lx, Ly = self.M, self.Lx, self.Ly
        xr, wr = panel_nodes([-Lx, 0.0, Lx], n_x)
        Mv = np.asarray(M(xr[None, :], rho[:, None]), dtype=np.float64)  # (n_rho, n_x)
        tri = Mv @ (wr * (Lx - np.abs(xr)))  # Psi(-Lx) - 2 Psi(0) + Psi(Lx)
        a_neg = Mv @ (wr * (xr < 0))  # int_{-Lx}^0 M
        a_tot = Mv @ wr  # int_{-Lx}^{Lx} M
        pts = np.array([-Lx, 0.0, Lx])
        h = 1e-4 * Lx
        Mp = np.asarray(M(pts[None, :], rho[:, None]), dtype=np.float64)
        dM = (np.asarray(M(pts[None, :] + h, rho[:, None])) - np.asarray(M(pts[None, :] - h, rho[:, None]))) / (2 * h)
        D = np.zeros((4, rho.size))
        for j, r in enumerate(rho):
            lo, hi = r - 0.5 * Ly, 0.5 * Ly
            y, w = panel_nodes(sorted({lo, hi, *[v for v in (0.0, r) if lo < v < hi]}), 8)
            yp, ym = np.maximum(y, 0.0), np.maximum(-y, 0.0)
            y2p, y2m = np.maximum(y - r, 0.0), np.maximum(r - y, 0.0)
            c1, c2, c3, c4 = ym + y2p, ym - y2m, y2p - yp, -(yp + y2m)  # r_i = r_i0 + gamma c_i
            D[0, j] = tri[j] * np.sum(w)
            D[1, j] = np.dot(w, -(c2 + c3) * a_neg[j] + c4 * a_tot[j])  # uses c1 = c2 + c3 - c4
            D[2, j] = 0.5 * np.dot(w, c1**2 * Mp[j, 0] - (c2**2 + c3**2) * Mp[j, 1] + c4**2 * Mp[j, 2])
            D[3, j] = np.dot(w, c1**3 * dM[j, 0] - (c2**3 + c3**3) * dM[j, 1] + c4**3 * dM[j, 2]) / 6.0
        return D

    def fourier(self, k) -> np.ndarray:
        """The four transforms Q_m(k) = 2 int_0^Ly cos(k rho) D_m(rho) d rho / (4B^2)^2, shape k.shape + (4,)."""
        k = np.asarray(k, dtype=np.float64)
        kmax = float(np.max(np.abs(k))) if k.size else 0.0
        n_f = int(max(48, 4 + 1.2 * kmax * 0.5 * self.Ly))
        out = np.zeros(k.shape + (4,))
        for (p0, p1), coef in zip(self.panels, self.coef):
            xf, wf = gl_nodes(p0, p1, n_f)
            Dm = np.polynomial.chebyshev.chebval((2.0 * xf - p0 - p1) / (p1 - p0), coef)  # (4, n_f)
            out = out + 2.0 * (np.cos(k[..., None] * xf) @ (wf * Dm).T)
        return out / (4.0 * self.B * self.B) ** 2

    def _table(self, kmax: float):
        """Cubic splines of Q_m on [0, >= kmax] (extended on demand)."""
        if getattr(self, "_kmax", -1.0) < kmax:
            from scipy.interpolate import CubicSpline

            dk = 2.0 * np.pi / self.Ly / self.K_PER_PERIOD
            n = int(np.ceil(1.25 * kmax / dk)) + 8
            kg = np.arange(n) * dk
            self._spline = CubicSpline(kg, self.fourier(kg), axis=0, bc_type=((1, np.zeros(4)), "not-a-knot"))
            self._kmax = kg[-1]
        return self._spline

    def __call__(self, k, gamma: float) -> np.ndarray:
        """Q(k; gamma) = sum_m gamma^m Q_m(|k|), with the shape of k."""
        k = np.abs(np.asarray(k, dtype=np.float64))
        spline = self._table(float(k.max()) if k.size else 0.0)
        return spline(k) @ np.array([1.0, gamma, gamma**2, gamma**3])


def bulk_transfer_12(M, k, gamma: float, Lx: float, Ly: float, B: float) -> np.ndarray:
    """Q(k; gamma) of :class:`BulkTransfer12` (M = None: coherent, exactly :func:`rect_bulk` squared)."""
    if M is None:
        return rect_bulk(k, gamma, Lx, Ly, B) ** 2
    return BulkTransfer12(M, Lx, Ly, B)(k, gamma)


def gap_transfer_13(M, qx, disps, Lx: float, Lz: float, B: float, *, n_cheb: int = 12, n_z: int = 32,
                    psi_cache=None) -> np.ndarray:
    r"""Pair factor of the flow direction under M, 1-3 geometry, for displacement distributions ``disps``
    (one :class:`GapDisplacement` per displacement std):

    .. math:: Q_{cd}(q_x) = \iint p_c(t)\,p_d(t')\,e^{iq_x(t - t')}\,\Gamma(t, t')\,dt\,dt',\quad
              \Gamma(t, t') = \int d\rho_z (L_z - |\rho_z|)\int d\rho_x M(\rho_x, \rho_z)\,|I(t) \cap (I(t') + \rho_x)|

    (bulk across the flow; its s-edges enter via :func:`gap_z_factor`). Gamma is smooth on each
    quadrant of signs of (t, t') and is interpolated from ``n_cheb`` Chebyshev nodes per panel.
    Returns shape qx.shape + (n, n), divided by (4B^2)^2 L_z^2 so that M = 1 gives X_c X_d^* / (4B^2)^2.
    ``psi_cache(make)`` may return a cached :class:`PsiTable` (it depends on M and the footprint only).
    """
    qx = np.asarray(qx, dtype=np.float64)
    lo = min(d.cuts[0] for d in disps)
    hi = max(d.cuts[-1] for d in disps)
    panels = [(lo, 0.0), (0.0, hi)] if lo < 0.0 < hi else [(lo, hi)]
    tn, pan = [], []
    for i, (p0, p1) in enumerate(panels):
        tn.append(_cheb_panel(p0, p1, n_cheb)[1])
        pan.append(np.full(n_cheb, i))
    tn = np.concatenate(tn)
    rz, wz = panel_nodes([-Lz, 0.0, Lz], n_z)
    wz = wz * (Lz - np.abs(rz))
    if M is None:
        Gam = np.outer(np.maximum(Lx - np.abs(tn), 0), np.maximum(Lx - np.abs(tn), 0)) * Lz * Lz
    else:
        reach = max(Lx + 2.0 * max(abs(lo), abs(hi)), 2.0 * Lx) + 1.0  # the table covers shifts up to Lx/2 at least

        def make():
            return PsiTable(M, rz, reach)

        psi = make() if psi_cache is None or reach > 2.0 * Lx + 1.0 else psi_cache(make)
        a, b = _x_interval(tn, Lx)
        Gam = np.zeros((tn.size, tn.size))
        for j in range(rz.size):
            Gam += wz[j] * psi.overlap(j, a[:, None], b[:, None], a[None, :], b[None, :])
    # Lagrange basis on each panel -> weights of the interpolated Gamma against p(t) e^{iqt}
    P = []
    for d in disps:
        rows = []
        which = np.searchsorted(np.array([p[1] for p in panels[:-1]]), d.t, side="right")  # one panel per node
        for i, (p0, p1) in enumerate(panels):
            inside = which == i
            tt = d.t[inside]
            L = _lagrange((2.0 * tt - p0 - p1) / (p1 - p0), n_cheb)  # (m, n_cheb)
            ph = np.exp(1j * qx[..., None] * tt) * d.w[inside]  # (..., m)
            rows.append(ph @ L)
        P.append(np.concatenate(rows, axis=-1))  # (..., n_t)
    P = np.stack(P, axis=-2)  # (..., n_disp, n_t)
    Q = np.einsum("...ca,ab,...db->...cd", P, Gam, np.conj(P))
    return Q / ((4.0 * B * B) ** 2 * Lz * Lz)


def _lagrange(x, n):
    """Lagrange basis of the n Chebyshev (first kind) nodes on [-1, 1] at points x, shape (len(x), n)."""
    c = np.arange(n)
    th = np.pi * (c + 0.5) / n
    nodes = np.cos(th)
    wb = (-1.0) ** c * np.sin(th)
    d = np.asarray(x, dtype=np.float64)[:, None] - nodes[None, :]
    hit = np.abs(d) < 1e-14
    r = wb / np.where(hit, 1.0, d)
    L = r / r.sum(axis=1, keepdims=True)
    rows = hit.any(axis=1)
    L[rows] = hit[rows].astype(np.float64)
    return L
