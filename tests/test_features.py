"""Features: transformers, SVD analysis, PDDF (eq. 7) and ACF (eq. 8) on small known inputs."""

import numpy as np
import pytest
from sklearn.base import clone

from shearcorr.errors import ShearcorrError
from shearcorr.inverse.features import ProfileFeatures, pddf_acf, svd_analysis


def _profiles(m=40, nt=7, nq=5, seed=0):
    return np.random.default_rng(seed).uniform(1.0, 2.0, (m, nt + nq))


@pytest.mark.parametrize("feature, width", [("g_theta", 7), ("g_q", 5), ("both", 12), ("svd", 3)])
def test_transformer_shapes_and_clone(feature, width):
    P = _profiles()
    t = ProfileFeatures(feature=feature, n_theta=7, k=3)
    X = t.fit_transform(P)
    assert X.shape == (40, width)
    assert clone(t).get_params() == {"feature": feature, "n_theta": 7, "k": 3, "standardise": False, "n_components": 0,
                                     "pca_blocks": False}
    if feature == "g_theta":
        np.testing.assert_array_equal(X, P[:, :7])
    if feature == "g_q":
        np.testing.assert_array_equal(X, P[:, 7:])


def test_svd_projections_reconstruct_rank_k_data():
    rng = np.random.default_rng(1)
    F = rng.normal(size=(50, 2)) @ rng.normal(size=(2, 9))  # rank 2
    a = svd_analysis(F, k=3)
    assert a.singular_values[2] < 1e-10 * a.singular_values[0]
    np.testing.assert_allclose(a.projections[:, :2] @ a.vectors[:2], F, atol=1e-10)
    np.testing.assert_allclose(a.vectors @ a.vectors.T, np.eye(3), atol=1e-12)
    assert abs(a.explained.sum() - 1) < 1e-12


def test_svd_transformer_uses_training_vectors_only():
    P = _profiles()
    t = ProfileFeatures(feature="svd", n_theta=7, k=2).fit(P[:20])
    np.testing.assert_allclose(t.transform(P[20:]), P[20:, :7] @ t.components_.T)


def test_transformer_refuses_bad_input():
    with pytest.raises(ShearcorrError, match="feature must be"):
        ProfileFeatures(feature="nope", n_theta=7).fit(_profiles())
    t = ProfileFeatures(n_theta=7).fit(_profiles())
    with pytest.raises(ShearcorrError, match="columns"):
        t.transform(np.ones((3, 13)))


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


@pytest.mark.parametrize("feature, nc, blocks", [("both", 4, False), ("g_q", 0, False), ("svd", 2, False),
                                                 ("g_theta", 3, False), ("both", 3, True)])
def test_standardised_pca_and_pullback_is_the_exact_jacobian(feature, nc, blocks):
    P = _profiles(seed=4)
    t = ProfileFeatures(feature=feature, n_theta=7, k=3, standardise=True, n_components=nc, pca_blocks=blocks).fit(P)
    X = t.transform(P)
    if blocks:
        assert X.shape[1] == 2 * nc
        assert np.all(t.pca_components_[:nc, 7:] == 0) and np.all(t.pca_components_[nc:, :7] == 0)
    elif nc:
        np.testing.assert_allclose(X.mean(axis=0), 0.0, atol=1e-12)  # centred principal components
        assert X.shape[1] == nc and np.all(np.diff(X.var(axis=0)) <= 1e-12)  # variance-ordered
    else:
        np.testing.assert_allclose(X.std(axis=0), 1.0)
    # the feature map is affine: pullback(e_f) must be row f of the Jacobian, found by finite differences
    G = np.eye(X.shape[1])
    M = t.pullback(G)
    h = 1e-6
    for j in (0, 6, 7, 11):
        dP = np.zeros((1, P.shape[1]))
        dP[0, j] = h
        np.testing.assert_allclose((t.transform(P[:1] + dP) - t.transform(P[:1]))[0] / h, M[:, j], rtol=1e-5, atol=1e-6)
    with pytest.raises(ShearcorrError, match="standardise"):
        ProfileFeatures(feature="both", n_theta=7, n_components=2).fit(P)
