"""Frames into normalised pixel values: the normalisations of the stack engine and their loader.

``"time"``: each frame divided by the ring means averaged over all frames of the analysis (times an
optional flux factor per frame); ``"frame"``: by its own ring means. For ``"time"`` the frames are
centred with provisional ring means from a sample of frames, and :mod:`.engine` corrects the sums
exactly once the time average is known. Flagged values (the dtype's maximum 2^n - 1, negative, NaN)
in a frame are replaced by their ring mean, so they add nothing to the products, and counted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ShearcorrError
from ..experiment.frames import sentinel_value
from .plan import BinPlan

__all__ = ["Normalization", "load_frames", "load_into", "provisional_ring_means", "NORMALIZATIONS", "N_PROVISIONAL", "band_sums"]

#: Frame normalisations: ring mean over all frames (ensemble) or of each frame (pair-like).
NORMALIZATIONS = ("time", "frame")
#: Frames (evenly spread) that give the provisional ring means of the "time" normalisation.
N_PROVISIONAL = 32


@dataclass(frozen=True)
class Normalization:
    """How frames are normalised (see the module docstring).

    ``mode``: ``"time"`` or ``"frame"``; ``ref``: provisional ring means (counts per pixel, shape
    (n_rings,)) for ``"time"``; ``flux``: per-frame factor f_t indexed by absolute frame (or None).
    """

    mode: str
    ref: np.ndarray | None = None
    flux: np.ndarray | None = None

    def __post_init__(self):
        if self.mode not in NORMALIZATIONS:
            raise ShearcorrError(f"normalization must be one of {', '.join(NORMALIZATIONS)}, got {self.mode!r}")


#: Bytes of raw frames read from the source per call (the read buffers stay small enough for malloc to
#: reuse them: a fresh large array costs page faults, ~0.5 ns per byte on the development machine).
READ_BYTES = 16 * 2**20


def load_frames(source, plan: BinPlan, norm: Normalization, i0: int, i1: int, keep=(None, None)):
    """Frames [i0, i1): normalised pixels (float32, (k, n_pix)), raw segment sums Q (float64,
    (k, n_seg)), flagged values per frame (k,) and the raw pixel sums over the frames ``keep``
    (absolute [lo, hi), default all) (float64, (n_pix,)). See :func:`load_into`."""
    x = np.empty((i1 - i0, plan.n_pix), dtype=np.float32)
    pixel_sum = np.zeros(plan.n_pix)
    Q, bad_rows = load_into(source, plan, norm, i0, i1, x, pixel_sum, keep)
    return x, Q, bad_rows, pixel_sum


def load_into(source, plan: BinPlan, norm: Normalization, i0: int, i1: int, out, pixel_sum, keep=(None, None)):
    r"""Normalise frames [i0, i1) into ``out`` (float32, (k, n_pix), C-contiguous rows) and add their raw
    pixel values over the frames ``keep`` (absolute [lo, hi), default all) to ``pixel_sum`` (float64,
    (n_pix,)). Returns the raw segment sums Q (float64, (k, n_seg)) and the flagged values per frame (k,).

    The source is read in slabs of about :data:`READ_BYTES`. Per slab one compiled pass gathers the used
    pixels in segment order (every index read once for all frames of the slab), flags and counts the bad
    values, sums the segments (float64, in pixel order) and the pixels; a second compiled pass divides
    by the ring mean and subtracts 1: :math:`d_t(p) = n_t(p)/(f_t \bar N_r) - 1` (float32 arithmetic)."""
    k = i1 - i0
    Q = np.zeros((k, plan.n_seg))
    bad_rows = np.zeros(k, dtype=np.int64)
    fb = int(np.prod(plan.shape)) * np.dtype(getattr(source, "dtype", np.float64)).itemsize
    step = max(1, min(64, READ_BYTES // max(fb, 1)))
    lo_k = 0 if keep[0] is None else keep[0] - i0
    hi_k = k if keep[1] is None else keep[1] - i0
    for a0 in range(0, k, step):
        a1 = min(k, a0 + step)
        Q[a0:a1], bad_rows[a0:a1] = _load_slab(source, plan, norm, i0 + a0, i0 + a1, out[a0:a1], pixel_sum,
                                                 lo_k - a0, hi_k - a0)
    return Q, bad_rows


def _load_slab(source, plan, norm, i0, i1, x, pixel_sum, lo, hi):
    raw = np.asarray(source.read(i0, i1))
    k = raw.shape[0]
    if raw.ndim != 3 or raw.shape[1:] != tuple(plan.shape) or k != i1 - i0:
        raise ShearcorrError(f"frames {i0}..{i1 - 1} have shape {raw.shape[1:]}, the analysis expects {tuple(plan.shape)}")
    flat = raw.reshape(k, -1)
    if not flat.flags.c_contiguous:
        flat = np.ascontiguousarray(flat)
    sent = sentinel_value(raw.dtype)
    is_int = np.issubdtype(raw.dtype, np.integer)
    Q = np.zeros((k, plan.n_seg))
    good_n = np.zeros((k, plan.n_seg))
    bad_rows = np.zeros(k, dtype=np.int64)
    kern = _kernels()
    lo, hi = max(lo, 0), min(hi, k)
    kern["gather"](flat, plan.index, plan.seg_offsets, is_int, -1.0 if sent is None else float(sent), x, Q, good_n,
                   bad_rows, pixel_sum, lo, hi)
    flux = np.ones(k) if norm.flux is None else np.asarray(norm.flux[i0:i1], dtype=np.float64)
    if bad_rows.any():
        # a value flagged in one frame is replaced by its ring mean: it adds nothing to the products
        with np.errstate(invalid="ignore", divide="ignore"):
            fill = (plan.to_rings(Q) / plan.to_rings(good_n) if norm.mode == "frame"
                    else norm.ref[None, :] * flux[:, None])
        fill = np.nan_to_num(fill).astype(np.float32)
        kern["fill"](flat, plan.index, plan.seg_offsets, plan.seg_ring, is_int,
                     -1.0 if sent is None else float(sent), bad_rows, fill, x, pixel_sum, lo, hi)
        Q = _segment_sums(x, plan.seg_offsets)
    if norm.mode == "frame":
        with np.errstate(invalid="ignore", divide="ignore"):  # rings without pixels: NaN, scaled by 0
            ring_mean = plan.to_rings(Q) / plan.n_pix_ring[None, :]
    else:
        ring_mean = norm.ref[None, :] * flux[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = np.where(ring_mean > 0, 1.0 / ring_mean, 0.0).astype(np.float32)
    kern["scale"](x, plan.seg_offsets, plan.seg_ring, inv)
    return Q, bad_rows


def _segment_sums(x: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Sums of the columns of every segment, (k, n_seg) float64 (numba)."""
    out = np.zeros((x.shape[0], offsets.size - 1))
    _kernels()["segsum"](x, offsets, out)
    return out


def provisional_ring_means(source, plan: BinPlan, start: int, stop: int, flux=None, n_sample: int = N_PROVISIONAL):
    """Ring means (counts per pixel) of up to ``n_sample`` frames spread evenly over [start, stop),
    each divided by its flux factor: the provisional normaliser of the ``"time"`` mode."""
    picks = np.unique(np.linspace(start, stop - 1, min(n_sample, stop - start)).round().astype(int))
    tot = np.zeros(plan.n_rings)
    for t in picks:
        _, Q, _, _ = load_frames(source, plan, Normalization("frame"), int(t), int(t) + 1)
        f = 1.0 if flux is None else float(flux[t])
        tot += plan.to_rings(Q)[0] / f
    ref = tot / (picks.size * plan.n_pix_ring)
    if not np.any(ref > 0):
        raise ShearcorrError("the frames hold no photons in the q range; check the dataset and the geometry")
    return ref


def band_sums(gram, nb, lags, gid, out, s0: int = 0, ns: int | None = None):
    """out[s0 + s, gid[r], l] += gram[s, r, r + lags[l]] (float64) for s < ns (default all of ``gram``):
    the lag band of every segment's tile product, summed per group of origins (numba, compiled on first use)."""
    return _kernels()["band"](gram, gram.shape[0] if ns is None else int(ns), nb, lags, gid, out, int(s0))


_KERNELS: dict = {}


def _kernels() -> dict:
    """The engine's small loops, compiled with numba on first use (cached on disk)."""
    if not _KERNELS:
        import numba

        @numba.njit(cache=True, nogil=True)
        def band(gram, ns, nb, lags, gid, out, s0):
            for s in range(ns):
                for r in range(nb):
                    g = gid[r]
                    for li in range(lags.size):
                        out[s0 + s, g, li] += gram[s, r, r + lags[li]]

        @numba.njit(cache=True, nogil=True)
        def segsum(x, offsets, out):
            for i in range(x.shape[0]):
                for s in range(offsets.size - 1):
                    acc = 0.0
                    for p in range(offsets[s], offsets[s + 1]):
                        acc += x[i, p]
                    out[i, s] = acc

        @numba.njit(cache=True, nogil=True)
        def _flagged(v, is_int, sent):
            # NaN, +-inf (also after the cast to float32), negative, or the integer sentinel 2^n - 1
            xv = np.float32(v)
            return xv - xv != 0 or xv < 0 or (is_int and v >= sent)

        @numba.njit(cache=True, nogil=True)
        def gather(raw, index, offsets, is_int, sent, x, Q, good_n, bad_rows, psum, lo, hi):
            # x[i, p] = raw[i, index[p]] as float32 (0 where flagged); Q = segment sums of x (float64,
            # in pixel order); good_n = unflagged pixels per segment; bad_rows = flagged per frame;
            # psum[p] += the sum of x[lo:hi, p] (float64). Every index is read once for all k frames.
            k = raw.shape[0]
            acc = np.zeros(k)
            ng = np.zeros(k, dtype=np.int64)
            nbad = np.zeros(k, dtype=np.int64)
            for s in range(offsets.size - 1):
                for i in range(k):
                    acc[i] = 0.0
                    ng[i] = 0
                for p in range(offsets[s], offsets[s + 1]):
                    j = index[p]
                    ps = 0.0
                    for i in range(k):
                        v = raw[i, j]
                        if _flagged(v, is_int, sent):
                            x[i, p] = 0.0
                            nbad[i] += 1
                        else:
                            xv = np.float32(v)
                            x[i, p] = xv
                            acc[i] += xv
                            ng[i] += 1
                            if i >= lo and i < hi:
                                ps += xv
                    psum[p] += ps
                for i in range(k):
                    Q[i, s] = acc[i]
                    good_n[i, s] = ng[i]
            for i in range(k):
                bad_rows[i] = nbad[i]

        @numba.njit(cache=True, nogil=True)
        def fill(raw, index, offsets, seg_ring, is_int, sent, bad_rows, value, x, psum, lo, hi):
            # flagged values of the frames with any get their ring's fill value (added to psum in [lo, hi))
            for i in range(raw.shape[0]):
                if bad_rows[i] == 0:
                    continue
                for s in range(offsets.size - 1):
                    f = value[i, seg_ring[s]]
                    for p in range(offsets[s], offsets[s + 1]):
                        if _flagged(raw[i, index[p]], is_int, sent):
                            x[i, p] = f
                            if i >= lo and i < hi:
                                psum[p] += f

        @numba.njit(cache=True, nogil=True)
        def scale(x, offsets, seg_ring, inv):
            # x = x * inv[ring] - 1 in float32, segment by segment
            one = np.float32(1.0)
            for i in range(x.shape[0]):
                for s in range(offsets.size - 1):
                    f = inv[i, seg_ring[s]]
                    for p in range(offsets[s], offsets[s + 1]):
                        x[i, p] = x[i, p] * f - one

        _KERNELS.update(band=band, segsum=segsum, gather=gather, fill=fill, scale=scale)
    return _KERNELS
