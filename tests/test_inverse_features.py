"""Feature transformers: shapes, clone, SVD projections, z-score / PCA and the exact pullback."""

import numpy as np
import pytest
from sklearn.base import clone

from shearcorr.errors import ShearcorrError
from shearcorr.inverse.features import ProfileFeatures


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
