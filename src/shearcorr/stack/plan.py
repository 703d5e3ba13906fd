"""Pixels of a stack analysis sorted by segment, and frame sources (in memory, Dask).

A *segment* is the set of pixels of one polar bin (log q x azimuth folded mod pi, as in
:mod:`shearcorr.experiment.correlation`) and one of its ``N_SUB_RING`` thin normalisation rings;
:class:`BinPlan` sorts the used pixels so that every segment is a contiguous block of columns,
which is what the sgemm calls of :mod:`.engine` work on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import ShearcorrError
from ..experiment.correlation import N_SUB_RING

__all__ = ["BinPlan", "make_plan", "ArraySource", "DaskSource", "as_source"]


@dataclass(frozen=True)
class BinPlan:
    """Pixels of a stack analysis, sorted by segment (polar bin x thin ring).

    Attributes
    ----------
    shape : (ny, nx)
        Detector shape.
    q_edges : ndarray (n_q + 1,)
        q bin edges (q R0), log-spaced.
    n_phi : int
        Azimuth bins over [0, pi) (detector azimuth, APS convention, folded mod pi).
    index : ndarray of int64 (n_pix,)
        Flat pixel indices, sorted by segment.
    seg_offsets : ndarray (n_seg + 1,)
        Segment s is ``index[seg_offsets[s]:seg_offsets[s + 1]]``.
    seg_bin, seg_ring : ndarray (n_seg,)
        Polar bin (iq * n_phi + iphi) and thin ring (iq * n_sub + isub) of each segment.
    n_sub : int
        Thin rings per q bin.
    """

    shape: tuple
    q_edges: np.ndarray
    n_phi: int
    index: np.ndarray
    seg_offsets: np.ndarray
    seg_bin: np.ndarray
    seg_ring: np.ndarray
    n_sub: int = N_SUB_RING
    pix_ring: np.ndarray = field(default=None, repr=False)

    @property
    def n_q(self) -> int:
        return self.q_edges.size - 1

    @property
    def n_bins(self) -> int:
        return self.n_q * self.n_phi

    @property
    def n_rings(self) -> int:
        return self.n_q * self.n_sub

    @property
    def n_seg(self) -> int:
        return self.seg_bin.size

    @property
    def n_pix(self) -> int:
        return self.index.size

    @property
    def n_pix_seg(self) -> np.ndarray:
        return np.diff(self.seg_offsets)

    @property
    def phi_edges(self) -> np.ndarray:
        return np.linspace(0.0, np.pi, self.n_phi + 1)

    @property
    def q(self) -> np.ndarray:
        """Geometric bin centres (q R0)."""
        return np.sqrt(self.q_edges[:-1] * self.q_edges[1:])

    def to_bins(self, a) -> np.ndarray:
        """Sum a per-segment array (..., n_seg) into polar bins (..., n_q, n_phi)."""
        a = np.asarray(a, dtype=np.float64)
        return _sum_into(a, self.seg_bin, self.n_bins).reshape(a.shape[:-1] + (self.n_q, self.n_phi))

    def to_rings(self, a) -> np.ndarray:
        """Sum a per-segment array (..., n_seg) into thin rings (..., n_rings)."""
        return _sum_into(np.asarray(a, dtype=np.float64), self.seg_ring, self.n_rings)

    @property
    def n_pix_bin(self) -> np.ndarray:
        return self.to_bins(self.n_pix_seg)

    @property
    def n_pix_ring(self) -> np.ndarray:
        return self.to_rings(self.n_pix_seg)

    def raster_order(self):
        """(raster, rank, seg): the used pixels' flat indices in raster (ascending) order, for every pixel
        of :attr:`index` its position in that order (``raster[rank] == index``), and the segment of every
        pixel in raster order; computed once per plan. The loader reads frames in raster order (sequential
        memory) and places pixels in segment order."""
        cached = self.__dict__.get("_raster")
        if cached is None:
            order = np.argsort(self.index, kind="stable")
            rank = np.empty_like(order)
            rank[order] = np.arange(order.size)
            seg = np.repeat(np.arange(self.n_seg, dtype=np.int64), self.n_pix_seg)[order]
            cached = (self.index[order], rank, seg)
            object.__setattr__(self, "_raster", cached)
        return cached

    def valid_image(self) -> np.ndarray:
        """Boolean image of the used pixels."""
        img = np.zeros(int(np.prod(self.shape)), dtype=bool)
        img[self.index] = True
        return img.reshape(self.shape)


def _sum_into(a: np.ndarray, idx: np.ndarray, n: int) -> np.ndarray:
    """out[..., k] = sum of a[..., j] over j with idx[j] == k (a sparse one-hot product, float64)."""
    from scipy.sparse import csr_matrix

    onehot = csr_matrix((np.ones(idx.size), (np.arange(idx.size), idx)), shape=(idx.size, n))
    flat = a.reshape(-1, a.shape[-1])
    return np.asarray((onehot.T @ flat.T).T).reshape(a.shape[:-1] + (n,))


def make_plan(valid, qr0, phi, q_edges, n_phi: int = 36, *, n_sub: int = N_SUB_RING) -> BinPlan:
    """Sort the valid pixels with q in [q_edges[0], q_edges[-1]) by segment (see :class:`BinPlan`).

    Parameters
    ----------
    valid : bool ndarray (ny, nx)
        True = valid pixel.
    qr0, phi : ndarray (ny, nx)
        q R0 and detector azimuth (rad, APS convention) of every pixel.
    q_edges : ndarray
        q bin edges (q R0).
    n_phi : int
        Azimuth bins over [0, pi).
    """
    valid = np.asarray(valid, dtype=bool)
    q_edges = np.asarray(q_edges, dtype=np.float64)
    n_q = q_edges.size - 1
    if n_q < 1 or np.any(np.diff(q_edges) <= 0):
        raise ShearcorrError("q bin edges must be increasing, at least 2 of them")
    if int(n_phi) < 1:
        raise ShearcorrError(f"n_phi must be >= 1, got {n_phi}")
    with np.errstate(invalid="ignore"):
        inq = valid & np.isfinite(qr0) & (qr0 >= q_edges[0]) & (qr0 < q_edges[-1])
    flat = np.flatnonzero(inq.ravel())
    if flat.size < 100:
        raise ShearcorrError(f"only {flat.size} valid pixels fall in the q range; check the geometry and the mask")
    qv = np.asarray(qr0).ravel()[flat]
    r = np.clip(np.searchsorted(q_edges, qv, side="right") - 1, 0, n_q - 1)
    lq = np.log(q_edges)
    frac = (np.log(qv) - lq[r]) / (lq[r + 1] - lq[r])
    sub = np.clip((frac * n_sub).astype(np.int64), 0, n_sub - 1)
    ang = np.mod(np.asarray(phi).ravel()[flat], np.pi)
    pb = np.clip((ang / (np.pi / n_phi)).astype(np.int64), 0, n_phi - 1)
    key = (r * n_phi + pb) * n_sub + sub
    order = np.argsort(key, kind="stable")
    key, flat = key[order], flat[order]
    uniq, start = np.unique(key, return_index=True)
    offsets = np.append(start, key.size).astype(np.int64)
    seg_bin = (uniq // n_sub).astype(np.int64)
    seg_ring = ((uniq // n_sub) // n_phi * n_sub + uniq % n_sub).astype(np.int64)
    pix_ring = np.repeat(seg_ring, np.diff(offsets))
    return BinPlan(tuple(int(s) for s in np.shape(valid)), q_edges, int(n_phi), flat.astype(np.int64), offsets,
                   seg_bin, seg_ring, int(n_sub), pix_ring)


# ---------------------------------------------------------------------------------------------- sources


class ArraySource:
    """A stack held in memory (a 3-D array, frames first) as a frame source."""

    def __init__(self, array):
        a = np.asarray(array)
        if a.ndim != 3:
            raise ShearcorrError(f"a frame stack must be 3-D (frames, rows, columns), got shape {a.shape}")
        self.array = a
        self.n_frames = a.shape[0]
        self.frame_shape = a.shape[1:]
        self.dtype = a.dtype
        self.description = {"source": "array", "shape": list(a.shape), "dtype": str(a.dtype)}

    def read(self, i0: int, i1: int) -> np.ndarray:
        return self.array[i0:i1]


class DaskSource:
    """A Dask array (frames first) as a frame source; each read computes one slice synchronously."""

    def __init__(self, array):
        if array.ndim != 3:
            raise ShearcorrError(f"a frame stack must be 3-D (frames, rows, columns), got shape {array.shape}")
        self.array = array
        self.n_frames = int(array.shape[0])
        self.frame_shape = tuple(int(s) for s in array.shape[1:])
        self.dtype = array.dtype
        self.description = {"source": "dask array", "shape": [int(s) for s in array.shape], "dtype": str(array.dtype)}

    def read(self, i0: int, i1: int) -> np.ndarray:
        import dask

        with dask.config.set(scheduler="synchronous"):
            return np.asarray(self.array[i0:i1].compute())


def as_source(stack):
    """A frame source for ``stack``: an object with ``read``, a NumPy array or a Dask array."""
    if hasattr(stack, "read") and hasattr(stack, "n_frames"):
        return stack
    if type(stack).__module__.startswith("dask"):
        return DaskSource(stack)
    return ArraySource(stack)
