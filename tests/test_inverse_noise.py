"""The noise model of an ensemble g: zero-mean bias check and covariance chi^2 calibration over replicas."""

import numpy as np
import pytest

from shearcorr.errors import ShearcorrError
from shearcorr.forward.montecarlo import replicas
from shearcorr.inverse.noise import ensemble_noise, expected_g
from shearcorr.params import QGrid, SystemParams

GRID = QGrid.log(0.5, 3.0, 10, 13)


@pytest.fixture(scope="module")
def runs():
    """(params, N, noise model, Monte Carlo replicas) at a weakly and a strongly polydisperse point."""
    out = []
    for p, n, r in ((SystemParams(150, 0.1, 1.0, 10.0), 128, 120), (SystemParams(120, 0.3, 0.6, 8.0), 192, 80)):
        g, _ = replicas(p, GRID, n, r, seed=11)
        out.append((p, n, ensemble_noise(p, GRID, n), g))
    return out


def test_mc_minus_expectation_has_zero_mean(runs):
    """Over replicas, MC - E[g_N] has zero mean within 3 standard errors, and MC - g (the N -> infinity
    limit the engine gives) does not: the O(1/N) bias of the ratio estimator is real and modelled. The
    statistic is the matched filter of the predicted bias, sum_p b_p (g_p - ref_p) / var_p (b = E[g_N] - g),
    the most sensitive linear test of it; the plain map average is checked too."""
    for p, n, nm, g in runs:
        w = (nm.mean - nm.g) / nm.var
        for stat in (lambda x: (w * x).sum(axis=(1, 2)), lambda x: x.mean(axis=(1, 2))):
            t, t0 = stat(g - nm.mean), stat(g - nm.g)
            se = t.std(ddof=1) / np.sqrt(t.size)
            assert abs(t.mean()) < 3 * se, (p, t.mean(), se)
        assert t0.mean() < 0  # map average: the bias is negative
        tw0 = (w * (g - nm.g)).sum(axis=(1, 2))
        assert tw0.mean() > 3 * tw0.std(ddof=1) / np.sqrt(tw0.size), p  # matched filter: w < 0 where the bias is


def test_covariance_chi2_is_calibrated(runs):
    """chi^2 of the truth under the full covariance is 1 +- 0.1 per degree of freedom for the map and
    1 +- 0.15 for g(theta) (13 numbers per replica). On the paper's grid the profiles' chi^2 with independent
    grid points is 1.3-1.4 at R_s = 0.3 (docs/theory.md §9, the slow test)."""
    nq, nt = GRID.shape
    for p, n, nm, g in runs:
        w = nm.whitener()
        chi = np.mean([np.sum(w(x - nm.mean) ** 2) for x in g]) / nm.var.size
        assert 0.9 < chi < 1.1, (p, chi)
        mu, C = nm.profile_covariance()
        L = np.linalg.cholesky(C[:nt, :nt])
        prof = g.mean(axis=1) - mu[:nt]
        chi_t = np.mean([np.sum(np.linalg.solve(L, r) ** 2) for r in prof]) / nt
        assert 0.85 < chi_t < 1.15, (p, chi_t)


def test_estimators_and_limits():
    p = SystemParams(150, 0.1, 1.0, 10.0)
    g_inf = expected_g(p, GRID, None)
    for est in ("symmetric", "before", "pooled"):
        e1, e2 = expected_g(p, GRID, 100, estimator=est), expected_g(p, GRID, 400, estimator=est)
        assert np.allclose((e1 - g_inf), 4 * (e2 - g_inf), rtol=1e-9)  # exactly O(1/N)
    nm = ensemble_noise(p, GRID, 100, n_samples=0)
    assert np.allclose(ensemble_noise(p, GRID, 400, n_samples=0).var * 4, nm.var)
    draws = nm.sample(2000, seed=1)
    assert np.allclose(draws.var(axis=0) / nm.var, 1.0, atol=0.15)
    with pytest.raises(ShearcorrError, match="configs"):
        expected_g(p, GRID, 1)
    with pytest.raises(ShearcorrError, match="estimator"):
        expected_g(p, GRID, 100, estimator="median")
    scaled = nm.with_errors(np.sqrt(nm.var) * 2.0)
    assert np.allclose(scaled.var, 4 * nm.var) and np.allclose(scaled.error_scale, 4.0)


@pytest.mark.slow  # 40 fits: ~1 CPU-minute (the default suite checks the CRB on draws of the noise model)
def test_cramer_rao_bound_is_the_spread_of_fits_over_replicas(runs):
    """The fit's scatter over 40 independent Monte Carlo replicas (N = 128, n_l2 fixed) is the Cramer-Rao
    bound of the noise model: sample std / CRB in [0.7, 1.4] for D2 and gamma L (the 95 % range of the
    sample std of 40 normals is 0.78-1.22 of the true std; measured 0.85 and 0.95), and the mean within
    3 CRB / sqrt(40) of the truth."""
    from shearcorr.inverse.crb import cramer_rao
    from shearcorr.inverse.fit import fit_g

    p, n, _, g = runs[0]
    fits = [fit_g(x, GRID, configs=n, n_l2=p.n_l2) for x in g[:40]]
    crb = cramer_rao(p, GRID, n, n_l2_fixed=True)
    for name in ("d2", "gamma_l"):
        v = np.array([f.values[name] for f in fits])
        assert 0.7 < v.std(ddof=1) / crb.std[name] < 1.4, (name, v.std(ddof=1), crb.std[name])
        assert abs(v.mean() - getattr(p, name)) < 3 * crb.std[name] / np.sqrt(40), (name, v.mean())


def test_whitener_is_the_inverse_square_root_of_the_covariance():
    """Whitener (Gram-matrix Woodbury form): S^T S = Sigma^-1 and log det Sigma against dense linear algebra, for a
    full-rank and a rank-deficient shared factor (two equal columns, a zero column)."""
    from shearcorr.inverse.noise import Whitener

    rng = np.random.default_rng(3)
    n, k = 40, 6
    D = rng.uniform(0.5, 2.0, n)
    for U in (rng.normal(size=(n, k)), np.column_stack([np.repeat(rng.normal(size=(n, 1)), 2, axis=1), np.zeros(n),
                                                         rng.normal(size=(n, 2))])):
        w = Whitener(D, U)
        sigma = np.diag(D) + U @ U.T
        S = np.column_stack([w(e) for e in np.eye(n)])
        np.testing.assert_allclose(S.T @ S, np.linalg.inv(sigma), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(w.transpose(np.eye(n)), S.T, rtol=1e-12, atol=1e-14)
        assert abs(w.logdet - np.linalg.slogdet(sigma)[1]) < 1e-10
    w0 = Whitener(D, np.zeros((n, 0)))
    np.testing.assert_allclose(w0(np.ones(n)), 1.0 / np.sqrt(D))
