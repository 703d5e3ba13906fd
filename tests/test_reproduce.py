"""The reproduce pipeline: its diagnostics on known physics, and a tiny end-to-end run."""

import numpy as np
import pytest
from conftest import generate_with

from shearcorr.params import QGrid, SystemParams
from shearcorr.reproduce.diagnostics import mc_vs_analytic, rs_degeneracy, rs_identifiability

GRID = (0.5, 5.0, 10, 11)


def test_rs_signal_grows_as_rs_squared_and_bins_partition_the_samples():
    grid = QGrid.log(*GRID)
    rng = np.random.default_rng(0)
    true = rng.uniform(0.0, 0.3, 200)
    mean = true + 0.01 * rng.standard_normal(200)
    r = rs_identifiability(true, mean, np.full(200, 0.01), grid)
    assert sum(b.n for b in r.bins) == 200
    assert all(b.mean_std == pytest.approx(0.01) for b in r.bins)
    assert all(b.mean_abs_error == pytest.approx(0.01 * np.sqrt(2 / np.pi), rel=0.5) for b in r.bins)
    signal = dict(r.signal)
    # g depends on R_s through R_s^2 near 0 (volumes and form factors average over ln R ~ N(0, R_s^2))
    assert signal[0.05] / signal[0.02] == pytest.approx((0.05 / 0.02) ** 2, rel=0.2)
    assert signal[0.02] < signal[0.05] < signal[0.1] < signal[0.2] < signal[0.3]


def test_rs_degeneracy_leaves_a_residual_below_the_signal():
    rows = rs_degeneracy(QGrid.log(*GRID), rs_values=(0.2,))
    assert [r.observable for r in rows] == ["g", "g_theta"]
    for r in rows:
        # the fit absorbs part of the signal, not all: what is left is R_s's own fingerprint
        assert 0 < r.rms_residual < 0.6 * r.signal
        # polydispersity weights particles by V^2 ~ R^6, fewer effective scatterers: the monodisperse stand-in
        # has a smaller nL^2, with D2 and gamma L close to the truth (1, 10)
        assert r.fitted[0] < 150.0
        assert r.fitted[1] == pytest.approx(1.0, abs=0.05) and r.fitted[2] == pytest.approx(10.0, rel=0.1)


def test_monte_carlo_agrees_with_the_analytic_engine(tmp_path):
    path = generate_with(tmp_path / "mc.zarr", workers=1, n=2, seed=5, grid=QGrid.log(*GRID), engine="mc",
                         configs=400, chunk_size=1, progress=False)
    from shearcorr.data import open_dataset

    rows = mc_vs_analytic(open_dataset(path, load=True))
    assert len(rows) == 2 and all(isinstance(r.params, SystemParams) for r in rows)
    chi2 = np.mean([r.chi2 for r in rows])
    assert 0.6 < chi2 < 1.6  # 2 x 110 points, errors from the delta method: chi2/dof = 1 +- 0.15


def test_reproduce_tiny_configuration(tmp_path):
    from shearcorr.parallel import executor_from
    from shearcorr.reproduce import ReproduceConfig, reproduce

    cfg = ReproduceConfig(n_samples=60, n_grid=5, n_fit=2, spot_sets=1, spot_configs=20, mc_sets=4, mc_configs=20,
                          forward_configs=20, grid=GRID, ard_first=True)  # the quick run's task order
    lines = []
    with executor_from(workers=1) as executor:
        report = reproduce(tmp_path / "rep", config=cfg, executor=executor, log=lines.append)
    text = report.read_text()
    assert "Table I" in text and "| paper GPR, g(theta) (the paper's configuration) |" in text and "direct fit" in text
    assert "| ARD GPR, PCA-" in text and "(default)" not in text and "without input noise" in text
    for name in ("fig4_svd.png", "fig5_svd_space.png", "fig6_pddf_lml.png", "fig7_parity_g_theta.png"):
        assert (tmp_path / "rep" / "figures" / name).stat().st_size > 1000
    assert not (tmp_path / "rep" / ".staging").exists()
    assert any("9/9" in m for m in lines)
    assert "| direct fit with the noise model (n_l2 with its prior) |" in text and "RMS/CRB R_s/D_2/gammaL" in text
    assert "*Fig. 6: (a) PDDF/ACF" in text and "| n_l2 |" in text and "nan" not in text
    # the trained models are kept for predict
    from shearcorr.inverse.modelfile import load_model

    assert load_model(tmp_path / "rep" / "models" / "ard_both.model").kind == "ard"
    assert load_model(tmp_path / "rep" / "models" / "g_theta.model").kind == "paper"
    noisy = load_model(tmp_path / "rep" / "models" / "both_noisy.model")
    assert noisy.noise_configs == 20 and "| paper GPR, g(theta)+g(q), trained for N = 20 (noise-aware: the default family's member) |" in text


def test_models_trained_in_worker_processes_equal_the_serial_ones(tmp_path):
    """The training stage runs one task per model on a process pool: the models (their predictions on the
    held-out split) are bit-identical to the ones trained in this process."""
    from shearcorr.parallel import executor_from
    from shearcorr.reproduce.pipeline import ReproduceConfig
    from shearcorr.reproduce.training import train_task

    store = generate_with(tmp_path / "a.zarr", workers=1, n=50, seed=3, grid=QGrid.log(*GRID), engine="analytic",
                          progress=False)
    cfg = ReproduceConfig(n_samples=50, n_grid=5, n_fit=2, spot_sets=1, spot_configs=20, mc_sets=4, mc_configs=20,
                          forward_configs=20, grid=GRID, ard_opt_samples=30)
    rows = ("g_theta", "ard_both")
    serial = [train_task(store, row, cfg, 0) for row in rows]
    with executor_from(workers=2) as executor:
        parallel = [f.result() for f in [executor.submit(train_task, store, row, cfg, 0) for row in rows]]
    for (_, _, ev_s, _, _), (_, _, ev_p, _, _) in zip(serial, parallel):
        for t in ("rs", "d2", "gamma_l"):
            assert np.array_equal(ev_s.predictions[t].mean, ev_p.predictions[t].mean)
            assert np.array_equal(ev_s.predictions[t].std, ev_p.predictions[t].std)
        assert ev_s.err == ev_p.err


def test_ard_targets_trained_apart_and_joined_equal_the_whole_model(tmp_path):
    """reproduce trains each ARD target as a task of its own and joins them: the joined model predicts
    bit-identically to the model trained on all targets at once; parts that do not match are refused."""
    from shearcorr.data import open_dataset
    from shearcorr.errors import ShearcorrError
    from shearcorr.inverse.evaluation import evaluate
    from shearcorr.inverse.model import InversionModel
    from shearcorr.inverse.training import TrainingInfo
    from shearcorr.params import PARAM_NAMES
    from shearcorr.reproduce.pipeline import ReproduceConfig
    from shearcorr.reproduce.training import train_task

    store = generate_with(tmp_path / "a.zarr", workers=1, n=50, seed=3, grid=QGrid.log(*GRID), engine="analytic",
                          progress=False)
    cfg = ReproduceConfig(n_samples=50, n_grid=5, n_fit=2, spot_sets=1, spot_configs=20, mc_sets=4, mc_configs=20,
                          forward_configs=20, grid=GRID, ard_opt_samples=30)
    whole, info, ev, _, _ = train_task(store, "ard_both", cfg, 0)
    parts = [train_task(store, "ard_both", cfg, 0, (t,)) for t in reversed(PARAM_NAMES)]
    assert all(p[2] is None for p in parts)  # a part is not evaluated alone
    joined = InversionModel.join([p[0] for p in reversed(parts)])
    joined_info = TrainingInfo.join([p[1] for p in reversed(parts)])
    assert joined.targets == PARAM_NAMES and joined_info.hyper == info.hyper
    with open_dataset(store) as full:
        ds = full.drop_vars("g").load()
    ev_j = evaluate(joined, ds, index=joined.test_index)
    for t in PARAM_NAMES:
        assert np.array_equal(ev_j.predictions[t].mean, ev.predictions[t].mean)
        assert np.array_equal(ev_j.predictions[t].std, ev.predictions[t].std)
    with pytest.raises(ShearcorrError, match="more than one"):
        InversionModel.join([parts[0][0], parts[0][0]])
    other = train_task(store, "ard_both", cfg, 1, ("rs",))[0]  # another seed: another split
    with pytest.raises(ShearcorrError, match="share grid, split and feature transform"):
        InversionModel.join([parts[0][0], other])
