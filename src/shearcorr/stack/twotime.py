r"""Two-time correlations C(t1, t2) of a stack on a grid of time bins, by two Gram matrices per segment.

Time bins: ``n_bins`` consecutive ranges of frames. With :math:`\bar d_k(p)` the mean of the
normalised pixel values over the frames of bin k (``"frame"`` normalisation: each frame divided by its
own ring means), the correlation averaged over all frame pairs of two bins is exactly

.. math:: C_{kl} - 1 = \langle \bar d_k \bar d_l \rangle_b \quad (k \ne l),\qquad
          C_{kk} - 1 = \frac{n_k^2\langle \bar d_k^2\rangle_b - \sum_{t\in k}\langle d_t^2\rangle_b}{n_k(n_k - 1)}

(bilinearity; the diagonal leaves out the pairs t = t'), so the whole map is the Gram matrix
:math:`\bar D_s \bar D_s^T` of the time-binned frames per segment (one sgemm of n_bins x n_bins
over the pixels) -- the stack is read once and only n_bins averaged frames are kept. A second Gram
matrix of the squares gives the pixel variance of :math:`u = \bar d_k \bar d_l` in every bin and
pair of time bins, i.e. the same error model as one frame pair (:mod:`shearcorr.experiment.correlation`:
:math:`\sigma^2 = (V_r + \kappa_r c^2)\,a_r/n_b` with :math:`V_r = \langle\bar d_k^2\rangle_r
\langle\bar d_l^2\rangle_r`).

Full-resolution C(t1, t2) of a few chosen bins (every frame pair) is kept as XPCS users know it
(``/xpcs/twotime/correlation_map/c2_NNNNN``, :mod:`.output`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import ShearcorrError
from .normalize import Normalization, load_frames
from .plan import BinPlan, as_source

__all__ = ["TwoTimeMaps", "twotime_maps", "time_bin_edges"]

def time_bin_edges(start: int, stop: int, n_bins: int) -> np.ndarray:
    """Frame edges of ``n_bins`` near-equal time bins over [start, stop) (at least one frame each)."""
    n = stop - start
    if n < 2:
        raise ShearcorrError(f"a two-time analysis needs at least 2 frames, got {n}")
    k = int(min(max(int(n_bins), 2), n))
    return np.unique(np.linspace(start, stop, k + 1).round().astype(np.int64))


@dataclass
class TwoTimeMaps:
    r"""Two-time correlations of a stack on time bins.

    Attributes
    ----------
    edges : ndarray (K + 1,)
        Frame edges of the time bins.
    C : ndarray (K, K, n_q, n_phi)
        C - 1 averaged over the frame pairs of two time bins (symmetric; see the module docstring).
    var_u : ndarray (K, K, n_q, n_phi)
        Pixel variance of :math:`\bar d_k\bar d_l` per bin (off-diagonal).
    row_var : ndarray (K, n_q)
        :math:`\langle\bar d_k^2\rangle` per q row (shot noise included): V_r of the error law.
    n_pix : ndarray (n_q, n_phi)
    ring_mean : ndarray (n_frames, n_rings)
        Ring means of every frame (counts per pixel).
    contrast : ndarray (K, n_q)
        Shot-noise-corrected lag-0 correlation per time bin and q row (the speckle contrast).
    selected : dict
        Bin label (1-based: iq * n_phi + iphi + 1) -> full-resolution C - 1 (n_frames, n_frames).
    """

    plan: BinPlan
    edges: np.ndarray
    C: np.ndarray
    var_u: np.ndarray
    row_var: np.ndarray
    n_pix: np.ndarray
    ring_mean: np.ndarray
    contrast: np.ndarray
    mean_image: np.ndarray
    selected: dict = field(default_factory=dict)
    n_flagged: int = 0
    contrast_bin: np.ndarray | None = None  # (K, n_q, n_phi): lag-0 contrast per bin and time bin
    bin_var: np.ndarray | None = None  # (K, n_q, n_phi): <dbar_k^2> per bin (shot noise included)

    @property
    def n_bins(self) -> int:
        return self.edges.size - 1

    @property
    def centers(self) -> np.ndarray:
        """Time-bin centres in frames (mean frame index)."""
        return 0.5 * (self.edges[:-1] + self.edges[1:] - 1)


@dataclass(frozen=True)
class _TTTask:
    source: object
    plan: BinPlan
    k0: int
    k1: int
    edges: np.ndarray
    sel_cols: np.ndarray
    chunk: int = 64


def _run_tt_task(task: _TTTask) -> dict:
    plan, e = task.plan, task.edges
    f0, f1 = int(e[task.k0]), int(e[task.k1])
    nk = task.k1 - task.k0
    D = np.zeros((nk, plan.n_pix), dtype=np.float32)
    dsq = np.zeros((nk, plan.n_seg))
    Q = np.zeros((f1 - f0, plan.n_seg))
    pois = np.zeros((f1 - f0, plan.n_seg))
    sel = np.zeros((f1 - f0, task.sel_cols.size), dtype=np.float32)
    psum = np.zeros(plan.n_pix)
    n_bad = 0
    norm = Normalization("frame")
    offs = plan.seg_offsets[:-1]
    for j0 in range(f0, f1, task.chunk):
        j1 = min(f1, j0 + task.chunk)
        x, q, bad, ps = load_frames(task.source, plan, norm, j0, j1)
        Q[j0 - f0:j1 - f0] = q
        psum += ps
        n_bad += int(bad.sum())
        sel[j0 - f0:j1 - f0] = x[:, task.sel_cols]
        rm = plan.to_rings(q) / plan.n_pix_ring[None, :]
        with np.errstate(divide="ignore"):
            inv = np.where(rm > 0, 1.0 / rm, 0.0)[:, plan.seg_ring]
        pois[j0 - f0:j1 - f0] = q * inv**2
        kk = np.searchsorted(e, np.arange(j0, j1), side="right") - 1 - task.k0
        sq = np.add.reduceat(x * x, offs, axis=1, dtype=np.float64)
        for k in np.unique(kk):
            rows = kk == k
            D[k] += x[rows].sum(axis=0, dtype=np.float64).astype(np.float32)
            dsq[k] += sq[rows].sum(axis=0)
    return {"k0": task.k0, "k1": task.k1, "D": D, "dsq": dsq, "Q": Q, "pois": pois, "sel": sel, "pixel_sum": psum,
            "n_bad": n_bad}


def twotime_maps(stack, plan: BinPlan, *, start: int = 0, stop: int | None = None, n_bins: int = 200, selected=(),
                 executor=None, task_frames: int = 256, gain: float = 1.0) -> TwoTimeMaps:
    """Two-time maps of ``stack`` on ``n_bins`` time bins (module docstring).

    Parameters
    ----------
    stack : frame source, ndarray or dask array
    plan : BinPlan
    start, stop : int
        Frames [start, stop).
    n_bins : int
        Time bins (at most the number of frames).
    selected : iterable of int
        Bin labels (1-based, iq * n_phi + iphi + 1) whose full-resolution C(t1, t2) is kept.
    executor : executor, optional
        Runs the reading tasks (one per ~``task_frames`` frames).
    gain : float
        Detector counts per photon (1: photon counts); scales the shot noise removed from each frame's contrast.
    """
    from threadpoolctl import threadpool_limits

    src = as_source(stack)
    stop = int(src.n_frames) if stop is None else int(stop)
    if not (0 <= start < stop <= src.n_frames):
        raise ShearcorrError(f"frames {start}:{stop} are outside the stack of {src.n_frames} frames")
    if tuple(src.frame_shape) != tuple(plan.shape):
        raise ShearcorrError(f"the stack's frames are {tuple(src.frame_shape)} but the geometry and mask are {tuple(plan.shape)}")
    edges = time_bin_edges(start, stop, n_bins)
    K = edges.size - 1
    labels = [int(v) for v in selected]
    for lab in labels:
        if not 1 <= lab <= plan.n_bins:
            raise ShearcorrError(f"selected bin {lab} does not exist (bins are 1..{plan.n_bins})")
    seg_of_bin = {lab: np.flatnonzero(plan.seg_bin == lab - 1) for lab in labels}
    cols = {lab: np.concatenate([np.arange(plan.seg_offsets[s], plan.seg_offsets[s + 1]) for s in segs])
            if segs.size else np.zeros(0, dtype=np.int64) for lab, segs in seg_of_bin.items()}
    sel_cols = np.concatenate([cols[lab] for lab in labels]) if labels else np.zeros(0, dtype=np.int64)
    per = max(1, int(round(task_frames / max((stop - start) / K, 1))))
    tasks = [_TTTask(src, plan, k, min(K, k + per), edges, sel_cols) for k in range(0, K, per)]
    parts = [_run_tt_task(t) for t in tasks] if executor is None else [f.result() for f in
                                                                        [executor.submit(_run_tt_task, t) for t in tasks]]
    D = np.concatenate([p["D"] for p in parts])
    dsq = np.concatenate([p["dsq"] for p in parts])
    Q = np.concatenate([p["Q"] for p in parts])
    pois = float(gain) * np.concatenate([p["pois"] for p in parts])
    sel = np.concatenate([p["sel"] for p in parts])
    psum = np.sum([p["pixel_sum"] for p in parts], axis=0)
    n_k = np.diff(edges).astype(np.float64)
    D /= n_k[:, None].astype(np.float32)
    npix_b = plan.n_pix_bin.ravel()
    G1 = np.zeros((plan.n_bins, K, K))
    G2 = np.zeros((plan.n_bins, K, K))
    diag_seg = np.zeros((K, plan.n_seg))
    with threadpool_limits(limits=1, user_api="blas"):
        for s in range(plan.n_seg):
            X = D[:, plan.seg_offsets[s]:plan.seg_offsets[s + 1]]
            g = X @ X.T
            X2 = X * X
            G1[plan.seg_bin[s]] += g
            G2[plan.seg_bin[s]] += X2 @ X2.T
            diag_seg[:, s] = np.diagonal(g)
    with np.errstate(invalid="ignore", divide="ignore"):
        C = G1 / npix_b[:, None, None]
        var_u = np.maximum(G2 / npix_b[:, None, None] - C**2, 0.0)
        # diagonal: drop the pairs t = t' (shot noise and the speckle of one frame)
        dsq_b = plan.to_bins(dsq).reshape(K, -1).T  # (nbins, K)
        corr = (n_k**2 * np.diagonal(G1, axis1=1, axis2=2) - dsq_b) / (n_k * np.maximum(n_k - 1, 1))
        idx = np.arange(K)
        C[:, idx, idx] = np.where(n_k > 1, corr, np.nan) / npix_b[:, None]
        var_u[:, idx, idx] = np.nan
        row_var = plan.to_bins(diag_seg).sum(axis=2) / plan.n_pix_bin.sum(axis=1)[None, :]
        T_frames = stop - start
        frame_bin = np.searchsorted(edges, np.arange(start, stop), side="right") - 1
        pois_k = np.zeros((K, plan.n_seg))
        np.add.at(pois_k, frame_bin, pois)
        row_pix = plan.n_pix_bin.sum(axis=1)[None, :]
        contrast = (plan.to_bins(dsq - pois_k).sum(axis=2)) / (n_k[:, None] * row_pix)
        contrast_bin = plan.to_bins(dsq - pois_k) / (n_k[:, None, None] * plan.n_pix_bin[None])
        bin_var = plan.to_bins(diag_seg) / plan.n_pix_bin[None]
    C[npix_b == 0] = np.nan
    C = np.moveaxis(C, 0, -1).reshape(K, K, plan.n_q, plan.n_phi)
    var_u = np.moveaxis(var_u, 0, -1).reshape(K, K, plan.n_q, plan.n_phi)
    selected_maps = {}
    off = 0
    for lab in labels:
        n_b = cols[lab].size
        if n_b:
            X = sel[:, off:off + n_b].astype(np.float64)
            c2 = X @ X.T / n_b
            segs = seg_of_bin[lab]
            d0 = (np.einsum("ij,ij->i", X, X) - pois[:, segs].sum(axis=1)) / n_b
            c2[np.diag_indices_from(c2)] = d0
            selected_maps[lab] = c2
        off += n_b
    ring_mean = plan.to_rings(Q) / plan.n_pix_ring[None, :]
    mean_image = np.full(int(np.prod(plan.shape)), np.nan)
    mean_image[plan.index] = psum / T_frames
    return TwoTimeMaps(plan=plan, edges=edges, C=C, var_u=var_u, row_var=row_var, n_pix=plan.n_pix_bin,
                       ring_mean=ring_mean, contrast=contrast, mean_image=mean_image.reshape(plan.shape),
                       selected=selected_maps, n_flagged=int(sum(p["n_bad"] for p in parts)),
                       contrast_bin=contrast_bin, bin_var=bin_var)
