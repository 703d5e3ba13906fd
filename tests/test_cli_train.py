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
    """The default: a family of noise-aware models (N = 300, 2000, 20000), each level scored on held-out
    inputs drawn at its N, exactly as the Python API does; predict picks the member for the input's N."""
    model = tmp_path / "m.npz"
    assert main(["train", str(store), "-o", str(model), "--grid-size", "6"]) == 0
    assert model.is_file()
    capsys.readouterr()
    assert main(["evaluate", str(model), str(store), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    from shearcorr.data import open_dataset
    from shearcorr.inverse.evaluation import evaluate
    from shearcorr.inverse.modelfile import load_model

    family = load_model(model)
    assert family.levels == (300.0, 2000.0, 20000.0) and family.kind == "paper"
    assert [r["trained_configs"] for r in res["levels"]] == [300, 2000, 20000]
    for row, level in zip(res["levels"], family.levels):
        api = evaluate(family, open_dataset(store), configs=level)
        assert api.n_samples == 18 and api.selection.startswith("held-out") and api.trained_configs == level
        assert row == {"trained_configs": level, "err": api.err, "coverage68": api.coverage68,
                       "coverage95": api.coverage95, "z_std": api.z_std, "rms_over_crb": None,
                       "paths": {"gp": 18}}  # drawn held-out profiles: nothing to polish
    # 42 training samples on 10 x 11: coarse, but D2 and gamma L are learned (a constant guess, the
    # training mean, gives Err ~ 0.30 for both on U(0.5, 3) and U(5, 30)); less noise, smaller errors
    err = {r["trained_configs"]: r["err"] for r in res["levels"]}
    assert err[20000]["d2"] < 0.15 and err[20000]["gamma_l"] < 0.25
    assert err[20000]["d2"] < err[300]["d2"] and err[20000]["gamma_l"] < err[300]["gamma_l"]

    from shearcorr.forward import simulate
    from shearcorr.result import save_result

    truth = SystemParams(150, 0.1, 1.5, 15.0)
    nc = tmp_path / "one.nc"
    save_result(simulate(truth, QGrid.log(*GRID)), nc)
    assert main(["predict", str(model), str(nc), "--json"]) == 0
    out = capsys.readouterr()
    pred = json.loads(out.out)
    assert set(pred) == {"rs", "d2", "gamma_l"} and pred["d2"]["std"] > 0
    assert pred["d2"]["path"] == "gp"  # noise-free input: the model's answer
    assert "the input is noise-free but the models were trained for averages over at most 20000" in out.err
    assert main(["predict", str(model), str(store)]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 61
    # Monte Carlo input of 200 configurations: the member for N = 300, no warning; the same file without
    # its configs attribute (other codes): N inferred from g_err, the same member
    mc = tmp_path / "mc.nc"
    one = simulate(truth, QGrid.log(*GRID), engine="mc", configs=200, seed=1)
    save_result(one, mc)
    assert main(["predict", str(model), str(mc)]) == 0
    out = capsys.readouterr()
    assert "model for N = 300 (the input's N: 200)" in out.err and "warning" not in out.err
    one.attrs.pop("configs")
    assert 100 < family.input_configs(one) < 400  # inferred from g_err (200)
    # far outside the levels: warned
    mc10 = tmp_path / "mc10.nc"
    save_result(simulate(truth, QGrid.log(*GRID), engine="mc", configs=40, seed=2), mc10)
    assert main(["predict", str(model), str(mc10)]) == 0
    assert "outside the family's levels 300, 2000, 20000" in capsys.readouterr().err
    # a noise-free model (--noise-configs inf) warns on the Monte Carlo input and evaluates exact profiles
    exact = tmp_path / "exact.npz"
    assert main(["train", str(store), "-o", str(exact), "--grid-size", "5", "--noise-configs", "inf"]) == 0
    capsys.readouterr()
    assert main(["predict", str(exact), str(mc)]) == 0
    err = capsys.readouterr().err
    assert "average over 200 configurations but the model was trained on noise-free g" in err and "shearcorr fit" in err
    assert main(["evaluate", str(exact), str(store)]) == 0
    assert "noise-free model" in capsys.readouterr().out


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


def test_cli_train_no_calibrate_keeps_the_gp_std(store, tmp_path):
    """--no-calibrate writes the same GPs without the per-sample scale (docs/inversion.md); the default
    calibrates every noise-aware member."""
    from shearcorr.inverse.modelfile import load_model

    a, b = tmp_path / "cal.npz", tmp_path / "raw.npz"
    common = ["--grid-size", "4", "--noise-configs", "300"]
    assert main(["train", str(store), "-o", str(a), *common]) == 0
    assert main(["train", str(store), "-o", str(b), *common, "--no-calibrate"]) == 0
    cal, raw = load_model(a), load_model(b)
    assert cal.calibration is not None and raw.calibration is None
