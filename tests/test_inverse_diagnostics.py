"""SVD (paper Figs. 4-5) and the PDDF / ACF of feature vectors (eqs. 7-8) on cases with known answers."""

import numpy as np

from shearcorr.inverse.diagnostics import pddf_acf, svd_analysis


def test_svd_projections_reconstruct_rank_k_data():
    rng = np.random.default_rng(1)
    F = rng.normal(size=(50, 2)) @ rng.normal(size=(2, 9))  # rank 2
    a = svd_analysis(F, k=3)
    assert a.singular_values[2] < 1e-10 * a.singular_values[0]
    np.testing.assert_allclose(a.projections[:, :2] @ a.vectors[:2], F, atol=1e-10)
    np.testing.assert_allclose(a.vectors @ a.vectors.T, np.eye(3), atol=1e-12)
    assert abs(a.explained.sum() - 1) < 1e-12

def test_pddf_of_points_on_a_line_and_linear_acf():
    # M equally spaced points x_i = i on a line: pairs at distance z = k occur M - k times.
    M = 50
    X = np.arange(M, dtype=float)[:, None]
    edges = np.arange(0.5, M + 0.5)  # bin k centred on z = k
    st = pddf_acf(X, {"lin": X[:, 0]}, bins=edges, block=7)
    k = np.arange(1, M)
    np.testing.assert_array_equal(st.counts, M - k)
    np.testing.assert_allclose(st.pddf, 2 * (M - k) / M**2)  # eq. 7 (unit bin width)
    assert abs(st.pddf.sum() + st.self_weight - 1) < 1e-12
    # ACF of mu = x by pair binning, exact: mean over pairs (i, i+k) of i (i + k)
    mu = X[:, 0]
    exp = np.array([(np.mean(mu[:-kk] * mu[kk:]) - mu.mean() ** 2) / mu.var() for kk in k])
    np.testing.assert_allclose(st.acf["lin"], exp, rtol=1e-12)
    assert st.acf["lin"][0] > 0.9  # C -> 1 at small z

def test_pddf_blocks_do_not_change_results_and_random_targets_decorrelate():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(300, 4))
    y = rng.normal(size=300)
    a = pddf_acf(X, {"y": y}, bins=20, block=64)
    b = pddf_acf(X, {"y": y}, bins=20, block=1000)
    np.testing.assert_allclose(a.pddf, b.pddf)
    np.testing.assert_allclose(a.acf["y"], b.acf["y"], equal_nan=True)
    assert a.counts.sum() == 300 * 299 // 2
    ok = a.counts > 500
    assert np.all(np.abs(a.acf["y"][ok]) < 0.1)  # white noise target: no correlation
