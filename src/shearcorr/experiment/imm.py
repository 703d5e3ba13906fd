"""IMM frames: the legacy stack format of APS 8-ID-I (``*.imm``), dense or sparse.

Every frame is a 1024-byte little-endian header followed by its data. shearcorr reads these header
fields (byte offset, type; the layout of the beamline's published readers)::

    4    int32    compression   6 = sparse, anything else = dense
    108  int32    rows          frame height
    112  int32    cols          frame width
    116  int32    bytes         bytes per pixel of a dense frame (2 or 4)
    152  uint32   dlen          number of values that follow

A dense frame holds rows x cols unsigned values (row-major); a sparse one dlen int32 pixel indices
(row-major) followed by dlen uint16 counts, every other pixel reading 0. The frames are found by walking
the headers once when the file is opened (the table of contents); a read seeks to the frames it needs.
Frames of different shapes or kinds, a truncated frame and a pixel index beyond the frame are one-line
errors.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from ..errors import ShearcorrError

__all__ = ["ImmStack", "HEADER_BYTES", "SPARSE_COMPRESSION"]

HEADER_BYTES = 1024
SPARSE_COMPRESSION = 6
_FIELDS = {"compression": (4, "<i"), "rows": (108, "<i"), "cols": (112, "<i"), "bytes": (116, "<i"), "dlen": (152, "<I")}
_DENSE_DTYPES = {2: np.dtype("<u2"), 4: np.dtype("<u4")}


def _header(head: bytes) -> dict:
    return {k: struct.unpack_from(fmt, head, off)[0] for k, (off, fmt) in _FIELDS.items()}


class ImmStack:
    """The frames of one IMM file (module docstring): ``n_frames``, ``frame_shape``, ``dtype``, ``read``."""

    def __init__(self, path):
        self.path = Path(path)
        size = self.path.stat().st_size
        starts, lengths, first = [], [], None
        with open(self.path, "rb") as fh:
            pos = 0
            while pos < size:
                fh.seek(pos)
                head = fh.read(HEADER_BYTES)
                k = len(starts)
                if len(head) < HEADER_BYTES:
                    raise ShearcorrError(f"{self.path}: frame {k}'s header is cut off at byte {size}; the file is "
                                         "truncated or not an IMM file")
                h = _header(head)
                sparse = h["compression"] == SPARSE_COMPRESSION
                kind = (h["rows"], h["cols"], sparse, None if sparse else h["bytes"])  # bytes count for dense frames
                if first is None:
                    first = kind
                    if h["rows"] < 1 or h["cols"] < 1 or (not sparse and h["bytes"] not in _DENSE_DTYPES):
                        raise ShearcorrError(f"{self.path} is not an IMM file this reader knows (rows {h['rows']}, "
                                             f"cols {h['cols']}, {h['bytes']} bytes per pixel)")
                elif kind != first:
                    raise ShearcorrError(f"{self.path}: frame {k} is {h['rows']} x {h['cols']} "
                                         f"({'sparse' if sparse else 'dense'}), frame 0 {first[0]} x {first[1]} "
                                         f"({'sparse' if first[2] else 'dense'}); one stack needs one kind of frame")
                item = 6 if sparse else h["bytes"]
                if not sparse and h["dlen"] != h["rows"] * h["cols"]:
                    raise ShearcorrError(f"{self.path}: dense frame {k} holds {h['dlen']} values for "
                                         f"{h['rows']} x {h['cols']} pixels; the file is damaged")
                end = pos + HEADER_BYTES + h["dlen"] * item
                if end > size:
                    raise ShearcorrError(f"{self.path}: frame {k} runs past the end of the file; the file is truncated")
                starts.append(pos + HEADER_BYTES)
                lengths.append(h["dlen"])
                pos = end
        if first is None:
            raise ShearcorrError(f"{self.path} is empty")
        self.frame_shape = (int(first[0]), int(first[1]))
        self.sparse = first[2]
        self.dtype = np.dtype(np.uint16) if self.sparse else _DENSE_DTYPES[first[3]]
        self.starts, self.lengths = np.array(starts, np.int64), np.array(lengths, np.int64)
        self.n_frames = len(starts)
        self.format = "imm-sparse" if self.sparse else "imm"

    def read(self, i0: int, i1: int) -> np.ndarray:
        """Frames [i0, i1) as an array (k, rows, cols) of the file's dtype (uint16 for sparse frames)."""
        npix = self.frame_shape[0] * self.frame_shape[1]
        out = np.zeros((i1 - i0, npix), self.dtype)
        with open(self.path, "rb") as fh:
            for j, k in enumerate(range(i0, i1)):
                fh.seek(int(self.starts[k]))
                n = int(self.lengths[k])
                if not self.sparse:
                    out[j] = np.fromfile(fh, dtype=self.dtype, count=n)
                    continue
                index = np.fromfile(fh, dtype="<i4", count=n)
                counts = np.fromfile(fh, dtype="<u2", count=n)
                if n and (index.min() < 0 or index.max() >= npix):
                    raise ShearcorrError(f"{self.path}: frame {k} has a pixel index outside its "
                                         f"{self.frame_shape[0]} x {self.frame_shape[1]} pixels; the file is damaged")
                out[j, index] = counts
        return out.reshape((i1 - i0,) + self.frame_shape)
