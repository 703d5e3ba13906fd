r"""The pair model on a table of (gamma L, D2) nodes: amortized model evaluations for stacks.

A stack analysis compares thousands of correlation maps (every lag of a steady stack, every pair of
time bins, every cycle of an echo series) with the pair model y(q, theta; gamma L, D2, R_s) of
:class:`shearcorr.experiment.model.BinnedPairModel` (the ensemble engine's (g - B)/(A - B)). One
engine call costs tens of milliseconds, so the model is evaluated once on a table of nodes and
interpolated:

* nodes uniform in :math:`u = \operatorname{asinh}(\gamma L/\gamma_0)` (step ``du``; linear in
  gamma L below gamma_0 = 2 R0, logarithmic above, where the sinc^2 strip narrows as 1/gamma L)
  and in :math:`v = \operatorname{asinh}(D_2/D_0)` (step ``dd``; D_0 = 1 R0: steps of ~0.15 R0 up
  to D2 ~ 1, growing beyond, where only the lowest q still correlate);
* the values are y on the model's fine grid (q sub-points x periodic theta grid), so the flow angle
  can still move: bin averages at any flow angle come from :meth:`BinnedPairModel.y`'s linear
  interpolation in theta, applied to the interpolated fine map (both are linear, so interpolating
  and bin-averaging commute);
* a control variate: the table holds the *residual* r = y - y_5 with
  :math:`y_5 = \mathrm{sinc}^2(q\gamma L\cos\theta/2)\,e^{-q^2 D_2^2}` (eq. 5 of the paper, the
  bulk, infinite-N limit), which is evaluated exactly at every point; r (window edges, finite N,
  polydispersity: a few per cent of y) is smooth, so coarse nodes suffice. Interpolating y itself
  needs ~6 times more nodes (the sinc^2 oscillates in gamma L at fixed theta);
* Catmull-Rom (local cubic) interpolation of r in both variables, with derivatives; y is even in
  gamma L and in D2, which gives the nodes below zero.

Accuracy (measured, tests/test_stack_templates.py): with du = dd = 0.15 the bin-averaged y is within
4e-4 of the engine's exact bin average for gamma L up to 60 R0 and D2 up to 2 R0 at q R0 <= 1.4
(the pair model's own linear theta interpolation is off by up to 4e-3 there).
The table depends on the bins, the model constants and R_s; it is cached on disk like the
geometry-specific pair model (key: bins, sub-grids, n_l2, displacement, L, R_s, ranges, steps,
shearcorr version).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np

from .._version import __version__
from ..errors import ShearcorrError

__all__ = ["PairTable", "bulk_y", "bulk_cells", "pixel_weights", "catmull_rom_weights", "GAMMA0", "DEFAULT_DU", "DEFAULT_DD"]

#: gamma L and D2 (R0) where the node spacing turns from linear to logarithmic.
GAMMA0, D0 = 2.0, 1.0
#: Default node steps in asinh(gamma L / GAMMA0) and in asinh(D2 / D0).
DEFAULT_DU, DEFAULT_DD = 0.15, 0.15


def catmull_rom_weights(t: np.ndarray):
    """Weights of nodes i-1, i, i+1, i+2 for the local cubic at fraction t in [0, 1), and their
    derivatives in t: two arrays of shape (..., 4)."""
    t = np.asarray(t, dtype=np.float64)[..., None]
    t2, t3 = t * t, t * t * t
    w = 0.5 * np.concatenate([-t3 + 2 * t2 - t, 3 * t3 - 5 * t2 + 2, -3 * t3 + 4 * t2 + t, t3 - t2], axis=-1)
    dw = 0.5 * np.concatenate([-3 * t2 + 4 * t - 1, 9 * t2 - 10 * t, -9 * t2 + 8 * t + 1, 3 * t2 - 2 * t], axis=-1)
    return w, dw


def bulk_y(q, theta, gamma_l, d2, derivatives: bool = False):
    r"""The control variate :math:`y_5 = \mathrm{sinc}^2(q\gamma L\cos\theta/2)\,e^{-q^2D_2^2}` (eq. 5
    minus 1) at points (gamma L, D2) of shape P on q (nq,) x theta (P..., nt) or (nt,):
    (P..., nq, nt); with ``derivatives`` also d/d(gamma L) and d/d(D2)."""
    g = np.asarray(gamma_l, dtype=np.float32)[..., None, None]
    d = np.asarray(d2, dtype=np.float32)[..., None, None]
    q = np.asarray(q, dtype=np.float32)[:, None]
    th = np.asarray(theta, dtype=np.float64)
    a = (0.5 * q * np.cos(th).astype(np.float32)[..., None, :]).astype(np.float32)  # (..., 1, nt) * (nq, 1)
    x = a * g  # float32: |error| < 1e-6 in the sinc for |x| < 1e3
    small = np.abs(x) < 1e-3
    xs = np.where(small, np.float32(1.0), x)
    sx = np.sin(xs)
    sinc = np.where(small, 1.0 - x * x / 6.0, sx / xs)
    e = np.exp(-(q * q) * d * d)
    y = sinc * sinc * e
    if not derivatives:
        return y.astype(np.float64)
    dsinc = np.where(small, -x / 3.0, (np.cos(xs) - sinc) / xs)
    return y.astype(np.float64), (2.0 * sinc * dsinc * a * e).astype(np.float64), (-2.0 * (q * q) * d * y).astype(np.float64)


def _normalised_weights(model, weights) -> np.ndarray:
    """Weights of the sub-grid points of every bin, (n_q, n_sub_q, n_phi, n_sub_phi), summing to 1 per
    bin (uniform when None; a bin with no weight falls back to uniform)."""
    shape = (model.n_q, model.sq, model.n_phi, model.sp)
    if weights is None:
        return np.full(shape, 1.0 / (model.sq * model.sp))
    w = np.asarray(weights, dtype=np.float64).reshape(shape)
    tot = w.sum(axis=(1, 3), keepdims=True)
    return np.where(tot > 0, w / np.where(tot > 0, tot, 1.0), 1.0 / (model.sq * model.sp))


def pixel_weights(plan, qr0, phi, model) -> np.ndarray:
    r"""Share of every bin's pixels in each cell of the model's sub-grid, (n_q, n_sub_q, n_phi, n_sub_phi).

    The pair model averages a bin on a sub-grid uniform in ln q and azimuth; the detector fills a
    bin with pixels at density :math:`\propto q^2` per unit ln q (and masks cut bins unevenly). With
    these weights the table's bin average samples q and azimuth as the pixels do (measured: an
    unweighted average biased the steady shear rate by +2 % with 8 q bins over a decade, docs/stacks.md).
    """
    idx = plan.index
    q = np.asarray(qr0).ravel()[idx]
    ph = np.mod(np.asarray(phi).ravel()[idx], np.pi)
    b = plan.seg_bin[np.repeat(np.arange(plan.n_seg), plan.n_pix_seg)]
    iq, ip = b // plan.n_phi, b % plan.n_phi
    lq = np.log(plan.q_edges)
    fq = (np.log(q) - lq[iq]) / (lq[iq + 1] - lq[iq])
    dphi = np.pi / plan.n_phi
    fp = (ph - ip * dphi) / dphi
    sq = np.clip((fq * model.sq).astype(int), 0, model.sq - 1)
    sp = np.clip((fp * model.sp).astype(int), 0, model.sp - 1)
    flat = ((iq * model.sq + sq) * plan.n_phi + ip) * model.sp + sp
    counts = np.bincount(flat, minlength=plan.n_q * model.sq * plan.n_phi * model.sp).astype(np.float64)
    return counts.reshape(plan.n_q, model.sq, plan.n_phi, model.sp)


def _node_batch(jobs):
    """Residuals of several nodes (one task of an executor)."""
    return [_node_value(j) for j in jobs]


def _sinc2_t_average(a, t1, t2):
    r"""Average of :math:`\mathrm{sinc}^2(a t)` over t in [t2, t1] (sinc(x) = sin x / x) and its
    derivative in a, from the antiderivative :math:`F(x) = \mathrm{Si}(2x) - \sin^2 x/x`."""
    from scipy.special import sici

    dt = t1 - t2
    x1, x2 = a * t1, a * t2
    small = np.abs(a * dt) < 1e-3

    def F(x):  # odd, F(x) = x + O(x^3) near 0
        tiny = np.abs(x) < 1e-8
        xs = np.where(tiny, 1e-8, x)
        return np.where(tiny, x, sici(2 * xs)[0] - np.sin(xs) ** 2 / xs)

    def s2(x):
        xs = np.where(np.abs(x) < 1e-8, 1e-8, x)
        return np.where(np.abs(x) < 1e-8, 1.0, (np.sin(xs) / xs) ** 2)

    with np.errstate(invalid="ignore", divide="ignore"):
        den = np.where(small, 1.0, a * dt)
        avg = np.where(small, s2(0.5 * (x1 + x2)), (F(x1) - F(x2)) / den)
        aa = np.where(np.abs(a) < 1e-12, 1e-12, a)
        d_avg = np.where(small, 0.0, (t1 * s2(x1) - t2 * s2(x2)) / den - avg / aa)
    if np.any(small):  # derivative of the midpoint value where the cell is too short for F
        xm = 0.5 * (x1 + x2)
        tm = 0.5 * (t1 + t2)
        xs = np.where(np.abs(xm) < 1e-8, 1e-8, xm)
        sinc = np.sin(xs) / xs
        ds = np.where(np.abs(xm) < 1e-8, -xm / 3.0, (np.cos(xs) - sinc) / xs)
        d_avg = np.where(small, 2 * sinc * ds * tm, d_avg)
    return avg, d_avg


def bulk_cells(q, theta_lo, theta_hi, gamma_l, d2, derivatives: bool = False):
    r"""The control variate :math:`\mathrm{sinc}^2(q\gamma L\cos\theta/2)\,e^{-q^2D_2^2}` averaged over
    azimuth cells [theta_lo, theta_hi] (exactly for the sinc^2, whatever its width: the average over
    theta of a cell is the average over t = cos(theta), the Jacobian being nearly constant in a cell;
    cells are split where cos(theta) turns, at 0 and pi). Shapes: q (nq,), theta_lo/hi (nt,), points
    P...; returns (P..., nq, nt) (and d/d(gamma L), d/d(D2) with ``derivatives``)."""
    g = np.asarray(gamma_l, dtype=np.float64)[..., None, None]
    d = np.asarray(d2, dtype=np.float64)[..., None, None]
    q = np.asarray(q, dtype=np.float64)[:, None]
    lo = np.asarray(theta_lo, dtype=np.float64)
    hi = np.asarray(theta_hi, dtype=np.float64)
    shift = np.floor(lo / np.pi) * np.pi
    lo, hi = lo - shift, hi - shift  # lo in [0, pi)
    a = 0.5 * q * g  # (..., nq, 1)
    width = hi - lo
    # piece 1: [lo, min(hi, pi)]; piece 2 (a cell crossing pi): [pi, hi], equivalent to [0, hi - pi]
    h1 = np.minimum(hi, np.pi)
    w1 = (h1 - lo) / width
    avg1, dav1 = _sinc2_t_average(a, np.cos(lo), np.cos(h1))
    h2 = np.maximum(hi - np.pi, 0.0)
    avg2, dav2 = _sinc2_t_average(a, np.ones_like(h2), np.cos(h2))
    s2 = w1 * avg1 + (1 - w1) * np.where(h2 > 0, avg2, 0.0)
    e = np.exp(-(q * q) * d * d)
    y = s2 * e
    if not derivatives:
        return y
    ds2 = w1 * dav1 + (1 - w1) * np.where(h2 > 0, dav2, 0.0)
    return y, ds2 * 0.5 * q * e, -2.0 * (q * q) * d * y


def _node_value(args):
    """Residual of one node (module-level so that a process pool can run it)."""
    model, gl, d2, rs = args
    return model.y_fine(gl, d2, rs) - bulk_y(model.q_sub, model.theta_fine, gl, d2)


class PairTable:
    """Interpolated pair model y(q, theta; gamma L, D2) at fixed R_s on the bins of ``model``.

    Parameters
    ----------
    model : BinnedPairModel
        Bins and model constants.
    rs : float
        Polydispersity at which the table is computed.
    gamma_max, d2_max : float
        Upper ends of the table (R0); values beyond are clamped.
    du, dd : float
        Node steps in asinh(gamma L / GAMMA0) and D2.
    executor : executor, optional
        Runs the engine calls (e.g. a process pool); default in this process.
    cache_dir : path, optional
        Folder of the on-disk cache (None: no cache).
    """

    def __init__(self, model, rs: float, *, gamma_max: float = 120.0, d2_max: float = 3.0, du: float = DEFAULT_DU,
                 dd: float = DEFAULT_DD, executor=None, cache_dir=None, weights=None):
        if not (gamma_max > 0 and d2_max > 0 and du > 0 and dd > 0):
            raise ShearcorrError("the pair table needs positive ranges and steps")
        self.model = model
        self.weights = _normalised_weights(model, weights)
        self.rs = float(rs)
        self.du, self.dd = float(du), float(dd)
        n_u = int(math.ceil(math.asinh(gamma_max / GAMMA0) / du)) + 2
        n_d = int(math.ceil(math.asinh(d2_max / D0) / dd)) + 2
        self.u_nodes = np.arange(n_u) * du
        self.d_nodes = np.arange(n_d) * dd
        self.gamma_max = float(GAMMA0 * math.sinh(self.u_nodes[-1]))
        self.d2_max = float(D0 * math.sinh(self.d_nodes[-1]))
        self.cached = False
        self.values = self._build(executor, cache_dir)  # (n_u, n_d, n_qsub, n_fine)
        self._bin_cache: dict = {}

    @property
    def n_nodes(self) -> int:
        return self.u_nodes.size * self.d_nodes.size

    def _key(self) -> str:
        m = self.model
        src = json.dumps({"q": m.q_edges.round(10).tolist(), "phi": m.phi_edges.round(10).tolist(),
                          "sub": [m.sq, m.sp, m.n_fine], "axes": "asinh/asinh", "n_l2": m.n_l2, "disp": m.displacement, "L": m.beam_size,
                          "rs": round(self.rs, 10), "nu": self.u_nodes.size, "nd": self.d_nodes.size, "du": self.du,
                          "dd": self.dd, "version": __version__}, sort_keys=True)
        return hashlib.sha256(src.encode()).hexdigest()[:24]

    def _build(self, executor, cache_dir):
        path = Path(cache_dir) / f"pairtable-{self._key()}.npy" if cache_dir is not None else None
        if path is not None and path.is_file():
            try:
                vals = np.load(path, allow_pickle=False)
                if vals.shape[:2] == (self.u_nodes.size, self.d_nodes.size):
                    self.cached = True
                    return vals
            except (OSError, ValueError):
                pass  # a damaged cache entry is rebuilt
        gl = GAMMA0 * np.sinh(self.u_nodes)
        dl = D0 * np.sinh(self.d_nodes)
        jobs = [(self.model, float(g), float(d), self.rs) for g in gl for d in dl]
        if executor is None:
            out = [_node_value(j) for j in jobs]
        else:  # batches of nodes, results collected in order
            size = max(1, len(jobs) // 32)
            futures = [executor.submit(_node_batch, jobs[i:i + size]) for i in range(0, len(jobs), size)]
            out = [v for f in futures for v in f.result()]
        vals = np.stack(out).reshape(self.u_nodes.size, self.d_nodes.size, *out[0].shape)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".pairtable.", suffix=".npy", dir=path.parent)
            os.close(fd)
            try:
                np.save(tmp, vals)
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        return vals

    def _stencil(self, gamma_l, d2):
        """Node indices (..., 4) and weights (value, derivative) in u and D2 for the points."""
        g = np.clip(np.asarray(gamma_l, dtype=np.float64), 0.0, self.gamma_max)
        d = np.clip(np.asarray(d2, dtype=np.float64), 0.0, self.d2_max)
        u = np.arcsinh(g / GAMMA0) / self.du
        x = np.arcsinh(d / D0) / self.dd
        iu = np.minimum(np.floor(u).astype(np.int64), self.u_nodes.size - 2)
        ix = np.minimum(np.floor(x).astype(np.int64), self.d_nodes.size - 2)
        wu, dwu = catmull_rom_weights(u - iu)
        wx, dwx = catmull_rom_weights(x - ix)
        ku = np.abs(iu[..., None] + np.arange(-1, 3))  # even in gamma L: node -1 = node 1
        kx = np.abs(ix[..., None] + np.arange(-1, 3))
        ku = np.where(ku >= self.u_nodes.size, 2 * (self.u_nodes.size - 1) - ku, ku)
        kx = np.where(kx >= self.d_nodes.size, 2 * (self.d_nodes.size - 1) - kx, kx)
        dudg = 1.0 / (self.du * np.sqrt(GAMMA0**2 + g**2))  # d u / d gamma L
        dxdd = 1.0 / (self.dd * np.sqrt(D0**2 + d**2))  # d v / d D2
        return ku, kx, wu, dwu * dudg[..., None], wx, dwx * dxdd[..., None]

    def bin_table(self, phi0: float) -> np.ndarray:
        """Node values averaged over the bins at flow angle ``phi0``: (n_u, n_d, n_q, n_phi)."""
        key = round(float(phi0), 12)
        if key not in self._bin_cache:
            m = self.model
            t = np.mod(m.phi_sub - phi0, np.pi) * (m.n_fine / np.pi)
            i0 = np.floor(t).astype(int) % m.n_fine
            f = t - np.floor(t)
            v = self.values[..., i0] * (1 - f) + self.values[..., (i0 + 1) % m.n_fine] * f
            nu, nd = self.values.shape[:2]
            out = np.einsum("abqipj,qipj->abqp", v.reshape(nu, nd, m.n_q, m.sq, m.n_phi, m.sp), self.weights)
            if len(self._bin_cache) > 8:
                self._bin_cache.clear()
            self._bin_cache[key] = out
        return self._bin_cache[key]

    def _bulk(self, gamma_l, d2, phi0, derivatives):
        """Bin average of the control variate: exact integrals over the azimuth cells of the model's
        sub-grid (:func:`bulk_cells`) at its q sub-points, weighted by the pixels; computed by the
        compiled :func:`.tablekernels.bin_bulk` (the same sums, ~15x faster than NumPy)."""
        from .tablekernels import bin_bulk

        m = self.model
        return bin_bulk(m.q_sub, m.sq, m.phi_edges, m.sp, self.weights, phi0, gamma_l, d2, derivatives)

    def y(self, gamma_l, d2, phi0: float, derivatives: bool = False):
        """Bin-averaged y at points (gamma L, D2) (any equal shapes P): (P..., n_q, n_phi); with
        ``derivatives`` also dy/d(gamma L) and dy/d(D2)."""
        tab = self.bin_table(phi0)
        gamma_l, d2 = np.broadcast_arrays(np.asarray(gamma_l, dtype=np.float64), np.asarray(d2, dtype=np.float64))
        ku, kx, wu, dwu, wx, dwx = self._stencil(gamma_l, d2)
        shape = gamma_l.shape + tab.shape[2:]
        flat = lambda v: np.ascontiguousarray(v.reshape(-1, 4))  # noqa: E731
        n = int(np.prod(gamma_l.shape))
        r = np.zeros((n, tab.shape[2] * tab.shape[3]))
        dg, dd = (np.zeros_like(r), np.zeros_like(r)) if derivatives else (r[:0], r[:0])
        # sum over the 4 x 4 stencil of every point (Catmull-Rom weights and their derivatives), compiled
        from .tablekernels import stencil_sum

        stencil_sum(np.ascontiguousarray(tab.reshape(tab.shape[0], tab.shape[1], -1)), flat(ku), flat(kx), flat(wu),
                    flat(dwu), flat(wx), flat(dwx), bool(derivatives), r, dg, dd)
        if not derivatives:
            return r.reshape(shape) + self._bulk(gamma_l, d2, phi0, False)
        b, bg, bd = self._bulk(gamma_l, d2, phi0, True)
        return r.reshape(shape) + b, dg.reshape(shape) + bg, dd.reshape(shape) + bd
