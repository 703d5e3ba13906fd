"""Detector frames and masks: read two frames, build the mask of valid pixels.

Formats (chosen by suffix): HDF5/NeXus (``.h5 .hdf5 .nxs .hdf``; a dataset path, and for a 3-D
stack a frame index), NumPy ``.npy``, TIFF (``.tif .tiff``; multi-page as a stack), and EDF/CBF
through the optional ``fabio`` package. Inside shearcorr a mask is a boolean array, **True = valid**.

Pixels are masked (never silently used) when they are flagged invalid by the user mask, negative,
non-finite (NaN/inf are treated as detector flags and masked, with their count reported), or at or
above the saturation level. Frames of different shapes, a mask of another shape and a mask that
leaves no valid pixel are errors.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..choices import check_choice
from ..errors import ShearcorrError

__all__ = ["read_frame", "read_mask", "FramePair", "load_pair", "HDF5_SUFFIXES"]

HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".nxs", ".nx5", ".cxi")
TIFF_SUFFIXES = (".tif", ".tiff")
FABIO_SUFFIXES = (".edf", ".cbf", ".edf.gz", ".cbf.gz")


def _pick(arr: np.ndarray, path: Path, frame_index: int | None) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.ndim == 3:
        if frame_index is None:
            if arr.shape[0] == 1:
                return arr[0]
            raise ShearcorrError(f"{path} holds a stack of {arr.shape[0]} frames; choose one with --frame-index")
        if not -arr.shape[0] <= frame_index < arr.shape[0]:
            raise ShearcorrError(f"frame index {frame_index} is outside the stack of {arr.shape[0]} frames in {path}")
        return arr[frame_index]
    if arr.ndim != 2:
        raise ShearcorrError(f"{path} holds a {arr.ndim}-D array of shape {arr.shape}; expected a 2-D frame or a 3-D stack")
    if frame_index not in (None, 0):
        raise ShearcorrError(f"{path} holds a single 2-D frame; frame index {frame_index} does not exist")
    return arr


def _read_hdf5(path: Path, dataset: str | None) -> np.ndarray:
    try:
        import h5py
    except ImportError:
        raise ShearcorrError("reading HDF5 frames needs h5py: pip install 'shearcorr[io]'") from None
    try:
        fh = h5py.File(path, "r")
    except OSError as exc:
        raise ShearcorrError(f"cannot open {path} as HDF5 ({exc})") from None
    with fh:
        if dataset is None:
            found: list[str] = []
            fh.visititems(lambda name, obj: found.append(name) if isinstance(obj, h5py.Dataset) and obj.ndim in (2, 3) else None)
            if len(found) != 1:
                listing = ", ".join(found[:5]) or "none"
                raise ShearcorrError(f"{path}: give the dataset path with --dataset (2-D/3-D datasets found: {listing})")
            dataset = found[0]
        if dataset not in fh:
            raise ShearcorrError(f"dataset {dataset!r} does not exist in {path}")
        obj = fh[dataset]
        if not isinstance(obj, h5py.Dataset):
            raise ShearcorrError(f"{dataset!r} in {path} is a group, not a dataset; give the path of the image data")
        return obj[()]


def _read_any(path: Path, dataset: str | None) -> np.ndarray:
    if not path.is_file():
        raise ShearcorrError(f"no such file: {path}")
    name = path.name.lower()
    if name.endswith(HDF5_SUFFIXES):
        return _read_hdf5(path, dataset)
    if name.endswith(".npy"):
        try:
            return np.load(path, allow_pickle=False)
        except ValueError as exc:
            raise ShearcorrError(f"cannot read {path} as a NumPy array ({exc})") from None
    if name.endswith(TIFF_SUFFIXES):
        try:
            import tifffile
        except ImportError:
            raise ShearcorrError("reading TIFF frames needs tifffile: pip install 'shearcorr[io]'") from None
        return tifffile.imread(path)
    if name.endswith(FABIO_SUFFIXES):
        try:
            import fabio
        except ImportError:
            raise ShearcorrError("reading EDF/CBF frames needs fabio: pip install 'shearcorr[fabio]'") from None
        img = fabio.open(str(path))
        if img.nframes > 1:
            return np.stack([img.getframe(i).data for i in range(img.nframes)])
        return img.data
    raise ShearcorrError(f"unknown frame format {path.suffix!r} for {path}; use .h5/.nxs, .npy, .tif or .edf/.cbf")


def read_frame(path, dataset: str | None = None, frame_index: int | None = None) -> np.ndarray:
    """Read one 2-D detector frame as float64.

    Parameters
    ----------
    path : path-like
        HDF5/NeXus, ``.npy``, TIFF, or EDF/CBF (fabio) file.
    dataset : str, optional
        HDF5 dataset path (e.g. ``/entry/data/data``); may be omitted when the file holds exactly
        one 2-D or 3-D dataset.
    frame_index : int, optional
        Index into a 3-D stack (first axis).
    """
    path = Path(path)
    arr = _pick(_read_any(path, dataset), path, frame_index)
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ShearcorrError(f"{path} does not hold numbers (dtype {arr.dtype})")
    return np.asarray(arr, dtype=np.float64)


def read_mask(path, convention: str = "valid", dataset: str | None = None) -> np.ndarray:
    """Read a mask file and return it as bool, True = valid.

    ``convention="valid"``: non-zero means valid (APS); ``"masked"``: non-zero means masked (pyFAI).
    """
    check_choice("mask_convention", convention, what="mask convention")
    raw = read_frame(path, dataset=dataset)
    if not np.all(np.isfinite(raw)):
        raise ShearcorrError(f"mask {path} contains NaN/inf; a mask holds 0 and 1")
    nonzero = raw != 0
    return nonzero if convention == "valid" else ~nonzero


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


def make_pair(before: np.ndarray, after: np.ndarray, mask: np.ndarray | None = None,
              saturation: float | None = None, sources: dict | None = None) -> FramePair:
    """Combine two frames and an optional mask (True = valid) into a :class:`FramePair`.

    A pixel is valid when it is valid in the user mask and, in *both* frames, finite, >= 0 and
    below ``saturation`` (counts; None = no saturation level).
    """
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


def load_pair(before, after, *, dataset: str | None = None, dataset_after: str | None = None,
              frame_index: int | None = None, frame_index_after: int | None = None, mask=None,
              mask_convention: str = "valid", mask_dataset: str | None = None,
              saturation: float | None = None) -> FramePair:
    """Read the two frames (and a mask file) and build the :class:`FramePair`.

    ``after`` may be the same file as ``before`` with another ``frame_index_after`` (two frames of
    one stack). ``mask`` is a path or a bool array (True = valid) or None.
    """
    b = read_frame(before, dataset, frame_index)
    a = read_frame(after, dataset_after or dataset,
                   frame_index_after if frame_index_after is not None else frame_index)
    m = None
    if mask is not None:
        m = mask if isinstance(mask, np.ndarray) else read_mask(mask, mask_convention, mask_dataset)
    src = {"before": str(before), "after": str(after), "dataset": dataset, "frame_index": frame_index,
           "frame_index_after": frame_index_after, "mask": None if mask is None or isinstance(mask, np.ndarray) else str(mask),
           "mask_convention": mask_convention, "saturation": saturation}
    return make_pair(b, a, m, saturation, src)
