r"""Features for the inversion: g(theta), g(q), both, SVD projections, z-score and PCA.

Input convention for every transformer: the *profile matrix*

.. math:: P = [\,g(\theta_1..\theta_{n_\theta}) \;|\; g(q_1..q_{n_q})\,],\qquad P \in \mathbb R^{M\times(n_\theta+n_q)},

one row per sample, built by :func:`profiles` from a dataset or a single result (g(theta) first, then
g(q)). Keeping both halves in one array lets every feature choice be a plain scikit-learn transformer
(``fit`` / ``transform`` / ``get_params``, usable with ``clone`` and pipelines) while the grid that
produced the columns is checked once, at the edge, by the model file.

Feature choices (:data:`FEATURES`):

``"g_theta"``  g(theta), the paper's stated input (Sec. III B-C).
``"g_q"``      g(q), what the authors' published script actually trains on.
``"both"``     the concatenation [g(theta) | g(q)] (unscaled: both halves are g values ~ 1-2).
``"svd"``      projections FV0..FV{k-1} of g(theta) on the top-k right singular vectors of the
               *training* g(theta) matrix, F = U Sigma V^T (not centred, as in the paper).

Optional scaling for the ARD regressor (``standardise=True``, ``n_components=k``): the selected columns
x are z-scored with the training mean and std, :math:`z = (x - \bar x)/s_x`, then projected on the top-k
principal axes W of the training z (right singular vectors of the centred matrix):
:math:`f = W z`. Every map is linear in the profile, so the gradient of a regressor's mean pulls back
to the profile columns exactly (:meth:`ProfileFeatures.pullback`), which the input-noise variance needs.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from ..choices import CHOICES, check_choice
from ..errors import ShearcorrError
from .diagnostics import svd_analysis

__all__ = ["FEATURES", "profiles", "finished_samples", "ProfileFeatures"]

#: Feature choices (the one declaration is :data:`shearcorr.choices.CHOICES`).
FEATURES = CHOICES["feature"]


def profiles(ds, *, sample=None) -> np.ndarray:
    """Profile matrix [g(theta) | g(q)] of a dataset (dims sample, q, theta) or of one result.

    Parameters
    ----------
    ds : xarray.Dataset
        A dataset from :mod:`shearcorr.data.generate` (variables ``g_theta`` (sample, theta), ``g_q``
        (sample, q)) or a single result from :mod:`shearcorr.result` (``g_theta`` (theta,), ``g_q`` (q,)).
        When ``g_theta`` / ``g_q`` are missing they are recomputed from ``g`` as plain means.
    sample : array-like of int, optional
        Rows (sample indices) to take from a dataset; all by default.

    Returns
    -------
    ndarray of shape (n_samples, n_theta + n_q), float64
    """
    if "g_theta" in ds and "g_q" in ds:
        gt, gq = ds["g_theta"], ds["g_q"]
    elif "g" in ds:
        gt, gq = ds["g"].mean("q"), ds["g"].mean("theta")
    else:
        raise ShearcorrError("data holds no g, g_theta or g_q; is it a shearcorr result or dataset?")
    if "sample" not in gt.dims and "g" in ds and ("g_theta" in ds or "g_q" in ds):
        _check_profile_of_g(ds)
    if "sample" in gt.dims:
        if sample is not None:
            idx = np.asarray(sample, dtype=np.int64)
            gt, gq = gt.isel(sample=idx), gq.isel(sample=idx)
        gt = gt.transpose("sample", "theta").values
        gq = gq.transpose("sample", "q").values
    else:
        gt, gq = gt.values[None, :], gq.values[None, :]
    out = np.hstack([np.asarray(gt, dtype=np.float64), np.asarray(gq, dtype=np.float64)])
    if not np.all(np.isfinite(out)):
        raise ShearcorrError("g(theta) / g(q) contain NaN or inf (unfinished dataset samples?); drop them first")
    return out


#: Largest |g_theta - mean_q g|, |g_q - mean_theta g| of a consistent result, relative to max(1, |g|).
PROFILE_RTOL = 1e-6


def _check_profile_of_g(ds) -> None:
    """Refuse a result whose stored g(theta) / g(q) are not the plain means of its g(q, theta) (an edited,
    transposed or foreign file), or whose g is not finite: the model reads the profiles, not g."""
    g = ds["g"]
    if set(g.dims) != {"q", "theta"}:
        raise ShearcorrError(f"g has dims {g.dims}, expected (q, theta); is it a shearcorr result?")
    g = np.asarray(g.transpose("q", "theta").values, dtype=np.float64)
    if not np.all(np.isfinite(g)):
        raise ShearcorrError(f"g(q, theta) holds {int(np.sum(~np.isfinite(g)))} NaN or inf values of {g.size}; "
                             "the result is unusable - recompute it")
    for name, mean in (("g_theta", g.mean(axis=0)), ("g_q", g.mean(axis=1))):
        if name in ds:
            stored = np.asarray(ds[name].values, dtype=np.float64)
            if stored.shape != mean.shape or not np.all(np.abs(stored - mean) <= PROFILE_RTOL * np.maximum(1.0, np.abs(mean))):
                raise ShearcorrError(f"the stored {name} is not the mean of g(q, theta) (largest difference "
                                     f"{np.max(np.abs(stored - mean)) if stored.shape == mean.shape else 'shape'}); the file "
                                     "was edited or written by another program - recompute it or drop g_theta/g_q")


def finished_samples(ds) -> np.ndarray:
    """Indices of the samples of a dataset that are finished (``done``) with finite g(theta), g(q)."""
    n = ds.sizes["sample"]
    ok = np.ones(n, dtype=bool) if "done" not in ds else np.asarray(ds["done"].values, dtype=bool)
    for name in ("g_theta", "g_q"):
        if name in ds:
            v = ds[name].values.reshape(n, -1)
            ok &= np.all(np.isfinite(v), axis=1)
    return np.flatnonzero(ok)


class ProfileFeatures(TransformerMixin, BaseEstimator):
    r"""Turn profile rows [g(theta) | g(q)] into GPR inputs (a scikit-learn transformer).

    Parameters
    ----------
    feature : {"g_theta", "g_q", "both", "svd"}, default="g_theta"
        Which input the regressor sees (module docstring).
    n_theta : int, default=101
        Number of theta columns at the start of each profile row (the rest are g(q)).
    k : int, default=3
        Number of singular vectors for ``feature="svd"`` (the paper's FV0-FV2).
    standardise : bool, default=False
        z-score every selected column with the training mean and std (module docstring).
    n_components : int, default=0
        With ``standardise``, project on the top ``n_components`` principal axes (0: keep all columns).
    pca_blocks : bool, default=False
        For ``feature="both"``: principal axes of the z-scored g(theta) block and of the g(q) block
        separately, ``n_components`` each (a block-diagonal W of 2 n_components rows), so the small-variance
        but informative fine structure of g(theta) is not crowded out by g(q).

    Attributes
    ----------
    components_ : ndarray of shape (k, n_theta)
        Right singular vectors V_1..V_k of the training g(theta) matrix (``feature="svd"`` only);
        the sign of each is fixed so that its largest-magnitude entry is positive.
    singular_values_ : ndarray of shape (min(M, n_theta),)
        All singular values of the training matrix (``feature="svd"`` only).
    n_features_in_ : int
        Width of the profile rows seen in ``fit``.
    mean_, scale_ : ndarray
        z-score of the selected columns (``standardise`` only).
    pca_components_ : ndarray of shape (n_components, n_selected) (2 n_components with ``pca_blocks``)
        Principal axes W (``n_components > 0`` only), sign-fixed like :func:`svd_analysis`.
    """

    def __init__(self, *, feature: str = "g_theta", n_theta: int = 101, k: int = 3, standardise: bool = False,
                 n_components: int = 0, pca_blocks: bool = False):
        self.feature = feature
        self.n_theta = n_theta
        self.k = k
        self.standardise = standardise
        self.n_components = n_components
        self.pca_blocks = pca_blocks

    def _check(self, P) -> np.ndarray:
        check_choice("feature", self.feature)
        P = np.asarray(P, dtype=np.float64)
        if P.ndim != 2 or P.shape[1] <= int(self.n_theta):
            raise ShearcorrError(
                f"profile rows must have n_theta + n_q = more than {self.n_theta} columns, got shape {P.shape}"
            )
        return P

    def fit(self, P, y=None) -> "ProfileFeatures":
        """Record the profile width; for ``"svd"`` compute V from the training g(theta) (F = U Sigma V^T)."""
        P = self._check(P)
        self.n_features_in_ = P.shape[1]
        if self.feature == "svd":
            k = int(self.k)
            if not 1 <= k <= min(P.shape[0], int(self.n_theta)):
                raise ShearcorrError(f"k must be between 1 and {min(P.shape[0], int(self.n_theta))}, got {self.k}")
            a = svd_analysis(P[:, : int(self.n_theta)], k=k)
            self.components_ = a.vectors
            self.singular_values_ = a.singular_values
        if self.standardise:
            S = self._select(P)
            self.mean_ = S.mean(axis=0)
            sd = S.std(axis=0)
            self.scale_ = np.where(sd > 0, sd, 1.0)
            nc = int(self.n_components)
            if nc:
                Z = (S - self.mean_) / self.scale_
                if self.pca_blocks and self.feature != "both":
                    raise ShearcorrError("pca_blocks applies to feature 'both' only")
                blocks = ([slice(0, int(self.n_theta)), slice(int(self.n_theta), Z.shape[1])] if self.pca_blocks
                          else [slice(0, Z.shape[1])])
                W = np.zeros((nc * len(blocks), Z.shape[1]))
                for b, cols in enumerate(blocks):
                    Zb = Z[:, cols]
                    if not 1 <= nc <= min(Zb.shape):
                        raise ShearcorrError(f"n_components must be between 1 and {min(Zb.shape)}, got {nc}")
                    W[b * nc:(b + 1) * nc, cols] = svd_analysis(Zb, k=nc).vectors
                self.pca_components_ = W
        elif int(self.n_components):
            raise ShearcorrError("n_components needs standardise=True (PCA of z-scored columns)")
        return self

    def _select(self, P) -> np.ndarray:
        """The raw input columns of the chosen feature (before any z-score / PCA)."""
        nt = int(self.n_theta)
        if self.feature == "g_theta":
            return P[:, :nt].copy()
        if self.feature == "g_q":
            return P[:, nt:].copy()
        if self.feature == "both":
            return P.copy()
        return P[:, :nt] @ self.components_.T

    def _linear_map(self) -> np.ndarray:
        """Matrix M with features = (P - offset) M^T, shape (n_out, n_profile) (every choice is linear)."""
        nt, n = int(self.n_theta), int(self.n_features_in_)
        E = np.eye(n)
        sel = {"g_theta": E[:nt], "g_q": E[nt:], "both": E}.get(self.feature)
        if sel is None:  # svd
            sel = np.zeros((self.components_.shape[0], n))
            sel[:, :nt] = self.components_
        if getattr(self, "standardise", False):
            sel = sel / self.scale_[:, None]
            if int(self.n_components):
                sel = self.pca_components_ @ sel
        return sel

    def pullback(self, grad) -> np.ndarray:
        r"""Gradient with respect to the profile columns from a gradient with respect to the features.

        :math:`\partial\mu/\partial P = (\partial\mu/\partial f)\,M` with M the (constant) Jacobian
        of the feature map; ``grad`` has shape (n, n_out), the result (n, n_theta + n_q).
        """
        if not hasattr(self, "n_features_in_"):
            raise ShearcorrError("ProfileFeatures is not fitted; call fit(P) first")
        return np.asarray(grad, dtype=np.float64) @ self._linear_map()

    def transform(self, P) -> np.ndarray:
        """Feature matrix: g(theta), g(q), both, or the projections F V_{1..k}; then z-score / PCA if set."""
        P = self._check(P)
        if not hasattr(self, "n_features_in_"):
            raise ShearcorrError("ProfileFeatures is not fitted; call fit(P) first")
        if P.shape[1] != self.n_features_in_:
            raise ShearcorrError(
                f"profile rows have {P.shape[1]} columns but the transformer was fitted on {self.n_features_in_}"
            )
        S = self._select(P)
        if not self.standardise:
            return S
        Z = (S - self.mean_) / self.scale_
        return Z @ self.pca_components_.T if int(self.n_components) else Z
