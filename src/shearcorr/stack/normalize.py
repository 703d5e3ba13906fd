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
    (absolute [lo, hi), default all) (float64, (n_pix,))."""
    raw = np.asarray(source.read(i0, i1))
    k = raw.shape[0]
    if raw.ndim != 3 or raw.shape[1:] != tuple(plan.shape) or k != i1 - i0:
        raise ShearcorrError(f"frames {i0}..{i1 - 1} have shape {raw.shape[1:]}, the analysis expects {tuple(plan.shape)}")
    vals = raw.reshape(k, -1)[:, plan.index]
    sent = sentinel_value(raw.dtype)
    x = vals.astype(np.float32)
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(x) | (x < 0)
        if sent is not None:
            bad |= vals >= sent
    bad_rows = bad.sum(axis=1)
    starts = plan.seg_offsets[:-1]
    flux = np.ones(k) if norm.flux is None else np.asarray(norm.flux[i0:i1], dtype=np.float64)
    if bad_rows.any():
        # a value flagged in one frame is replaced by its ring mean: it adds nothing to the products
        x[bad] = 0.0
        good = (~bad).astype(np.float32)
        seg_n = np.add.reduceat(good, starts, axis=1, dtype=np.float64)
        seg_s = np.add.reduceat(x, starts, axis=1, dtype=np.float64)
        ring_n, ring_s = plan.to_rings(seg_n), plan.to_rings(seg_s)
        with np.errstate(invalid="ignore", divide="ignore"):
            fill = ring_s / ring_n if norm.mode == "frame" else norm.ref[None, :] * flux[:, None]
        rows, cols = np.nonzero(bad)
        x[rows, cols] = np.nan_to_num(fill[rows, plan.pix_ring[cols]])
    Q = _segment_sums(x, plan.seg_offsets)
    lo = 0 if keep[0] is None else max(keep[0] - i0, 0)
    hi = k if keep[1] is None else min(keep[1] - i0, k)
    pixel_sum = x[lo:hi].sum(axis=0, dtype=np.float64) if hi > lo else np.zeros(plan.n_pix)
    if norm.mode == "frame":
        ring_mean = plan.to_rings(Q) / plan.n_pix_ring[None, :]
    else:
        ring_mean = norm.ref[None, :] * flux[:, None]
    with np.errstate(divide="ignore"):
        inv = np.where(ring_mean > 0, 1.0 / ring_mean, 0.0).astype(np.float32)
    x *= inv[:, plan.pix_ring]
    x -= 1.0
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
    """The engine's two small loops, compiled with numba on first use (cached on disk)."""
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

        _KERNELS.update(band=band, segsum=segsum)
    return _KERNELS
