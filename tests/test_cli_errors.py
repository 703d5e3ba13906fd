"""Every traceback case of issue 14 (one reproduction per kind, and more of each class): one line on
stderr, exit status 2, no traceback, nothing written. In-process through ``shearcorr.cli.main``.

The disk-full cases run in child processes under a file-size limit (tests/test_cli_reliability.py);
the memory cases here are refused from the estimate, before anything is allocated.
"""

import json
import os
import shutil

import numpy as np
import pytest
from conftest import generate_with

from shearcorr.cli import main
from shearcorr.params import QGrid, SystemParams

GRID = (0.5, 5.0, 7, 7)  # square: a transposed g keeps its shape (the case the profile check must catch)


def _can_create(folder) -> bool:
    try:
        probe = os.path.join(folder, ".shearcorr-test-probe")
        open(probe, "w").close()
        os.unlink(probe)
        return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def c(tmp_path_factory):
    """Inputs shared by the cases: a synthetic pair, a dataset store, a model, a result file, an
    unwritable folder (permission bits, or /sys for root, who ignores them)."""
    from shearcorr.experiment import render_pair, write_synth
    from shearcorr.forward import simulate
    from shearcorr.result import save_result

    root = tmp_path_factory.mktemp("cli_errors")
    write_synth(render_pair(SystemParams(150, 0.1, 1.5, 20), shape=(128, 128), seed=1), root / "pair")
    generate_with(root / "s.zarr", workers=1, n=20, seed=0, grid=QGrid.log(*GRID), chunk_size=5, progress=False)
    assert main(["train", str(root / "s.zarr"), "-o", str(root / "m.npz"), "--model", "paper", "--grid-size", "4",
                 "--noise-configs", "inf"]) == 0  # one noise-free model: the single-model file layout
    save_result(simulate(SystemParams(150, 0.1, 1.5, 15), QGrid.log(*GRID)), root / "one.nc")
    ro = root / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    unwritable = str(ro) if not _can_create(ro) else ("/sys" if os.path.isdir("/sys") and not _can_create("/sys") else None)
    return {"root": root, "pair": root / "pair", "ro": unwritable}


def _pair_args(c, *extra, geometry=None, out=None):
    p = c["pair"]
    return ["analyze", p / "before.npy", p / "after.npy", "--geometry", geometry or p / "geometry.json",
            "--mask", p / "mask.npy", "--no-plots", "--n-q", "8", "--n-phi", "16", "-o", out or c["tmp"] / "out", *extra]


def _geometry(c, **changes):
    spec = json.loads((c["pair"] / "geometry.json").read_text())
    spec.update(changes)
    path = c["tmp"] / "g.json"
    path.write_text(json.dumps(spec))
    return path


def _raw_geometry(c, text):
    path = c["tmp"] / "g.json"
    path.write_text(text)
    return path


def _poni(c, text):
    (c["tmp"] / "p.poni").write_bytes(text if isinstance(text, bytes) else text.encode())
    return _raw_geometry(c, json.dumps({"particle_radius_nm": 10, "beam_size_um": 8, "poni": "p.poni"}))


PONI = "Detector: Detector\nDetector_config: {cfg}\nDistance: 1\nPoni1: 0.0035\nPoni2: 0.0035\nRot1: 0\nRot2: 0\nRot3: 0\nWavelength: 1e-10\n"


def _model(c, edit_arrays=None, edit_meta=None, rehash=True):
    from shearcorr.inverse.modelfile import _checksum

    z = dict(np.load(c["root"] / "m.npz"))
    meta = json.loads(z.pop("meta").tobytes())
    if edit_arrays:
        edit_arrays(z)
    if edit_meta:
        edit_meta(meta)
    if rehash:  # a damaged file whose checksum was recomputed: the values themselves must be checked
        meta["sha256"] = _checksum(z, meta)
    z["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    path = c["tmp"] / "m.npz"
    np.savez(path, **z)
    return path


def _nc(c, edit):
    import xarray as xr

    ds = edit(xr.load_dataset(c["root"] / "one.nc", engine="h5netcdf"))
    path = c["tmp"] / "x.nc"
    ds.to_netcdf(path, engine="h5netcdf")
    return path


def _square_transposed(c):
    """A square grid (n_q = n_theta) whose g values were written transposed under the right names."""
    import xarray as xr

    from shearcorr.forward import simulate

    ds = simulate(SystemParams(150, 0.1, 1.5, 15), QGrid.log(*GRID))
    ds["g"] = xr.DataArray(ds["g"].values.T, dims=("q", "theta"))
    path = c["tmp"] / "x.nc"
    ds.to_netcdf(path, engine="h5netcdf")
    return path


def _store(c, edit):
    path = c["tmp"] / "s.zarr"
    shutil.copytree(c["root"] / "s.zarr", path)
    edit(path)
    return path


def _store_attr(key, value):
    def edit(path):
        meta = json.loads((path / "zarr.json").read_text())
        meta["attributes"][key] = value
        (path / "zarr.json").write_text(json.dumps(meta))
    return edit


def _garbage(path):
    chunks = sorted(f for f in (path / "g").rglob("*") if f.is_file() and f.name != "zarr.json")
    chunks[0].write_bytes(b"garbage" * 9)


def _npy_header_1e12(c):
    hdr = {"descr": "<f8", "fortran_order": False, "shape": (1_000_000, 1_000_000)}
    with open(c["tmp"] / "b.npy", "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, hdr)
        fh.write(b"\0" * 64)
    return c["tmp"] / "b.npy"


def _h5_links(c, name):
    h5py = pytest.importorskip("h5py")
    with h5py.File(c["tmp"] / "b.h5", "w") as f:
        f["a"] = h5py.SoftLink("/b")
        f["b"] = h5py.SoftLink("/a")
        f["e"] = h5py.ExternalLink("no_such_file.h5", "/x")
    return c["tmp"] / "b.h5"


def _frames(c, path, *extra):
    return ["analyze", path, path, "--geometry", c["pair"] / "geometry.json", "-o", c["tmp"] / "o", *extra]


def _qmap_nan(c):
    from shearcorr.experiment.geometryfile import load_geometry

    geo = load_geometry(c["pair"] / "geometry.json", (128, 128))
    q = geo.q_nm.copy()
    q[5, 5] = np.nan
    np.save(c["tmp"] / "q.npy", q)
    np.save(c["tmp"] / "phi.npy", geo.phi)
    return _raw_geometry(c, json.dumps({"particle_radius_nm": 10, "beam_size_um": 8, "q_map": "q.npy", "phi_map": "phi.npy"}))


def _sim(*extra):
    return lambda c: ["simulate", "--n-q", "7", "--n-theta", "7", *extra, "-o", c["tmp"] / "x.nc"]


# (id, argv builder, text the one line must contain; None: any one-line error)
CASES = [
    # outputs: an existing folder / file, a folder that cannot be written, the one overwrite rule
    ("simulate -o existing folder", lambda c: (c["tmp"] / "x.nc").mkdir() or _sim()(c), "is a folder"),
    ("simulate -o existing file", lambda c: (c["tmp"] / "x.nc").write_text("x") and _sim()(c), "pass --overwrite"),
    ("train -o existing folder", lambda c: (c["tmp"] / "m.npz").mkdir() or ["train", c["root"] / "s.zarr", "-o", c["tmp"] / "m.npz"], "is a folder"),
    ("train -o existing file", lambda c: (c["tmp"] / "m.npz").write_text("x") and ["train", c["root"] / "s.zarr", "-o", c["tmp"] / "m.npz"], "pass --overwrite"),
    ("reproduce -o existing file", lambda c: (c["tmp"] / "f").write_text("x") and ["reproduce", "-o", c["tmp"] / "f"], "is a file"),
    ("synth-frames -o existing file", lambda c: (c["tmp"] / "f").write_text("x") and ["synth-frames", "--size", "64", "-o", c["tmp"] / "f"], "is a file"),
    ("plot -o folder with the figure", lambda c: (c["tmp"] / "f").mkdir() or (c["tmp"] / "f" / "fig1.png").write_text("x") and ["plot", "fig1", "-o", c["tmp"] / "f"], "pass --overwrite"),
    ("dataset --netcdf existing file", lambda c: (c["tmp"] / "x.nc").write_text("x") and ["dataset", "--n", "3", "-o", c["tmp"] / "s.zarr", "--netcdf", c["tmp"] / "x.nc"], "pass --overwrite"),
    ("dataset --netcdf in a missing folder", lambda c: ["dataset", "--n", "3", "-o", c["tmp"] / "s.zarr", "--netcdf", c["tmp"] / "no" / "x.nc"], "does not exist; create it first"),
    *[(f"{cmd} -o unwritable", build, "cannot write into folder") for cmd, build in (
        ("simulate", lambda c: ["simulate", "-o", os.path.join(c["ro"], "x.nc")]),
        ("dataset", lambda c: ["dataset", "--n", "3", "-o", os.path.join(c["ro"], "s.zarr")]),
        ("plot", lambda c: ["plot", "fig1", "-o", os.path.join(c["ro"], "figs")]),
        ("analyze", lambda c: _pair_args(c, out=os.path.join(c["ro"], "out"))),
        ("synth-frames", lambda c: ["synth-frames", "--size", "64", "-o", os.path.join(c["ro"], "p")]),
        ("reproduce", lambda c: ["reproduce", "-o", os.path.join(c["ro"], "rep")]),
        ("train", lambda c: ["train", c["root"] / "s.zarr", "-o", os.path.join(c["ro"], "m.npz")]))],
    ("analyze --cache unwritable", lambda c: _pair_args(c, "--method", "gpr", "--cache", os.path.join(c["ro"], "cache")), "cache folder"),
    # arguments out of range
    ("train --restarts -1", lambda c: ["train", c["root"] / "s.zarr", "-o", c["tmp"] / "m.npz", "--restarts", "-1"], "--restarts: must be >= 0"),
    ("train --noise-configs 1", lambda c: ["train", c["root"] / "s.zarr", "-o", c["tmp"] / "m.npz", "--noise-configs", "300", "1"], "must be >= 2 configurations (or inf"),
    ("train --noise-configs twice", lambda c: ["train", c["root"] / "s.zarr", "-o", c["tmp"] / "m.npz", "--noise-configs", "300", "300"], "noise levels must be distinct"),
    ("analyze --n-phi 0", lambda c: _pair_args(c, "--n-phi", "0"), "--n-phi: must be >= 1"),
    ("analyze --n-phi -1", lambda c: _pair_args(c, "--n-phi", "-1"), "--n-phi: must be >= 1"),
    ("analyze --n-phi 100000 (hung)", lambda c: _pair_args(c, "--n-phi", "100000"), "n_phi (--n-phi) must be a whole number in [4, 720]"),
    ("analyze --n-phi 700 on a small frame", lambda c: _pair_args(c, "--n-phi", "700"), "pixels per bin"),
    ("analyze default bins on a small frame", lambda c: _pair_args(c, "--n-q", "16", "--n-phi", "36"), "pixels per bin"),
    ("analyze --n-q -3", lambda c: _pair_args(c, "--n-q", "-3"), "--n-q: must be >= 1"),
    ("analyze --flow-angle nan", lambda c: _pair_args(c, "--flow-angle", "nan"), "must be a finite number"),
    ("analyze --flow-angle inf", lambda c: _pair_args(c, "--flow-angle", "inf"), "must be a finite number"),
    ("analyze --flow-angle 1e300", lambda c: _pair_args(c, "--flow-angle", "1e300"), "flow angle must be in [-360, 360]"),
    ("analyze --n-l2 1e300", lambda c: _pair_args(c, "--n-l2", "1e300"), "n_l2 (--n-l2) must be in"),
    ("analyze --contrast 3", lambda c: _pair_args(c, "--contrast", "3"), "contrast (--contrast) must be in (0, 1]"),
    ("analyze --q-min below the model", lambda c: _pair_args(c, "--q-min", "0.001"), "outside the pair model's validated domain"),
    ("analyze --q-max 1e300", lambda c: _pair_args(c, "--q-max", "1e300"), "use q R0 <= 60"),
    ("synth-frames --counts inf", lambda c: ["synth-frames", "--size", "64", "--counts", "inf", "-o", c["tmp"] / "p"], "must be a finite number"),
    ("synth-frames --counts 0", lambda c: ["synth-frames", "--size", "64", "--counts", "0", "-o", c["tmp"] / "p"], "counts must be > 0"),
    ("synth-frames --gamma-l 1e6", lambda c: ["synth-frames", "--size", "64", "--gamma-l", "1e6", "-o", c["tmp"] / "p"], "out of the simulated box"),
    ("synth-frames --d2 1e6", lambda c: ["synth-frames", "--size", "64", "--d2", "1e6", "-o", c["tmp"] / "p"], "out of the simulated box"),
    ("simulate --configs with the analytic engine", _sim("--configs", "100"), "configs applies to engine 'mc' only"),
    # the analytic engine outside its validated domain (it answered nonsense with exit 0)
    ("simulate --gamma-l 1e5", _sim("--gamma-l", "1e5"), "outside the analytic engine's validated domain"),
    ("simulate --gamma-l 1e7", _sim("--gamma-l", "1e7"), "outside the analytic engine's validated domain"),
    ("simulate --rs 1.0", _sim("--rs", "1.0"), "rs = 1 is outside"),
    ("simulate --q-max 1e300", lambda c: ["simulate", "--q-max", "1e300", "--n-q", "4", "--n-theta", "5", "-o", c["tmp"] / "x.nc"], "q R0 <= 60"),
    ("simulate --q-min 1e-6 --q-max 1e-3", lambda c: ["simulate", "--q-min", "1e-6", "--q-max", "1e-3", "--n-q", "4", "-o", c["tmp"] / "x.nc"], "neglected window terms"),
    ("simulate --d2 1e6 --engine mc", _sim("--d2", "1e6", "--engine", "mc", "--configs", "5"), "out of the simulated box"),
    # memory blow-ups from arguments: refused from the estimate, with the numbers
    ("simulate --n-q 1000000000", lambda c: ["simulate", "--n-q", "1000000000", "-o", c["tmp"] / "x.nc"], "of memory"),
    ("dataset --n 10000000000", lambda c: ["dataset", "--n", "10000000000", "-o", c["tmp"] / "s.zarr"], "of memory"),
    ("dataset --chunk-size 1000000000", lambda c: ["dataset", "--n", "1000000", "--chunk-size", "1000000000", "-o", c["tmp"] / "s.zarr"], "of memory"),
    ("dataset --rs beyond the analytic domain", lambda c: ["dataset", "--n", "5", "--rs", "0", "1.2", "-o", c["tmp"] / "s.zarr"], "rs = 1.2 is outside"),
    ("synth-frames --size 100000", lambda c: ["synth-frames", "--size", "100000", "-o", c["tmp"] / "p"], "of memory"),
    ("analyze-series --frames 0:100000000000", lambda c: ["analyze-series", c["pair"] / "before.npy", "--frames", "0:100000000000", "--geometry", c["pair"] / "geometry.json", "-o", c["tmp"] / "o"], "of memory"),
    # ... and from files
    (".npy header claiming 1e12 elements", lambda c: _frames(c, _npy_header_1e12(c)), None),
    ("geometry distance_m 1e300", lambda c: _pair_args(c, geometry=_geometry(c, distance_m=1e300)), None),
    ("geometry particle_radius_nm 1e6", lambda c: _pair_args(c, geometry=_geometry(c, particle_radius_nm=1e6)), "validated domain"),
    ("geometry wavelength_angstrom 1e6", lambda c: _pair_args(c, geometry=_geometry(c, wavelength_angstrom=1e6)), None),
    ("geometry beam_size_um 1e-6 (hung)", lambda c: _pair_args(c, geometry=_geometry(c, beam_size_um=1e-6)), None),
    # damaged frame files
    ("malformed .npy", lambda c: (c["tmp"] / "b.npy").write_bytes(b"\x93NUMPY\x01\x00garbage") and _frames(c, c["tmp"] / "b.npy"), None),
    ("corrupt TIFF", lambda c: (c["tmp"] / "b.tif").write_bytes(b"II*\x00" + b"\xff" * 100) and _frames(c, c["tmp"] / "b.tif"), None),
    ("HDF5 soft-link loop", lambda c: _frames(c, _h5_links(c, "a"), "--dataset", "/a"), None),
    ("HDF5 external link to a missing file", lambda c: _frames(c, _h5_links(c, "e"), "--dataset", "/e"), None),
    # geometry JSON
    ("geometry deeply nested", lambda c: _pair_args(c, geometry=_raw_geometry(c, "[" * 100000 + "]" * 100000)), "nested too deeply"),
    ("geometry NaN in q_map", lambda c: _pair_args(c, geometry=_qmap_nan(c)), "q_map holds 1 NaN"),
    ("geometry 3-value pixel_size_m", lambda c: _pair_args(c, geometry=_geometry(c, pixel_size_m=[1e-4, 1e-4, 1e-4])), "pixel_size_m must be one number or [row, col]"),
    ("geometry bad shape", lambda c: _pair_args(c, geometry=_geometry(c, shape="abc")), "shape must be [rows, cols]"),
    ("geometry one-value shape", lambda c: _pair_args(c, geometry=_geometry(c, shape=[128])), "shape must be [rows, cols]"),
    ("geometry beam_center_px text", lambda c: _pair_args(c, geometry=_geometry(c, beam_center_px="ab")), "beam_center_px must be [col, row]"),
    ("geometry poni not a file name", lambda c: _pair_args(c, geometry=_raw_geometry(c, '{"particle_radius_nm": 10, "beam_size_um": 8, "poni": 3}')), "must be a file name"),
    # pyFAI .poni files
    ("poni binary", lambda c: _pair_args(c, geometry=_poni(c, bytes(range(256)) * 4)), "not a text file"),
    ("poni Detector_config a list", lambda c: _pair_args(c, geometry=_poni(c, PONI.format(cfg="[1, 2]"))), "must be a JSON object"),
    ("poni orientation x", lambda c: _pair_args(c, geometry=_poni(c, PONI.format(cfg='{"pixel1": 5.5e-5, "pixel2": 5.5e-5, "orientation": "x"}'))), "orientation 'x'"),
    ("poni pixel1 0", lambda c: _pair_args(c, geometry=_poni(c, PONI.format(cfg='{"pixel1": 0, "pixel2": 5.5e-5}'))), "pixel1 must be a positive number"),
    ("poni named detector without pyFAI", lambda c: _pair_args(c, geometry=_poni(c, PONI.replace("Detector: Detector\nDetector_config: {cfg}\n", "Detector: Eiger4M\n"))), "pip install 'shearcorr[pyfai]'"),
    # model files (checksums recomputed: the values are checked, not just the hash)
    ("model NaN in X_train", lambda c: ["predict", _model(c, edit_arrays=lambda z: z.update(X_train=np.where(np.arange(z["X_train"].size).reshape(z["X_train"].shape) == 0, np.nan, z["X_train"]))), c["root"] / "one.nc"], "X_train contains NaN"),
    ("model NaN hyperparameter", lambda c: ["predict", _model(c, edit_meta=lambda m: m["hyperparameters"]["d2"].update(l=float("nan"))), c["root"] / "one.nc"], "not finite"),
    ("model zero length scale", lambda c: ["predict", _model(c, edit_meta=lambda m: m["hyperparameters"]["d2"].update(l=0.0)), c["root"] / "one.nc"], "l must be > 0"),
    ("model zero y_std", lambda c: ["predict", _model(c, edit_meta=lambda m: m["hyperparameters"]["rs"].update(y_std=0.0)), c["root"] / "one.nc"], "y_std must be > 0"),
    ("model negative noise", lambda c: ["predict", _model(c, edit_meta=lambda m: m["hyperparameters"]["d2"].update(sigma=-1.0)), c["root"] / "one.nc"], "sigma must be >= 0"),
    ("model infinite alpha", lambda c: ["predict", _model(c, edit_arrays=lambda z: z.update(alpha_d2=np.full_like(z["alpha_d2"], np.inf))), c["root"] / "one.nc"], "alpha_d2 contains NaN"),
    ("model JSON edited, checksum not", lambda c: ["predict", _model(c, edit_meta=lambda m: m["hyperparameters"]["rs"].update(y_std=2.0), rehash=False), c["root"] / "one.nc"], "checksum mismatch"),
    ("evaluate test index out of range", lambda c: ["evaluate", _model(c, edit_arrays=lambda z: z.update(test_index=z["test_index"] + 10**6)), c["root"] / "s.zarr"], "must be whole numbers in [0, 19]"),
    ("predict a dataset store as the model", lambda c: ["predict", c["root"] / "s.zarr", c["root"] / "one.nc"], "is a dataset store, not a model file"),
    # result files checked against their own g
    ("predict all-NaN g", lambda c: ["predict", c["root"] / "m.npz", _nc(c, lambda ds: ds.assign(g=ds.g * np.nan)), "--json"], "NaN or inf values"),
    ("predict transposed g", lambda c: ["predict", c["root"] / "m.npz", _square_transposed(c), "--json"], "not the mean of g"),
    ("predict stale g_theta", lambda c: ["predict", c["root"] / "m.npz", _nc(c, lambda ds: ds.assign(g_theta=ds.g_theta * 1.3))], "not the mean of g"),
    ("plot fig2 --result without attributes", lambda c: ["plot", "fig2", "--result", _nc(c, lambda ds: ds.drop_attrs()), "-o", c["tmp"] / "f"], "has no parameter"),
    # dataset stores
    ("store with a bad design attribute", lambda c: ["train", _store(c, _store_attr("design", "{not json")), "-o", c["tmp"] / "m.npz"], "design attribute is not a JSON object"),
    ("store with a bad chunk_size (resume)", lambda c: ["dataset", "--n", "20", "--n-q", "6", "--n-theta", "7", "-o", _store(c, _store_attr("chunk_size", "abc"))], "chunk_size attribute is 'abc'"),
    ("store without rs", lambda c: ["predict", c["root"] / "m.npz", _store(c, lambda p: shutil.rmtree(p / "rs"))], "no variable 'rs'"),
    ("store with a garbage chunk", lambda c: ["evaluate", c["root"] / "m.npz", _store(c, _garbage)], "are damaged (unreadable"),
    ("dataset info of a missing store", lambda c: ["dataset", "info", c["tmp"] / "none.zarr"], "no such dataset store"),
]


@pytest.mark.parametrize("case, build, needle", CASES, ids=[c[0] for c in CASES])
def test_one_line_exit_2(case, build, needle, c, tmp_path, capsys, monkeypatch):
    if "unwritable" in case and c["ro"] is None:
        pytest.skip("no unwritable folder on this machine")
    monkeypatch.chdir(tmp_path)
    c = dict(c, tmp=tmp_path)
    argv = [str(a) for a in build(c)]
    before = sorted(p.name for p in tmp_path.iterdir())
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("shearcorr") and "error:" in lines[0] and "Traceback" not in err, err
    assert "internal error" not in err, err
    if needle is not None:
        assert needle in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written, no temporary left


def test_the_overwrite_rule_is_one_rule(c, tmp_path, capsys):
    """Every command that writes refuses an existing output and replaces it with --overwrite."""
    out = tmp_path / "x.nc"
    assert main(["simulate", "--n-q", "6", "--n-theta", "7", "-o", str(out)]) == 0
    assert main(["simulate", "--n-q", "6", "--n-theta", "7", "-o", str(out)]) == 2
    assert main(["simulate", "--n-q", "6", "--n-theta", "7", "--gamma-l", "12", "-o", str(out), "--overwrite"]) == 0
    from shearcorr.result import load_result

    assert load_result(out).attrs["gamma_l"] == 12
    model = tmp_path / "m.npz"
    shutil.copy(c["root"] / "m.npz", model)
    assert main(["train", str(c["root"] / "s.zarr"), "-o", str(model), "--model", "paper", "--grid-size", "4"]) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert main(["train", str(c["root"] / "s.zarr"), "-o", str(model), "--model", "paper", "--grid-size", "4",
                 "--overwrite"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz", "x.nc"]


def test_internal_errors_are_one_line_exit_1(monkeypatch, capsys):
    """A bug (an exception that is not about the input) is one line with exit status 1 and the hint to
    get the traceback; SHEARCORR_DEBUG=1 re-raises it."""
    import shearcorr.cli.simulate as sim

    def boom(args):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(sim, "run", boom)
    assert main(["simulate", "-o", "x.nc"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("shearcorr: error: internal error ZeroDivisionError") and "SHEARCORR_DEBUG=1" in err
    monkeypatch.setenv("SHEARCORR_DEBUG", "1")
    with pytest.raises(ZeroDivisionError):
        main(["simulate", "-o", "x.nc"])


def test_progress_bars_only_on_a_terminal(tmp_path, capsys):
    """tqdm wrote 26 KB of carriage returns into a redirected stderr; now a file gets the summary line only."""
    out = tmp_path / "s.zarr"
    assert main(["dataset", "--n", "8", "--n-q", "5", "--n-theta", "5", "--workers", "1", "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err and err.strip().startswith("shearcorr dataset: 8/8 samples done")


def test_predict_json_is_strict_json(c, capsys):
    """predict --json printed NaN / Infinity (not JSON); every value is now a number or null."""
    def refuse(token):
        raise AssertionError(f"non-standard JSON constant {token}")

    assert main(["predict", str(c["root"] / "m.npz"), str(c["root"] / "one.nc"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out, parse_constant=refuse)
    assert set(out) == {"rs", "d2", "gamma_l"} and all(np.isfinite(v["std"]) for v in out.values())
    assert main(["predict", str(c["root"] / "m.npz"), str(c["root"] / "s.zarr"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out, parse_constant=refuse)
    assert len(out["sample"]) == 20
