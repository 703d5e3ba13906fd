r"""Gaussian-process regression as in the paper (Sec. II C): constant mean, RBF + white noise.

Kernel, in the paper's convention (eq. below eq. 6)

.. math:: k(x, x') = \exp\!\Big(-\frac{|x - x'|^2}{2\,l}\Big) + \sigma\,\delta_{x x'}

so the paper's ``l`` is a *squared* length: scikit-learn's ``RBF(length_scale=s)`` is
:math:`\exp(-|x-x'|^2 / (2 s^2))`, hence :math:`l = s^2`, and ``WhiteKernel(noise_level=sigma)``
adds :math:`\sigma\delta`. Everything public here speaks the paper's ``(l, sigma)``; Table I of the
paper (l = 0.134 / 0.242 / 0.141) is therefore in squared feature units.

Targets are standardised (subtract the training mean, divide by the training std); the constant
prior mean is that training mean. The log marginal likelihood (Rasmussen & Williams eq. 2.30) of
standardised targets y with :math:`K_\sigma = K_l + \sigma I`:

.. math:: \log p(y|X,l,\sigma) = -\tfrac12 y^T K_\sigma^{-1} y - \tfrac12\log|K_\sigma| - \tfrac n2\log 2\pi.

LML landscape trick (:func:`lml_grid`): for each l one orthogonal reduction to tridiagonal form
:math:`K_l = Q T Q^T` (LAPACK ``sytrd``, about half the cost of a full eigendecomposition and none of
its eigenvectors) gives :math:`K_\sigma = Q(T+\sigma I)Q^T`, so with :math:`b = Q^T y`

.. math:: \log p = -\tfrac12 b^T (T+\sigma I)^{-1} b - \tfrac12\log|T+\sigma I| - \tfrac n2\log 2\pi,

where one :math:`LDL^T` factorisation of the tridiagonal :math:`T+\sigma I` (LAPACK ``ptsv``) gives the
solve and :math:`\log|T+\sigma I| = \sum_i \log D_{ii}`: O(n) per sigma and per target. An (l, sigma)
grid costs n_l reductions, shared by every target trained on the same inputs. Where :math:`T+\sigma I`
is not numerically positive definite (sigma below the round-off of the eigenvalues), the eigenvalues
:math:`\lambda_i` of T (negative round-off clipped to 0) and :math:`c = W^T b` (W its eigenvectors)
give the same quantity, :math:`-\tfrac12\sum_i c_i^2/(\lambda_i+\sigma) - \tfrac12\sum_i\log(\lambda_i+\sigma)
- \tfrac n2\log 2\pi` (:func:`lml_eigen`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import eigh_tridiagonal
from scipy.linalg.lapack import dptsv, dsytrd, dsytrd_lwork
from scipy.optimize import minimize_scalar
from scipy.spatial.distance import cdist

from ..choices import check_choice
from ..errors import ShearcorrError
from .gpcore import ExactGP, check_training_data, stored_float, standardise

__all__ = ["PaperGPR", "LMLSearch", "lml_grid", "lml_eigen", "tridiagonalise", "lml_tridiagonal",
           "optimise_hyperparameters", "default_bounds", "rbf", "SIGMA_BOUNDS"]

#: Default bounds of the white-noise level sigma (standardised target units, a variance).
#: The lower bound keeps K + sigma I well conditioned (condition number <= n / 1e-6) on noise-free data.
SIGMA_BOUNDS = (1e-6, 1.0)

#: Bounds of l from the pair distances z of the inputs: [(z_1% / L_LOW)^2, (L_HIGH z_max)^2] (default_bounds).
L_PERCENTILE, L_LOW, L_HIGH = 1.0, 4.0, 4.0
#: Log-spaced sigma values scanned before the Brent refinement of sigma at the refined l.
N_SIGMA_SCAN = 25


def rbf(A: np.ndarray, B: np.ndarray, l: float) -> np.ndarray:
    r"""RBF kernel matrix :math:`\exp(-|a-b|^2/(2l))` (paper convention, l = length_scale^2)."""
    return np.exp(-cdist(A, B, "sqeuclidean") / (2.0 * l))


def default_bounds(X: np.ndarray, *, sample: int = 2000, seed: int = 0) -> tuple[float, float]:
    r"""Bounds of the paper's l from the pair distances of the inputs (the PDDF's scale).

    :math:`l \in [(z_{1\%}/4)^2,\ (4 z_{max})^2]`, z_{1%} the 1st percentile and z_max the largest of the
    pair distances (on a random subset of ``sample`` rows): below the lower bound the kernel is a near
    identity (no interpolation), above the upper one it is near constant.
    """
    X = np.asarray(X, dtype=np.float64)
    rng = np.random.default_rng(seed)
    sub = X[rng.choice(X.shape[0], size=min(sample, X.shape[0]), replace=False)]
    d = cdist(sub, sub)[np.triu_indices(sub.shape[0], 1)]
    d = d[d > 0]
    if d.size == 0:
        raise ShearcorrError("all feature vectors are identical; the GPR has nothing to learn from")
    return (float(np.percentile(d, L_PERCENTILE) / L_LOW) ** 2, float(L_HIGH * d.max()) ** 2)


def lml_eigen(lam: np.ndarray, b: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    r"""LML of standardised targets from the eigen-decomposition of K_l, for every sigma.

    Parameters
    ----------
    lam : ndarray (n,)
        Eigenvalues of K_l (negative round-off clipped to 0).
    b : ndarray (n,) or (n, T)
        :math:`Q^T y` for T targets.
    sigma : ndarray (S,)

    Returns
    -------
    ndarray (S,) or (S, T)
    """
    lam = np.clip(lam, 0.0, None)
    n = lam.size
    s = np.asarray(sigma, dtype=np.float64)
    denom = lam[None, :] + s[:, None]  # (S, n)
    logdet = np.sum(np.log(denom), axis=1)
    b2 = b**2 if b.ndim == 2 else (b**2)[:, None]
    quad = (1.0 / denom) @ b2  # (S, T)
    out = -0.5 * quad - 0.5 * logdet[:, None] - 0.5 * n * np.log(2 * np.pi)
    return out if b.ndim == 2 else out[:, 0]


def tridiagonalise(K: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Reduce a symmetric K to tridiagonal form :math:`K = Q T Q^T` and rotate the targets, :math:`b = Q^T Y`.

    Parameters
    ----------
    K : ndarray (n, n)
        Symmetric matrix (only its lower triangle is read; it is overwritten).
    Y : ndarray (n,) or (n, T)

    Returns
    -------
    d : ndarray (n,)
        Diagonal of T.
    e : ndarray (n - 1,)
        Off-diagonal of T.
    b : ndarray, shape of ``Y``
        :math:`Q^T Y`, Q applied as the product of LAPACK's Householder reflectors
        :math:`H_i = I - \tau_i v_i v_i^T` (:math:`Q^T Y = H_{n-2}\cdots H_0 Y`).
    """
    n = K.shape[0]
    lwork, _ = dsytrd_lwork(n, lower=1)
    c, d, e, tau, info = dsytrd(K, lower=1, lwork=int(lwork), overwrite_a=1)
    if info != 0:  # pragma: no cover - LAPACK argument errors only
        raise ShearcorrError(f"tridiagonal reduction failed (LAPACK info {info})")
    b = np.array(Y, dtype=np.float64, copy=True)
    b2 = b[:, None] if b.ndim == 1 else b
    for i in range(n - 1):
        if tau[i] == 0.0:
            continue
        v = c[i + 1:, i].copy()
        v[0] = 1.0
        b2[i + 1:] -= np.outer(tau[i] * v, v @ b2[i + 1:])
    return d, e, b


def lml_tridiagonal(d: np.ndarray, e: np.ndarray, b: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    r"""LML of standardised targets from the tridiagonal form :math:`K_l = Q T Q^T`, for every sigma.

    Parameters
    ----------
    d, e : ndarray (n,), (n - 1,)
        Diagonal and off-diagonal of T (:func:`tridiagonalise`).
    b : ndarray (n,) or (n, T)
        :math:`Q^T y` for T targets.
    sigma : ndarray (S,)

    Returns
    -------
    ndarray (S,) or (S, T)
    """
    b2 = b[:, None] if b.ndim == 1 else b
    s = np.atleast_1d(np.asarray(sigma, dtype=np.float64))
    n = d.size
    out = np.empty((s.size, b2.shape[1]))
    eig = None
    for k, sk in enumerate(s):
        dk, _, x, info = dptsv(d + sk, e.copy(), b2.copy())
        if info == 0:
            out[k] = -0.5 * np.sum(b2 * x, axis=0) - 0.5 * np.sum(np.log(dk)) - 0.5 * n * np.log(2 * np.pi)
        else:  # not numerically positive definite: the clipped eigenvalues of T
            if eig is None:
                lam, W = eigh_tridiagonal(d, e)
                eig = (lam, W.T @ b2)
            out[k] = lml_eigen(eig[0], eig[1], np.array([sk]))[0]
    return out if b.ndim == 2 else out[:, 0]


def lml_grid(X, Y, l_values, sigma_values, *, progress=None) -> np.ndarray:
    """LML of every target column of ``Y`` on the (l, sigma) grid, one tridiagonal reduction per l.

    Parameters
    ----------
    X : array-like (n, d)
    Y : array-like (n,) or (n, T)
        Raw targets; each column is standardised first (as in :class:`PaperGPR`).
    l_values, sigma_values : array-like
        Grid of the paper's l (squared length) and sigma.
    progress : callable(i, n_l), optional
        Called after each l.

    Returns
    -------
    ndarray of shape (n_l, n_sigma, T) (T = 1 for 1-D ``Y``).
    """
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    Y = Y[:, None] if Y.ndim == 1 else Y
    Ys = np.column_stack([standardise(Y[:, t])[0] for t in range(Y.shape[1])])
    D = cdist(X, X, "sqeuclidean")
    lv = np.asarray(l_values, dtype=np.float64)
    out = np.empty((lv.size, np.size(sigma_values), Ys.shape[1]))
    for i, l in enumerate(lv):
        d, e, b = tridiagonalise(np.exp(-D / (2.0 * l)), Ys)
        out[i] = lml_tridiagonal(d, e, b, sigma_values)
        if progress is not None:
            progress(i + 1, lv.size)
    return out


def _profile_sigma(d, e, b, bounds) -> tuple[float, float]:
    """max over log sigma of the LML at fixed l (bounded Brent on the O(n) tridiagonal formula)."""
    lo, hi = np.log(bounds[0]), np.log(bounds[1])
    f = lambda ls: -float(lml_tridiagonal(d, e, b, np.array([np.exp(ls)]))[0])  # noqa: E731
    grid = np.linspace(lo, hi, N_SIGMA_SCAN)
    vals = [f(g) for g in grid]
    i = int(np.argmin(vals))
    a, c = grid[max(i - 1, 0)], grid[min(i + 1, grid.size - 1)]
    res = minimize_scalar(f, bounds=(a, c), method="bounded", options={"xatol": 1e-4})
    best = (res.x, res.fun) if res.fun < vals[i] else (grid[i], vals[i])
    return float(np.exp(best[0])), -float(best[1])


@dataclass(frozen=True)
class LMLSearch:
    """Result of :func:`optimise_hyperparameters`: the LML landscape and the optimum per target.

    Attributes
    ----------
    l_values, sigma_values : ndarray (n_l,), (n_sigma,)
        The log-spaced grid (paper's l, squared length; sigma, white-noise variance).
    lml : ndarray (n_l, n_sigma, T)
        Log marginal likelihood of each target on the grid (Figs. 6b-d).
    l, sigma, lml_opt : tuple of float, one per target
        The optimum after refinement and its LML.
    """

    l_values: np.ndarray
    sigma_values: np.ndarray
    lml: np.ndarray
    l: tuple
    sigma: tuple
    lml_opt: tuple


def _refine(surf, l_values, s_values, D, y, sigma_bounds) -> tuple[float, float, float]:
    """Best (l, sigma, LML) of one target: the grid optimum, or a parabola-refined l with Brent sigma."""
    n_l = l_values.size
    i, j = np.unravel_index(np.argmax(surf), surf.shape)
    best = (float(l_values[i]), float(s_values[j]), float(surf[i, j]))
    if 0 < i < n_l - 1:
        x = np.log(l_values[i - 1: i + 2])
        p = surf[i - 1: i + 2].max(axis=1)
        c2, c1, _ = np.polyfit(x, p, 2)
        if c2 < 0:
            l_ref = float(np.exp(np.clip(-c1 / (2 * c2), x[0], x[2])))
            d, e, b = tridiagonalise(np.exp(-D / (2.0 * l_ref)), standardise(y)[0])
            s_ref, v_ref = _profile_sigma(d, e, b, sigma_bounds)
            if v_ref > best[2]:
                best = (l_ref, s_ref, v_ref)
    return best


def optimise_hyperparameters(X, Y, *, l_bounds=None, sigma_bounds=SIGMA_BOUNDS, n_l: int = 30,
                             n_sigma: int = 30, grid=None, progress=None) -> LMLSearch:
    r"""Maximise the LML of each target over (l, sigma): grid, then refinement (the "grid" optimiser).

    1. :func:`lml_grid` on ``n_l`` x ``n_sigma`` log-spaced points inside the bounds (shared tridiagonal
       reductions for all targets) - this is the global search and the landscape of Figs. 6b-d.
    2. Per target, the profile :math:`\max_\sigma \log p(l,\sigma)` is interpolated by a parabola in
       log l through the best grid l and its neighbours; at that l (one more tridiagonal reduction)
       sigma is optimised exactly (Brent on the O(n) formula). The refined point is kept only if its
       LML beats the best grid point.

    Returns
    -------
    LMLSearch
    """
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    Y = Y[:, None] if Y.ndim == 1 else Y
    lb = default_bounds(X) if l_bounds is None else tuple(map(float, l_bounds))
    l_values = np.geomspace(lb[0], lb[1], n_l)
    s_values = np.geomspace(sigma_bounds[0], sigma_bounds[1], n_sigma)
    lml = lml_grid(X, Y, l_values, s_values, progress=progress) if grid is None else grid
    D = cdist(X, X, "sqeuclidean")
    best = [_refine(lml[:, :, t], l_values, s_values, D, Y[:, t], sigma_bounds) for t in range(Y.shape[1])]
    return LMLSearch(l_values=l_values, sigma_values=s_values, lml=lml, l=tuple(b[0] for b in best),
                     sigma=tuple(b[1] for b in best), lml_opt=tuple(b[2] for b in best))


class PaperGPR(ExactGP):
    r"""GPR of one target with the paper's kernel exp(-|x-x'|^2/(2l)) + sigma delta and a constant mean.

    A scikit-learn estimator (``clone``, ``get_params``, ``cross_val_score`` work) on the exact-GP core
    (:class:`~shearcorr.inverse.gpcore.ExactGP`): predictions are computed with numpy from the stored
    training inputs, :math:`\alpha = (K_l+\sigma I)^{-1}y` and (l, sigma), so a model rebuilt from a
    file predicts exactly as the trained one. The target is modelled as it is (``transform = "none"``);
    the prediction std includes the white-noise term sigma.

    Parameters
    ----------
    l : float, default=1.0
        The paper's squared correlation length (initial value when optimising).
    sigma : float, default=1e-3
        White-noise level (variance, standardised target units; initial value when optimising).
    optimizer : {"grid", "sklearn", None}, default="grid"
        ``"grid"``: :func:`optimise_hyperparameters` (tridiagonal-trick landscape + refinement; fast).
        ``"sklearn"``: scikit-learn's ``GaussianProcessRegressor`` (L-BFGS-B on log l, log sigma with
        ``n_restarts`` random restarts inside the bounds, starting from ``(l, sigma)``) - the paper's
        procedure, O(n^3) per step. ``None``: keep ``(l, sigma)`` fixed.
    l_bounds : (float, float) or None, default=None
        Bounds of l; None derives them from the pair distances (:func:`default_bounds`).
    sigma_bounds : (float, float), default=(1e-6, 1)
    n_restarts : int, default=10
        Restarts of the "sklearn" optimiser.
    n_grid : int, default=30
        Grid points per axis of the "grid" optimiser.
    random_state : int, default=0
        Seed of the restarts.

    Attributes
    ----------
    l_, sigma_ : float
        Fitted hyperparameters (paper convention).
    log_marginal_likelihood_value_ : float
    X_train_, alpha_ : ndarray
    y_mean_, y_std_ : float
        Target standardisation (the constant prior mean is ``y_mean_``).
    """

    def __init__(self, *, l: float = 1.0, sigma: float = 1e-3, optimizer: str | None = "grid",
                 l_bounds=None, sigma_bounds=SIGMA_BOUNDS, n_restarts: int = 10, n_grid: int = 30,
                 random_state: int = 0):
        self.l = l
        self.sigma = sigma
        self.optimizer = optimizer
        self.l_bounds = l_bounds
        self.sigma_bounds = sigma_bounds
        self.n_restarts = n_restarts
        self.n_grid = n_grid
        self.random_state = random_state

    def _kernel(self, A, B):
        return rbf(A, B, self.l_)

    def _prior_variance(self) -> float:
        return 1.0

    def _noise_variance(self) -> float:
        return self.sigma_

    def _squared_lengths(self):
        return self.l_

    def fit(self, X, y) -> "PaperGPR":
        r"""Optimise (l, sigma) as chosen by ``optimizer``, then factorise K + sigma I (Cholesky).

        The LML at the solution is :math:`-\tfrac12 y^T\alpha - \sum_i \log L_{ii} - \tfrac n2\log 2\pi`
        (R&W Alg. 2.1, line 8).
        """
        X, y = check_training_data(X, y)
        l, sigma = float(self.l), float(self.sigma)
        if self.optimizer is not None and check_choice("optimizer", self.optimizer) == "grid":
            r = optimise_hyperparameters(X, y, l_bounds=self.l_bounds, sigma_bounds=self.sigma_bounds,
                                         n_l=self.n_grid, n_sigma=self.n_grid)
            l, sigma = r.l[0], r.sigma[0]
        elif self.optimizer == "sklearn":
            l, sigma = self._fit_sklearn(X, y, l, sigma)
        self.l_, self.sigma_ = float(l), float(sigma)
        ys = self._factorise(X, y)
        self.log_marginal_likelihood_value_ = float(
            -0.5 * ys @ self.alpha_ - np.sum(np.log(np.diag(self._L))) - 0.5 * ys.size * np.log(2 * np.pi))
        return self

    def _fit_sklearn(self, X, y, l, sigma):
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process.kernels import RBF, WhiteKernel

        lb = default_bounds(X) if self.l_bounds is None else tuple(map(float, self.l_bounds))
        l = float(np.clip(l, *lb))
        sigma = float(np.clip(sigma, *self.sigma_bounds))
        kernel = RBF(np.sqrt(l), (np.sqrt(lb[0]), np.sqrt(lb[1]))) + WhiteKernel(sigma, tuple(self.sigma_bounds))
        gp = GaussianProcessRegressor(kernel, alpha=0.0, normalize_y=True, n_restarts_optimizer=int(self.n_restarts),
                                      random_state=int(self.random_state))
        gp.fit(X, y)
        k = gp.kernel_
        return float(k.k1.length_scale) ** 2, float(k.k2.noise_level)

    @classmethod
    def from_state(cls, X_train, alpha, l, sigma, y_mean, y_std) -> "PaperGPR":
        """Rebuild a fitted regressor from stored arrays (used by model files and caches; no unpickling)."""
        l, sigma = stored_float("l", l, positive=True), stored_float("sigma", sigma, nonnegative=True)
        gp = cls(l=l, sigma=sigma, optimizer=None)
        gp.l_, gp.sigma_ = l, sigma
        gp._restore(X_train, alpha, y_mean, y_std)
        return gp
