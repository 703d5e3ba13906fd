"""kill -9, a full disk and two writers at once, for the three kinds of output (issue 14): dataset
stores, model files and analyze result folders. Each runs real child processes.

* kill -9: the child is stopped while its output is half-written (paused inside the write by a patched
  writer, so the kill lands there every time); the existing output must be intact, the leftover
  temporary is removed by the next write of that output, a dataset resumes to the same numbers.
* disk full: the child runs under RLIMIT_FSIZE (``ulimit -f``; writes fail with EFBIG, as with ENOSPC,
  without root or a tmpfs); the CLI must answer one line with exit status 2, the old output intact.
* two writers: a second dataset driver on a store is refused while the first runs (naming it), and
  replaces it only after the first is gone; two model writers or two analyses racing on one output
  leave one complete output (those two are marked slow: their guarantee is the atomic rename of
  tests/test_files.py).
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import generate_with

from shearcorr.params import QGrid

resource = pytest.importorskip("resource")
GRID = (0.5, 5.0, 6, 7)
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parents[1] / "src"), os.environ.get("PYTHONPATH", "")]))


def _cli(*args, fsize=None, timeout=300):
    def limit():
        if fsize:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    return subprocess.run([sys.executable, "-m", "shearcorr", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, preexec_fn=limit, env=ENV)


def _one_line_exit_2(proc, needle):
    """Exit status 2 and one error line, the last one (progress lines of a log may come before it)."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    errors = [ln for ln in lines if ln.startswith("shearcorr")]
    assert errors == lines[-1:] and "Traceback" not in proc.stderr and needle in lines[-1], proc.stderr


def _kill_when_paused(code: str, timeout=180) -> int:
    """Run ``code`` in a child; it prints PAUSED when its writer is half-way; kill -9 it then."""
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=ENV)
    t0 = time.time()
    line = ""
    while "PAUSED" not in line and time.time() - t0 < timeout:
        line = child.stdout.readline()
        if not line and child.poll() is not None:
            raise AssertionError(f"child ended before pausing: {child.stderr.read()}")
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=60)
    child.stdout.close()
    child.stderr.close()
    assert child.returncode == -signal.SIGKILL
    return child.pid


def _leftovers(folder: Path, name: str, pid):
    """Temporaries of output ``name`` left by process ``pid`` ("" for any process)."""
    return [p for p in folder.iterdir() if p.name.startswith(f".{name}.shearcorr-{pid}")]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A tiny dataset store, a model trained on it, a synthetic pair and its analysis."""
    from shearcorr.cli import main
    from shearcorr.experiment import render_pair, write_synth
    from shearcorr.params import SystemParams

    root = tmp_path_factory.mktemp("reliability")
    generate_with(root / "s.zarr", workers=1, n=24, seed=0, grid=QGrid.log(*GRID), progress=False)
    assert main(["train", str(root / "s.zarr"), "-o", str(root / "m.npz"), "--model", "paper", "--grid-size", "5"]) == 0
    pair = render_pair(SystemParams(150, 0.1, 1.5, 20), shape=(128, 128), seed=3)
    write_synth(pair, root / "pair")
    p = root / "pair"
    analyze = ["analyze", p / "before.npy", p / "after.npy", "--geometry", p / "geometry.json", "--mask", p / "mask.npy",
               "--no-plots", "--n-q", "8", "--n-phi", "16"]
    assert main([str(a) for a in analyze] + ["-o", str(root / "res")]) == 0
    return {"root": root, "analyze": analyze}


# ------------------------------------------------------------------------------------------ datasets
def test_dataset_second_driver_refused_then_kill_9_then_replaced(tmp_path):
    """Issue 14: a second driver with --overwrite on a store being written silently mixed seeds.
    Now it is refused (naming the first), the first is killed -9 mid-run (finished chunks stay valid,
    the lock is released with the process), and the second then replaces the store cleanly."""
    from shearcorr.data import open_dataset

    store = tmp_path / "s.zarr"

    def args(n, configs):
        return ["dataset", "--n", n, "--chunk-size", "2", "--workers", "1", "--engine", "mc", "--configs", configs,
                "--n-q", "6", "--n-theta", "7", "-o", store, "--no-progress"]

    common = args(200, 5000)  # minutes of work: it is still running when the second driver comes
    first = subprocess.Popen([sys.executable, "-m", "shearcorr", *map(str, common), "--seed", "5"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        t0 = time.time()
        while not (store / "zarr.json").is_file() and time.time() - t0 < 240:
            assert first.poll() is None, first.stderr.read()
            time.sleep(0.2)
        second = _cli(*common, "--seed", "6", "--overwrite")
        assert first.poll() is None, "the first driver ended too early for the test"
        _one_line_exit_2(second, f"is being written by another shearcorr run (pid {first.pid} on host")
    finally:
        first.kill()
        first.wait(timeout=60)
        first.stderr.close()
    done = open_dataset(store)["done"].values  # verified: every finished chunk passes its checksums
    assert json.loads(open_dataset(store).attrs["design"])["seed"] == 5 and done.sum() < 200
    proc = _cli(*args(20, 200), "--seed", "6", "--overwrite")  # a small replacement: quick
    assert proc.returncode == 0, proc.stderr
    ds = open_dataset(store)
    assert json.loads(ds.attrs["design"])["seed"] == 6 and bool(ds["done"].all()) and int(ds.attrs["configs"]) == 200
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.zarr"]  # the killed driver's lock file is gone too


def test_dataset_disk_full_is_one_line_and_resumable(tmp_path):
    from shearcorr.data import open_dataset

    store = tmp_path / "s.zarr"
    args = ["dataset", "--n", "24", "--seed", "2", "--chunk-size", "4", "--workers", "1", "--n-q", "20", "--n-theta", "21",
            "-o", store, "--no-progress"]
    _one_line_exit_2(_cli(*args, fsize=3000), "cannot write")
    proc = _cli(*args)  # space again: the same command resumes (damaged chunks, if any, are recomputed)
    assert proc.returncode == 0, proc.stderr
    ds = open_dataset(store)
    assert bool(ds["done"].all()) and json.loads(ds.attrs["design"])["seed"] == 2


# ------------------------------------------------------------------------------------------ model files
def test_model_kill_9_while_writing_keeps_the_old_file(work):
    from shearcorr.inverse.modelfile import load_model, save_model

    root = work["root"]
    target = root / "kill.npz"
    save_model(load_model(root / "m.npz"), target)
    before = target.read_bytes()
    code = (f"import time, numpy as np\nimport shearcorr.inverse.modelfile as mf\nm = mf.load_model({str(root / 'm.npz')!r})\n"
            "orig = np.savez_compressed\n"
            "def slow(fh, **a):\n    orig(fh, **a); fh.flush(); print('PAUSED', flush=True); time.sleep(300)\n"
            f"mf.np.savez_compressed = slow\nmf.save_model(m, {str(target)!r})\n")
    pid = _kill_when_paused(code)
    assert target.read_bytes() == before and _leftovers(root, "kill.npz", pid)
    save_model(load_model(target), target)  # the next write removes the dead run's temporary
    assert not _leftovers(root, "kill.npz", pid) and load_model(target).targets == ("rs", "d2", "gamma_l")


def _train_args(work, model):
    return ["train", work["root"] / "s.zarr", "-o", model, "--model", "paper", "--grid-size", "5", "--overwrite"]


def test_model_disk_full_keeps_the_old_file(work, tmp_path):
    model = tmp_path / "m.npz"
    model.write_bytes((work["root"] / "m.npz").read_bytes())
    before = model.read_bytes()
    _one_line_exit_2(_cli(*_train_args(work, model), fsize=len(before) // 2), "cannot write")
    assert model.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["m.npz"]


@pytest.mark.slow
def test_model_two_writers(work, tmp_path):
    """Two writers of one model file: each rename is atomic; the file is always one complete model."""
    from shearcorr.inverse.modelfile import load_model

    model = tmp_path / "m.npz"
    train = _train_args(work, model)
    procs = [subprocess.Popen([sys.executable, "-m", "shearcorr", *map(str, train)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True, env=ENV) for _ in range(2)]
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read()
        p.stderr.close()
    assert load_model(model).targets == ("rs", "d2", "gamma_l") and sorted(p.name for p in tmp_path.iterdir()) == ["m.npz"]


# ------------------------------------------------------------------------------------------ analyze
def test_analyze_kill_9_while_writing_keeps_the_old_result(work):
    root = work["root"]
    out = root / "res"
    before = (out / "result.json").read_text()
    a = [str(x) for x in work["analyze"]]
    code = ("import time, numpy as np\nimport shearcorr.experiment.analysis as an\norig = np.savez\n"
            "def slow(*x, **k):\n    orig(*x, **k); print('PAUSED', flush=True); time.sleep(300)\n"
            "an.np.savez = slow\nfrom shearcorr.cli import main\n"
            f"main({a + ['-o', str(out), '--overwrite']!r})\n")
    pid = _kill_when_paused(code)
    assert (out / "result.json").read_text() == before and _leftovers(root, "res", pid)
    proc = _cli(*work["analyze"], "-o", out, "--overwrite")  # the next analysis cleans the dead run's folder
    assert proc.returncode == 0, proc.stderr
    assert not _leftovers(root, "res", pid) and json.loads((out / "result.json").read_text())["warnings"] == []


def test_analyze_disk_full_keeps_the_old_result(work):
    out = work["root"] / "res"
    before = (out / "result.json").read_text()
    _one_line_exit_2(_cli(*work["analyze"], "-o", out, "--overwrite", fsize=2000), "cannot write")
    assert (out / "result.json").read_text() == before and not _leftovers(work["root"], "res", "")


@pytest.mark.slow
def test_analyze_two_writers(work, tmp_path):
    """Two analyses racing on one folder: one complete folder; the other run succeeds or says it lost."""
    out = tmp_path / "res"
    procs = [subprocess.Popen([sys.executable, "-m", "shearcorr", *map(str, work["analyze"]), "-o", str(out), "--overwrite"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV) for _ in range(2)]
    codes = []
    for p in procs:
        codes.append(p.wait(timeout=300))
        err = p.stderr.read()
        p.stderr.close()
        assert "Traceback" not in err and (codes[-1] == 0 or "another run at the same time" in err), err
    assert 0 in codes
    result = json.loads((out / "result.json").read_text())
    assert np.isfinite(result["gamma_l"]["value"]) and sorted(p.name for p in tmp_path.iterdir()) == ["res"]
