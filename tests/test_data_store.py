"""The dataset store: layout, create / write / resume round trip, compatibility checks, export, info, and
stores written by the pre-refactor code (tests/data)."""

import json
import os
import shutil

import numpy as np
import pytest
import xarray as xr
from conftest import DATA, assert_same_data, generate_with

from shearcorr._version import __version__
from shearcorr.data import dataset_info, export_netcdf, format_info, generate, open_dataset, select_done
from shearcorr.data.store import create_store, read_state, template, write_chunk
from shearcorr.errors import ShearcorrError
from shearcorr.params import PARAM_NAMES, QGrid

N = 12
SEED = 7
GRID = QGrid.log(0.5, 5.0, 20, 21)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """N samples with the analytic engine, one local worker process, chunks of 5."""
    path = tmp_path_factory.mktemp("ref") / "ref.zarr"
    generate_with(path, n=N, seed=SEED, grid=GRID, workers=1, chunk_size=5, include_I=True, progress=False)
    return path


def test_store_layout(reference):
    ds = open_dataset(reference, load=True)
    assert dict(ds.sizes) == {"sample": N, "q": 20, "theta": 21}
    assert ds["g"].dims == ("sample", "q", "theta") and ds["g"].dtype == np.float32
    assert ds["I"].dtype == np.float32 and "g_err" not in ds
    assert ds["g_q"].dims == ("sample", "q") and ds["g_theta"].dims == ("sample", "theta")
    assert bool(ds["done"].all())
    assert np.all(np.isfinite(ds["g"])) and float(ds["g"].min()) > 0.9 and float(ds["g"].max()) < 2.1
    # g_q / g_theta are the unweighted means of the float64 g (stored g is float32)
    np.testing.assert_allclose(ds["g_q"], ds["g"].astype(np.float64).mean("theta"), rtol=1e-6)
    np.testing.assert_allclose(ds["g_theta"], ds["g"].astype(np.float64).mean("q"), rtol=1e-6)
    np.testing.assert_array_equal(ds["q"], GRID.q)
    design = json.loads(ds.attrs["design"])
    assert design["kind"] == "uniform" and design["n"] == N and design["seed"] == SEED
    for p in PARAM_NAMES:
        lo, hi = design["ranges"][p]
        assert ds[p].dtype == np.float64 and lo <= float(ds[p].min()) and float(ds[p].max()) <= hi
    for key in ("engine", "configs", "displacement", "seed", "shearcorr_version", "grid_n_q", "chunk_size"):
        assert key in ds.attrs
    assert ds.attrs["engine"] == "analytic" and ds.attrs["chunk_size"] == 5
    # Zarr chunks along sample match the task chunks
    assert open_dataset(reference)["g"].encoding["chunks"] == (5, 20, 21)




@pytest.mark.parametrize(
    "change, what",
    [
        (dict(grid=QGrid.log(0.5, 5.0, 20, 11)), "grid"),
        (dict(engine="mc", configs=5), "engine"),
        (dict(displacement="stokes-einstein"), "displacement"),
        (dict(n=N + 1), "design"),
        (dict(seed=SEED + 1), "design"),
        (dict(ranges={"rs": (0.0, 0.1)}), "design"),
        (dict(design="lhs"), "design"),
        (dict(include_I=False), "include_I"),
    ],
)
def test_mismatched_store_is_refused(reference, change, what):
    kw = dict(n=N, seed=SEED, grid=GRID, include_I=True, progress=False) | change
    before = sorted(p.name for p in reference.rglob("*"))
    with pytest.raises(ShearcorrError, match=what) as info:
        generate(reference, **kw)
    assert "--overwrite" in str(info.value) and "\n" not in str(info.value)
    assert sorted(p.name for p in reference.rglob("*")) == before




def test_select_done_and_export(reference, tmp_path):
    ds = open_dataset(reference)
    assert select_done(ds).sizes["sample"] == N
    nc = export_netcdf(reference, tmp_path / "ref.nc")
    with xr.open_dataset(nc, engine="h5netcdf") as back:
        np.testing.assert_array_equal(back["g"].values, ds["g"].values)
        assert back.attrs["design"] == ds.attrs["design"]


def test_info(reference):
    info = dataset_info(reference)
    assert info["done"] == info["total"] == N and info["size_bytes"] > 0
    text = format_info(info)
    assert f"{N}/{N} samples done" in text and "analytic" in text and "uniform" in text


def test_create_write_read_round_trip_and_permissions(tmp_path):
    grid = QGrid.log(0.5, 5.0, 3, 4)
    n = 6
    params = {p: np.linspace(1.0, 2.0, n) + k for k, p in enumerate(PARAM_NAMES)}
    attrs = {"engine": "analytic", "design": "{}", "chunk_size": 2}
    path = tmp_path / "s.zarr"
    create_store(path, template(params, grid, attrs, include_I=False, include_err=True), chunk_size=2, overwrite=False)
    mode = 0o777 & ~_umask()
    assert path.stat().st_mode & 0o777 == mode  # the temporary folder's 0700 was not kept
    assert [p.name for p in tmp_path.iterdir()] == ["s.zarr"]  # built aside, renamed into place
    attrs_back, done, chunk, grid_back = read_state(path)
    assert not done.any() and chunk == 2 and grid_back == grid and attrs_back["engine"] == "analytic"
    rng = np.random.default_rng(0)
    g = rng.random((2, 3, 4)).astype(np.float32)
    arrays = {"g": g, "g_q": g.astype(np.float64).mean(axis=2), "g_theta": g.astype(np.float64).mean(axis=1),
              "g_err": rng.random((2, 3, 4)).astype(np.float32)}  # g_q, g_theta: the means of g (checked on read)
    write_chunk(path, 2, 4, arrays, np.column_stack([params[p][2:4] for p in PARAM_NAMES]))
    ds = open_dataset(path, load=True)  # verified: the chunk's checksums match
    np.testing.assert_array_equal(ds["done"].values, [False, False, True, True, False, False])
    for name, arr in arrays.items():
        np.testing.assert_array_equal(ds[name].values[2:4], arr)
        assert np.all(np.isnan(ds[name].values[:2])) and np.all(np.isnan(ds[name].values[4:]))
    for p in PARAM_NAMES:
        np.testing.assert_array_equal(ds[p].values, params[p])
    assert select_done(ds).sizes["sample"] == 2
    with pytest.raises(ShearcorrError, match="not empty"):  # an existing store is never replaced silently
        create_store(path, template(params, grid, attrs, False, True), chunk_size=2, overwrite=False)
    assert bool(open_dataset(path)["done"][2])


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_store_written_before_the_refactor_loads_and_resumes(tmp_path):
    legacy = DATA / "store_52efcd7.zarr"
    old = open_dataset(legacy, load=True)
    assert dict(old.sizes) == {"sample": 40, "q": 6, "theta": 7} and bool(old["done"].all())
    expected = json.loads((DATA / "expected_52efcd7.json").read_text())
    assert float(np.sum(old["g"].values, dtype=np.float64)) == expected["store_g_sum"]
    copy = tmp_path / "copy.zarr"
    shutil.copytree(legacy, copy)
    # forget chunk 1 (samples 8..15): data back to NaN, not done
    region = {"sample": slice(8, 16)}
    nan = xr.Dataset({"g": (("sample", "q", "theta"), np.full((8, 6, 7), np.nan, np.float32)),
                      "done": ("sample", np.zeros(8, bool))})
    nan.to_zarr(copy, region=region, mode="r+", consolidated=False)
    kw = dict(n=40, seed=3, grid=QGrid.log(0.5, 5.0, 6, 7), engine="analytic", progress=False)
    if old.attrs["shearcorr_version"] != __version__:  # a new release never resumes an old store
        with pytest.raises(ShearcorrError, match="shearcorr_version"):
            generate(copy, **kw)
        return
    generate_with(copy, workers=1, **kw)
    resumed = open_dataset(copy)  # verified: the resume gave the old store per-sample checksums
    assert "checksum" in resumed and bool(resumed["done"].all())
    new, ref = resumed.drop_vars("checksum").load(), old.load()
    kept = np.r_[0:8, 16:40]  # the chunks not recomputed: bit for bit
    assert_same_data(new.isel(sample=kept), ref.isel(sample=kept))
    # the recomputed chunk to round-off: the engine's summation order may change within a release (the uniform
    # engine's factorised radius sums, 2026-11-30: 1 ulp in 11 % of g_theta)
    for name in ref.data_vars:
        a, b = new[name].values[8:16], ref[name].values[8:16]
        if np.issubdtype(b.dtype, np.floating):
            np.testing.assert_allclose(a, b, rtol=1e-13, atol=0, err_msg=name)
        else:
            np.testing.assert_array_equal(a, b, err_msg=name)
