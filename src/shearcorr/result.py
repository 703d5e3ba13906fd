"""The one result type of the forward model: an xarray Dataset with provenance, saved as NetCDF.

Layout (both engines)::

    coords   q (q,) [1/r0], theta (theta,) [rad from flow axis]
    I        (q, theta)  ensemble-mean intensity <I(q, theta)>, eq. 1 (normalised by sum V^2)
    I_err    (q, theta)  its standard error (0 for an exact engine)
    g        (q, theta)  <I I'> / (<I><I'>), eq. 4
    g_err    (q, theta)  standard error of g (numerical error bound for the analytic engine)
    g_q      (q,)        mean of g over theta (unweighted, as in the paper); g_q_err
    g_theta  (theta,)    mean of g over q (unweighted); g_theta_err
    attrs    n_l2, rs, d2, gamma_l, r0, beam_size, displacement, engine, configs, seed,
             shearcorr_version, grid_* summary
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ._version import __version__
from .errors import ShearcorrError
from .files import atomic_file
from .params import QGrid, SystemParams

__all__ = ["make_result", "save_result", "load_result", "params_from_attrs", "grid_from_dataset", "flow_axis_warning"]


def make_result(
    grid: QGrid,
    params: SystemParams,
    *,
    I: np.ndarray,
    g: np.ndarray,
    g_err: np.ndarray,
    engine: str,
    I_err: np.ndarray | None = None,
    g_q_err: np.ndarray | None = None,
    g_theta_err: np.ndarray | None = None,
    configs: int = 0,
    seed: int | None = None,
    attrs: dict[str, Any] | None = None,
) -> xr.Dataset:
    """Assemble the result Dataset; ``g_q`` and ``g_theta`` are the unweighted means of ``g``.

    ``g_q_err`` / ``g_theta_err`` default to the error of the mean assuming independent grid
    points, which is an *under*-estimate for Monte Carlo (points share configurations); engines
    that know better pass their own.
    """
    shape = grid.shape
    arrays = {"I": I, "g": g, "g_err": g_err, "I_err": np.zeros(shape) if I_err is None else I_err}
    for name, arr in arrays.items():
        if np.shape(arr) != shape:
            raise ShearcorrError(f"{name} has shape {np.shape(arr)}, expected {shape} from the grid")
    g = np.asarray(g, dtype=np.float64)
    g_err = np.asarray(g_err, dtype=np.float64)
    if g_q_err is None:
        g_q_err = np.sqrt(np.sum(g_err**2, axis=1)) / shape[1]
    if g_theta_err is None:
        g_theta_err = np.sqrt(np.sum(g_err**2, axis=0)) / shape[0]
    qt = ("q", "theta")
    ds = xr.Dataset(
        {
            "I": (qt, np.asarray(arrays["I"], dtype=np.float64)),
            "I_err": (qt, np.asarray(arrays["I_err"], dtype=np.float64)),
            "g": (qt, g),
            "g_err": (qt, g_err),
            "g_q": ("q", g.mean(axis=1)),
            "g_q_err": ("q", np.asarray(g_q_err, dtype=np.float64)),
            "g_theta": ("theta", g.mean(axis=0)),
            "g_theta_err": ("theta", np.asarray(g_theta_err, dtype=np.float64)),
        },
        coords={"q": ("q", np.array(grid.q)), "theta": ("theta", np.array(grid.theta))},
    )
    ds["q"].attrs.update(units="1/r0", long_name="scattering vector magnitude")
    ds["theta"].attrs.update(units="rad", long_name="angle of q from the flow (x) axis")
    ds["I"].attrs["long_name"] = "ensemble-mean intensity, eq. 1"
    ds["g"].attrs["long_name"] = "intensity correlation <I I'>/(<I><I'>), eq. 4"
    ds.attrs.update(params.to_dict())
    ds.attrs.update(grid.to_attrs())
    ds.attrs.update(
        engine=engine,
        configs=int(configs),
        seed=-1 if seed is None else int(seed),
        shearcorr_version=__version__,
    )
    if attrs:
        ds.attrs.update(attrs)
    return ds


def params_from_attrs(attrs: dict[str, Any]) -> SystemParams:
    """Rebuild the :class:`SystemParams` recorded in a result's attrs."""
    try:
        return SystemParams(
            n_l2=attrs["n_l2"],
            rs=attrs["rs"],
            d2=attrs["d2"],
            gamma_l=attrs["gamma_l"],
            displacement=str(attrs.get("displacement", "uniform")),
            r0=attrs.get("r0", 1.0),
            beam_size=attrs.get("beam_size", 800.0),
        )
    except KeyError as exc:
        raise ShearcorrError(f"the result has no parameter {exc.args[0]!r} in its attributes; is it a file written by "
                             "'shearcorr simulate'?") from None


def grid_from_dataset(ds: xr.Dataset) -> QGrid:
    """The :class:`QGrid` of a result or dataset (its ``q`` and ``theta`` coords)."""
    if "q" not in ds.coords or "theta" not in ds.coords:
        raise ShearcorrError("data has no q/theta coordinates; is it a shearcorr result?")
    return QGrid(ds["q"].values, ds["theta"].values)


def save_result(ds: xr.Dataset, path: str | os.PathLike) -> Path:
    """Write a result to NetCDF-4 atomically (:func:`shearcorr.files.atomic_file`).

    An existing file at ``path`` is replaced only once the new one is complete. The file is built in
    memory and written with plain file I/O: the HDF5 library, writing to a full disk itself, raised an
    unhelpful error and then crashed the interpreter (segmentation fault, issue 14); now a full disk is
    a one-line error and nothing is left behind.
    """
    from .memory import require

    path = Path(path)
    size = sum(v.nbytes for v in ds.variables.values())
    require(2 * size + 1024**2, f"writing {path.name} ({size / 1024**2:.3g} MiB of data)", "write a smaller result")
    data = ds.to_netcdf(engine="h5netcdf")  # bytes of the complete file
    with atomic_file(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
    return path


def load_result(path: str | os.PathLike) -> xr.Dataset:
    """Load a result written by :func:`save_result`, or a map of another code (fully into memory; the file is
    closed). A file holding several maps along one extra dimension comes back with it named ``sample``, as a
    dataset store's samples."""
    path = Path(path)
    if not path.is_file():
        raise ShearcorrError(f"no such file: {path}")
    try:
        with xr.open_dataset(path, engine="h5netcdf", phony_dims="access") as ds:
            ds = ds.load()
    except Exception as exc:  # h5py/xarray raise many types for corrupt files
        raise ShearcorrError(f"cannot read {path} as a shearcorr NetCDF result ({type(exc).__name__}: {exc})") from None
    if "g" in ds and "q" in ds and "theta" in ds and not {"q", "theta"} <= set(ds.coords):
        ds = _from_plain_arrays(ds, path)
    if "g" not in ds or "q" not in ds.coords or "theta" not in ds.coords:
        raise ShearcorrError(f"{path} is not a shearcorr result (no g(q, theta) with q and theta in it)")
    extra = [d for d in ds["g"].dims if d not in ("q", "theta")]
    if len(extra) > 1:
        raise ShearcorrError(f"{path}: g has dimensions {ds['g'].dims}; a file holds one map g(q, theta) or one "
                             "per sample along a single extra dimension")
    if extra and extra[0] != "sample":  # several parameter sets in one file: the samples of a store
        ds = ds.rename({extra[0]: "sample"})
    return _theta_in_radians(_scalar_configs(ds, path), path)


def _scalar_configs(ds: xr.Dataset, path: Path) -> xr.Dataset:
    """The ``configs`` attribute as one number (other codes write it as a 1-element array or a string)."""
    n = ds.attrs.get("configs")
    if n is None or isinstance(n, (int, float)):
        return ds
    try:
        value = float(np.asarray(n, dtype=np.float64).reshape(-1)[0]) if np.size(n) == 1 else None
    except (TypeError, ValueError):
        value = None
    if value is None:
        raise ShearcorrError(f"{path}: the attribute configs = {n!r} is not one number of configurations; write "
                             "it as a number (or leave it out: N is then inferred from g_err)")
    ds.attrs["configs"] = value
    return ds


#: ``units`` of theta read as degrees (anything else but radians is refused).
DEGREE_UNITS = {"deg", "degree", "degrees", "°"}
RADIAN_UNITS = {"", "rad", "radian", "radians"}


def _from_plain_arrays(ds: xr.Dataset, path: Path) -> xr.Dataset:
    """A plain HDF5 file (no dimension scales: datasets g, q, theta, ...) in the result layout.

    g is (q, theta), or (theta, q) when only that order fits the lengths (a square map is taken as
    (q, theta)); 2-D variables of g's shape follow it, 1-D ones go on the axis whose length they have
    (``g_theta*`` on theta when both lengths are equal); other variables are dropped.
    """
    q, theta, g = ds["q"].values, ds["theta"].values, ds["g"]
    if q.ndim != 1 or theta.ndim != 1 or g.ndim != 2:
        raise ShearcorrError(f"{path}: q and theta must be 1-D and g 2-D (got {q.ndim}-D, {theta.ndim}-D, {g.ndim}-D)")
    if g.shape == (q.size, theta.size):
        flip = False
    elif g.shape == (theta.size, q.size):
        flip = True
    else:
        raise ShearcorrError(f"{path}: g has shape {g.shape}, which fits neither (q, theta) = ({q.size}, {theta.size}) "
                             "nor (theta, q); write g on the grid of q and theta")
    data = {}
    for name, var in ds.data_vars.items():
        if name in ("q", "theta"):
            continue
        a = var.values
        if a.ndim == 2 and a.shape == g.shape:
            data[name] = (("q", "theta"), a.T if flip else a, var.attrs)
        elif a.ndim == 1 and a.size == theta.size and (a.size != q.size or name.startswith("g_theta")):
            data[name] = (("theta",), a, var.attrs)
        elif a.ndim == 1 and a.size == q.size:
            data[name] = (("q",), a, var.attrs)
    coords = {"q": ("q", q, ds["q"].attrs), "theta": ("theta", theta, ds["theta"].attrs)}
    return xr.Dataset(data, coords=coords, attrs=ds.attrs)


def _theta_in_radians(ds: xr.Dataset, path: Path) -> xr.Dataset:
    """theta in radians: converted from degrees when its ``units`` say so, refused when it cannot be radians."""
    units = str(ds["theta"].attrs.get("units", "")).strip().lower()
    theta = np.asarray(ds["theta"].values, dtype=np.float64)
    if units in DEGREE_UNITS:
        out = ds.assign_coords(theta=np.deg2rad(theta))
        out["theta"].attrs.update(ds["theta"].attrs, units="rad")
        return out
    if units not in RADIAN_UNITS:
        raise ShearcorrError(f"{path}: theta has units {units!r}; write theta in radians (or degrees, with "
                             "units='degree')")
    if theta.size and np.max(np.abs(theta)) > 2 * np.pi + 1e-6:
        raise ShearcorrError(f"{path}: theta runs to {np.max(np.abs(theta)):.4g}, beyond 2 pi: it looks like degrees; "
                             "set the units attribute of theta to 'degree' or write it in radians")
    return ds


#: Half-width of the theta bands compared by :func:`flow_axis_warning` (rad), and the significance it asks.
FLOW_BAND, FLOW_SIGMAS = np.deg2rad(10.0), 5.0


def flow_axis_warning(ds: xr.Dataset) -> str | None:
    """A warning when the map decorrelates most across the flow, i.e. theta = 0 is not the flow axis.

    The affine phase is q_x gamma y (x the flow): in every geometry of the model g(q, theta) is lowest
    along the flow, theta = 0 (mod pi), and highest across it, theta = pi/2 (docs/theory.md). A map whose
    mean g within 10 degrees of pi/2 lies below its mean within 10 degrees of 0 and pi by more than 5
    standard errors (from g_err, independent points) and 1e-3 was written with theta from another axis
    (the gradient or vorticity: another code's convention); fitted as it is, gamma L comes out near 0 with
    a poor chi^2. None when the map has no g_err or does not reach both bands.
    """
    if "g_err" not in ds or "g" not in ds:
        return None
    theta = np.mod(np.asarray(ds["theta"].values, dtype=np.float64), np.pi)
    g = np.asarray(ds["g"].transpose("q", "theta").values, dtype=np.float64)
    err = np.asarray(ds["g_err"].transpose("q", "theta").values, dtype=np.float64)
    along = (theta <= FLOW_BAND) | (theta >= np.pi - FLOW_BAND)
    across = np.abs(theta - np.pi / 2) <= FLOW_BAND
    if not along.any() or not across.any():
        return None
    means, ses = [], []
    for band in (along, across):
        v, e = g[:, band], err[:, band]
        ok = np.isfinite(v) & np.isfinite(e)
        if not ok.any():
            return None
        means.append(v[ok].mean())
        ses.append(np.sqrt(np.sum(e[ok] ** 2)) / ok.sum())
    diff, se = means[0] - means[1], float(np.hypot(*ses))
    if diff > max(FLOW_SIGMAS * se, 1e-3):
        return (f"g decorrelates most across theta = 90 deg (mean g {means[1]:.4f} there, {means[0]:.4f} along "
                "theta = 0): theta must be measured from the flow direction; if this file measures it from the "
                "gradient or vorticity axis, shift theta by 90 degrees")
    return None
