"""The direct fit of a measured g (shearcorr.inverse.fit): exact recovery from noise-free model output,
errors at the information limit and calibrated over noise draws, strict JSON and one-line refusals.

The noise model itself (bias and covariance of a finite-N g) is tested against Monte Carlo replicas in
tests/test_inverse_noise.py; here the fit's use of it is checked with draws from that model, made with
configurations (seed) other than the ones the fit samples for its own covariance."""

import json

import numpy as np
import pytest

from shearcorr.errors import ShearcorrError
from shearcorr.forward.analytic import ensemble_arrays
from shearcorr.inverse.crb import cramer_rao
from shearcorr.inverse.fit import fit_g
from shearcorr.inverse.noise import ensemble_noise
from shearcorr.params import QGrid, SystemParams

GRID = QGrid.log(0.5, 5.0, 10, 13)
TRUE = SystemParams(150, 0.2, 1.3, 12.0)
N = 300


@pytest.fixture(scope="module")
def g_true():
    return ensemble_arrays(TRUE, GRID)[1]


@pytest.fixture(scope="module")
def noisy_fits():
    """Fits of 10 draws of g_hat_N (N = 300) with n_l2 fixed, and the Cramer-Rao bound at the truth."""
    draws = ensemble_noise(TRUE, GRID, N, seed=99).sample(10, seed=5)
    fits = [fit_g(d, GRID, configs=N, n_l2=150.0) for d in draws]
    return fits, cramer_rao(TRUE, GRID, N, n_l2_fixed=True)


def test_noise_free_model_output_is_recovered(g_true):
    r = fit_g(g_true, GRID, n_l2=150.0)
    assert r.success and r.n_l2_mode == "fixed" and r.configs is None
    assert r.values["d2"] == pytest.approx(1.3, rel=1e-3)
    assert r.values["gamma_l"] == pytest.approx(12.0, rel=1e-3)
    assert r.values["rs"] == pytest.approx(0.2, abs=1e-2)
    assert r.chi2_red < 1e-8  # exact data: numerically zero residuals
    # g(theta) alone (13 numbers) still pins D2 and gamma L
    rt = fit_g(g_true.mean(axis=0), GRID, observable="g_theta", n_l2=150.0)
    assert rt.values["gamma_l"] == pytest.approx(12.0, rel=1e-2)
    assert rt.values["d2"] == pytest.approx(1.3, rel=1e-2)


def test_noisy_fits_are_unbiased_and_their_errors_calibrated(noisy_fits):
    """Over 10 draws the estimates scatter as the reported std says (z std in [0.5, 1.6], the 90 % range
    of a sample std of 10 standard normals is [0.6, 1.4]) and their mean is within 3 std / sqrt(10) of
    the truth (the O(1/N) bias of the estimator is modelled: without it D2 is ~5 % off at N = 300)."""
    fits, _ = noisy_fits
    for name in ("d2", "gamma_l"):
        values = np.array([f.values[name] for f in fits])
        std = np.array([f.std[name] for f in fits])
        z = (values - getattr(TRUE, name)) / std
        assert 0.5 < np.std(z, ddof=1) < 1.6, (name, z)
        assert abs(z.mean()) < 3 / np.sqrt(len(z)), (name, z)
    chi = np.array([f.chi2_red for f in fits])
    assert 0.7 < chi.mean() < 1.3


def test_fit_errors_are_at_the_cramer_rao_bound(noisy_fits):
    """The fit's reported std is the inverse Fisher information of the same noise model at its estimate:
    within 25 % of the bound at the truth (the estimates differ from the truth by ~1 std)."""
    fits, crb = noisy_fits
    for name in ("d2", "gamma_l"):
        std = np.median([f.std[name] for f in fits])
        assert std == pytest.approx(crb.std[name], rel=0.25), name


def test_n_l2_with_its_prior_and_without(g_true):
    """Noise-free data determine n_l2 by themselves; with noise, the prior keeps its std finite."""
    free = fit_g(g_true, GRID)
    assert free.n_l2_mode == "free" and free.values["n_l2"] == pytest.approx(150.0, rel=1e-2)
    d = ensemble_noise(TRUE, GRID, N, seed=99).sample(1, seed=11)[0]
    r = fit_g(d, GRID, configs=N)
    assert r.n_l2_mode == "prior" and 0 < r.std["n_l2"] < 40.0 and np.isfinite(r.std["gamma_l"])


def test_configs_are_inferred_from_g_err(g_true):
    noise = ensemble_noise(TRUE, GRID, N, seed=99)
    d = noise.sample(1, seed=3)[0]
    r = fit_g(d, GRID, g_err=np.sqrt(noise.var), n_l2=150.0)
    assert r.configs == pytest.approx(N, rel=0.1)
    assert any("inferred" in w for w in r.warnings)


def test_result_is_strict_json_and_bad_input_is_refused(g_true):
    r = fit_g(g_true, GRID, n_l2=150.0)
    back = json.loads(r.to_json())
    assert {"values", "std", "intervals", "latent", "chi2_red", "configs", "estimator", "n_l2_mode"} <= set(back)
    assert back["values"]["d2"] == r.values["d2"]
    lo, hi = back["intervals"]["gamma_l"]["95"]
    assert lo <= r.values["gamma_l"] <= hi
    with pytest.raises(ShearcorrError, match="observable"):
        fit_g(g_true, GRID, observable="g_phi")
    with pytest.raises(ShearcorrError, match="shape"):
        fit_g(g_true[:, :3], GRID)
    with pytest.raises(ShearcorrError, match="g_err has shape"):
        fit_g(g_true, GRID, g_err=np.ones(3))
    with pytest.raises(ShearcorrError, match="configs must be"):
        fit_g(g_true, GRID, configs=1.5)
    with pytest.raises(ShearcorrError, match="NaN"):
        fit_g(np.where(g_true > 1.5, np.nan, g_true), GRID)
    with pytest.raises(ShearcorrError, match="estimator"):
        fit_g(g_true, GRID, estimator="jackknife")


def test_cli_fit_of_a_monte_carlo_file(tmp_path, capsys):
    """`shearcorr fit FILE --json` on a Monte Carlo result: N from the file's configs, D2 and gamma L
    within 4 reported std of the truth; a missing file is one line, exit 2."""
    from shearcorr.cli import main
    from shearcorr.forward import simulate
    from shearcorr.result import save_result

    path = tmp_path / "mc.nc"
    save_result(simulate(TRUE, GRID, engine="mc", configs=256, seed=4), path)
    capsys.readouterr()
    assert main(["fit", str(path), "--json", "--n-l2", "150"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["configs"] == 256 and r["n_l2_mode"] == "fixed"
    for name in ("d2", "gamma_l"):
        assert abs(r["values"][name] - getattr(TRUE, name)) < 4 * r["std"][name], (name, r["values"], r["std"])
    assert main(["fit", str(tmp_path / "none.nc")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    # two maps of another code in one file, along a dimension of its own: one fit per map
    import xarray as xr

    from shearcorr.result import load_result

    one = load_result(path)
    two = xr.concat([one, simulate(TRUE, GRID, engine="mc", configs=256, seed=5)], dim="run")
    save_result(two, tmp_path / "two.nc")
    assert main(["fit", str(tmp_path / "two.nc"), "--json", "--n-l2", "150"]) == 0
    both = json.loads(capsys.readouterr().out)
    assert both["sample"] == [0, 1] and both["fits"][0]["values"] == r["values"]
    g1 = both["fits"][1]
    assert abs(g1["values"]["gamma_l"] - TRUE.gamma_l) < 4 * g1["std"]["gamma_l"]


def test_sandwich_meat_is_the_fisher_information_when_both_samples_agree(g_true):
    """The meat J^T S Sigma_2 S^T J with Sigma_2 = the covariance in use is exactly A = J^T J (S Sigma S^T = 1),
    and the whitener's transpose satisfies S^T S = Sigma^-1; an independent Sigma_2 (seed + 1) changes the
    std of R_s^2 by a few % at K = 64 (it is the estimator's spread, not the bound of the weights)."""
    from shearcorr.inverse.likelihood import Likelihood

    nm = ensemble_noise(TRUE, GRID, N, seed=3)
    S = nm.whitener()
    Sig = np.diag(nm.diagonal) + nm.factor @ nm.factor.T
    n = GRID.q.size * GRID.theta.size
    Sm = np.stack([S(c) for c in np.eye(n)], axis=1)  # S as a matrix
    np.testing.assert_allclose(S.transpose(np.eye(n)), Sm.T, rtol=1e-12, atol=1e-12 * np.abs(Sm).max())
    inv = np.linalg.inv(Sig)
    np.testing.assert_allclose(Sm.T @ Sm, inv, rtol=1e-6, atol=1e-9 * np.abs(inv).max())
    x = np.array([TRUE.rs**2, TRUE.d2, TRUE.gamma_l])
    prob = Likelihood(g_true, GRID, "g", N, None, "symmetric", "uniform", 150.0, None, 64, 7)
    prob.use_covariance(x, full=True)
    J = prob.jacobian(x)
    prob.seed -= 1  # Sigma_2 drawn with the seed of Sigma_1
    np.testing.assert_allclose(prob.score_covariance(J), J.T @ J, rtol=1e-8)
    prob.seed += 1
    A_inv = np.linalg.inv(J.T @ J)
    sand = A_inv @ prob.score_covariance(J) @ A_inv
    ratio = np.sqrt(np.diag(sand) / np.diag(A_inv))
    assert np.all(ratio > 0.9) and np.all(ratio < 1.3), ratio


def test_meat_with_its_own_number_of_configurations(g_true):
    """score_covariance(J, samples=K2): the meat from K2 configurations of the second seed (the polish weights with
    K = 8 and takes the meat from 16): K2 = K is the default, and with K2 = K and the seed of Sigma_1 the meat is
    exactly A again; another K2 gives another (unbiased) meat of the same size."""
    from shearcorr.inverse.likelihood import Likelihood

    x = np.array([TRUE.rs**2, TRUE.d2, TRUE.gamma_l])
    prob = Likelihood(g_true, GRID, "g", N, None, "symmetric", "uniform", 150.0, None, 8, 7)
    prob.use_covariance(x, full=True)
    J = prob.jacobian(x)
    np.testing.assert_array_equal(prob.score_covariance(J, 8), prob.score_covariance(J))
    prob.seed -= 1
    np.testing.assert_allclose(prob.score_covariance(J, 8), J.T @ J, rtol=1e-8)
    prob.seed += 1
    m16 = prob.score_covariance(J, 16)
    assert not np.allclose(m16, prob.score_covariance(J))
    ratio = np.sqrt(np.diag(m16) / np.diag(J.T @ J))
    assert np.all(ratio > 0.7) and np.all(ratio < 1.4), ratio
