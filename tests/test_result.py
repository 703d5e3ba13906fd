"""The result Dataset: layout, provenance, NetCDF round trip, atomic writes."""

import numpy as np
import pytest
import xarray as xr

from conftest import DATA

from shearcorr._version import __version__
from shearcorr.errors import ShearcorrError
from shearcorr.params import SystemParams
from shearcorr.physics import g_theory
from shearcorr.result import grid_from_dataset, load_result, make_result, params_from_attrs, save_result


def _result(grid):
    p = SystemParams(n_l2=120, rs=0.1, d2=0.8, gamma_l=12, displacement="stokes-einstein")
    g = g_theory(grid.q, grid.theta, p.d2, p.gamma_l)
    return p, make_result(grid, p, I=np.ones(grid.shape), g=g, g_err=np.full(grid.shape, 0.01), engine="mc",
                          configs=50, seed=3)


def test_make_result_layout_and_means(small_grid):
    p, ds = _result(small_grid)
    np.testing.assert_allclose(ds.g_q, ds.g.mean("theta"))
    np.testing.assert_allclose(ds.g_theta, ds.g.mean("q"))
    # independent-point error of a mean of 21 points with err 0.01
    np.testing.assert_allclose(ds.g_q_err, 0.01 / np.sqrt(21))
    assert ds.attrs["displacement"] == "stokes-einstein" and ds.attrs["configs"] == 50
    assert ds.attrs["shearcorr_version"] == __version__
    assert params_from_attrs(ds.attrs) == p
    assert grid_from_dataset(ds) == small_grid


def test_make_result_rejects_wrong_shape(small_grid):
    p = SystemParams(100, 0, 1, 10)
    with pytest.raises(ShearcorrError, match="shape"):
        make_result(small_grid, p, I=np.ones((3, 3)), g=np.ones(small_grid.shape), g_err=np.ones(small_grid.shape),
                    engine="mc")


def test_netcdf_round_trip(tmp_path, small_grid):
    _, ds = _result(small_grid)
    path = save_result(ds, tmp_path / "run.nc")
    back = load_result(path)
    xr.testing.assert_identical(back, ds)


def test_failed_save_keeps_existing_file(tmp_path, small_grid):
    _, ds = _result(small_grid)
    path = save_result(ds, tmp_path / "run.nc")
    before = path.read_bytes()
    bad = ds.copy()
    bad.attrs["unserialisable"] = {"a": object()}
    with pytest.raises(Exception):
        save_result(bad, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["run.nc"]  # no temporary left behind


def test_load_errors(tmp_path):
    with pytest.raises(ShearcorrError, match="no such file"):
        load_result(tmp_path / "missing.nc")
    junk = tmp_path / "junk.nc"
    junk.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    with pytest.raises(ShearcorrError, match="cannot read"):
        load_result(junk)
    with pytest.raises(ShearcorrError, match="does not exist"):
        save_result(xr.Dataset(), tmp_path / "nope" / "x.nc")


def test_result_written_before_the_refactor_loads_with_the_same_numbers():
    from shearcorr.forward import simulate
    from shearcorr.params import QGrid

    old = load_result(DATA / "result_52efcd7.nc")
    p = params_from_attrs(old.attrs)
    assert (p.n_l2, p.rs, p.d2, p.gamma_l, p.displacement) == (150.0, 0.1, 1.5, 15.0, "uniform")
    new = simulate(p, QGrid.log(0.5, 5.0, 6, 7))
    for name in ("I", "g", "g_err", "g_q", "g_theta"):  # to round-off: the engine's summation order may change
        np.testing.assert_allclose(new[name].values, old[name].values, rtol=1e-13, atol=0, err_msg=name)


def test_plain_hdf5_of_another_code_loads_as_the_result(tmp_path, small_grid):
    """No dimension scales, g stored as (theta, q) in float32, theta in degrees: the same map as the result."""
    import h5py

    _, ds = _result(small_grid)
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        for name in ("g", "g_err"):
            f[name] = ds[name].values.T.astype("f4")
        for name in ("g_q", "g_q_err", "g_theta", "g_theta_err"):
            f[name] = ds[name].values.astype("f4")
        f["q"] = ds.q.values.astype("f4")
        f["theta"] = np.rad2deg(ds.theta.values)
        f["theta"].attrs["units"] = "degree"
        f.attrs["configs"] = 50
    back = load_result(path)
    assert back["g"].dims == ("q", "theta") and back.attrs["configs"] == 50
    np.testing.assert_allclose(back.theta, ds.theta, rtol=0, atol=1e-12)
    np.testing.assert_allclose(back.q, ds.q, rtol=1e-7)
    for name in ("g", "g_err", "g_q", "g_q_err", "g_theta", "g_theta_err"):
        np.testing.assert_allclose(back[name], ds[name], rtol=1e-7, err_msg=name)
    assert back["g_theta"].dims == ("theta",) and back["g_q"].dims == ("q",)


def test_theta_in_degrees_without_units_is_refused(tmp_path, small_grid):
    _, ds = _result(small_grid)
    deg = ds.assign_coords(theta=np.rad2deg(ds.theta.values))
    save_result(deg, tmp_path / "deg.nc")
    with pytest.raises(ShearcorrError, match="looks like degrees"):
        load_result(tmp_path / "deg.nc")
    deg["theta"].attrs["units"] = "arcmin"
    save_result(deg, tmp_path / "arcmin.nc")
    with pytest.raises(ShearcorrError, match="units 'arcmin'"):
        load_result(tmp_path / "arcmin.nc")


def test_configs_written_as_an_array_or_a_string_is_one_number(tmp_path, small_grid):
    import h5py

    _, ds = _result(small_grid)
    path = save_result(ds, tmp_path / "run.nc")
    for value, expected in ((np.array([800]), 800.0), (b"800", 800.0), ("1.5e3", 1500.0)):
        with h5py.File(path, "a") as f:
            f.attrs["configs"] = value
        back = load_result(path).attrs["configs"]
        assert type(back) is float and back == expected
    with h5py.File(path, "a") as f:
        f.attrs["configs"] = np.array([1, 2])
    with pytest.raises(ShearcorrError, match="not one number of configurations"):
        load_result(path)


def test_a_map_with_theta_from_another_axis_is_named():
    """g is lowest along the flow (theta = 0): a map rotated by 90 degrees gets a warning, the right one none."""
    from shearcorr.params import QGrid
    from shearcorr.result import flow_axis_warning

    grid = QGrid.log(0.5, 5.0, 12, 13)  # theta every 15 degrees
    _, ds = _result(grid)
    assert flow_axis_warning(ds) is None
    rolled = ds.copy()
    for name in ("g", "g_err"):
        v = ds[name].values
        rolled[name] = (("q", "theta"), np.concatenate([np.roll(v[:, :-1], 6, axis=1), np.roll(v[:, :-1], 6, axis=1)[:, :1]], 1))
    assert "shift theta by 90 degrees" in flow_axis_warning(rolled)
    flat = ds.assign(g=ds.g * 0 + 1.0)  # no shear: nothing to judge
    assert flow_axis_warning(flat) is None
    noisy = rolled.assign(g_err=rolled.g_err * 1e3)  # a difference within the noise is not flagged
    assert flow_axis_warning(noisy) is None


def test_a_file_of_several_maps_reads_as_samples(tmp_path, small_grid):
    _, ds = _result(small_grid)
    multi = xr.concat([ds, ds.assign(g=ds.g + 0.01)], dim="set")
    save_result(multi, tmp_path / "multi.nc")
    back = load_result(tmp_path / "multi.nc")
    assert back["g"].dims == ("sample", "q", "theta") and back.sizes["sample"] == 2
    np.testing.assert_allclose(back.g.isel(sample=1) - back.g.isel(sample=0), 0.01)
    save_result(xr.concat([multi, multi], dim="run"), tmp_path / "four.nc")
    with pytest.raises(ShearcorrError, match="a single extra dimension"):
        load_result(tmp_path / "four.nc")
