"""CLI train / evaluate / predict on a tiny dataset store, the direct fit, and a tiny reproduce run."""

import json

import numpy as np
import pytest

from shearcorr.cli import main
from shearcorr.params import QGrid, SystemParams

GRID = (0.5, 5.0, 10, 11)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from shearcorr.data.generate import generate

    path = tmp_path_factory.mktemp("ds") / "tiny.zarr"
    generate(path, n=60, seed=0, grid=QGrid.log(*GRID), engine="analytic", workers=1, progress=False)
    return path


def test_cli_train_evaluate_predict(store, tmp_path, capsys):
    model = tmp_path / "m.npz"
    assert main(["train", str(store), "-o", str(model), "--grid-size", "6", "--feature", "both"]) == 0
    assert model.is_file()
    capsys.readouterr()
    assert main(["evaluate", str(model), str(store), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert set(res) == {"err", "coverage68", "coverage95"}
    for key in res:
        assert set(res[key]) == {"rs", "d2", "gamma_l"}
        assert all(0.0 <= v <= 1.0 for v in res[key].values())
    assert res["err"]["d2"] < 0.5  # 42 training samples on 10 x 11: coarse, but it must learn something

    from shearcorr.forward import simulate
    from shearcorr.result import save_result

    nc = tmp_path / "one.nc"
    save_result(simulate(SystemParams(150, 0.1, 1.5, 15.0), QGrid.log(*GRID)), nc)
    assert main(["predict", str(model), str(nc), "--json"]) == 0
    pred = json.loads(capsys.readouterr().out)
    assert set(pred) == {"rs", "d2", "gamma_l"} and pred["d2"]["std"] > 0
    assert main(["predict", str(model), str(store)]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 61


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


def test_direct_fit_recovers_parameters():
    from shearcorr.forward.analytic import ensemble_arrays
    from shearcorr.inverse.fit import fit_g

    grid = QGrid.log(*GRID)
    true = SystemParams(150, 0.2, 1.3, 12.0)
    g = ensemble_arrays(true, grid)[1]
    r = fit_g(g, grid, n_l2=150.0)
    assert r.success
    assert r.values["d2"] == pytest.approx(1.3, rel=1e-3)
    assert r.values["gamma_l"] == pytest.approx(12.0, rel=1e-3)
    assert r.values["rs"] == pytest.approx(0.2, rel=2e-2)
    noisy = g + 1e-3 * np.random.default_rng(0).standard_normal(g.shape)
    r2 = fit_g(noisy, grid, errors=np.full(g.shape, 1e-3))
    assert abs(r2.values["d2"] - 1.3) < 4 * r2.std["d2"] + 1e-3
    assert 0.5 < r2.chi2_red < 1.5


def test_reproduce_tiny_configuration(tmp_path):
    from shearcorr.reproduce.pipeline import ReproduceConfig, reproduce

    cfg = ReproduceConfig(n_samples=60, n_grid=5, n_fit=2, spot_sets=1, spot_configs=20, mc_sets=4, mc_configs=20,
                          forward_configs=20, grid=GRID)
    lines = []
    report = reproduce(tmp_path / "rep", config=cfg, workers=1, log=lines.append)
    text = report.read_text()
    assert "Table I" in text and "| paper GPR, g(theta) (the paper's configuration) |" in text and "direct fit" in text
    assert "| ARD GPR, PCA-" in text and "(default) |" in text and "without input noise" in text
    for name in ("fig4_svd.png", "fig5_svd_space.png", "fig6_pddf_lml.png", "fig7_parity_g_theta.png"):
        assert (tmp_path / "rep" / "figures" / name).stat().st_size > 1000
    assert not (tmp_path / "rep" / ".staging").exists()
    assert any("9/9" in m for m in lines)
