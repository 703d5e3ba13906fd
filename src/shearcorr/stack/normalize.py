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

__all__ = ["Normalization", "load_frames", "provisional_ring_means", "NORMALIZATIONS", "N_PROVISIONAL", "band_sums"]

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


def load_frames(source, plan: BinPlan, norm: Normalization, i0: int, i1: int, keep=(None, None)):
    """Frames [i0, i1): normalised pixels (float32, (k, n_pix)), raw segment sums Q (float64,
    (k, n_seg)), flagged values per frame (k,) and the raw pixel sums over the frames ``keep``
    (absolute [lo, hi), default all) (float64, (n_pix,)).

    One compiled pass gathers the used pixels in segment order, flags and counts the bad values and
    sums the segments; a second compiled pass divides by the ring mean and subtracts 1: :math:`d_t(p) = n_t(p)/(f_t \\bar N_r) - 1` (float32 arithmetic)."""
    raw = np.asarray(source.read(i0, i1))
    k = raw.shape[0]
    if raw.ndim != 3 or raw.shape[1:] != tuple(plan.shape) or k != i1 - i0:
        raise ShearcorrError(f"frames {i0}..{i1 - 1} have shape {raw.shape[1:]}, the analysis expects {tuple(plan.shape)}")
    flat = raw.reshape(k, -1)
    if not flat.flags.c_contiguous:
        flat = np.ascontiguousarray(flat)
    sent = sentinel_value(raw.dtype)
    is_int = np.issubdtype(raw.dtype, np.integer)
    x = np.empty((k, plan.n_pix), dtype=np.float32)
    Q = np.zeros((k, plan.n_seg))
    good_n = np.zeros((k, plan.n_seg))
    bad_rows = np.zeros(k, dtype=np.int64)
    kern = _kernels()
    kern["gather"](flat, plan.index, plan.seg_offsets, is_int, -1.0 if sent is None else float(sent), x, Q, good_n,
                   bad_rows)
    flux = np.ones(k) if norm.flux is None else np.asarray(norm.flux[i0:i1], dtype=np.float64)
    if bad_rows.any():
        # a value flagged in one frame is replaced by its ring mean: it adds nothing to the products
        with np.errstate(invalid="ignore", divide="ignore"):
            fill = (plan.to_rings(Q) / plan.to_rings(good_n) if norm.mode == "frame"
                    else norm.ref[None, :] * flux[:, None])
        fill = np.nan_to_num(fill).astype(np.float32)
        kern["fill"](flat, plan.index, plan.seg_offsets, plan.seg_ring, is_int,
                     -1.0 if sent is None else float(sent), bad_rows, fill, x)
        Q = _segment_sums(x, plan.seg_offsets)
    lo = 0 if keep[0] is None else max(keep[0] - i0, 0)
    hi = k if keep[1] is None else min(keep[1] - i0, k)
    pixel_sum = x[lo:hi].sum(axis=0, dtype=np.float64) if hi > lo else np.zeros(plan.n_pix)
    if norm.mode == "frame":
        with np.errstate(invalid="ignore", divide="ignore"):  # rings without pixels: NaN, scaled by 0
            ring_mean = plan.to_rings(Q) / plan.n_pix_ring[None, :]
    else:
        ring_mean = norm.ref[None, :] * flux[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = np.where(ring_mean > 0, 1.0 / ring_mean, 0.0).astype(np.float32)
    kern["scale"](x, plan.seg_offsets, plan.seg_ring, inv)
    return x, Q, bad_rows, pixel_sum


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


def band_sums(gram, nb, lags, gid, out):
    """out[s, gid[r], l] += gram[s, r, r + lags[l]] (float64): the lag band of every segment's tile
    product, summed per group of origins (numba, compiled on first use)."""
    return _kernels()["band"](gram, nb, lags, gid, out)


_KERNELS: dict = {}


def _kernels() -> dict:
    """The engine's small loops, compiled with numba on first use (cached on disk)."""
    if not _KERNELS:
        import numba

        @numba.njit(cache=True, nogil=True)
        def band(gram, nb, lags, gid, out):
            for s in range(gram.shape[0]):
                for r in range(nb):
                    g = gid[r]
                    for li in range(lags.size):
                        out[s, g, li] += gram[s, r, r + lags[li]]

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
        def gather(raw, index, offsets, is_int, sent, x, Q, good_n, bad_rows):
            # x[i, p] = raw[i, index[p]] as float32 (0 where flagged); Q = segment sums of x (float64,
            # in pixel order); good_n = unflagged pixels per segment; bad_rows = flagged per frame
            for i in range(raw.shape[0]):
                nbad = 0
                for s in range(offsets.size - 1):
                    acc = 0.0
                    ng = 0
                    for p in range(offsets[s], offsets[s + 1]):
                        v = raw[i, index[p]]
                        if _flagged(v, is_int, sent):
                            x[i, p] = 0.0
                            nbad += 1
                        else:
                            xv = np.float32(v)
                            x[i, p] = xv
                            acc += xv
                            ng += 1
                    Q[i, s] = acc
                    good_n[i, s] = ng
                bad_rows[i] = nbad

        @numba.njit(cache=True, nogil=True)
        def fill(raw, index, offsets, seg_ring, is_int, sent, bad_rows, value, x):
            # flagged values of the frames with any get their ring's fill value
            for i in range(raw.shape[0]):
                if bad_rows[i] == 0:
                    continue
                for s in range(offsets.size - 1):
                    f = value[i, seg_ring[s]]
                    for p in range(offsets[s], offsets[s + 1]):
                        if _flagged(raw[i, index[p]], is_int, sent):
                            x[i, p] = f

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
