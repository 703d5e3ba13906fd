"""The on-disk dataset: a Zarr store written and read through xarray.

Layout (``n`` samples, ``m`` samples per Zarr chunk = per task)::

    coords    sample (sample,) int64 0..n-1; q (q,) [1/r0]; theta (theta,) [rad from flow axis]
    g         (sample, q, theta) float32   g(q, theta), eq. 4; NaN until the sample is done
    g_q       (sample, q)        float64   mean of g over theta (from the float64 engine output)
    g_theta   (sample, theta)    float64   mean of g over q
    I         (sample, q, theta) float32   <I(q, theta)>             (only with include_I)
    g_err     (sample, q, theta) float32   error of g                (only with include_err)
    n_l2, rs, d2, gamma_l (sample,) float64   the design, written when the store is created
    checksum  (sample,) uint64             digest of the sample's parameters and data (data.integrity)
    done      (sample,) bool               set after the sample's data and checksum are written
    attrs     engine, configs, displacement, r0, beam_size, seed, design (JSON), chunk_size,
              grid_* summary, shearcorr_version

Every array is chunked along ``sample`` by ``chunk_size`` (whole q and theta in a chunk), so the
driver's region write of one task never shares a Zarr chunk with another task. Chunks are written
only when computed (the fill value NaN stands for "not yet"), so creating a store for any ``n`` is fast.
One driver at a time writes a store (:mod:`.lock`); readers verify the checksums (:mod:`.integrity`).
"""

from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ..errors import ShearcorrError
from ..files import atomic_folder
from ..params import PARAM_NAMES, QGrid
from . import integrity

__all__ = ["open_dataset", "select_done", "export_netcdf", "dataset_info", "format_info"]

#: Attrs that must agree for a run to append to a store (beside the grid coords); the package version is one of them, so one store
#: never mixes values computed by two versions of the engines.
IDENTITY_ATTRS = ("engine", "configs", "displacement", "r0", "beam_size", "design", "include_I", "include_err",
                  "shearcorr_version")

_MAX_NETCDF_BYTES = 2 * 1024**3


def _open(path: Path) -> xr.Dataset:
    return xr.open_dataset(path, engine="zarr", consolidated=False, chunks=None, decode_times=False)


def is_store(path: Path) -> bool:
    """True if ``path`` looks like a shearcorr dataset store (has a ``done`` flag and a design)."""
    if not path.is_dir() or not any((path / f).is_file() for f in ("zarr.json", ".zgroup")):
        return False
    try:
        with _open(path) as ds:
            return "done" in ds and "design" in ds.attrs
    except Exception:  # any unreadable store is simply "not ours"
        return False


def template(params: dict[str, np.ndarray], grid: QGrid, attrs: dict, include_I: bool,
             include_err: bool) -> xr.Dataset:
    """The store's skeleton: coords, parameters, done = False, and NaN-filled (unwritten) data arrays."""
    n, (nq, nt) = params["n_l2"].size, grid.shape
    sqt = ("sample", "q", "theta")
    big = {"g": (sqt, np.broadcast_to(np.float32(np.nan), (n, nq, nt)))}
    if include_I:
        big["I"] = (sqt, np.broadcast_to(np.float32(np.nan), (n, nq, nt)))
    if include_err:
        big["g_err"] = (sqt, np.broadcast_to(np.float32(np.nan), (n, nq, nt)))
    ds = xr.Dataset(
        {
            **big,
            "g_q": (("sample", "q"), np.broadcast_to(np.nan, (n, nq))),
            "g_theta": (("sample", "theta"), np.broadcast_to(np.nan, (n, nt))),
            **{p: ("sample", params[p]) for p in PARAM_NAMES},
            integrity.DIGEST: ("sample", np.zeros(n, dtype=np.uint64)),
            "done": ("sample", np.zeros(n, dtype=bool)),
        },
        coords={"sample": np.arange(n, dtype=np.int64), "q": np.array(grid.q), "theta": np.array(grid.theta)},
        attrs=attrs,
    )
    ds["q"].attrs.update(units="1/r0", long_name="scattering vector magnitude")
    ds["theta"].attrs.update(units="rad", long_name="angle of q from the flow (x) axis")
    ds["g"].attrs["long_name"] = "intensity correlation <I I'>/(<I><I'>), eq. 4"
    ds["done"].attrs["long_name"] = "sample computed and written"
    ds[integrity.DIGEST].attrs["long_name"] = ("BLAKE2b-64 of the sample's parameters (float64) and data as stored, "
                                               "shearcorr.data.integrity.digests")
    return ds


def create_store(path: Path, template: xr.Dataset, *, chunk_size: int, overwrite: bool) -> None:
    """Write the store's metadata, coords and parameters; big arrays stay unwritten (fill NaN).

    The store is built in a hidden sibling folder and renamed into place
    (:func:`shearcorr.files.atomic_folder`), so a crash leaves either no store or a complete empty one;
    with ``overwrite`` the old store is removed only after the new one is complete. The caller holds
    the store's lock (:class:`.lock.StoreLock`).
    """
    encoding = {}
    for name, var in template.data_vars.items():
        if "sample" in var.dims:
            encoding[name] = {"chunks": tuple(chunk_size if d == "sample" else template.sizes[d] for d in var.dims)}
    encoding["sample"] = {"chunks": (chunk_size,)}
    with atomic_folder(path, overwrite=overwrite) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zarr-format-3 notices about attrs/consolidation
        template.to_zarr(tmp, mode="w", encoding=encoding, consolidated=False)


def _read_done(ds: xr.Dataset, n: int, cs: int) -> np.ndarray:
    """The done flags, chunk by chunk; an undecodable chunk counts as not done (it is recomputed)."""
    done = np.zeros(n, dtype=bool)
    for a in range(0, n, cs):
        b = min(a + cs, n)
        try:
            done[a:b] = np.asarray(ds["done"].isel(sample=slice(a, b)).values, dtype=bool)
        except Exception:  # zarr / numcodecs raise many types for damaged chunks
            done[a:b] = False
    return done


def read_state(path: Path) -> tuple[dict[str, Any], np.ndarray, int, QGrid]:
    """(attrs, done flags, chunk size, grid) of an existing store (layout checked, one-line errors)."""
    with _open(path) as ds:
        integrity.check_layout(ds, path)
        attrs = dict(ds.attrs)
        cs = integrity.chunk_size_of(attrs, int(ds.sizes["sample"]), path)
        done = _read_done(ds, int(ds.sizes["sample"]), cs)
        grid = QGrid(ds["q"].values, ds["theta"].values)
    return attrs, done, cs, grid


#: Zarr's own temporaries of a chunk write (``<chunk>.<uuid hex>.partial``), left by a killed writer.
_PARTIAL = re.compile(r"\.[0-9a-f]{32}\.partial$")


def remove_partials(path: Path) -> int:
    """Delete the half-written chunk files a killed driver left inside the store; returns how many.

    Call only while holding the store's lock (:class:`.lock.StoreLock`): then no live process writes the
    store, so every such file is stale. Only Zarr's own naming is touched."""
    removed = 0
    for f in path.rglob("*.partial"):
        if f.is_file() and _PARTIAL.search(f.name):
            f.unlink(missing_ok=True)
            removed += 1
    return removed


def has_checksums(path: Path) -> bool:
    """True if the store carries per-sample checksums (written by this version of the layout)."""
    with _open(path) as ds:
        return integrity.DIGEST in ds


def add_checksums(path: Path, done: np.ndarray, chunk_size: int) -> None:
    """Give a store written before checksums existed its ``checksum`` variable: the digests of its
    finished samples as they are now (call it after :func:`damaged_chunks` dropped inconsistent ones)."""
    n = done.size
    digest = np.zeros(n, dtype=np.uint64)
    with _open(path) as ds:
        attrs = dict(ds.attrs)
        for a in range(0, n, chunk_size):
            b = min(a + chunk_size, n)
            idx = np.flatnonzero(done[a:b])
            if idx.size:
                data = {k: np.asarray(ds[k].isel(sample=slice(a, b)).values)[idx] for k in integrity.DATA_ORDER if k in ds}
                rows = np.column_stack([np.asarray(ds[p].isel(sample=slice(a, b)).values)[idx] for p in PARAM_NAMES])
                digest[a + idx] = integrity.digests(rows, integrity.as_stored(data))
    var = xr.Dataset({integrity.DIGEST: ("sample", digest)}, attrs=attrs)  # appending rewrites the group's attrs
    var[integrity.DIGEST].attrs["long_name"] = "BLAKE2b-64 of the sample's parameters (float64) and data as stored"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        var.to_zarr(path, mode="a", encoding={integrity.DIGEST: {"chunks": (chunk_size,)}}, consolidated=False)


def damaged_chunks(path: Path) -> list[tuple[int, int, str]]:
    """``(start, stop, reason)`` of every chunk of the store whose finished samples fail verification."""
    with _open(path) as ds:
        return integrity.verify(ds, path)[1]


def check_compatible(path: Path, attrs: dict[str, Any], grid: QGrid) -> None:
    """Refuse to append to a store made with another grid, engine, configs, displacement or design."""
    old, _, _, old_grid = read_state(path)
    hint = f"use another output path, or overwrite=True (CLI: --overwrite) to replace {path}"
    if old_grid != grid:
        raise ShearcorrError(
            f"{path} was made on another grid ({old_grid.shape[0]} x {old_grid.shape[1]}, q {old_grid.q[0]:g}..{old_grid.q[-1]:g}"
            f" vs {grid.shape[0]} x {grid.shape[1]}, q {grid.q[0]:g}..{grid.q[-1]:g}); {hint}"
        )
    for key in IDENTITY_ATTRS:
        a, b = old.get(key), attrs.get(key)
        if key == "design":
            a, b = json.loads(a or "{}"), json.loads(b)
            diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
            if diff:
                what = ", ".join(f"{k} {a.get(k)!r} vs {b.get(k)!r}" for k in diff)
                raise ShearcorrError(f"{path} was made with another design ({what}); {hint}")
        elif a != b and not (isinstance(a, (int, float)) and isinstance(b, (int, float)) and float(a) == float(b)):
            raise ShearcorrError(f"{path} was made with {key} = {a!r}, this run has {b!r}; {hint}")


def write_chunk(path: Path, start: int, stop: int, arrays: dict[str, np.ndarray], rows: np.ndarray) -> None:
    """Write samples ``start:stop`` - data, parameters ``rows`` (k, 4) and checksums first - then mark
    them done: a crash in between loses nothing, and a damaged chunk is repaired whole."""
    region = {"sample": slice(start, stop)}
    stored = integrity.as_stored(arrays)
    data = xr.Dataset({name: (_DIMS[name], arr) for name, arr in stored.items()})
    for j, p in enumerate(PARAM_NAMES):
        data[p] = ("sample", np.ascontiguousarray(rows[:, j], dtype=np.float64))
    data[integrity.DIGEST] = ("sample", integrity.digests(rows, stored))
    data.to_zarr(path, region=region, mode="r+", consolidated=False)
    flag = xr.Dataset({"done": ("sample", np.ones(stop - start, dtype=bool))})
    flag.to_zarr(path, region=region, mode="r+", consolidated=False)


_ORDER = ("g", "g_q", "g_theta", "I", "g_err", "done")

_DIMS = {
    "g": ("sample", "q", "theta"),
    "I": ("sample", "q", "theta"),
    "g_err": ("sample", "q", "theta"),
    "g_q": ("sample", "q"),
    "g_theta": ("sample", "theta"),
}


def open_dataset(store: str | os.PathLike, *, done_only: bool = False, load: bool = False,
                 verify: bool = True) -> xr.Dataset:
    """Open a dataset store as an :class:`xarray.Dataset`.

    Parameters
    ----------
    store : path
        A store written by :func:`shearcorr.data.generate`.
    done_only : bool, default False
        Keep only the finished samples (see :func:`select_done`).
    load : bool, default False
        Read everything into memory (and close the store); otherwise arrays are read lazily on access.
    verify : bool, default True
        Check the layout and every finished sample's checksum first (:mod:`shearcorr.data.integrity`;
        reads the store once, chunk by chunk) and refuse a damaged store, naming the samples.

    Returns
    -------
    xarray.Dataset
        Layout in :mod:`shearcorr.data.store`; ``ds.attrs["design"]`` is the design as JSON.
    """
    path = Path(store)
    if not path.exists():
        raise ShearcorrError(f"no such dataset store: {path}")
    if not is_store(path):
        raise ShearcorrError(f"{path} is not a shearcorr dataset store (no done flag / design in it)")
    ds = _open(path)
    try:
        integrity.check_layout(ds, path)
        if verify:
            integrity.require_intact(ds, path)
    except BaseException:
        ds.close()
        raise
    if done_only:
        ds = select_done(ds)
    if load:
        loaded = ds.load()
        ds.close()
        return loaded
    return ds


def select_done(ds: xr.Dataset) -> xr.Dataset:
    """The finished samples of a dataset (all of them once generation has completed)."""
    done = np.asarray(ds["done"].values, dtype=bool)
    return ds if done.all() else ds.isel(sample=np.flatnonzero(done))


def export_netcdf(store: str | os.PathLike, path: str | os.PathLike, *, done_only: bool = False) -> Path:
    """Copy a (small) dataset store to one NetCDF-4 file, atomically (temporary file, then rename).

    Refuses datasets above 2 GiB: keep those in Zarr.
    """
    from ..result import save_result

    out = Path(path)
    with open_dataset(store, done_only=done_only) as ds:
        size = sum(v.nbytes for v in ds.variables.values())
        if size > _MAX_NETCDF_BYTES:
            raise ShearcorrError(f"dataset is {size / 1024**3:.1f} GiB, too large for NetCDF export; keep the Zarr store")
        save_result(ds.load(), out)
    return out


def _du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def dataset_info(store: str | os.PathLike) -> dict[str, Any]:
    """Summary of a store: size on disk, dims, variables, parameter ranges, completion, provenance."""
    path = Path(store)
    with open_dataset(path, verify=False) as ds:
        n_ok, bad, checksummed = integrity.verify(ds, path)
        done = ds["done"].values.astype(bool)
        ranges = {p: (float(ds[p].min()), float(ds[p].max())) for p in PARAM_NAMES if p in ds}
        info = {
            "path": str(path),
            "size_bytes": _du(path),
            "dims": {d: int(ds.sizes[d]) for d in ("sample", "q", "theta")},
            "variables": {k: f"{ds[k].dtype} ({', '.join(ds[k].dims)})" for k in _ORDER if k in ds},
            "parameter_ranges": ranges,
            "done": int(done.sum()),
            "total": int(done.size),
            "integrity": {"verified": n_ok, "checksummed": checksummed,
                          "damaged": [{"samples": [a, b - 1], "reason": why} for a, b, why in bad]},
            "attrs": dict(ds.attrs),
        }
    return info


def format_info(info: dict[str, Any]) -> str:
    """Human-readable text of :func:`dataset_info`."""
    a = info["attrs"]
    design = json.loads(a.get("design", "{}"))
    size = info["size_bytes"]
    unit = next((u for u, s in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)) if size >= s), "B")
    scale = {"GiB": 1024**3, "MiB": 1024**2, "KiB": 1024, "B": 1}[unit]
    total, done = info["total"], info["done"]
    lines = [
        f"store        {info['path']} ({size / scale:.1f} {unit} on disk)",
        "dims         " + ", ".join(f"{k} {v}" for k, v in info["dims"].items()),
        "variables    " + ", ".join(f"{k} {v}" for k, v in info["variables"].items() if k not in PARAM_NAMES),
        f"completion   {done}/{total} samples done ({100.0 * done / max(total, 1):.1f} %)",
        "parameters   " + ", ".join(
            f"{p} {lo:.4g}..{hi:.4g}" + (" (fixed)" if p in design.get("fixed", {}) else "")
            for p, (lo, hi) in info["parameter_ranges"].items()
        ),
        f"engine       {a.get('engine')}" + (f", {a.get('configs')} configurations" if a.get("engine") == "mc" else "")
        + f", displacement {a.get('displacement')}",
        f"grid         {a.get('grid_n_q')} q in [{a.get('grid_q_min'):g}, {a.get('grid_q_max'):g}] x {a.get('grid_n_theta')} theta",
        f"design       {design.get('kind')}, n {design.get('n')}, seed {design.get('seed')}, "
        f"ranges {design.get('ranges')}, fixed {design.get('fixed')}",
        f"provenance   shearcorr {a.get('shearcorr_version')}, chunk size {a.get('chunk_size')}",
        "integrity    " + _integrity_line(info.get("integrity", {})),
    ]
    return "\n".join(lines)


def _integrity_line(it: dict) -> str:
    if it.get("damaged"):
        first = it["damaged"][0]
        return (f"DAMAGED: {len(it['damaged'])} chunk(s), first samples {first['samples'][0]}..{first['samples'][1]} "
                f"({first['reason']}); run the generating command again to recompute them")
    how = "checksums verified" if it.get("checksummed") else "readable and consistent (written without checksums)"
    return f"{it.get('verified', 0)} finished samples {how}"
