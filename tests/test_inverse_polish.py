"""The polish of an amortized prediction by the likelihood (shearcorr.inverse.polish): from a start as far
off as the default model's answers at N = 20 000 (docs/results.md: R_s 8 %, D2 1 %, gamma L 3 %) it
reaches the truth within its own std, stays finite at R_s = 0, recovers from a poor start, keeps the
start when it fails, and is the default path of predict / evaluate, which record it.

Data: one analytic map plus a draw of the noise model (bias and shared covariance at N configurations,
configurations other than the ones the polish samples for its own covariance)."""

import json

import numpy as np
import pytest

from shearcorr.inverse.noise import ensemble_noise
from shearcorr.inverse.polish import Polished, polish_g
from shearcorr.params import QGrid, SystemParams

GRID = QGrid.log(0.5, 5.0, 20, 25)
TRUE = SystemParams(150, 0.2, 1.3, 12.0)


def _draw(params, configs, seed):
    return ensemble_noise(params, GRID, configs, seed=99).sample(1, seed=seed)[0]


def _latent_z(res: Polished, params) -> np.ndarray:
    truth = np.array([params.rs**2, params.d2, params.gamma_l])
    return (truth - res.latent["value"][:3]) / np.sqrt(np.diag(res.latent["cov"])[:3])


def test_polish_reaches_the_truth_within_its_std_from_an_amortized_start():
    """N = 20 000, a start off by the default model's errors (R_s 8 %, D2 3 %, gamma L 3 %: 7-8 of the
    polished stds for D2 and gamma L): the polished estimate lies within 3 of its stds of the truth in every
    latent parameter, and D2, gamma L are > 3x closer than the start."""
    data = _draw(TRUE, 20000, seed=3)
    start = {"rs": 0.2 * 1.08, "d2": 1.3 * 0.97, "gamma_l": 12.0 * 1.03}
    res = polish_g(data, GRID, start, configs=20000)
    assert res.path == "polished" and res.steps >= 1 and res.chi2 < res.chi2_start and not res.warnings
    z = _latent_z(res, TRUE)
    assert np.all(np.abs(z) < 3.0), z
    for t in ("d2", "gamma_l"):
        assert abs(start[t] - getattr(TRUE, t)) > 5 * res.std[t]
        assert abs(res.values[t] - getattr(TRUE, t)) < abs(start[t] - getattr(TRUE, t)) / 3
    # chi2 of the result is that of noise (dof ~ the points used), not of the start's misfit
    used = res.latent["cov"].shape[0]
    assert res.chi2 < res.chi2_start and res.chi2 / (GRID.q.size * GRID.theta.size - used) < 1.5
    iv = res.intervals["d2"]["95"]
    assert iv[0] < res.values["d2"] < iv[1] and res.std["d2"] > 0


def test_polish_recovers_from_a_poor_start_and_keeps_a_failed_one():
    """gamma L 40 % off (a start the Broyden steps alone do not finish): a fresh Jacobian and covariance
    bring it to the truth; a start that cannot be evaluated keeps the amortized answer with a warning."""
    data = _draw(TRUE, 2000, seed=4)
    res = polish_g(data, GRID, {"rs": 0.2, "d2": 1.3, "gamma_l": 12.0 * 1.4}, configs=2000)
    assert res.path == "polished" and not any("did not converge" in w for w in res.warnings)
    assert np.all(np.abs(_latent_z(res, TRUE)) < 3.0)
    kept = polish_g(data, GRID, {"rs": 0.2, "d2": float("nan"), "gamma_l": 12.0}, configs=2000,
                    start_std={"rs": 0.02, "d2": 0.1, "gamma_l": 1.0})
    assert kept.path == "gp" and "kept" in kept.warnings[0] and kept.std["gamma_l"] == 1.0


def test_polish_at_rs_zero_stays_finite():
    """R_s = 0 (on the bound of the latent R_s^2): a finite estimate, R_s^2 >= 0, a finite std, and an
    R_s interval that starts at 0 and contains the truth -- the full fit's, as the steps end with R_s^2 = 0
    inside their 95 % interval, where the likelihood is far from quadratic in R_s^2."""
    p = SystemParams(150, 0.0, 1.0, 10.0)
    res = polish_g(_draw(p, 2000, seed=5), GRID, {"rs": 0.06, "d2": 1.02, "gamma_l": 10.3}, configs=2000)
    assert res.path == "polished" and "R_s^2 = 0 inside its 95 % interval" in res.warnings[0]
    assert np.all(np.isfinite(res.latent["value"])) and np.all(np.isfinite(res.latent["cov"]))
    assert res.latent["value"][0] >= 0.0 and np.isfinite(res.std["rs"]) and res.std["rs"] > 0
    lo, hi = res.intervals["rs"]["95"]
    assert lo == 0.0 or res.values["rs"] - lo < 3 * res.std["rs"]
    assert lo <= 0.0 + 1e-12 or lo < 0.05
    assert abs(res.values["d2"] - 1.0) < 3 * res.std["d2"] and abs(res.values["gamma_l"] - 10.0) < 3 * res.std["gamma_l"]
    json.dumps(res.to_dict(), allow_nan=False)


def test_predict_and_evaluate_polish_by_default_and_record_the_path(tiny_dataset, tmp_path, capsys):
    """A noise-aware model on a noisy result: predict polishes (path "polished", the truth within 3 stds),
    predict(polish=False) gives the GP's numbers (path "gp"); evaluate counts the paths; drawn
    held-out profiles (no map) keep the model's answer; the CLI says which path gave the numbers."""
    from shearcorr.cli import main
    from shearcorr.inverse.evaluation import evaluate
    from shearcorr.inverse.modelfile import save_model
    from shearcorr.inverse.training import PaperTraining, train
    from shearcorr.result import make_result, save_result

    grid = QGrid(tiny_dataset.q.values, tiny_dataset.theta.values)
    model, _ = train(tiny_dataset, PaperTraining(feature="both", n_grid=6), noise_configs=20000)
    truth = SystemParams(140, 0.15, 1.6, 18.0)
    nm = ensemble_noise(truth, grid, 20000, seed=99)
    g = nm.sample(1, seed=7)[0]
    ds = make_result(grid, truth, I=np.ones(grid.shape), g=g, g_err=np.sqrt(nm.var), engine="mc", configs=20000)
    gp = model.predict(ds, polish=False)
    pol = model.predict(ds)
    assert gp.paths == ["gp"] and pol.paths == ["polished"] and pol.polished[0].path == "polished"
    assert gp["d2"].mean[0] == model.predict_profiles(
        np.concatenate([g.mean(0), g.mean(1)])[None])["d2"].mean[0]
    for t in ("rs", "d2", "gamma_l"):  # (on this 10 x 11 grid the likelihood uses 80 points: a weak test)
        assert abs(pol[t].mean[0] - getattr(truth, t)) < 3 * pol[t].std[0]
        assert pol[t].mean[0] == pol.polished[0].values[t] and pol[t].std[0] == pol.polished[0].std[t]
    ev = evaluate(model, tiny_dataset, index=model.test_index[:3])
    assert ev.paths == {"gp": 3}  # held-out inputs drawn as profiles: nothing to polish
    path = tmp_path / "model.npz"
    save_model(model, path)
    nc = tmp_path / "g.nc"
    save_result(ds, nc)
    capsys.readouterr()
    assert main(["predict", str(path), str(nc), "--json"]) in (0, None)
    out = capsys.readouterr()
    assert json.loads(out.out)["d2"]["path"] == "polished" and "polished by the likelihood" in out.err
    assert main(["predict", str(path), str(nc), "--json", "--no-polish"]) in (0, None)
    assert json.loads(capsys.readouterr().out)["gamma_l"]["path"] == "gp"


@pytest.mark.parametrize("steps", [0])
def test_zero_steps_keeps_the_start_with_the_likelihood_std(steps):
    """steps = 0: the start itself with the local (J^T Sigma^-1 J + prior)^-1 std (the cheapest honest std)."""
    data = _draw(TRUE, 2000, seed=6)
    start = {"rs": 0.21, "d2": 1.31, "gamma_l": 12.2}
    res = polish_g(data, GRID, start, configs=2000, steps=steps)
    assert res.path == "polished" and res.steps == 0
    assert res.values["d2"] == pytest.approx(1.31) and res.values["gamma_l"] == pytest.approx(12.2)
    assert 0 < res.std["d2"] < 0.1


def test_a_polish_that_does_not_converge_hands_over_to_the_full_fit(monkeypatch):
    """Steps that never converge (forced here) end in the full fit's answer, said in a warning."""
    from shearcorr.inverse import polish
    from shearcorr.inverse.fit import fit_g

    data = _draw(TRUE, 2000, seed=4)
    monkeypatch.setattr(polish, "CONVERGED", -1.0)
    res = polish_g(data, GRID, {"rs": 0.2, "d2": 1.3, "gamma_l": 12.0}, configs=2000)
    ref = fit_g(data, GRID, configs=2000)
    assert res.path == "polished" and "full fit" in res.warnings[0]
    assert res.values == ref.values and res.std == ref.std
