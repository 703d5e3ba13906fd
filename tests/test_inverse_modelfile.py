"""Model files: identical predictions after a round trip; files of the pre-refactor code; clear refusals
(grid, corruption, pickles)."""

import json
import pickle
import zipfile

import numpy as np
import pytest

from conftest import DATA

from shearcorr.errors import ShearcorrError
from shearcorr.inverse.modelfile import load_model, save_model
from shearcorr.inverse.training import STRATEGIES, PaperTraining, train


@pytest.mark.parametrize("kind, feature", [("paper", "g_theta"), ("paper", "svd"), ("ard", "both"), ("ard", "svd")])
def test_round_trip_predicts_identically(tiny_dataset, tmp_path, kind, feature):
    options = {"n_grid": 8} if kind == "paper" else {}
    model, _ = train(tiny_dataset, STRATEGIES[kind](feature=feature, restarts=0, **options))
    path = save_model(model, tmp_path / "m.npz")
    loaded = load_model(path)
    assert loaded.kind == kind
    noisy = tiny_dataset.assign(g_err=tiny_dataset["g"] * 0 + 1e-3)  # Monte Carlo-like input: noise propagated
    for data in (tiny_dataset, noisy):
        a, b = model.predict(data), loaded.predict(data)
        for t in model.targets:
            np.testing.assert_array_equal(a[t][0], b[t][0])
            np.testing.assert_allclose(a[t][1], b[t][1], rtol=1e-12)  # std: Cholesky recomputed at load
    for t in model.targets:
        s_noisy, s_clean = model.predict(noisy)[t][1], model.predict(tiny_dataset)[t][1]
        assert np.all(s_noisy >= s_clean) and np.any(s_noisy > s_clean)
        if kind == "paper":
            assert loaded.regressors[t].l_ == model.regressors[t].l_
        else:
            np.testing.assert_array_equal(loaded.regressors[t].length_scale_, model.regressors[t].length_scale_)
            assert loaded.regressors[t].transform == model.regressors[t].transform
    np.testing.assert_array_equal(loaded.test_index, model.test_index)
    assert loaded.provenance["dataset_fingerprint"] == model.provenance["dataset_fingerprint"]


@pytest.mark.parametrize("kind", ["paper", "ard"])
def test_model_file_written_before_the_refactor_predicts_as_it_did(kind):
    from shearcorr.data import open_dataset

    model = load_model(DATA / f"model_{kind}_52efcd7.npz")
    assert model.kind == kind and model.targets == ("rs", "d2", "gamma_l")
    ds = open_dataset(DATA / "store_52efcd7.zarr", load=True)
    assert model.is_training_dataset(ds)
    expected = json.loads((DATA / "expected_52efcd7.json").read_text())["predictions"][kind]
    for t, (mean, std) in model.predict(ds).items():
        # same arrays and arithmetic; OpenBLAS picks its kernels by CPU (the file was written on another), so the
        # sums' rounding may differ in the last bits (2e-14 relative seen on an AMD EPYC)
        np.testing.assert_allclose(mean, expected[t]["mean"], rtol=1e-12, atol=0)
        np.testing.assert_allclose(std, expected[t]["std"], rtol=1e-10)  # Cholesky recomputed at load


def test_other_grid_is_refused(tiny_dataset, tmp_path):
    model, _ = train(tiny_dataset, PaperTraining(n_grid=6))
    loaded = load_model(save_model(model, tmp_path / "m.npz"))
    other = tiny_dataset.assign_coords(q=tiny_dataset.q.values * 1.1)
    with pytest.raises(ShearcorrError, match="grid"):
        loaded.predict(other)


def test_damaged_files_are_refused(tiny_dataset, tmp_path):
    model, _ = train(tiny_dataset, PaperTraining(n_grid=6))
    path = save_model(model, tmp_path / "m.npz")
    raw = path.read_bytes()
    (tmp_path / "trunc.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ShearcorrError, match="corrupted or truncated"):
        load_model(tmp_path / "trunc.npz")
    flipped = bytearray(raw)
    mid = len(raw) // 3
    flipped[mid: mid + 64] = bytes(b ^ 0xFF for b in flipped[mid: mid + 64])
    (tmp_path / "flip.npz").write_bytes(bytes(flipped))
    with pytest.raises(ShearcorrError, match="corrupt"):
        load_model(tmp_path / "flip.npz")
    # a re-packed archive with one array changed: zip CRCs are fine, our checksum is not
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["X_train"] = arrays["X_train"] + 1e-9
    np.savez(tmp_path / "edited.npz", **arrays)
    with pytest.raises(ShearcorrError, match="checksum"):
        load_model(tmp_path / "edited.npz")
    with pytest.raises(ShearcorrError, match="no such model"):
        load_model(tmp_path / "missing.npz")


def test_the_checksum_covers_the_json_hyperparameters(tiny_dataset, tmp_path):
    """Issue 14: y_std = 0 or alpha = inf in the JSON loaded, and predict --json printed NaN. From format
    version 3 the SHA-256 covers the JSON too; and whatever the checksum, values are checked."""
    from shearcorr.inverse.modelfile import FORMAT_VERSION, _checksum

    model, _ = train(tiny_dataset, PaperTraining(n_grid=6))
    path = save_model(model, tmp_path / "m.npz")
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(arrays.pop("meta").tobytes())
    assert meta["format_version"] == FORMAT_VERSION == 5 and meta["sha256"] == _checksum(arrays, meta)

    def write(m, name):
        np.savez(tmp_path / name, meta=np.frombuffer(json.dumps(m).encode(), dtype=np.uint8), **arrays)
        return tmp_path / name

    edited = json.loads(json.dumps(meta))
    edited["hyperparameters"]["d2"]["y_std"] = 2.0 * edited["hyperparameters"]["d2"]["y_std"]
    with pytest.raises(ShearcorrError, match="checksum mismatch of its arrays or metadata"):
        load_model(write(edited, "edited.npz"))
    for key, value, needle in (("y_std", 0.0, "y_std must be > 0"), ("l", float("inf"), "not finite"),
                               ("sigma", -0.1, "sigma must be >= 0")):
        bad = json.loads(json.dumps(meta))
        bad["hyperparameters"]["rs"][key] = value
        bad["sha256"] = _checksum(arrays, bad)  # consistent checksum: the values themselves are refused
        with pytest.raises(ShearcorrError, match=needle):
            load_model(write(bad, f"{key}.npz"))
    old = json.loads(json.dumps(meta))
    old["format_version"] = 2  # version-2 files: the checksum covers the arrays only, and they still load
    old["sha256"] = _checksum(arrays)
    assert load_model(write(old, "v2.npz")).targets == model.targets


class _Boom:
    def __reduce__(self):
        return (pytest.fail, ("unpickled!",))


def test_pickles_are_never_loaded(tmp_path):
    (tmp_path / "p.npz").write_bytes(pickle.dumps(_Boom()))
    with pytest.raises(ShearcorrError, match="not a shearcorr model"):
        load_model(tmp_path / "p.npz")
    np.savez(tmp_path / "obj.npz", meta=np.array([_Boom()], dtype=object))
    with pytest.raises(ShearcorrError, match="pickled"):
        load_model(tmp_path / "obj.npz")
    with zipfile.ZipFile(tmp_path / "z.npz", "w") as z:
        z.writestr("meta.npy", pickle.dumps(_Boom()))
    with pytest.raises(ShearcorrError):
        load_model(tmp_path / "z.npz")
