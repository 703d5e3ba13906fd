"""Frames into normalised pixel values: the normalisations of the stack engine and their loader.

``"time"``: each frame divided by the ring means averaged over all frames of the analysis (times an
optional flux factor per frame); ``"frame"``: by its own ring means. For ``"time"`` the frames are
centred with provisional ring means from a sample of frames, and :mod:`.engine` corrects the sums
exactly once the time average is known. Flagged values (the dtype's maximum 2^n - 1, negative, NaN)
in a frame are replaced by their ring mean, so they add nothing to the products, and counted.
"""

from __future__ import annotations

import threading
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
    (n_rings,)) for ``"time"``; ``flux``: per-frame factor f_t indexed by absolute frame (or None); ``gain``:
    detector counts per photon (the shot-noise term of lag 0 is gain / n instead of 1 / n; d itself does not
    depend on the units).
    """

    mode: str
    ref: np.ndarray | None = None
    flux: np.ndarray | None = None
    gain: float = 1.0

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

    Slabs of :data:`SLAB` frames, each in three compiled passes: (1) the used pixels are read in raster
    order (sequential memory; the source in reads of about :data:`READ_BYTES`), flagged (NaN marker) and
    summed per pixel, into a pixel-major slab (one 64-byte line holds a pixel's 16 frames); (2) they are
    placed in segment order, with the segment sums (float64, in pixel order) and the unflagged counts;
    (3) divided by the ring mean minus 1: :math:`d_t(p) = n_t(p)/(f_t \bar N_r) - 1` (float32)."""
    k = i1 - i0
    Q = np.zeros((k, plan.n_seg))
    bad_rows = np.zeros(k, dtype=np.int64)
    lo_k = 0 if keep[0] is None else keep[0] - i0
    hi_k = k if keep[1] is None else keep[1] - i0
    for a0 in range(0, k, SLAB):
        a1 = min(k, a0 + SLAB)
        Q[a0:a1], bad_rows[a0:a1] = _load_slab(source, plan, norm, i0 + a0, i0 + a1, out[a0:a1], pixel_sum,
                                                 lo_k - a0, hi_k - a0)
    return Q, bad_rows


#: Frames per slab of the loader (16 float32 values: one cache line per pixel).
SLAB = 16
_SCRATCH = threading.local()


def _slab_scratch(n: int) -> np.ndarray:
    """This thread's (n, SLAB) float32 slab, kept between calls (fresh large arrays cost page faults)."""
    c = getattr(_SCRATCH, "slab", None)
    if c is None or c.shape[0] != n:
        c = _SCRATCH.slab = np.empty((n, SLAB), dtype=np.float32)
    return c


def _load_slab(source, plan, norm, i0, i1, x, pixel_sum, lo, hi):
    k = i1 - i0
    raster, rank, seg_r = plan.raster_order()
    c = _slab_scratch(plan.n_pix)
    psum_r = np.zeros(plan.n_pix)
    Q = np.zeros((k, plan.n_seg))
    good_n = np.zeros((k, plan.n_seg))
    kern = _kernels()
    lo, hi = max(lo, 0), min(hi, k)
    fb = int(np.prod(plan.shape)) * np.dtype(getattr(source, "dtype", np.float64)).itemsize
    step = max(1, READ_BYTES // max(fb, 1))
    is_int, n_bad = True, 0
    for r0 in range(0, k, step):
        r1 = min(k, r0 + step)
        raw = np.asarray(source.read(i0 + r0, i0 + r1))
        if raw.ndim != 3 or raw.shape[1:] != tuple(plan.shape) or raw.shape[0] != r1 - r0:
            raise ShearcorrError(f"frames {i0 + r0}..{i0 + r1 - 1} have shape {raw.shape[1:]}, the analysis expects "
                                 f"{tuple(plan.shape)}")
        flat = raw.reshape(r1 - r0, -1)
        if not flat.flags.c_contiguous:
            flat = np.ascontiguousarray(flat)
        sv = sentinel_value(raw.dtype)
        is_int = is_int and bool(np.issubdtype(raw.dtype, np.integer))
        n_bad += kern["read"](flat, raster, seg_r, np.issubdtype(raw.dtype, np.integer), -1.0 if sv is None else float(sv),
                              c, r0, psum_r, lo - r0, hi - r0, Q[r0:r1])
    flux = np.ones(k) if norm.flux is None else np.asarray(norm.flux[i0:i1], dtype=np.float64)
    bad_rows = np.zeros(k, dtype=np.int64)
    if is_int and n_bad == 0:
        # integer counts, nothing flagged: the raster-order segment sums are exact (integers in float64), so
        # the normaliser is known now and the placement writes d directly
        _, inv = _ring_inverse(plan, norm, Q, flux)
        kern["place_scaled"](c, rank, plan.seg_offsets, plan.seg_ring, k, inv, x)
        pixel_sum += psum_r[rank]
        return Q, bad_rows
    # flagged values, or floating-point data (whose sums depend on their order: summed in pixel order)
    kern["place"](c, rank, plan.seg_offsets, k, x, Q, good_n)
    if n_bad:
        bad_rows[:] = plan.n_pix - good_n.sum(axis=1).astype(np.int64)
        # a value flagged in one frame is replaced by its ring mean: it adds nothing to the products
        with np.errstate(invalid="ignore", divide="ignore"):
            fill = (plan.to_rings(Q) / plan.to_rings(good_n) if norm.mode == "frame"
                    else norm.ref[None, :] * flux[:, None])
        fill = np.nan_to_num(fill).astype(np.float32)
        kern["fill"](c, rank, plan.seg_offsets, plan.seg_ring, bad_rows, fill, x, psum_r, lo, hi)
        Q = _segment_sums(x, plan.seg_offsets)
    pixel_sum += psum_r[rank]
    _, inv = _ring_inverse(plan, norm, Q, flux)
    kern["scale"](x, plan.seg_offsets, plan.seg_ring, inv)
    return Q, bad_rows


def _ring_inverse(plan, norm, Q, flux):
    """Ring means (counts per pixel; ``"frame"``: of each frame, ``"time"``: the provisional ones times the
    flux) and their float32 inverses (0 for empty rings), (k, n_rings) each."""
    if norm.mode == "frame":
        with np.errstate(invalid="ignore", divide="ignore"):  # rings without pixels: NaN, scaled by 0
            ring_mean = plan.to_rings(Q) / plan.n_pix_ring[None, :]
    else:
        ring_mean = norm.ref[None, :] * flux[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = np.where(ring_mean > 0, 1.0 / ring_mean, 0.0).astype(np.float32)
    return ring_mean, inv


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
            if is_int:
                return v < 0 or v >= sent
            xv = np.float32(v)
            return xv - xv != 0 or xv < 0

        @numba.njit(cache=True, nogil=True)
        def read(raw, raster, seg_r, is_int, sent, c, col0, psum_r, lo, hi, Q):
            # c[j, col0 + i] = raw[i, raster[j]] as float32 (NaN where flagged), in raster order;
            # psum_r[j] += the sum over the frames [lo, hi) of this read (float64); Q[i, seg] += the
            # unflagged values in raster order (exact for integer counts). Returns the flagged count.
            m = raw.shape[0]
            nan = np.float32(np.nan)
            nbad = 0
            for j in range(raster.size):
                r = raster[j]
                sg = seg_r[j]
                ps = 0.0
                for i in range(m):
                    v = raw[i, r]
                    bad = _flagged(v, is_int, sent)
                    xv = np.float32(v)
                    if bad:
                        c[j, col0 + i] = nan
                        nbad += 1
                    else:
                        c[j, col0 + i] = xv
                        Q[i, sg] += xv
                        if i >= lo and i < hi:
                            ps += xv
                psum_r[j] += ps
            return nbad

        @numba.njit(cache=True, nogil=True)
        def place_scaled(c, rank, offsets, seg_ring, k, inv, x):
            # x[i, p] = c[rank[p], i] * inv[i, ring] - 1 (float32), in segment order (one slab line per pixel)
            one = np.float32(1.0)
            f = np.empty(k, dtype=np.float32)
            for s in range(offsets.size - 1):
                for i in range(k):
                    f[i] = inv[i, seg_ring[s]]
                for p in range(offsets[s], offsets[s + 1]):
                    j = rank[p]
                    for i in range(k):
                        x[i, p] = c[j, i] * f[i] - one

        @numba.njit(cache=True, nogil=True)
        def place(c, rank, offsets, k, x, Q, good_n):
            # x[i, p] = c[rank[p], i] (0 where flagged, NaN in the slab) in segment order; Q = segment sums of x
            # (float64, in pixel order); good_n = unflagged pixels per segment
            for s in range(offsets.size - 1):
                p0, p1 = offsets[s], offsets[s + 1]
                for i in range(k):
                    xi = x[i]
                    acc = 0.0
                    ng = 0
                    for p in range(p0, p1):
                        v = c[rank[p], i]
                        if v != v:
                            xi[p] = 0.0
                        else:
                            xi[p] = v
                            acc += v
                            ng += 1
                    Q[i, s] = acc
                    good_n[i, s] = ng

        @numba.njit(cache=True, nogil=True)
        def fill(c, rank, offsets, seg_ring, bad_rows, value, x, psum_r, lo, hi):
            # flagged values (NaN in the slab) of the frames with any get their ring's fill value
            # (added to the raster-order pixel sums in [lo, hi))
            for i in range(bad_rows.size):
                if bad_rows[i] == 0:
                    continue
                for s in range(offsets.size - 1):
                    f = value[i, seg_ring[s]]
                    for p in range(offsets[s], offsets[s + 1]):
                        v = c[rank[p], i]
                        if v != v:
                            x[i, p] = f
                            if i >= lo and i < hi:
                                psum_r[rank[p]] += f

        @numba.njit(cache=True, nogil=True)
        def scale(x, offsets, seg_ring, inv):
            # x = x * inv[ring] - 1 in float32, segment by segment
            one = np.float32(1.0)
            for i in range(x.shape[0]):
                for s in range(offsets.size - 1):
                    f = inv[i, seg_ring[s]]
                    for p in range(offsets[s], offsets[s + 1]):
                        x[i, p] = x[i, p] * f - one

        _KERNELS.update(band=band, segsum=segsum, read=read, place=place, place_scaled=place_scaled, fill=fill, scale=scale)
    return _KERNELS
