"""The ARD GPR: log targets, relevance of the inputs, and the exact-GP core it shares."""

import numpy as np
import pytest

from shearcorr.errors import ShearcorrError
from shearcorr.inverse.ard import ARDGPR


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


def test_from_state_predicts_exactly_as_the_fitted_regressor():
    rng = np.random.default_rng(16)
    X = rng.uniform(-1, 1, (40, 2))
    y = np.exp(np.sin(X[:, 0]) + 0.2 * X[:, 1])
    gp = ARDGPR(transform="log", n_restarts=0).fit(X, y)
    back = ARDGPR.from_state(gp.X_train_, gp.alpha_, gp.length_scale_, gp.amplitude_, gp.noise_, gp.y_mean_,
                             gp.y_std_, gp.transform)
    Xt = rng.uniform(-1, 1, (10, 2))
    np.testing.assert_array_equal(back.predict(Xt), gp.predict(Xt))
    np.testing.assert_allclose(back.predict(Xt, return_std=True)[1], gp.predict(Xt, return_std=True)[1], rtol=1e-12)
    with pytest.raises(ShearcorrError, match="inconsistent"):
        ARDGPR.from_state(gp.X_train_, gp.alpha_, gp.length_scale_[:1], 1.0, 1e-3, 0.0, 1.0, "log")
    with pytest.raises(ShearcorrError, match="transform must be one of none, log"):
        ARDGPR.from_state(gp.X_train_, gp.alpha_, gp.length_scale_, 1.0, 1e-3, 0.0, 1.0, "sqrt")
