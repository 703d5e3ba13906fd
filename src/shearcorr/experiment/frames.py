"""Detector frames, stacks and masks: read frames lazily, build the mask of valid pixels.

Formats (chosen by suffix): HDF5/NeXus (``.h5 .hdf5 .nxs .hdf``; a dataset path, compressed Eiger
data through hdf5plugin, Eiger master files with ``data_NNNNNN`` blocks, :mod:`.nexus`), Zarr
(``.zarr`` folders), NumPy ``.npy`` (memory-mapped), TIFF (``.tif .tiff``; multi-page as a stack),
EDF/CBF through the optional ``fabio`` package, and the 64-bit event files of the Rigaku 500k
(``.bin``) and 3M (``.bin.000`` ... ``.bin.005``; :mod:`.rigaku`) and APS's legacy ``.imm`` (:mod:`.imm`).
A folder of single-frame files (a Pilatus CBF or camera TIFF series), or a glob pattern of them, is a stack in
the natural order of the file names (:func:`frame_files`). A 3-D stack is read lazily, a few frames at a
time (:class:`FrameStack`). Inside shearcorr a mask is a boolean array, **True = valid**.

Pixels are masked (never silently used) when they are flagged invalid by the user mask, by the
detector (the dtype's maximum 2^n - 1 of integer data: module gaps, dead and hot pixels; the NeXus
``pixel_mask`` next to the frames), negative, non-finite (NaN/inf, masked and counted), or at or
above the saturation level. Frames of different shapes, a mask of another shape, a mask that leaves
no valid pixel and a "valid" mask that keeps under 15 % of the pixels (a pyFAI mask, 1 = masked,
read with the wrong convention) are errors.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..choices import check_choice
from ..errors import ShearcorrError

__all__ = ["read_frame", "read_mask", "FrameStack", "open_stack", "frame_files", "sentinel_value",
           "check_mask_plausible", "HDF5_SUFFIXES"]

HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".nxs", ".nx5", ".cxi")
TIFF_SUFFIXES = (".tif", ".tiff")
FABIO_SUFFIXES = (".edf", ".cbf", ".edf.gz", ".cbf.gz")
ZARR_SUFFIXES = (".zarr",)
#: A "valid" mask keeping fewer pixels than this is taken for a mask in the other convention.
MIN_VALID_FRACTION = 0.15


def sentinel_value(dtype) -> float | None:
    """The detector flag of integer data, the dtype's maximum 2^n - 1 (gaps, dead and hot pixels of
    Eiger, Lambda, Pilatus), or None for floating-point data."""
    dt = np.dtype(dtype)
    if np.issubdtype(dt, np.integer):
        return float(np.iinfo(dt).max)
    return None


def check_mask_plausible(valid: np.ndarray, convention: str, source) -> np.ndarray:
    """Refuse a mask that keeps under 15 % of the pixels: with ``convention="valid"`` that is almost
    always a pyFAI mask (1 = masked) read with the wrong convention, and the other way round."""
    frac = float(np.mean(valid)) if valid.size else 0.0
    if not valid.any():
        raise ShearcorrError(f"the mask {source} leaves all {valid.size} pixels masked; check the mask convention")
    if frac < MIN_VALID_FRACTION:
        other = "masked" if convention == "valid" else "valid"
        raise ShearcorrError(f"the mask {source} keeps only {100 * frac:.1f} % of the pixels as valid with "
                             f"--mask-convention {convention}; if 1 marks the bad pixels (pyFAI), pass --mask-convention {other}")
    return valid


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


class FrameStack:
    """A lazily read stack of frames (frames first): HDF5/NeXus, Zarr, ``.npy``, TIFF, Rigaku events, IMM, or an array.

    ``read(i0, i1)`` returns frames [i0, i1) in their stored dtype; the file is opened in the process
    that reads (the object pickles to its path, for process pools and Dask workers). Attributes:
    ``n_frames``, ``frame_shape``, ``dtype``, ``path``, ``dataset``, ``description`` (JSON dict).
    """

    def __init__(self, path, dataset: str | None = None, *, array=None):
        self.path = None if path is None else Path(path)
        self.dataset = dataset
        self._array = array
        self._handle = None
        if array is not None:
            a = np.asarray(array)
            shapes, self.dtype, self.kind = [a.shape], a.dtype, "array"
        else:
            shapes, self.dtype, self.kind = self._inspect()
        frame_shapes = {tuple(sh[1:]) if len(sh) == 3 else tuple(sh) for sh in shapes}
        if len(frame_shapes) != 1:
            raise ShearcorrError(f"{self.path} holds frames of different shapes {sorted(frame_shapes)}; one stack needs one frame shape")
        self.frame_shape = frame_shapes.pop()
        if len(self.frame_shape) != 2:
            raise ShearcorrError(f"{self.path or 'the array'} holds data of shape {shapes[0]}; expected 2-D frames or a 3-D stack")
        self._counts = np.array([sh[0] if len(sh) == 3 else 1 for sh in shapes], dtype=np.int64)
        self.is_stack = len(shapes) > 1 or len(shapes[0]) == 3
        self.n_frames = int(self._counts.sum())
        if not (np.issubdtype(self.dtype, np.number) or self.dtype == bool):
            raise ShearcorrError(f"{self.path} does not hold numbers (dtype {self.dtype})")
        self.description = {"file": None if self.path is None else str(self.path), "dataset": self.dataset,
                            "format": self.kind, "n_frames": self.n_frames, "frame_shape": list(self.frame_shape),
                            "dtype": str(self.dtype)}

    def _inspect(self):
        path = self.path
        name = path.name.lower()
        if name.endswith(ZARR_SUFFIXES):
            arr = self._zarr()
            return [arr.shape], np.dtype(arr.dtype), "zarr"
        if path.is_dir() or (not path.exists() and any(c in str(path) for c in "*?[")):  # one file per frame
            self._files = frame_files(path)
            first = _read_raw(self._files[0], self.dataset, None)
            return [(len(self._files),) + first.shape], first.dtype, "files"
        if not path.is_file():
            raise ShearcorrError(f"no such file: {path}")
        if name.endswith(HDF5_SUFFIXES):
            from .nexus import find_frames, open_hdf5

            with open_hdf5(path) as fh:
                blocks = find_frames(fh, self.dataset, path)
                if self.dataset is None:
                    self.dataset = blocks[0].parent.name if len(blocks) > 1 else blocks[0].name
                return [b.shape for b in blocks], np.dtype(blocks[0].dtype), "hdf5"
        if name.endswith(".npy"):
            try:
                arr = np.load(path, mmap_mode="r", allow_pickle=False)
            except ValueError as exc:
                raise ShearcorrError(f"cannot read {path} as a NumPy array ({exc})") from None
            return [arr.shape], arr.dtype, "npy"
        if name.endswith(TIFF_SUFFIXES):
            tifffile = _tifffile()
            try:
                with tifffile.TiffFile(path) as tf:
                    shapes = [tuple(p.shape) for p in tf.pages]
                    dtype = np.dtype(tf.pages[0].dtype)
                if len(shapes) == 1 and len(shapes[0]) == 3:  # one page holding a stack: read it once
                    self._array = tifffile.imread(path)
                return shapes, dtype, "tiff"
            except (tifffile.TiffFileError, ValueError, OSError, IndexError) as exc:
                raise ShearcorrError(f"cannot read {path} as TIFF ({exc})") from None
        if name.endswith(FABIO_SUFFIXES):
            self._array = _read_fabio(path)
            return [self._array.shape], self._array.dtype, "fabio"
        from .imm import ImmStack
        from .rigaku import RigakuStack, is_rigaku

        if is_rigaku(path) or name.endswith(".imm"):  # detector formats with a reader of their own
            r = self._reader = RigakuStack(path) if is_rigaku(path) else ImmStack(path)
            return [(r.n_frames,) + tuple(r.frame_shape)], r.dtype, r.format
        raise ShearcorrError(f"unknown frame format {path.suffix!r} for {path}; use .h5/.nxs, .zarr, .npy, .tif, "
                             ".edf/.cbf, Rigaku .bin / .bin.000 or .imm")

    def _zarr(self):
        try:
            import zarr
        except ImportError:  # pragma: no cover - zarr is a core dependency
            raise ShearcorrError("reading Zarr stacks needs zarr") from None
        try:
            obj = zarr.open(str(self.path), mode="r")
        except Exception as exc:  # zarr raises several types for a missing or damaged store
            raise ShearcorrError(f"cannot open {self.path} as a Zarr store ({type(exc).__name__}: {exc})") from None
        if self.dataset:
            try:
                obj = obj[self.dataset.strip("/")]
            except KeyError:
                raise ShearcorrError(f"dataset {self.dataset!r} does not exist in {self.path}") from None
        if not hasattr(obj, "shape"):
            raise ShearcorrError(f"{self.path} is a Zarr group; give the array with --dataset")
        return obj

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_handle"] = None
        if self.kind in ("npy", "hdf5", "zarr") or (self.kind == "tiff" and self._counts.size > 1):
            state["_array"] = None
        return state

    def read(self, i0: int, i1: int) -> np.ndarray:
        """Frames [i0, i1) as an array (k, ny, nx) of the stored dtype."""
        i0, i1 = int(i0), int(i1)
        if not 0 <= i0 <= i1 <= self.n_frames:
            raise ShearcorrError(f"frames {i0}:{i1} are outside the stack of {self.n_frames} frames")
        if self._array is not None:
            a = np.asarray(self._array)
            return a[i0:i1] if a.ndim == 3 else a[None][i0:i1]
        if self.kind == "npy":
            a = np.load(self.path, mmap_mode="r", allow_pickle=False)
            return np.asarray(a[i0:i1] if a.ndim == 3 else a[None][i0:i1])
        if self.kind == "zarr":
            a = self._zarr()
            return np.asarray(a[i0:i1] if a.ndim == 3 else a[()][None][i0:i1])
        if self.kind.startswith(("rigaku", "imm")):
            return self._reader.read(i0, i1)
        if self.kind == "files":
            return self._read_files(i0, i1)
        if self.kind == "tiff":
            tifffile = _tifffile()
            try:
                return np.stack([tifffile.imread(self.path, key=k) for k in range(i0, i1)]) if i1 > i0 else \
                    np.zeros((0,) + self.frame_shape, self.dtype)
            except (tifffile.TiffFileError, ValueError, OSError) as exc:
                raise ShearcorrError(f"cannot read frames {i0}..{i1 - 1} of {self.path} ({exc})") from None
        return self._read_hdf5(i0, i1)

    def _read_hdf5(self, i0, i1):
        from .nexus import find_frames, open_hdf5, read_error

        if self._handle is None:
            fh = open_hdf5(self.path)
            self._handle = (fh, find_frames(fh, self.dataset, self.path))
        _, blocks = self._handle
        ends = np.cumsum(self._counts)
        out = []
        t = i0
        try:
            while t < i1:
                b = int(np.searchsorted(ends, t, side="right"))
                lo = t - (ends[b] - self._counts[b])
                hi = min(i1 - t + lo, self._counts[b])
                ds = blocks[b]
                out.append(ds[lo:hi] if ds.ndim == 3 else ds[()][None])
                t += hi - lo
        except OSError as exc:
            raise read_error(exc, self.path, f"frames {i0}..{i1 - 1}") from None
        return np.concatenate(out) if out else np.zeros((0,) + self.frame_shape, self.dtype)

    def _read_files(self, i0, i1):
        out = np.empty((i1 - i0,) + self.frame_shape, self.dtype)
        for j, f in enumerate(self._files[i0:i1]):
            a = _read_raw(f, self.dataset, None)
            if a.shape != self.frame_shape or a.dtype != self.dtype:
                raise ShearcorrError(f"frame file {f.name} holds a {a.shape[0]} x {a.shape[1]} {a.dtype} frame, the first "
                                     f"({self._files[0].name}) {self.frame_shape[0]} x {self.frame_shape[1]} {self.dtype}; "
                                     "one stack needs one frame shape and type")
            out[j] = a
        return out

    def detector_mask(self) -> np.ndarray | None:
        """The NeXus ``pixel_mask`` of an HDF5 file as bool (True = valid), or None."""
        if self.kind != "hdf5":
            return None
        from .nexus import find_pixel_mask, open_hdf5

        with open_hdf5(self.path) as fh:
            m = find_pixel_mask(fh)
        if m is not None and m.shape != tuple(self.frame_shape):
            raise ShearcorrError(f"the pixel_mask of {self.path} is {m.shape} but the frames are {self.frame_shape}")
        return m


def _natural_key(path: Path):
    """Sort key of a file name with its numbers compared as numbers (img_2 before img_10)."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", path.name)]


def frame_files(folder: Path) -> list[Path]:
    """The frame files of a folder (or matching a glob pattern such as ``scan/img_*.cbf``), one frame each,
    in natural order of their names (hidden files ignored; all must share one suffix)."""
    known = HDF5_SUFFIXES + TIFF_SUFFIXES + FABIO_SUFFIXES + (".npy",)
    found = folder.iterdir() if folder.is_dir() else folder.parent.glob(folder.name)
    files = [f for f in found if f.is_file() and not f.name.startswith(".") and f.name.lower().endswith(known)]
    if not files:
        raise ShearcorrError(f"{folder} holds or matches no frame files ({', '.join(known)})")
    suffixes = sorted({"".join(f.suffixes[-2:]).lower() if f.name.lower().endswith(".gz") else f.suffix.lower()
                       for f in files})
    if len(suffixes) > 1:
        raise ShearcorrError(f"{folder} mixes frame files of the kinds {', '.join(suffixes)}; one stack is one "
                             "series of files: move the others out or give a pattern such as 'img_*.cbf'")
    return sorted(files, key=_natural_key)


def open_stack(path, dataset: str | None = None) -> FrameStack:
    """A :class:`FrameStack` over ``path`` (``dataset``: HDF5 dataset or Eiger data group, Zarr array)."""
    return FrameStack(path, dataset)


def _tifffile():
    try:
        import tifffile
    except ImportError:
        raise ShearcorrError("reading TIFF frames needs tifffile: pip install 'shearcorr[io]'") from None
    return tifffile


def _read_fabio(path: Path) -> np.ndarray:
    try:
        import fabio
    except ImportError:
        raise ShearcorrError("reading EDF/CBF frames needs fabio: pip install 'shearcorr[fabio]'") from None
    img = fabio.open(str(path))
    if img.nframes > 1:
        return np.stack([img.getframe(i).data for i in range(img.nframes)])
    return img.data


def _read_raw(path, dataset: str | None, frame_index: int | None) -> np.ndarray:
    """One 2-D frame in its stored dtype (only that frame is read from a stack)."""
    path = Path(path)
    st = open_stack(path, dataset)
    if st.is_stack:
        if frame_index is None:
            if st.n_frames == 1:
                return st.read(0, 1)[0]
            raise ShearcorrError(f"{path} holds a stack of {st.n_frames} frames; choose one with --frame-index")
        if not -st.n_frames <= frame_index < st.n_frames:
            raise ShearcorrError(f"frame index {frame_index} is outside the stack of {st.n_frames} frames in {path}")
        k = frame_index % st.n_frames
        return st.read(k, k + 1)[0]
    if frame_index not in (None, 0):
        raise ShearcorrError(f"{path} holds a single 2-D frame; frame index {frame_index} does not exist")
    return st.read(0, 1)[0]


def read_frame(path, dataset: str | None = None, frame_index: int | None = None) -> np.ndarray:
    """Read one 2-D detector frame as float64 (detector flags 2^n - 1 of integer data become NaN).

    Parameters
    ----------
    path : path-like
        HDF5/NeXus, Zarr, ``.npy``, TIFF, or EDF/CBF (fabio) file.
    dataset : str, optional
        HDF5 dataset path (e.g. ``/entry/data/data``); may be omitted when the file holds exactly
        one 2-D or 3-D dataset.
    frame_index : int, optional
        Index into a 3-D stack (first axis); only that frame is read.
    """
    arr = _read_raw(path, dataset, frame_index)
    out = np.asarray(arr, dtype=np.float64)
    sent = sentinel_value(arr.dtype)
    if sent is not None and arr.dtype != bool:
        out[arr >= sent] = np.nan
    return out


def read_mask(path, convention: str = "valid", dataset: str | None = None) -> np.ndarray:
    """Read a mask file and return it as bool, True = valid.

    ``convention="valid"``: non-zero means valid (APS); ``"masked"``: non-zero means masked (pyFAI).
    """
    check_choice("mask_convention", convention, what="mask convention")
    raw = _read_raw(path, dataset, None)
    if np.issubdtype(raw.dtype, np.floating) and not np.all(np.isfinite(raw)):
        raise ShearcorrError(f"mask {path} contains NaN/inf; a mask holds 0 and 1")
    nonzero = raw != 0
    return nonzero if convention == "valid" else ~nonzero
