"""Rigaku sparse frames: the 64-bit event files of the Rigaku 500k and 3M detectors (APS 8-ID-I).

Each photon-counting event is one little-endian 64-bit word (the layout of the beamline's published
readers)::

    bits 40-63  frame number (from 0)        bits 16-36  pixel index (row-major)
    bits  0-11  counts in that pixel         others      unused

A pixel absent from a frame read 0. Events are stored in frame order; the frame count is the last
event's frame + 1 (empty frames at the end of a file cannot be seen: give ``--frames``).

* **Rigaku 500k** (``NAME.bin``): one module of 512 x 1024 pixels (rows x columns).
* **Rigaku 3M** (``NAME.bin.000`` ... ``NAME.bin.005``, any one of them names the set): six such
  modules in 3 rows x 2 columns, 70 pixel rows and 52 pixel columns of gap between them (1676 x 2100).
  Module files 5, 0, 4, 1, 3, 2 fill the places left to right, top to bottom. A module file's indices
  may carry an offset of 2^20 (bit 20), which is dropped. The gaps read 2^16 - 1, the detector flag of
  :func:`~shearcorr.experiment.frames.sentinel_value`, and are masked like an Eiger's.

Frames come back as uint16 (12-bit counts). Files are memory-mapped; a read of frames [i0, i1) finds its
events by binary search and touches only them.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..errors import ShearcorrError

__all__ = ["is_rigaku", "rigaku_files", "RigakuStack", "MODULE_SHAPE", "GAP_3M", "MODULE_ORDER_3M"]

MODULE_SHAPE = (512, 1024)
#: Pixel rows and columns between the 3M's modules, and its layout (module rows, module columns).
GAP_3M, LAYOUT_3M = (70, 52), (3, 2)
#: Module file suffix .bin.00N for the places 0..5 (row-major) of the 3M.
MODULE_ORDER_3M = (5, 0, 4, 1, 3, 2)
FRAME_SHIFT, INDEX_SHIFT, COUNT_BITS = 40, 16, 12
MODULE_OFFSET_BIT = 20
GAP_VALUE = np.iinfo(np.uint16).max

_MODULE = re.compile(r"\.bin\.00[0-5]$")


def is_rigaku(path: Path) -> bool:
    """True for a Rigaku event file name: ``*.bin`` (500k) or ``*.bin.000`` ... ``*.bin.005`` (3M)."""
    name = path.name.lower()
    return name.endswith(".bin") or bool(_MODULE.search(name))


def rigaku_files(path: Path) -> list[Path]:
    """The module files of ``path``: itself for a 500k, the six of a 3M in place order."""
    if not _MODULE.search(path.name.lower()):
        return [path]
    stem = str(path)[:-3]
    files = [Path(f"{stem}00{k}") for k in MODULE_ORDER_3M]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise ShearcorrError(f"the Rigaku 3M set of {path.name} lacks {', '.join(missing)}; all six module files "
                             ".bin.000 to .bin.005 must lie in one folder")
    return files


def _events(path: Path) -> np.memmap:
    size = path.stat().st_size
    if size % 8:
        raise ShearcorrError(f"{path} is not a Rigaku 64-bit event file: its size ({size} bytes) is not a multiple of 8")
    if size == 0:
        raise ShearcorrError(f"{path} holds no events; is the acquisition complete?")
    return np.memmap(path, dtype="<u8", mode="r")


def _first_at_or_after(words: np.ndarray, frame: int) -> int:
    """Index of the first event of ``frame`` or later (events in frame order): binary search."""
    lo, hi = 0, words.size
    while lo < hi:
        mid = (lo + hi) // 2
        if int(words[mid]) >> FRAME_SHIFT < frame:
            lo = mid + 1
        else:
            hi = mid
    return lo


class RigakuStack:
    """The frames of a Rigaku 500k file or 3M set, read by frame range (see the module docstring)."""

    def __init__(self, path):
        self.path = Path(path)
        self.files = rigaku_files(self.path)
        self.n_modules = len(self.files)
        self.n_frames = max(int(_events(f)[-1]) >> FRAME_SHIFT for f in self.files) + 1
        if self.n_modules == 1:
            self.frame_shape = MODULE_SHAPE
        else:
            self.frame_shape = tuple(MODULE_SHAPE[k] * LAYOUT_3M[k] + GAP_3M[k] * (LAYOUT_3M[k] - 1) for k in range(2))
        self.format = "rigaku-500k" if self.n_modules == 1 else "rigaku-3M"
        self.dtype = np.dtype(np.uint16)

    def _module(self, path: Path, i0: int, i1: int) -> np.ndarray:
        words = _events(path)
        a, b = _first_at_or_after(words, i0), _first_at_or_after(words, i1)
        w = np.asarray(words[a:b])
        frame = (w >> np.uint64(FRAME_SHIFT)).astype(np.int64) - i0
        if frame.size and np.any(np.diff(frame) < 0):
            raise ShearcorrError(f"{path}: the events of frames {i0}..{i1 - 1} are not in frame order; the file is "
                                 "damaged or not a Rigaku event file")
        # bits 16-36 hold the index; bit 36 (2^20 of the index) is a module offset, dropped with it
        index = ((w >> np.uint64(INDEX_SHIFT)) & np.uint64((1 << MODULE_OFFSET_BIT) - 1)).astype(np.int64)
        npix = MODULE_SHAPE[0] * MODULE_SHAPE[1]
        if index.size and int(index.max()) >= npix:
            raise ShearcorrError(f"{path}: pixel index {int(index.max())} lies beyond the {MODULE_SHAPE[0]} x "
                                 f"{MODULE_SHAPE[1]} module; the file is damaged or not a Rigaku event file")
        out = np.zeros((i1 - i0, npix), dtype=np.uint16)
        out[frame, index] = (w & np.uint64((1 << COUNT_BITS) - 1)).astype(np.uint16)
        return out.reshape((i1 - i0,) + MODULE_SHAPE)

    def read(self, i0: int, i1: int) -> np.ndarray:
        """Frames [i0, i1) as uint16 (k, ny, nx); a 3M's gaps read 2^16 - 1."""
        if self.n_modules == 1:
            return self._module(self.files[0], i0, i1)
        out = np.full((i1 - i0,) + self.frame_shape, GAP_VALUE, dtype=np.uint16)
        for place, path in enumerate(self.files):
            r, c = divmod(place, LAYOUT_3M[1])
            y0 = r * (MODULE_SHAPE[0] + GAP_3M[0])
            x0 = c * (MODULE_SHAPE[1] + GAP_3M[1])
            out[:, y0:y0 + MODULE_SHAPE[0], x0:x0 + MODULE_SHAPE[1]] = self._module(path, i0, i1)
        return out
