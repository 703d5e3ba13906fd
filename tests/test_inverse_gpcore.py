"""The exact-GP core shared by both regressors: gradient of the mean, training-data checks, factorisation."""

import numpy as np
import pytest

from shearcorr.errors import ShearcorrError
from shearcorr.inverse.ard import ARDGPR
from shearcorr.inverse.gpcore import check_training_data, standardise
from shearcorr.inverse.gpr import PaperGPR


def _smooth(n, seed):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, (n, 2))
    return X, np.sin(2 * X[:, 0]) + 0.5 * X[:, 1] ** 2


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


def test_training_data_checks_and_standardisation():
    with pytest.raises(ShearcorrError, match="n >= 2"):
        check_training_data(np.ones((1, 2)), np.ones(1))
    with pytest.raises(ShearcorrError, match="NaN or inf"):
        check_training_data([[0.0], [np.nan]], [1.0, 2.0])
    z, mean, std = standardise(np.array([1.0, 3.0]))
    np.testing.assert_array_equal(z, [-1.0, 1.0])
    assert (mean, std) == (2.0, 1.0)
    assert standardise(np.full(3, 5.0))[2] == 1.0  # a constant target keeps unit scale


def test_not_positive_definite_is_one_line():
    X = np.zeros((3, 1))  # identical inputs: K is all ones, singular without noise
    with pytest.raises(ShearcorrError, match="not positive definite"):
        PaperGPR(l=1.0, sigma=0.0, optimizer=None).fit(X, np.array([0.0, 1.0, 2.0]))
