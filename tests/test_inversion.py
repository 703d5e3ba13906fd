"""GPR (paper kernel, eigen-trick LML), Err metric, coverage, training/evaluation and the direct fit."""

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import RBF, WhiteKernel

from shearcorr.errors import ShearcorrError
from shearcorr.inverse.ard import ARDGPR
from shearcorr.inverse.gpr import PaperGPR, lml_grid, optimise_hyperparameters
from shearcorr.inverse.training import coverage, relative_error, split_indices


def test_err_metric_on_known_inputs():
    assert relative_error([1.0, 2.0], [1.0, 2.0]) == 0.0
    # |1 - 2| / 2 = 0.5 and |4 - 3| / 4 = 0.25
    assert relative_error([1.0, 4.0], [2.0, 3.0]) == pytest.approx(0.375)
    # 0/0 counts 0; a negative prediction is clipped to 0 -> |0.1 - 0| / 0.1 = 1
    assert relative_error([0.0, 0.1], [0.0, -0.5]) == pytest.approx(0.5)
    assert relative_error([0.0], [0.2]) == pytest.approx(1.0)
    with pytest.raises(ShearcorrError):
        relative_error([1.0], [1.0, 2.0])


def test_coverage_and_split():
    t = np.zeros(4)
    assert coverage(t, [0.5, 1.5, 2.5, -0.5], np.ones(4), 0.95) == 0.75  # 1.96 sigma
    tr, te = split_indices(100, 0.3, seed=3)
    assert len(te) == 30 and len(np.intersect1d(tr, te)) == 0 and len(np.union1d(tr, te)) == 100
    np.testing.assert_array_equal(te, split_indices(100, 0.3, seed=3)[1])


def _smooth(n, seed):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, (n, 2))
    return X, np.sin(2 * X[:, 0]) + 0.5 * X[:, 1] ** 2


def test_lml_eigen_trick_equals_sklearn():
    X, y = _smooth(120, 0)
    y = y + 0.05 * np.random.default_rng(1).standard_normal(y.size)
    ls, ss = [0.05, 0.3, 2.0], [1e-4, 1e-2, 0.5]
    grid = lml_grid(X, np.column_stack([y, 3 * y + 1]), ls, ss)
    for i, l in enumerate(ls):
        for j, s in enumerate(ss):
            gp = GaussianProcessRegressor(RBF(np.sqrt(l)) + WhiteKernel(s), alpha=0.0, normalize_y=True,
                                          optimizer=None).fit(X, y)
            # rtol 1e-9: eigendecomposition vs Cholesky round-off only
            assert grid[i, j, 0] == pytest.approx(gp.log_marginal_likelihood_value_, rel=1e-9)
            assert grid[i, j, 1] == pytest.approx(grid[i, j, 0], rel=1e-9)  # standardisation invariance


def test_gpr_recovers_smooth_function_with_calibrated_std():
    X, y = _smooth(200, 2)
    noise = 0.02
    y = y + noise * np.random.default_rng(3).standard_normal(y.size)
    gp = PaperGPR(n_grid=12).fit(X, y)
    Xt, yt = _smooth(400, 4)
    m, s = gp.predict(Xt, return_std=True)
    assert np.sqrt(np.mean((m - yt) ** 2)) < 3 * noise
    assert 0.9 <= coverage(yt, m, s, 0.95) <= 1.0
    lo, hi = gp.sigma_bounds
    assert lo <= gp.sigma_ <= hi
    # optimum beats the starting point and clone keeps the constructor parameters
    start = PaperGPR(optimizer=None).fit(X, y)
    assert gp.log_marginal_likelihood_value_ >= start.log_marginal_likelihood_value_
    assert clone(gp).get_params() == gp.get_params()


def test_grid_optimiser_agrees_with_sklearn_optimiser():
    X, y = _smooth(100, 5)
    y = y + 0.05 * np.random.default_rng(6).standard_normal(y.size)
    a = PaperGPR(n_grid=15).fit(X, y)
    b = PaperGPR(optimizer="sklearn", n_restarts=1, l=a.l_, sigma=a.sigma_).fit(X, y)
    assert a.log_marginal_likelihood_value_ == pytest.approx(b.log_marginal_likelihood_value_, abs=0.5)


def test_refinement_improves_on_grid():
    X, y = _smooth(100, 7)
    r = optimise_hyperparameters(X, y + 0.01 * np.sin(30 * X[:, 1]), n_l=8, n_sigma=8)
    assert r["lml_opt"][0] >= r["lml"][:, :, 0].max() - 1e-9


def test_ard_gpr_log_target_recovers_smooth_function_and_ignores_irrelevant_input():
    rng = np.random.default_rng(8)
    X = rng.uniform(-1, 1, (90, 3))
    y = np.exp(0.8 * np.sin(2 * X[:, 0]) + 0.3 * X[:, 1])  # X[:, 2] is irrelevant
    gp = ARDGPR(transform="log", n_restarts=0).fit(X, y)
    Xt = rng.uniform(-1, 1, (300, 3))
    yt = np.exp(0.8 * np.sin(2 * Xt[:, 0]) + 0.3 * Xt[:, 1])
    m, s = gp.predict(Xt, return_std=True)
    assert np.max(np.abs(m / yt - 1)) < 0.02
    assert gp.length_scale_[2] > 10 * max(gp.length_scale_[:2])  # ARD switches the irrelevant input off
    mu, su = gp.predict_latent(Xt)
    np.testing.assert_allclose(m, np.exp(mu))
    np.testing.assert_allclose(s, np.exp(mu) * su)
    with pytest.raises(ShearcorrError, match="positive"):
        ARDGPR(transform="log").fit(X, y - 10)


@pytest.mark.parametrize("kind", ["paper", "ard"])
def test_mean_gradient_matches_finite_differences(kind):
    X, y = _smooth(80, 9)
    gp = (PaperGPR(n_grid=8) if kind == "paper" else ARDGPR(n_restarts=0)).fit(X, y)
    x0 = np.array([[0.1, -0.3], [0.5, 0.2]])
    G = gp.mean_gradient(x0)
    h = 1e-3  # central differences: truncation ~ h^2; smaller h loses digits to the large alternating alpha
    for d in range(2):
        e = np.zeros(2)
        e[d] = h
        fd = (gp.predict_latent(x0 + e)[0] - gp.predict_latent(x0 - e)[0]) / (2 * h)
        np.testing.assert_allclose(G[:, d], fd, rtol=2e-5, atol=1e-7)


def test_input_noise_variance_of_a_linear_function():
    """y = c . [g(theta) | g(q)] is linear in g(q, theta): the propagated variance is sum_kj J_kj^2 e_kj^2."""
    from shearcorr.inverse.features import ProfileFeatures
    from shearcorr.inverse.training import InversionModel
    from shearcorr.params import QGrid

    grid = QGrid.log(0.5, 5.0, 3, 4)
    rng = np.random.default_rng(10)
    g = 1.0 + rng.uniform(0, 1, (120, 3, 4))
    P = np.hstack([g.mean(axis=1), g.mean(axis=2)])
    c = rng.normal(size=7)
    feats = ProfileFeatures(feature="both", n_theta=4, standardise=True, n_components=0).fit(P)
    gp = ARDGPR(n_restarts=0).fit(feats.transform(P), P @ c)
    model = InversionModel(grid=grid, features=feats, regressors={"d2": gp}, train_index=np.arange(120),
                           test_index=np.arange(0))
    err = rng.uniform(0.001, 0.01, (5, 3, 4))
    m0, s0 = model.predict_latent(P[:5])["d2"]
    m1, s1 = model.predict_latent(P[:5], err)["d2"]
    np.testing.assert_array_equal(m0, m1)
    J = c[None, :4] / 3 + c[4:, None] / 4  # dm/dg(q_k, theta_j) = c_theta_j / n_q + c_q_k / n_theta
    expected = np.sum((J[None] * err) ** 2, axis=(1, 2))
    np.testing.assert_allclose(s1**2 - s0**2, expected, rtol=0.02)  # GP mean of a linear function: slope to ~1 %
    with pytest.raises(ShearcorrError, match="g_err"):
        model.predict_latent(P[:5], err[:, :2])
