"""The inversion model: input-noise propagation and the grid check."""

import numpy as np
import pytest

from shearcorr.errors import ShearcorrError
from shearcorr.inverse.ard import ARDGPR


def test_input_noise_variance_of_a_linear_function():
    """y = c . [g(theta) | g(q)] is linear in g(q, theta): the propagated variance is sum_kj J_kj^2 e_kj^2."""
    from shearcorr.inverse.features import ProfileFeatures
    from shearcorr.inverse.model import InversionModel
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
