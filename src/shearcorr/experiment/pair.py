"""A pair of detector frames: two frames and the common mask of valid pixels (True = valid).

:func:`make_pair` combines two arrays and the masks (user mask, the detector's flags 2^n - 1 of integer data,
negative, non-finite and saturated pixels, each counted); :func:`load_pair` reads two frames (or two frames of
one stack) with the readers of :mod:`.frames` and does the same.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ShearcorrError
from .frames import check_mask_plausible, read_mask, _read_raw, sentinel_value

__all__ = ["FramePair", "make_pair", "load_pair", "shadow_mask", "shadow_warning"]

#: :func:`shadow_mask`: a pixel is *dark* when its count, summed over the frames, is at most k_r, the largest k
#: whose chance in its ring (mean mu_r) is <= this for any speckle: 1 - (mu_r / (1 + mu_r))^(k + 1) <= 0.1.
SHADOW_P_DARK = 0.1
#: The ring mean at which k_r reaches 0 (a pixel then reads 0 in all frames with probability <= 1 / (1 + mean)):
#: rings at least this bright are *bright*.
SHADOW_MIN_COUNTS = 9.0
#: ... and a connected region of dark pixels is a shadow when its bright-ring pixels span at least this many speckle
#: areas and this many pixels: by chance, with fewer than ~4^n shapes of n cells through a place, at most
#: (4 x 0.1)^32 ~ 2e-13 per place on the detector.
SHADOW_MIN_SPECKLES = 32
SHADOW_MIN_PIXELS = 25
SHADOW_RINGS = 128


@dataclass(frozen=True)
class FramePair:
    """Two frames (float64, masked pixels set to 0) and the common mask (True = valid).

    ``n_flagged`` counts pixels excluded for each reason (user mask, negative, non-finite, saturated).
    """

    before: np.ndarray
    after: np.ndarray
    valid: np.ndarray
    n_flagged: dict
    sources: dict

    def restrict(self, mask: np.ndarray, reason: str) -> "FramePair":
        """The pair with the pixels outside ``mask`` (True = valid) also masked, counted as ``reason``."""
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != self.valid.shape:
            raise ShearcorrError(f"the {reason} has shape {mask.shape} but the frames are {self.valid.shape}")
        valid = self.valid & mask
        if not valid.any():
            raise ShearcorrError(f"the {reason} leaves no valid pixel")
        n = dict(self.n_flagged, **{reason: int((self.valid & ~mask).sum())})
        return FramePair(np.where(valid, self.before, 0.0), np.where(valid, self.after, 0.0), valid, n, self.sources)


def make_pair(before: np.ndarray, after: np.ndarray, mask: np.ndarray | None = None,
              saturation: float | None = None, sources: dict | None = None, *,
              detector_mask: np.ndarray | None = None) -> FramePair:
    """Combine two frames and an optional mask (True = valid) into a :class:`FramePair`.

    A pixel is valid when it is valid in the user mask and in the detector's ``detector_mask``
    (NeXus pixel_mask, True = valid) and, in *both* frames, not the detector flag 2^n - 1 of integer
    data, finite, >= 0 and below ``saturation`` (counts; None = no saturation level).
    """
    flags = None
    for arr in (before, after):
        sent = sentinel_value(np.asarray(arr).dtype) if np.asarray(arr).dtype != bool else None
        if sent is not None:
            f = np.asarray(arr) >= sent
            flags = f if flags is None else (flags | f if flags.shape == f.shape else flags)
    b, a = np.asarray(before, dtype=np.float64), np.asarray(after, dtype=np.float64)
    if b.ndim != 2 or a.ndim != 2:
        raise ShearcorrError(f"frames must be 2-D, got shapes {b.shape} and {a.shape}")
    if b.shape != a.shape:
        raise ShearcorrError(f"the frames have different shapes: before {b.shape}, after {a.shape}")
    valid = np.ones(b.shape, dtype=bool)
    flagged = {}
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != b.shape:
            raise ShearcorrError(f"the mask has shape {mask.shape} but the frames are {b.shape}")
        flagged["mask"] = int((~mask).sum())
        valid &= mask
    if detector_mask is not None:
        dm = np.asarray(detector_mask, dtype=bool)
        if dm.shape != b.shape:
            raise ShearcorrError(f"the detector pixel_mask has shape {dm.shape} but the frames are {b.shape}")
        flagged["pixel_mask"] = int((valid & ~dm).sum())
        valid &= dm
    if flags is not None:
        flagged["detector_flag"] = int((valid & flags).sum())
        valid &= ~flags
    finite = np.isfinite(b) & np.isfinite(a)
    flagged["non_finite"] = int((valid & ~finite).sum())
    valid &= finite
    with np.errstate(invalid="ignore"):
        nonneg = (b >= 0) & (a >= 0)
        flagged["negative"] = int((valid & ~nonneg).sum())
        valid &= nonneg
        if saturation is not None:
            if not np.isfinite(saturation) or saturation <= 0:
                raise ShearcorrError(f"saturation level must be a positive number, got {saturation}")
            ok = (b < saturation) & (a < saturation)
            flagged["saturated"] = int((valid & ~ok).sum())
            valid &= ok
    if not valid.any():
        raise ShearcorrError(f"all {valid.size} pixels are masked (reasons: {flagged}); check the mask convention")
    b = np.where(valid, b, 0.0)
    a = np.where(valid, a, 0.0)
    return FramePair(b, a, valid, flagged, dict(sources or {}))


def shadow_mask(total: np.ndarray, valid: np.ndarray, radius: np.ndarray, speckle_px: float) -> np.ndarray:
    """Pixels in the shadow of a beam stop (or its arm, or a detector gap stored as 0): True = shadowed.

    ``total`` (ny, nx): each pixel's count summed over the frames; ``radius``: its distance from the beam (any
    unit, e.g. q R0); ``speckle_px``: the speckle size (pixels).

    Speckle from Gaussian fields (M >= 1 modes, any correlation between the frames) with mean mu gives a summed
    count n <= k with probability at most that of M = 1, 1 - (mu / (1 + mu))^(k + 1) (the geometric law: the
    exponential intensity is the most dispersed; k = 0: P0 = (1 + mu / M)^-M <= 1 / (1 + mu)). Each ring
    (``SHADOW_RINGS`` radial bins; mean mu_r over its valid pixels, shadow included) gets the largest k_r with
    that probability <= ``SHADOW_P_DARK`` (k_r = 0 from mu_r = ``SHADOW_MIN_COUNTS`` = 9, 2 at 30, 9 at 100), and
    a ring inside the innermost bright one (mu_r >= 9) whose mean is itself <= that ring's k_r is judged with it
    (the scattering of a dilute sample falls with q: such a ring is dark because it is shadowed; a ring that is
    merely dim, e.g. below a structure peak, is not judged). A pixel is *dark* when n <= k_r (or n = 0 anywhere);
    a connected region of dark pixels spanning n independent speckle areas in judged rings happens by chance with
    probability <= (4 x 0.1)^n per place (fewer than ~4^n shapes of n cells, lattice animals). A region is a
    shadow when its pixels in judged rings number at least ``SHADOW_MIN_PIXELS`` and ``SHADOW_MIN_SPECKLES``
    speckle areas (speckle_px^2); those pixels are returned, and so are the pixels of inner rings whose every valid
    pixel reads 0. So a stop that leaks a few counts (air scattering behind it, a semi-transparent edge) is
    found as well as one that reads 0. Dark pixels in rings not judged are left alone: there they are data, and
    masking them would raise the ring's mean.
    """
    from scipy import ndimage

    valid = np.asarray(valid, dtype=bool)
    out = np.zeros(valid.shape, dtype=bool)
    r = np.asarray(radius, dtype=np.float64)
    ok = valid & np.isfinite(r)
    if not ok.any():
        return out
    tot_img = np.asarray(total, dtype=np.float64)
    edges = np.linspace(r[ok].min(), r[ok].max(), SHADOW_RINGS + 1)
    ring = np.clip(np.searchsorted(edges, r, side="right") - 1, 0, SHADOW_RINGS - 1)
    n = np.bincount(ring[ok], minlength=SHADOW_RINGS)
    mean = np.bincount(ring[ok], weights=tot_img[ok], minlength=SHADOW_RINGS) / np.maximum(n, 1)
    lit = mean >= SHADOW_MIN_COUNTS
    if not lit.any():
        return out
    k = dark_threshold(mean)
    first = int(np.argmax(lit))
    judged = lit.copy()  # the rings where darkness is improbable by chance: the bright ones, and inner rings ...
    judged[:first] = (n[:first] > 0) & (mean[:first] <= k[first])  # ... as dark as the innermost bright ring's k
    k[:first] = k[first]
    dark = ok & ((tot_img == 0) | (tot_img <= k[ring]))
    counted = dark & judged[ring]
    if not counted.any():
        return out
    labels, n_lab = ndimage.label(dark)
    size = np.bincount(labels[counted], minlength=n_lab + 1)
    need = max(SHADOW_MIN_PIXELS, SHADOW_MIN_SPECKLES * max(float(speckle_px), 1.0) ** 2)
    shadow = size >= need
    shadow[0] = False
    # the stop itself: rings inside the innermost bright one whose every valid pixel reads 0
    empty = (n > 0) & (mean == 0) & (np.arange(SHADOW_RINGS) < first)
    return (counted & shadow[labels]) | (ok & empty[ring])


def dark_threshold(mean) -> np.ndarray:
    """k_r of :func:`shadow_mask` for ring means ``mean`` (counts summed over the frames): the largest k with
    1 - (mu / (1 + mu))^(k + 1) <= SHADOW_P_DARK; -1 where mu < SHADOW_MIN_COUNTS (no count is improbable)."""
    mu = np.asarray(mean, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        k = np.floor(np.log1p(-SHADOW_P_DARK) / -np.log1p(1.0 / mu) + 1e-9) - 1.0
    return np.where(np.isfinite(k) & (mu >= SHADOW_MIN_COUNTS), k, -1.0)


def shadow_warning(n_pixels: int, frames: str) -> str:
    """The warning of :func:`shadow_mask`'s pixels, masked; ``frames``: which frames were summed ("both frames")."""
    return (f"{n_pixels} pixels read (almost) no counts in {frames} in connected regions where their rings hold >= "
            f"{SHADOW_MIN_COUNTS:g} counts per pixel (a beam stop, its arm or a gap?): masked; pass --mask to set the "
            "mask yourself")


def load_pair(before, after, *, dataset: str | None = None, dataset_after: str | None = None,
              frame_index: int | None = None, frame_index_after: int | None = None, mask=None,
              mask_convention: str = "valid", mask_dataset: str | None = None,
              saturation: float | None = None) -> FramePair:
    """Read the two frames (and a mask file) and build the :class:`FramePair`.

    ``after`` may be the same file as ``before`` with another ``frame_index_after`` (two frames of
    one stack). ``mask`` is a path or a bool array (True = valid) or None. Detector flags 2^n - 1
    and a NeXus ``pixel_mask`` in the frames' HDF5 file are masked automatically.
    """
    from .nexus import pixel_mask

    b = _read_raw(before, dataset, frame_index)
    a = _read_raw(after, dataset_after or dataset, frame_index_after if frame_index_after is not None else frame_index)
    m = None
    if mask is not None:
        if isinstance(mask, np.ndarray):
            m = mask
        else:
            m = check_mask_plausible(read_mask(mask, mask_convention, mask_dataset), mask_convention, mask)
    det = None
    for path in dict.fromkeys([before, after]):
        pm = pixel_mask(path)
        if pm is not None:
            det = pm if det is None else det & pm
    src = {"before": str(before), "after": str(after), "dataset": dataset, "frame_index": frame_index,
           "frame_index_after": frame_index_after, "mask": None if mask is None or isinstance(mask, np.ndarray) else str(mask),
           "mask_convention": mask_convention, "saturation": saturation, "pixel_mask": det is not None}
    return make_pair(b, a, m, saturation, src, detector_mask=det)
