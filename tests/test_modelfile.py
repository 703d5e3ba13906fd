"""Model files: identical predictions after a round trip; clear refusals (grid, corruption, pickles)."""

import pickle
import zipfile

import numpy as np
import pytest

from shearcorr.errors import ShearcorrError
from shearcorr.inverse.training import train
from shearcorr.inverse.modelfile import load_model, save_model
from shearcorr.params import QGrid


@pytest.fixture(scope="module")
def tiny_dataset():
    """60 analytic-engine samples on a 10 q x 11 theta grid (in memory, dataset layout)."""
    import xarray as xr

    from shearcorr.forward.analytic import ensemble_arrays
    from shearcorr.params import SystemParams

    grid = QGrid.log(0.5, 5.0, 10, 11)
    rng = np.random.default_rng(0)
    n = 60
    p = {"n_l2": rng.uniform(100, 200, n), "rs": rng.uniform(0, 0.3, n), "d2": rng.uniform(0.5, 3, n),
         "gamma_l": rng.uniform(5, 30, n)}
    g = np.stack([ensemble_arrays(SystemParams(*(p[k][i] for k in p)), grid)[1] for i in range(n)])
    return xr.Dataset({"g": (("sample", "q", "theta"), g), "g_q": (("sample", "q"), g.mean(2)),
                       "g_theta": (("sample", "theta"), g.mean(1)), "done": ("sample", np.ones(n, bool)),
                       **{k: ("sample", v) for k, v in p.items()}},
                      coords={"q": grid.q, "theta": grid.theta}, attrs={"engine": "analytic", "seed": 0})


@pytest.mark.parametrize("kind, feature", [("paper", "g_theta"), ("paper", "svd"), ("ard", "both"), ("ard", "svd")])
def test_round_trip_predicts_identically(tiny_dataset, tmp_path, kind, feature):
    model, _ = train(tiny_dataset, model=kind, feature=feature, n_grid=8, restarts=0)
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


def test_other_grid_is_refused(tiny_dataset, tmp_path):
    model, _ = train(tiny_dataset, n_grid=6)
    loaded = load_model(save_model(model, tmp_path / "m.npz"))
    other = tiny_dataset.assign_coords(q=tiny_dataset.q.values * 1.1)
    with pytest.raises(ShearcorrError, match="grid"):
        loaded.predict(other)


def test_damaged_files_are_refused(tiny_dataset, tmp_path):
    model, _ = train(tiny_dataset, n_grid=6)
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
