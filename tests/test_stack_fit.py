"""The pair model on a table (control variate + Catmull-Rom) against the engine's exact bin averages,
and the amortized map fits: exact recovery without noise, calibrated errors with noise."""

import numpy as np
import pytest

from shearcorr.experiment.model import BinnedPairModel, ensemble_g
from shearcorr.stack.fitting import fit_maps
from shearcorr.stack.templates import PairTable, bulk_y


@pytest.fixture(scope="module")
def table():
    model = BinnedPairModel(np.geomspace(0.2, 1.2, 5), np.linspace(0, np.pi, 9), n_l2=150)
    return PairTable(model, 0.15, gamma_max=30.0, d2_max=1.5)


def _exact(model, gl, d2, phi0, n_phi_fine=64):
    """Bin average of the engine's y at the model's q sub-points and a fine azimuth grid (the table
    integrates the sinc^2 over azimuth exactly and samples q like the model)."""
    p = model.params(gl, d2, 0.15)
    a = ensemble_g(model.params(0, 0, 0.15), model.q_sub, [0.0])[:, 0]
    b = ensemble_g(model.params(0, 25.0, 0.15), model.q_sub, [0.0])[:, 0]
    dphi = np.diff(model.phi_edges)[0]
    phis = (model.phi_edges[:-1, None] + dphi * (np.arange(n_phi_fine) + 0.5)[None, :] / n_phi_fine).ravel()
    g = ensemble_g(p, model.q_sub, np.mod(phis - phi0, np.pi))
    y = (g - b[:, None]) / (a - b)[:, None]
    return y.reshape(model.n_q, model.sq, model.n_phi, n_phi_fine).mean(axis=(1, 3))


def test_table_matches_engine_bin_averages(table):
    rng = np.random.default_rng(3)
    pts = np.c_[rng.uniform(0, 28, 6), rng.uniform(0, 1.45, 6)]
    y = table.y(pts[:, 0], pts[:, 1], 0.4)
    err = max(np.abs(y[k] - _exact(table.model, *pts[k], 0.4)).max() for k in range(len(pts)))
    assert err < 1e-3  # measured 6.5e-4 on these coarse 22.5-degree bins (docs/stacks.md)


def test_derivatives_match_finite_differences(table):
    g, d = np.array([3.0, 17.0]), np.array([0.3, 1.1])
    y, yg, yd = table.y(g, d, 0.2, derivatives=True)
    h = 1e-2  # the control variate is float32: central differences need a step well above its rounding
    np.testing.assert_allclose(yg, (table.y(g + h, d, 0.2) - table.y(g - h, d, 0.2)) / (2 * h), rtol=2e-3, atol=2e-5)
    np.testing.assert_allclose(yd, (table.y(g, d + h, 0.2) - table.y(g, d - h, 0.2)) / (2 * h), rtol=2e-3, atol=2e-5)
    q, th = np.array([0.5, 1.0]), np.array([0.3, 1.2])
    b, bg, bd = bulk_y(q, th, 7.0, 0.8, derivatives=True)
    np.testing.assert_allclose(bg, (bulk_y(q, th, 7.0 + h, 0.8) - bulk_y(q, th, 7.0 - h, 0.8)) / (2 * h), rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(bd, (bulk_y(q, th, 7.0, 0.8 + h) - bulk_y(q, th, 7.0, 0.8 - h)) / (2 * h), rtol=1e-3, atol=1e-6)


def test_fit_maps_recovers_parameters_and_calibrates_errors(table):
    rng = np.random.default_rng(7)
    M = 300
    truth = np.c_[rng.uniform(4, 25, M), rng.uniform(0.2, 1.3, M), rng.uniform(0.2, 0.4, M)]
    clean = truth[:, 2, None, None] * table.y(truth[:, 0], truth[:, 1], 0.5)
    sigma = np.full(clean.shape, 0.01)
    exact = fit_maps(table, 0.5, clean, sigma)
    np.testing.assert_allclose(exact.params, truth, rtol=1e-4, atol=1e-4)
    noisy = fit_maps(table, 0.5, clean + sigma * rng.standard_normal(clean.shape), sigma)
    z = (noisy.params - truth) / noisy.std
    assert np.all(np.abs(z.mean(axis=0)) < 0.2)
    assert np.all((0.85 < z.std(axis=0)) & (z.std(axis=0) < 1.15))
    assert abs(np.median(noisy.chi2_red) - 1.0) < 0.1
