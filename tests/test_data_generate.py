"""Dataset generation: determinism across executors and chunking, Dask, resume after kill -9 and after a
worker dies, overwrite and refusals, CLI."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import assert_same_data, generate_with

from shearcorr.cli import main
from shearcorr.data import generate, open_dataset
from shearcorr.errors import ShearcorrError
from shearcorr.params import PARAM_NAMES, QGrid

N = 24
SEED = 7
GRID = QGrid.log(0.5, 5.0, 20, 21)
GRID_ARGS = ["--n-q", "20", "--n-theta", "21"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """N samples with the analytic engine, 2 local worker processes, chunks of 5."""
    path = tmp_path_factory.mktemp("ref") / "ref.zarr"
    generate_with(path, n=N, seed=SEED, grid=GRID, workers=2, chunk_size=5, include_I=True, progress=False)
    return path


def test_analytic_values_match_the_engine(reference):
    from shearcorr.forward.analytic import ensemble_arrays
    from shearcorr.params import SystemParams

    ds = open_dataset(reference)
    i = 13
    params = SystemParams(*(float(ds[p][i]) for p in PARAM_NAMES), displacement="uniform")
    I, g, _ = ensemble_arrays(params, GRID)
    np.testing.assert_array_equal(ds["g"][i].values, np.asarray(g, dtype=np.float32))
    np.testing.assert_array_equal(ds["I"][i].values, np.asarray(I, dtype=np.float32))


def test_same_values_for_any_workers_and_chunking(reference, tmp_path):
    one = tmp_path / "one.zarr"
    generate_with(one, n=N, seed=SEED, grid=GRID, workers=1, chunk_size=7, include_I=True, progress=False)
    assert_same_data(open_dataset(one), open_dataset(reference))


def test_dask_local_cluster_matches_process_pool(reference, tmp_path):
    """2 Dask worker processes, reached by address (like --scheduler tcp://host:8786), other chunking."""
    distributed = pytest.importorskip("distributed")
    path = tmp_path / "dask.zarr"
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        argv = ["dataset", "--n", str(N), "--seed", str(SEED), "-o", str(path), "--chunk-size", "3", "--include-I",
                "--scheduler", cluster.scheduler_address, "--no-progress", *GRID_ARGS]
        assert main(argv) == 0
    assert_same_data(open_dataset(path), open_dataset(reference))


def test_mc_engine_small_and_split_invariant(tmp_path):
    kw = dict(n=4, seed=1, grid=QGrid.log(0.5, 5.0, 6, 7), engine="mc", configs=20, progress=False)
    a = generate_with(tmp_path / "a.zarr", workers=2, chunk_size=1, **kw)
    b = generate_with(tmp_path / "b.zarr", workers=1, chunk_size=3, **kw)
    da, db = open_dataset(a, load=True), open_dataset(b, load=True)
    assert_same_data(da, db)
    assert "g_err" in da and da.attrs["configs"] == 20 and da.attrs["engine"] == "mc"
    assert np.all(np.isfinite(da["g"])) and np.all(da["g_err"] > 0)
    # the MC stream of sample i is the first child of SeedSequence(seed).spawn(n)[i]
    from shearcorr.forward.montecarlo import simulate_mc
    from shearcorr.params import SystemParams

    p = SystemParams(*(float(da[k][2]) for k in PARAM_NAMES))
    seed = np.random.SeedSequence(1).spawn(4)[2].spawn(1)[0]
    direct = simulate_mc(p, QGrid.log(0.5, 5.0, 6, 7), configs=20, seed=seed)
    np.testing.assert_array_equal(da["g"][2].values, direct["g"].values.astype(np.float32))


def test_overwrite_replaces_only_after_validation(reference, tmp_path):
    path = tmp_path / "x.zarr"
    generate_with(path, n=6, seed=0, grid=GRID, workers=1, progress=False)
    with pytest.raises(ShearcorrError, match="low 0.3 > high 0.1"):
        generate(path, n=6, seed=0, grid=GRID, ranges={"rs": (0.3, 0.1)}, overwrite=True, progress=False)
    with pytest.raises(ShearcorrError, match="configs"):
        generate(path, n=6, seed=0, grid=GRID, engine="mc", overwrite=True, progress=False)
    assert open_dataset(path).attrs["design"] and int(open_dataset(path)["done"].sum()) == 6
    generate_with(path, n=4, seed=1, grid=GRID, workers=1, overwrite=True, progress=False)
    ds = open_dataset(path, load=True)
    assert ds.sizes["sample"] == 4 and json.loads(ds.attrs["design"])["seed"] == 1 and bool(ds["done"].all())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.zarr"]  # no temporary or lock file left


def test_refuses_foreign_folder_and_bad_arguments(tmp_path):
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    with pytest.raises(ShearcorrError, match="not a shearcorr dataset store"):
        generate(foreign, n=3, grid=GRID, overwrite=True, progress=False)
    assert (foreign / "keep.txt").read_text() == "mine"
    bad = [
        dict(ranges={"d2": (-1.0, 2.0)}), dict(ranges={"rs": (0.3, 0.1)}), dict(engine="fast"),
        dict(configs=10), dict(chunk_size=0), dict(displacement="brownian"),
    ]
    for kw in bad:
        with pytest.raises(ShearcorrError):
            generate(tmp_path / "new.zarr", n=3, grid=GRID, progress=False, **kw)
    with pytest.raises(ShearcorrError, match="does not exist"):
        generate(tmp_path / "missing" / "x.zarr", n=3, grid=GRID, progress=False)
    assert not (tmp_path / "new.zarr").exists()


# --- a worker dying: the pool breaks, finished chunks stay, the same call resumes -----------------

class DiesOnce:
    """The analytic engine, but the worker process dies (os._exit) the first time it sees d2 > 2.5."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __call__(self, params, grid, *, configs, seed):
        from shearcorr.forward.analytic import ensemble_arrays

        if params.d2 > 2.5 and not self.marker.exists():
            self.marker.write_text("died")
            os._exit(1)
        return ensemble_arrays(params, grid)


def test_worker_death_then_resume(reference, tmp_path):
    path, marker = tmp_path / "w.zarr", tmp_path / "died"
    kw = dict(n=N, seed=SEED, grid=GRID, engine=DiesOnce(marker), workers=1, chunk_size=5, include_I=True,
              progress=False)
    with pytest.raises(ShearcorrError, match="worker process died"):
        generate_with(path, **kw)
    assert marker.exists() and not open_dataset(path)["done"].all()
    generate_with(path, **kw)
    ds = open_dataset(path, load=True)
    assert ds.attrs["engine"].endswith(":DiesOnce")
    ref = open_dataset(reference, load=True)
    for name in ("g", "I", "g_q", "g_theta", "done", *PARAM_NAMES):
        np.testing.assert_array_equal(ds[name].values, ref[name].values)


# --- kill -9 of the driver (the real CLI in a subprocess), then the same command again -------------

def _done_count(path: Path) -> int:
    import zarr

    try:
        return int(np.asarray(zarr.open_array(str(path / "done"), mode="r")[:]).sum())
    except Exception:  # not created yet
        return -1


def test_kill9_then_rerun_gives_identical_store(tmp_path):
    n, chunk = 120, 10
    ref = generate_with(tmp_path / "ref.zarr", n=n, seed=3, grid=QGrid(), workers=1, chunk_size=chunk, progress=False)
    path = tmp_path / "killed.zarr"
    cmd = [sys.executable, "-m", "shearcorr", "dataset", "--n", str(n), "--seed", "3", "-o", str(path),
           "--workers", "1", "--chunk-size", str(chunk)]
    proc = subprocess.Popen(cmd, start_new_session=True, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while _done_count(path) < chunk and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)  # the driver, mid-run
        proc.wait(10)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the orphaned pool workers of that run
        except ProcessLookupError:
            pass
    done = _done_count(path)
    assert chunk <= done < n, f"expected an interrupted run, got {done} of {n} done"
    partial = open_dataset(path, done_only=True)
    assert partial.sizes["sample"] == done and bool(partial["done"].all())
    assert np.all(np.isfinite(partial["g"].values))
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{n}/{n} samples done ({n - done} computed now)" in rerun.stderr
    assert_same_data(open_dataset(path), open_dataset(ref))


# --- CLI ----------------------------------------------------------------------------

def test_cli_both_spellings_and_info(tmp_path, capsys):
    base = ["--n", "5", "--seed", "2", "--no-progress", "--chunk-size", "2", "--workers", "1", *GRID_ARGS,
            "--rs", "0.05", "--d2", "1", "2", "--design", "lhs"]
    assert main(["dataset", *base, "-o", str(tmp_path / "a.zarr")]) == 0
    assert main(["dataset", "generate", *base, "-o", str(tmp_path / "b.zarr"), "--netcdf", str(tmp_path / "b.nc")]) == 0
    a, b = open_dataset(tmp_path / "a.zarr", load=True), open_dataset(tmp_path / "b.zarr", load=True)
    assert_same_data(a, b)
    assert np.all(a["rs"] == 0.05) and 1 <= float(a["d2"].min()) and float(a["d2"].max()) <= 2
    assert (tmp_path / "b.nc").is_file()
    capsys.readouterr()
    assert main(["dataset", "info", str(tmp_path / "a.zarr")]) == 0
    out = capsys.readouterr().out
    assert "5/5 samples done" in out and "rs 0.05..0.05 (fixed)" in out and "lhs" in out


@pytest.mark.parametrize(
    "argv, match",
    [
        (["--n", "5", "-o", "X", "--rs", "0.3", "0.1"], "low 0.3 > high 0.1"),
        (["--n", "5", "-o", "X", "--d2", "-1", "2"], "d2"),
        (["--n", "5", "-o", "X", "--gamma-l", "1", "2", "3"], "LOW HIGH"),
        (["--n", "5", "-o", "X", "--engine", "mc"], "configs"),
        (["-o", "X"], "--n"),
        (["info", "nowhere.zarr"], "no such dataset store"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2(tmp_path, capsys, argv, match):
    argv = [str(tmp_path / "x.zarr") if a == "X" else a for a in argv]
    assert main(["dataset", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("shearcorr: error:") and match in err and "\n" not in err
    assert not (tmp_path / "x.zarr").exists()
