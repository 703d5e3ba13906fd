r"""The correlation engine of frame stacks: Gram matrices of the normalised pixels, by BLAS.

Binning. The pixels of a stack analysis are the valid pixels inside the q range, in the polar bins
of the pair analysis (:mod:`shearcorr.experiment.correlation`: log-spaced q bins x ``n_phi``
azimuth bins over [0, pi), the azimuth folded by I(q) = I(-q)), each bin split into the
``N_SUB_RING`` thin rings that normalise it. A *segment* is the set of pixels of one (bin, thin
ring); :class:`BinPlan` sorts the pixels by segment so that every segment is a contiguous block of
columns.

Normalisation. Frame t, pixel p of thin ring r: :math:`d_t(p) = n_t(p)/(f_t \bar N_r) - 1`, with

* ``"time"`` (ensemble): :math:`\bar N_r` the ring mean averaged over all frames of the analysis,
  :math:`f_t` an optional flux factor per frame (monitor; default 1). The configuration-to-
  configuration fluctuation of P/S (the finite-N baseline of the ensemble g) stays in the data;
* ``"frame"`` (pair-like): :math:`\bar N_r = N_r(t)`, the ring mean of frame t itself, as in
  ``analyze``; the baseline is removed frame by frame.

Correlations. For a segment s with pixel matrix :math:`D_s` (frames x pixels), the correlations of
all frame pairs are the Gram matrix :math:`D_s D_s^T`. Only a band |t' - t| <= W is needed for lag
correlations: origins are taken in tiles of ``tile`` frames, and each tile is multiplied with the
tile plus the next W frames (one ``sgemm`` per segment and tile; the band is read out of the
product by a strided view). The lag sums

.. math:: S_{g,\tau,s} = \sum_{t \in g,\ t + \tau < T} \sum_{p \in s} d_t(p)\,d_{t+\tau}(p)

are accumulated per *group* g of origins (blocks of time for the batch-means errors, cycles for
echoes). Memory: one window of ``task_frames`` + W frames of the used pixels (float32), whatever the
stack length, kept per thread for the tasks of one call; frames are read once per task (tasks overlap
by W frames) by :func:`.normalize.load_into` (raster-order slabs placed in segment order).

One pass, exact. The time-averaged ring mean is only known at the end, so the frames are centred
with a provisional mean :math:`\tilde N_r` (from a sample of frames) and corrected exactly at the
end with :math:`a_r = \tilde N_r/\bar N_r` and the segment sums :math:`M_{t,s} = \sum_{p\in s}\tilde d_t`:

.. math:: \sum_p d_t d_{t'} = a^2 (n_s + M_t + M_{t'} + \tilde G_{tt'}) - a (2 n_s + M_t + M_{t'}) + n_s.

Work units are fixed frame ranges independent of the number of workers and are reduced in a fixed
order, so the numbers are identical for any executor (local processes, a Dask cluster).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

from ..errors import ShearcorrError
from .normalize import Normalization, band_sums, load_into, provisional_ring_means
from .plan import BinPlan, as_source

__all__ = ["LagSums", "lag_sums", "DEFAULT_TILE", "DEFAULT_TASK_FRAMES"]

#: Origins per sgemm tile: 64 gives 80 % of the large-GEMM rate at 400-2000 pixels per segment.
DEFAULT_TILE = 64
#: Origins per work unit (one task of an executor); fixed, so results do not depend on workers.
DEFAULT_TASK_FRAMES = 256


# ---------------------------------------------------------------------------------------------- lag sums


@dataclass(frozen=True)
class _LagTask:
    source: object
    plan: BinPlan
    norm: Normalization
    o0: int
    o1: int
    stop: int
    lags: np.ndarray
    group_edges: np.ndarray  # absolute frame edges of the groups (sorted)
    tile: int
    squares: bool = False
    keep_window: bool = False  # leave the window to the next task of this thread (local runs only)


def _window(rows: int, cols: int) -> np.ndarray:
    """A float32 (rows, cols) scratch array, kept per thread between the tasks of one :func:`lag_sums`
    call (a fresh array of a megapixel window costs ~0.5 s of page faults on the development machine)."""
    buf = getattr(_SCRATCH, "window", None)
    if buf is None or buf.shape[1] != cols or buf.shape[0] < rows:
        _SCRATCH.window = None  # free the old one first
        buf = _SCRATCH.window = np.empty((rows, cols), dtype=np.float32)
    return buf[:rows]


def release_scratch() -> None:
    """Free this thread's window (:func:`lag_sums` does so at the end of a local run)."""
    _SCRATCH.window = None


_SCRATCH = threading.local()
#: Segments whose tile products share one small scratch product (read by the band sums while in cache).
SEG_BATCH = 8


def _run_lag_task(task: _LagTask) -> dict:
    """Lag sums of the origins [o0, o1) of one task (see :func:`lag_sums`).

    The frames [o0, min(o1 + W, stop)) are normalised once into one window (rows beyond the stack are
    zero); each tile of origins is multiplied with itself plus the next W frames, segment by segment,
    into a scratch product of :data:`SEG_BATCH` segments whose lag band is summed while in cache."""
    from threadpoolctl import threadpool_limits

    plan, lags, b = task.plan, task.lags, task.tile
    W = int(lags.max())
    nv, nl = plan.n_pix, lags.size
    offs = plan.seg_offsets
    dense = nl * 16 >= b + W
    g_lo = np.searchsorted(task.group_edges, task.o0, side="right") - 1
    g_hi = np.searchsorted(task.group_edges, task.o1 - 1, side="right") - 1
    groups = np.arange(g_lo, g_hi + 1)
    S = np.zeros((groups.size, nl, plan.n_seg))
    S2 = np.zeros((groups.size, nl, plan.n_seg)) if task.squares else None
    Q = np.zeros((task.o1 - task.o0, plan.n_seg))
    pixel_sum = np.zeros(nv)
    n_bad = 0
    last = min(task.o1 + W, task.stop)
    buf = _window(task.o1 - task.o0 + W, nv)  # buf[j] holds frame o0 + j
    buf[last - task.o0:] = 0.0
    sb = min(SEG_BATCH, plan.n_seg)
    gram = np.zeros((sb, b, b + W), dtype=np.float32) if dense else None
    filled = 0
    with threadpool_limits(limits=1, user_api="blas"):
        for i in range(task.o0, task.o1, b):
            nb = min(b, task.o1 - i)
            need = min(i + nb + W, last) - task.o0
            if filled < need:
                q, bad_rows = load_into(task.source, plan, task.norm, task.o0 + filled, task.o0 + need,
                                        buf[filled:need], pixel_sum, keep=(task.o0, task.o1))
                lo, hi = filled, min(need, task.o1 - task.o0)
                if hi > lo:
                    Q[lo:hi] = q[:hi - lo]
                    n_bad += int(bad_rows[:hi - lo].sum())
                filled = need
            r0 = i - task.o0
            A = buf[r0:r0 + nb]
            # group of every origin row of this tile, and the row ranges per group
            gid = np.searchsorted(task.group_edges, np.arange(i, i + nb), side="right") - 1 - g_lo
            cuts = np.flatnonzero(np.diff(gid)) + 1
            starts = np.concatenate([[0], cuts])
            ug = gid[starts]
            if dense:
                Bm = buf[r0:r0 + nb + W]
                gid0 = (gid - gid[0]).astype(np.int64)
                for sq in ((False, True) if task.squares else (False,)):
                    a_, b_ = (A * A, Bm * Bm) if sq else (A, Bm)
                    acc = np.zeros((plan.n_seg, ug.size, nl))
                    for s0 in range(0, plan.n_seg, sb):  # one sgemm per segment, a batch per scratch product
                        ns = min(sb, plan.n_seg - s0)
                        for j in range(ns):
                            c0, c1 = offs[s0 + j], offs[s0 + j + 1]
                            np.matmul(a_[:, c0:c1], b_[:, c0:c1].T, out=gram[j, :nb, :nb + W])
                        band_sums(gram, nb, lags, gid0, acc, s0, ns)
                    (S2 if sq else S)[ug] += acc.transpose(1, 2, 0)
            else:
                for li, lag in enumerate(lags):
                    P = A * buf[r0 + lag:r0 + lag + nb]
                    seg = np.add.reduceat(P, offs[:-1], axis=1, dtype=np.float64)
                    S[ug, li, :] += np.add.reduceat(seg, starts, axis=0)
                    if task.squares:
                        seg2 = np.add.reduceat(P * P, offs[:-1], axis=1, dtype=np.float64)
                        S2[ug, li, :] += np.add.reduceat(seg2, starts, axis=0)
    if not task.keep_window:  # executor workers (threads, processes, Dask) do not hold the window after a task
        release_scratch()
    return {"o0": task.o0, "o1": task.o1, "groups": groups, "S": S, "S2": S2, "Q": Q, "n_bad": n_bad,
            "pixel_sum": pixel_sum}


@dataclass
class LagSums:
    r"""Lag correlations of a stack, per group of origins, before and after the normalisation fix.

    Attributes
    ----------
    plan : BinPlan
    lags : ndarray (n_lags,)
        Lags in frames.
    start, stop : int
        Frames of the analysis, [start, stop).
    group_edges : ndarray (n_groups + 1,)
        Origins [group_edges[g], group_edges[g + 1]) form group g.
    pairs : ndarray (n_groups, n_lags)
        Frame pairs (t, t + lag) with both frames in [start, stop) per group and lag.
    sums : ndarray (n_groups, n_lags, n_q, n_phi)
        :math:`\sum_{t\in g}\sum_{p\in b} d_t(p) d_{t+\tau}(p)` with the final normalisation.
    poisson : ndarray (n_groups, n_q, n_phi)
        :math:`\sum_{t\in g}\sum_{p\in b} n_t(p)/(f_t\bar N_r)^2`: the shot-noise part of lag 0.
    ring_mean : ndarray (n_frames, n_rings)
        Ring means of every frame (counts per pixel, divided by the flux factor): I(q, t).
    mean_image : ndarray (ny, nx)
        Time-averaged frame over the used pixels (NaN elsewhere).
    normalization : str
    n_flagged : int
        Pixel values flagged in single frames (sentinel, negative, NaN) and replaced by the ring mean.
    segment_sums : ndarray (n_lags, n_seg)
        ``sums`` of every segment (bin x thin ring) over all groups, lag 0 less its shot noise: the pixel subsets
        of :meth:`segment_jackknife`.
    """

    plan: BinPlan
    lags: np.ndarray
    start: int
    stop: int
    group_edges: np.ndarray
    pairs: np.ndarray
    sums: np.ndarray
    poisson: np.ndarray
    ring_mean: np.ndarray
    mean_image: np.ndarray
    normalization: str
    n_flagged: int = 0
    info: dict = field(default_factory=dict)
    squares: np.ndarray | None = None
    jack_sums: np.ndarray | None = None
    jack_poisson: np.ndarray | None = None
    segment_sums: np.ndarray | None = None

    @property
    def n_pix_bin(self) -> np.ndarray:
        return self.plan.n_pix_bin

    def pixel_variance(self, groups=None) -> np.ndarray:
        r"""Variance of :math:`u = d_t d_{t+\tau}` over the pixels and origins of a bin (frame
        normalisation, ``squares=True``): shape (n_lags, n_q, n_phi)."""
        if self.squares is None:
            raise ShearcorrError("the pixel variance needs lag_sums(..., squares=True)")
        sel = slice(None) if groups is None else np.asarray(groups)
        n = self.n_pix_bin[None] * self.pairs[sel].sum(axis=0)[:, None, None]
        with np.errstate(invalid="ignore", divide="ignore"):
            m = self.sums[sel].sum(axis=0) / n
            return np.maximum(self.squares[sel].sum(axis=0) / n - m * m, 0.0)

    def correlation(self, groups=None) -> np.ndarray:
        r"""C - 1 per lag and bin, averaged over the origins of ``groups`` (default all):
        shape (n_lags, n_q, n_phi); lag 0 has the shot noise removed (photon counts).
        NaN where a bin has no pixel or a lag no pair."""
        sel = slice(None) if groups is None else np.asarray(groups)
        s = self.sums[sel].sum(axis=0)
        p = self.pairs[sel].sum(axis=0)
        return self._normalise(s, p, self.poisson[sel].sum(axis=0))

    def jackknife(self, renormalise: bool = True) -> np.ndarray:
        """Delete-one-group maps of C - 1: shape (n_groups, n_lags, n_q, n_phi).

        ``"time"`` normalisation: each deleted sample divided by its own time-averaged ring means
        (``jack_sums``, as the full estimate is by all frames'; ``renormalise=False``: by the full stack's
        means, which counts the groups' ring-mean fluctuation as variance although the estimate
        normalises it away; issue 11: on a steady study stack the contrast's std was 1.6x too wide, the shear
        rate's, D's and the flow angle's moved by < 0.5 %)."""
        tot_p = self.pairs.sum(0)
        js, jp = getattr(self, "jack_sums", None), getattr(self, "jack_poisson", None)
        if renormalise and js is not None and jp is not None:
            return np.stack([self._normalise(js[g], tot_p - self.pairs[g], jp[g]) for g in range(self.pairs.shape[0])])
        tot_s, tot_pois = self.sums.sum(0), self.poisson.sum(0)
        return np.stack([self._normalise(tot_s - self.sums[g], tot_p - self.pairs[g], tot_pois - self.poisson[g])
                         for g in range(self.pairs.shape[0])])

    def segment_jackknife(self):
        r"""Delete-one-segment ratios of every lag to lag 0, per bin, for the ratio's bias correction.

        A bin's segments (its thin rings) hold different speckles, so they are nearly independent subsets of its
        pixels over all frames. With :math:`x_{\tau s}` the summed products of segment s (lag 0 less its shot
        noise) and :math:`P_\tau` the origin pairs at lag tau, the ratio with segment s left out is

        .. math:: \hat r_{(s)}(\tau) = \frac{\sum_{s' \ne s} x_{\tau s'} / P_\tau}{\sum_{s' \ne s} x_{0 s'} / P_0}.

        Returns (mean over the bin's segments of :math:`\hat r_{(s)}` (n_lags - 1, n_q, n_phi), the number K of
        segments with pixels per bin (n_q, n_phi)); ``None`` when the sums were not kept (lag sums of an older
        version)."""
        if self.segment_sums is None:
            return None
        plan = self.plan
        p = self.pairs.sum(axis=0).astype(np.float64)
        has = plan.n_pix_seg > 0
        k = plan.to_bins(has.astype(np.float64))
        with np.errstate(invalid="ignore", divide="ignore"):
            x = self.segment_sums / np.where(p > 0, p, np.nan)[:, None]  # per origin pair
            out = plan.to_bins(x).reshape(x.shape[0], -1)[:, plan.seg_bin] - x  # each segment left out
            rd = out[1:] / np.where(out[:1] > 0, out[:1], np.nan)
            rd[:, ~has] = 0.0
            return plan.to_bins(rd) / k[None], k

    def _normalise(self, s, p, pois):
        npix = self.n_pix_bin
        with np.errstate(invalid="ignore", divide="ignore"):
            c = s / (npix[None] * p[:, None, None])
            zero = np.flatnonzero(self.lags == 0)
            if zero.size:
                c[zero[0]] -= pois / (npix * p[zero[0]])
        c[:, npix == 0] = np.nan
        c[p == 0] = np.nan
        return c


def _group_edges(start, stop, groups) -> np.ndarray:
    if groups is None:
        return np.array([start, stop])
    e = np.asarray(groups, dtype=np.int64)
    if e.ndim == 0:
        n = int(e)
        if n < 1:
            raise ShearcorrError(f"the number of origin groups must be >= 1, got {n}")
        return np.unique(np.linspace(start, stop, min(n, stop - start) + 1).round().astype(np.int64))
    if e[0] != start or e[-1] != stop or np.any(np.diff(e) <= 0):
        raise ShearcorrError("group edges must increase from the first to the last frame of the analysis")
    return e


def lag_sums(stack, plan: BinPlan, lags, *, start: int = 0, stop: int | None = None, groups=None,
             normalization: str = "time", flux=None, executor=None, tile: int = DEFAULT_TILE,
             task_frames: int = DEFAULT_TASK_FRAMES, squares: bool = False, progress=None, gain: float = 1.0) -> LagSums:
    r"""Lag correlations :math:`\langle d_t d_{t+\tau}\rangle` of a stack, per polar bin.

    Parameters
    ----------
    stack : frame source, ndarray (n_frames, ny, nx) or dask array
        Photon counts; a source has ``n_frames``, ``frame_shape`` and ``read(i0, i1)``.
    plan : BinPlan
        The pixels and their bins (:func:`make_plan`).
    lags : array of int
        Lags in frames (>= 0). Dense lag sets are computed by sgemm on tiles, sparse ones (echo:
        multiples of a period) by products of the frames at those lags.
    start, stop : int
        Frames [start, stop) of the stack; a pair needs both frames inside.
    groups : int or array, optional
        Groups of origins: a number of equal blocks, or their frame edges (default one group).
    normalization : {"time", "frame"}
        See the module docstring.
    flux : array (n_frames of the stack,), optional
        Per-frame flux factor f_t (e.g. a monitor, divided by its mean).
    executor : concurrent.futures-style executor, optional
        Runs the tasks (one per ``task_frames`` origins); default: in this process.
    tile : int
        Origins per sgemm tile.
    squares : bool
        Also accumulate the squared products (pixel variances of the maps; ``"frame"`` normalisation).
    gain : float
        Detector counts per photon (1: photon counts); scales the shot noise removed from lag 0.

    Returns
    -------
    LagSums
    """
    src = as_source(stack)
    n = int(src.n_frames)
    stop = n if stop is None else int(stop)
    start = int(start)
    if not (0 <= start < stop <= n):
        raise ShearcorrError(f"frames {start}:{stop} are outside the stack of {n} frames")
    if tuple(src.frame_shape) != tuple(plan.shape):
        raise ShearcorrError(f"the stack's frames are {tuple(src.frame_shape)} but the geometry and mask are {tuple(plan.shape)}")
    lags = np.unique(np.asarray(lags, dtype=np.int64))
    if lags.size == 0 or lags[0] < 0:
        raise ShearcorrError("lags must be non-negative integers")
    if lags[-1] >= stop - start:
        raise ShearcorrError(f"the stack has {stop - start} frames, shorter than the lag window ({lags[-1]} frames); "
                             "use a smaller --max-lag or more frames")
    if flux is not None:
        flux = np.asarray(flux, dtype=np.float64)
        if flux.shape != (n,):
            raise ShearcorrError(f"the flux has {flux.size} values but the stack has {n} frames")
        if not np.all(np.isfinite(flux[start:stop]) & (flux[start:stop] > 0)):
            raise ShearcorrError("the flux factors must be finite and positive")
    if squares and normalization != "frame":
        raise ShearcorrError("pixel variances (squares=True) need the 'frame' normalisation")
    ref = provisional_ring_means(src, plan, start, stop, flux) if normalization == "time" else None
    norm = Normalization(normalization, ref, flux, float(gain))
    edges = _group_edges(start, stop, groups)
    tasks = [_LagTask(src, plan, norm, o, min(o + int(task_frames), stop), stop, lags, edges, int(tile), bool(squares),
                      executor is None) for o in range(start, stop, int(task_frames))]
    if executor is None:
        parts = []
        try:
            for t in tasks:
                parts.append(_run_lag_task(t))
                if progress is not None:
                    progress(t.o1 - t.o0)
        finally:
            release_scratch()
    else:
        futures = [executor.submit(_run_lag_task, t) for t in tasks]
        parts = []
        for f in futures:  # reduce in task order: identical numbers for any executor
            parts.append(f.result())
            if progress is not None:
                progress(parts[-1]["o1"] - parts[-1]["o0"])
    ng = edges.size - 1
    S = np.zeros((ng, lags.size, plan.n_seg))
    S2 = np.zeros((ng, lags.size, plan.n_seg)) if squares else None
    Q = np.zeros((stop - start, plan.n_seg))
    psum = np.zeros(plan.n_pix)
    n_bad = 0
    for p in parts:
        S[p["groups"]] += p["S"]
        if squares:
            S2[p["groups"]] += p["S2"]
        Q[p["o0"] - start:p["o1"] - start] = p["Q"]
        psum += p["pixel_sum"]
        n_bad += p["n_bad"]
    out = _finish_lags(plan, lags, start, stop, edges, S, Q, psum, norm, n_bad)
    if squares:
        out.squares = plan.to_bins(S2)
    return out


def _finish_lags(plan, lags, start, stop, edges, S, Q, psum, norm, n_bad) -> LagSums:
    """Apply the exact normalisation fix and sum segments into bins."""
    T = stop - start
    flux = np.ones(T) if norm.flux is None else norm.flux[start:stop]
    ring_mean = plan.to_rings(Q) / plan.n_pix_ring[None, :] / flux[:, None]
    ns = plan.n_pix_seg.astype(np.float64)
    ng = edges.size - 1
    # pairs per group and lag: origins o in [g0, g1) with o + lag < stop
    g0, g1 = edges[:-1, None] - start, edges[1:, None] - start
    hi = np.minimum(g1, T - lags[None, :])
    pairs = np.clip(hi - g0, 0, None).astype(np.int64)
    if norm.mode == "time":
        nbar = ring_mean.mean(axis=0)  # the time-averaged ring mean
        with np.errstate(invalid="ignore", divide="ignore"):
            a_ring = np.where(nbar > 0, norm.ref / nbar, 0.0)
        a = a_ring[plan.seg_ring]
        # provisional segment sums M_t = sum_p dtilde_t = Q_t / (f_t ref_r) - n_s
        with np.errstate(invalid="ignore", divide="ignore"):
            M = np.where(norm.ref[plan.seg_ring] > 0, Q / (flux[:, None] * norm.ref[plan.seg_ring][None, :]), 0.0) - ns
        cum = np.vstack([np.zeros((1, plan.n_seg)), np.cumsum(M, axis=0)])
        lo_i = np.broadcast_to(g0, pairs.shape)
        hi_i = np.maximum(hi, lo_i)
        Mo = cum[hi_i] - cum[lo_i]  # (ng, nl, nseg): origins
        Mp = cum[np.minimum(hi_i + lags[None, :], T)] - cum[np.minimum(lo_i + lags[None, :], T)]  # partners
        P = pairs[:, :, None] * ns[None, None, :]
        X2, X1 = P + Mo + Mp + S, 2 * P + Mo + Mp
        fixed = a**2 * X2 - a * X1 + P
        fixed[pairs == 0] = 0.0
        inv2 = np.where(nbar > 0, 1.0 / nbar, 0.0)[plan.seg_ring] ** 2
        pois_t = norm.gain * Q / flux[:, None] ** 2 * inv2[None, :]
        jack = _renormalised_jackknife(plan, edges - start, ring_mean, norm.ref, X2, X1, P, pois_t, nbar)
    else:
        fixed, jack = S, None
        with np.errstate(invalid="ignore", divide="ignore"):
            rm = plan.to_rings(Q) / plan.n_pix_ring[None, :]
            inv_frame = np.where(rm > 0, 1.0 / rm, 0.0)[:, plan.seg_ring]
        pois_t = norm.gain * Q * inv_frame**2
    # shot noise of lag 0: per group, sum over its origins
    cum_p = np.vstack([np.zeros((1, plan.n_seg)), np.cumsum(pois_t, axis=0)])
    pois = cum_p[edges[1:] - start] - cum_p[edges[:-1] - start]
    mean_image = np.full(int(np.prod(plan.shape)), np.nan)
    mean_image[plan.index] = psum / T
    seg = fixed.sum(axis=0)
    zero = np.flatnonzero(lags == 0)
    if zero.size:
        seg[zero[0]] = seg[zero[0]] - pois.sum(axis=0)
    return LagSums(plan=plan, lags=lags, start=start, stop=stop, group_edges=edges, pairs=pairs,
                   sums=plan.to_bins(fixed), poisson=plan.to_bins(pois), ring_mean=ring_mean,
                   mean_image=mean_image.reshape(plan.shape), normalization=norm.mode, n_flagged=int(n_bad),
                   info={"tile": None, "n_segments": plan.n_seg, "n_groups": int(ng)},
                   jack_sums=None if jack is None else jack[0], jack_poisson=None if jack is None else jack[1],
                   segment_sums=seg)


def _renormalised_jackknife(plan, edges, ring_mean, ref, X2, X1, P, pois_t, nbar):
    r"""Delete-one-group lag sums and shot-noise sums with the *deleted sample's own* normalisation
    (``"time"``): the ring means :math:`\bar N_r^{(g)}` averaged over the frames outside group g, so that
    :math:`a^{(g)}_r = \tilde N_r / \bar N_r^{(g)}` and, per segment,
    :math:`\sum_{h \ne g} [a^{(g)2} X_{2,h} - a^{(g)} X_{1,h} + P_h]` (X2 = P + M_o + M_p + G~, X1 = 2P + M_o + M_p).

    The full estimate divides by the mean over all frames, so a group whose rings are brighter (its
    configurations) raises its products and the normaliser alike: the first-order part cancels. A jackknife that
    keeps the full mean sees that part as variance that the estimate does not have (issue 11). Returns
    (sums (G, n_lags, n_q, n_phi), poisson (G, n_q, n_phi)); groups edges relative to the first frame."""
    G = edges.size - 1
    T = ring_mean.shape[0]
    tot = ring_mean.sum(axis=0)
    X2t, X1t, Pt = X2.sum(0), X1.sum(0), P.sum(0)
    cum_p = np.vstack([np.zeros((1, pois_t.shape[1])), np.cumsum(pois_t, axis=0)])
    pois_g = cum_p[edges[1:]] - cum_p[edges[:-1]]
    pois_tot = pois_g.sum(0)
    sums, pois = [], []
    for g in range(G):
        n_out = T - (edges[g + 1] - edges[g])
        with np.errstate(invalid="ignore", divide="ignore"):
            nb = (tot - ring_mean[edges[g]:edges[g + 1]].sum(axis=0)) / max(n_out, 1)
            ag = np.where(nb > 0, ref / nb, 0.0)[plan.seg_ring]
            scale = np.where(nb > 0, nbar / nb, 0.0)[plan.seg_ring] ** 2
        x = ag**2 * (X2t - X2[g]) - ag * (X1t - X1[g]) + (Pt - P[g])
        x[(Pt - P[g]) == 0] = 0.0
        sums.append(plan.to_bins(x))
        pois.append(plan.to_bins(scale * (pois_tot - pois_g[g])))
    return np.stack(sums), np.stack(pois)
