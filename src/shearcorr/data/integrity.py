r"""Integrity of a dataset store: its layout, and a checksum of every sample, verified on read and resume.

A flipped bit in a Zarr chunk used to change g silently, and a resume still reported the store
complete (issue 14). Every sample now carries a 64-bit BLAKE2b digest (variable ``checksum``) of its
parameters and data exactly as stored (the four parameters in float64, then g, g_q, g_theta and the
optional I, g_err in their store dtypes, in that order), written in the same region write as the data
and before its ``done`` flag. :func:`verify` reads the store chunk by chunk (memory bounded by one
chunk) and reports every chunk that cannot be decoded, whose finished samples do not match their
digests, or whose g_theta / g_q are not the means of its g (a store edited by hand or by another
program). Readers refuse a damaged store with the samples named (:func:`require_intact`); a resumed
generation recomputes the damaged chunks. Stores written before checksums existed are checked for
readability and consistency only.

:func:`check_layout` refuses, in one line, a store whose variables, dimensions or attributes are not
those of :mod:`shearcorr.data.store` (a missing ``rs``, ``g_theta`` on the wrong dimension, a
``design`` that is not JSON, a ``chunk_size`` that is not a positive whole number).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ShearcorrError
from ..params import PARAM_NAMES

__all__ = ["DIGEST", "DATA_ORDER", "DTYPES", "DIMS", "as_stored", "digests", "check_layout", "chunk_size_of",
           "verify", "require_intact", "CONSISTENCY_ATOL"]

#: Name of the per-sample digest variable.
DIGEST = "checksum"
#: Data variables of a sample, in the order they enter the digest.
DATA_ORDER = ("g", "g_q", "g_theta", "I", "g_err")
#: Store dtype of every data variable.
DTYPES = {"g": np.float32, "I": np.float32, "g_err": np.float32, "g_q": np.float64, "g_theta": np.float64}
#: Dimensions of every variable of a store.
DIMS = {"g": ("sample", "q", "theta"), "I": ("sample", "q", "theta"), "g_err": ("sample", "q", "theta"),
        "g_q": ("sample", "q"), "g_theta": ("sample", "theta"), "done": ("sample",), DIGEST: ("sample",),
        **{p: ("sample",) for p in PARAM_NAMES}}
#: Largest |g_theta - mean_q g| and |g_q - mean_theta g| of a consistent sample, relative to max(1, |g|)
#: (g is float32 in a store, its means were taken in float64).
CONSISTENCY_ATOL = 1e-5


def as_stored(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The data arrays converted to their store dtypes (what the digest and the store see)."""
    return {k: np.ascontiguousarray(v, dtype=DTYPES[k]) for k, v in arrays.items()}


def digests(rows: np.ndarray, arrays: dict[str, np.ndarray]) -> np.ndarray:
    """Digest of each sample: BLAKE2b-64 of its parameter row (float64) and its data arrays.

    Parameters
    ----------
    rows : ndarray (k, 4)
        Parameters in :data:`shearcorr.params.PARAM_NAMES` order.
    arrays : dict of str to ndarray (k, ...)
        Data variables (already in their store dtypes, :func:`as_stored`).

    Returns
    -------
    ndarray (k,) of uint64
    """
    rows = np.ascontiguousarray(rows, dtype=np.float64)
    out = np.empty(rows.shape[0], dtype=np.uint64)
    names = [n for n in DATA_ORDER if n in arrays]
    for j in range(rows.shape[0]):
        h = hashlib.blake2b(rows[j].tobytes(), digest_size=8)
        for name in names:
            h.update(np.ascontiguousarray(arrays[name][j]).tobytes())
        out[j] = int.from_bytes(h.digest(), "little")
    return out


def _damaged(path, problem: str) -> ShearcorrError:
    return ShearcorrError(f"{path} is not a valid shearcorr dataset store: {problem}; regenerate it "
                          "(shearcorr dataset ... --overwrite) or restore a copy")


def chunk_size_of(attrs: dict, n: int, path) -> int:
    """The store's ``chunk_size`` attribute as a whole number in [1, max(n, 1)] (else a one-line error)."""
    cs = attrs.get("chunk_size")
    if isinstance(cs, (bool, np.bool_)) or not isinstance(cs, (int, np.integer)) or not 1 <= int(cs) <= max(n, 1):
        raise _damaged(path, f"its chunk_size attribute is {cs!r}, not a whole number in [1, {max(n, 1)}]")
    return int(cs)


def check_layout(ds, path) -> None:
    """Refuse (one line) a store whose variables, dims or attributes are not a shearcorr store's."""
    for name in ("g", "g_q", "g_theta", "done", *PARAM_NAMES):
        if name not in ds:
            raise _damaged(path, f"it has no variable {name!r}")
    for name, var in ds.variables.items():
        want = DIMS.get(name)
        if want is not None and tuple(var.dims) != want:
            raise _damaged(path, f"{name} has dims {tuple(var.dims)}, expected {want}")
    for coord in ("sample", "q", "theta"):
        if coord not in ds.coords or ds[coord].ndim != 1:
            raise _damaged(path, f"it has no 1-D coordinate {coord!r}")
    design = ds.attrs.get("design")
    try:
        parsed = json.loads(design) if isinstance(design, str) else None
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        raise _damaged(path, f"its design attribute is not a JSON object ({str(design)[:60]!r})")
    chunk_size_of(ds.attrs, int(ds.sizes["sample"]), path)


def _read(ds, name: str, a: int, b: int) -> np.ndarray:
    return np.asarray(ds[name].isel(sample=slice(a, b)).values)


def _check_chunk(ds, a: int, b: int, has_digest: bool) -> str | None:
    """None if samples a:b are intact, else why not (decoding error, digest, consistency)."""
    try:
        done = _read(ds, "done", a, b).astype(bool)
        if not done.any():
            return None
        data = {n: _read(ds, n, a, b) for n in DATA_ORDER if n in ds}
        rows = np.column_stack([_read(ds, p, a, b) for p in PARAM_NAMES])
        stored = _read(ds, DIGEST, a, b) if has_digest else None
    except Exception as exc:  # zarr / numcodecs raise many types for undecodable chunks
        return f"unreadable ({type(exc).__name__}: {' '.join(str(exc).split())[:120]})"
    idx = np.flatnonzero(done)
    if stored is not None:
        fresh = digests(rows[idx], {k: v[idx] for k, v in as_stored(data).items()})
        bad = idx[fresh != stored[idx].astype(np.uint64)]
        if bad.size:
            return f"checksum mismatch in samples {', '.join(str(a + i) for i in bad[:5])}{' ...' if bad.size > 5 else ''}"
    g = data["g"][idx].astype(np.float64)
    with np.errstate(invalid="ignore"):
        dev_t = np.abs(g.mean(axis=1) - data["g_theta"][idx])
        dev_q = np.abs(g.mean(axis=2) - data["g_q"][idx])
    tol_t = CONSISTENCY_ATOL * np.maximum(1.0, np.abs(data["g_theta"][idx]))
    tol_q = CONSISTENCY_ATOL * np.maximum(1.0, np.abs(data["g_q"][idx]))
    if not (np.all(dev_t <= tol_t) and np.all(dev_q <= tol_q)):
        return "g_theta / g_q are not the means of g (or not finite)"
    return None


def verify(ds, path, *, chunk_size: int | None = None) -> tuple[int, list[tuple[int, int, str]], bool]:
    """Check every chunk of an open store.

    Parameters
    ----------
    ds : xarray.Dataset
        The store, opened lazily (:func:`shearcorr.data.store.open_dataset` with ``load=False``).
    path : path
        Its path (for messages).
    chunk_size : int, optional
        Samples per chunk (default: the store's attribute).

    Returns
    -------
    (n_done, bad, checksummed)
        Finished samples checked; ``(start, stop, reason)`` of every damaged chunk; whether the store
        carries digests (False for stores written before them: readability and consistency only).
    """
    n = int(ds.sizes["sample"])
    cs = chunk_size or chunk_size_of(ds.attrs, n, path)
    has_digest = DIGEST in ds
    bad = []
    n_done = 0
    for a in range(0, n, cs):
        b = min(a + cs, n)
        why = _check_chunk(ds, a, b, has_digest)
        if why is None:
            try:
                n_done += int(_read(ds, "done", a, b).astype(bool).sum())
            except Exception:  # pragma: no cover - read just succeeded
                pass
        else:
            bad.append((a, b, why))
    return n_done, bad, has_digest


def require_intact(ds, path: Path | str, *, what: str = "reading") -> dict[str, Any]:
    """Refuse a store with damaged chunks (one line naming the first one and the fix); returns a summary."""
    n_done, bad, has_digest = verify(ds, path)
    if bad:
        a, b, why = bad[0]
        more = f" (and {len(bad) - 1} more chunks)" if len(bad) > 1 else ""
        raise ShearcorrError(f"{path}: samples {a}..{b - 1} are damaged ({why}){more}; run the generating "
                             "'shearcorr dataset' command again - it recomputes damaged chunks - or restore a copy")
    return {"verified": n_done, "checksummed": has_digest}
