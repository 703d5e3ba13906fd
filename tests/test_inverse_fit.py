"""The direct physics fit: exact recovery from noise-free data, and error bars that follow the noise."""

import json

import numpy as np
import pytest

from shearcorr.errors import ShearcorrError
from shearcorr.forward.analytic import ensemble_arrays
from shearcorr.inverse.fit import fit_g
from shearcorr.params import QGrid, SystemParams

GRID = QGrid.log(0.5, 5.0, 10, 11)
TRUE = SystemParams(150, 0.2, 1.3, 12.0)


@pytest.fixture(scope="module")
def g_true():
    return ensemble_arrays(TRUE, GRID)[1]


def test_noise_free_data_are_recovered(g_true):
    r = fit_g(g_true, GRID, n_l2=150.0)
    assert r.success and r.fixed == {"n_l2": 150.0}
    assert r.values["d2"] == pytest.approx(1.3, rel=1e-3)
    assert r.values["gamma_l"] == pytest.approx(12.0, rel=1e-3)
    assert r.values["rs"] == pytest.approx(0.2, rel=2e-2)
    # without given errors the residual scatter sets them: numerically zero for exact data
    assert r.chi2_red < 1e-8 and r.std["d2"] < 1e-3
    # the g(theta) observable alone (101 -> 11 numbers) still pins D2 and gamma L
    rt = fit_g(g_true.mean(axis=0), GRID, observable="g_theta")
    assert rt.values["gamma_l"] == pytest.approx(12.0, rel=1e-2)


def test_errors_scale_with_the_noise_and_match_the_scatter(g_true):
    """With given errors the covariance is (J^T J)^-1 in units of the errors: twice the noise, twice the std;
    and over noise draws the fitted values scatter as the reported std says (chi2_red ~ 1)."""
    rng = np.random.default_rng(0)
    sigma = 1e-3
    fits = [fit_g(g_true + sigma * rng.standard_normal(g_true.shape), GRID, errors=np.full(g_true.shape, sigma))
            for _ in range(12)]
    for name in ("d2", "gamma_l"):
        values = np.array([f.values[name] for f in fits])
        std = np.mean([f.std[name] for f in fits])
        assert np.std(values, ddof=1) == pytest.approx(std, rel=0.5)  # 12 draws: the sample std is known to ~20 %
        assert abs(values.mean() - getattr(TRUE, name)) < 3 * std / np.sqrt(12) + 1e-6
    assert 0.7 < np.mean([f.chi2_red for f in fits]) < 1.3
    noisy = g_true + sigma * np.random.default_rng(1).standard_normal(g_true.shape)
    one = fit_g(noisy, GRID, errors=np.full(g_true.shape, sigma))
    two = fit_g(noisy, GRID, errors=np.full(g_true.shape, 2 * sigma))
    for name in ("d2", "gamma_l"):
        assert two.std[name] == pytest.approx(2 * one.std[name], rel=0.02)
    assert two.chi2_red == pytest.approx(one.chi2_red / 4, rel=0.02)


def test_result_is_strict_json_and_bad_input_is_refused(g_true):
    r = fit_g(g_true, GRID, observable="g", n_l2=150.0, max_nfev=5)
    back = json.loads(r.to_json())
    assert set(back) == {"values", "std", "chi2_red", "success", "n_eval", "seconds", "message", "fixed"}
    assert back["values"]["d2"] == r.values["d2"]
    with pytest.raises(ShearcorrError, match="observable must be one of g, g_theta, g_q"):
        fit_g(g_true, GRID, observable="g_phi")
    with pytest.raises(ShearcorrError, match="shape"):
        fit_g(g_true[:, :3], GRID)
    with pytest.raises(ShearcorrError, match="positive"):
        fit_g(g_true, GRID, errors=np.zeros(g_true.shape))
