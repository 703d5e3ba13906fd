"""CLI train / evaluate / predict on a tiny dataset store: the same numbers as the Python API."""

import json

import pytest
from conftest import generate_with

from shearcorr.cli import main
from shearcorr.params import QGrid, SystemParams

GRID = (0.5, 5.0, 10, 11)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("ds") / "tiny.zarr"
    generate_with(path, workers=1, n=60, seed=0, grid=QGrid.log(*GRID), engine="analytic", progress=False)
    return path


def test_cli_train_evaluate_predict(store, tmp_path, capsys):
    model = tmp_path / "m.npz"
    assert main(["train", str(store), "-o", str(model), "--grid-size", "6", "--feature", "both"]) == 0
    assert model.is_file()
    capsys.readouterr()
    assert main(["evaluate", str(model), str(store), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    # the CLI evaluates the held-out split of the training store, exactly as the Python API does
    from shearcorr.data import open_dataset
    from shearcorr.inverse.evaluation import evaluate
    from shearcorr.inverse.modelfile import load_model

    api = evaluate(load_model(model), open_dataset(store))
    assert api.n_samples == 18 and api.selection.startswith("held-out")
    assert res == {"err": api.err, "coverage68": api.coverage68, "coverage95": api.coverage95, "z_std": api.z_std,
                   "n_samples": 18, "selection": api.selection, "warning": None}
    # 42 training samples on 10 x 11: coarse, but D2 and gamma L are learned (a constant guess, the
    # training mean, gives Err ~ 0.30 for both on U(0.5, 3) and U(5, 30))
    assert res["err"]["d2"] < 0.15 and res["err"]["gamma_l"] < 0.25

    from shearcorr.forward import simulate
    from shearcorr.result import save_result

    nc = tmp_path / "one.nc"
    save_result(simulate(SystemParams(150, 0.1, 1.5, 15.0), QGrid.log(*GRID)), nc)
    assert main(["predict", str(model), str(nc), "--json"]) == 0
    pred = json.loads(capsys.readouterr().out)
    assert set(pred) == {"rs", "d2", "gamma_l"} and pred["d2"]["std"] > 0
    assert main(["predict", str(model), str(store)]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 61
    # a noisy input (Monte Carlo, 200 configurations) for a model trained on noise-free g: warned
    mc = tmp_path / "mc.nc"
    save_result(simulate(SystemParams(150, 0.1, 1.5, 15.0), QGrid.log(*GRID), engine="mc", configs=200, seed=1), mc)
    assert main(["predict", str(model), str(mc)]) == 0
    err = capsys.readouterr().err
    assert "average over 200 configurations but the model was trained on noise-free g" in err and "shearcorr fit" in err
    # a noise-aware model for N = 200: no warning on that input, and its held-out inputs are drawn at N
    noisy = tmp_path / "m200.npz"
    assert main(["train", str(store), "-o", str(noisy), "--model", "paper", "--feature", "both", "--grid-size", "5",
                 "--noise-configs", "200"]) == 0
    capsys.readouterr()
    assert main(["predict", str(noisy), str(mc)]) == 0
    assert "warning" not in capsys.readouterr().err
    assert main(["evaluate", str(noisy), str(store)]) == 0
    assert "inputs drawn as averages over N = 200" in capsys.readouterr().out


def test_cli_refuses_model_on_other_grid(store, tmp_path, capsys):
    from shearcorr.forward import simulate
    from shearcorr.result import save_result

    model = tmp_path / "m.npz"
    assert main(["train", str(store), "-o", str(model), "--grid-size", "5"]) == 0
    nc = tmp_path / "other.nc"
    save_result(simulate(SystemParams(150, 0.1, 1.5, 15.0), QGrid.log(0.5, 5.0, 12, 11)), nc)
    capsys.readouterr()
    assert main(["predict", str(model), str(nc)]) == 2
    assert "grid" in capsys.readouterr().err
    assert main(["train", str(store), "-o", str(tmp_path / "m.pkl")]) == 2
