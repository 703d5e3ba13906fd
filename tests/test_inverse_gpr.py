"""The paper's GPR: tridiagonal-trick LML against scikit-learn, hyperparameter search, fitted model."""

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import RBF, WhiteKernel

from shearcorr.errors import ShearcorrError
from shearcorr.inverse.evaluation import coverage
from shearcorr.inverse.gpr import (PaperGPR, default_bounds, lml_eigen, lml_grid, lml_tridiagonal,
                                   optimise_hyperparameters, rbf, tridiagonalise)


def _smooth(n, seed):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, (n, 2))
    return X, np.sin(2 * X[:, 0]) + 0.5 * X[:, 1] ** 2


def test_lml_tridiagonal_trick_equals_sklearn():
    X, y = _smooth(120, 0)
    y = y + 0.05 * np.random.default_rng(1).standard_normal(y.size)
    ls, ss = [0.05, 0.3, 2.0], [1e-4, 1e-2, 0.5]
    grid = lml_grid(X, np.column_stack([y, 3 * y + 1]), ls, ss)
    for i, l in enumerate(ls):
        for j, s in enumerate(ss):
            gp = GaussianProcessRegressor(RBF(np.sqrt(l)) + WhiteKernel(s), alpha=0.0, normalize_y=True,
                                          optimizer=None).fit(X, y)
            # rtol 1e-9: tridiagonal LDL^T vs Cholesky round-off only
            assert grid[i, j, 0] == pytest.approx(gp.log_marginal_likelihood_value_, rel=1e-9)
            assert grid[i, j, 1] == pytest.approx(grid[i, j, 0], rel=1e-9)  # standardisation invariance


def test_tridiagonal_form_equals_eigendecomposition_and_falls_back_below_round_off():
    X, y = _smooth(80, 2)
    Y = np.column_stack([y, y**2])
    K = rbf(X, X, 0.3)
    lam, Q = np.linalg.eigh(K)
    d, e, b = tridiagonalise(K.copy(), Y)
    T = np.diag(d) + np.diag(e, 1) + np.diag(e, -1)
    # Q^T Y keeps the norm, and T has K's spectrum
    np.testing.assert_allclose(np.linalg.norm(b, axis=0), np.linalg.norm(Y, axis=0), rtol=1e-12)
    np.testing.assert_allclose(np.linalg.eigvalsh(T), lam, atol=1e-12)
    s = np.array([1e-6, 1e-3, 0.3])
    np.testing.assert_allclose(lml_tridiagonal(d, e, b, s), lml_eigen(lam, Q.T @ Y, s), rtol=1e-9)
    # one eigenvalue -1e-9 (round-off of a singular K) and sigma = 1e-12 make T + sigma I indefinite:
    # that sigma takes the clipped-eigenvalue form, the other one keeps LDL^T
    lam_neg = lam.copy()
    lam_neg[0] = -1e-9
    K_neg = (Q * lam_neg) @ Q.T
    d, e, b = tridiagonalise(K_neg.copy(), Y[:, 0])
    s = np.array([1e-12, 1e-2])
    np.testing.assert_allclose(lml_tridiagonal(d, e, b, s), lml_eigen(lam_neg, Q.T @ Y[:, 0], s), rtol=1e-7)


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
    assert r.lml_opt[0] >= r.lml[:, :, 0].max() - 1e-9


def test_lml_and_prediction_equal_sklearn_at_the_fitted_hyperparameters():
    """An independent implementation (scikit-learn, same kernel and standardisation) at our optimum."""
    X, y = _smooth(150, 11)
    y = y + 0.03 * np.random.default_rng(12).standard_normal(y.size)
    gp = PaperGPR(n_grid=10).fit(X, y)
    ref = GaussianProcessRegressor(RBF(np.sqrt(gp.l_)) + WhiteKernel(gp.sigma_), alpha=0.0, normalize_y=True,
                                   optimizer=None).fit(X, y)
    # sklearn's normalize_y divides the LML by nothing but standardises y the same way: equal to round-off
    assert gp.log_marginal_likelihood_value_ == pytest.approx(ref.log_marginal_likelihood_value_, rel=1e-9)
    Xt, _ = _smooth(50, 13)
    m, s = gp.predict(Xt, return_std=True)
    mr, sr = ref.predict(Xt, return_std=True)
    np.testing.assert_allclose(m, mr, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(s, sr, rtol=1e-6)  # both include the white-noise term


@pytest.mark.filterwarnings("ignore:The optimal value found:sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("optimizer", ["grid", "sklearn"])
def test_fitted_hyperparameters_stay_inside_their_bounds(optimizer):
    """Noise-free data push sigma to its lower bound and a constant target pushes l up: both stay inside."""
    X, y = _smooth(60, 14)
    lb = default_bounds(X)
    for target in (y, 0.3 * X[:, 0] + 1.0):
        gp = PaperGPR(optimizer=optimizer, n_grid=8, n_restarts=1).fit(X, target)
        assert lb[0] * (1 - 1e-9) <= gp.l_ <= lb[1] * (1 + 1e-9)
        assert gp.sigma_bounds[0] * (1 - 1e-9) <= gp.sigma_ <= gp.sigma_bounds[1] * (1 + 1e-9)
    assert gp.sigma_ < 1e-3  # a linear function is learned almost exactly: the noise level is near its floor


def test_bad_optimizer_and_unfitted_use_are_one_line_errors():
    X, y = _smooth(20, 15)
    with pytest.raises(ShearcorrError, match="optimizer must be one of grid, sklearn"):
        PaperGPR(optimizer="adam").fit(X, y)
    with pytest.raises(ShearcorrError, match="not fitted"):
        PaperGPR().predict(X)
    with pytest.raises(ShearcorrError, match="identical"):
        default_bounds(np.ones((5, 2)))
