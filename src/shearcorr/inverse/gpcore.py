r"""The exact Gaussian-process core shared by the paper's GPR and the ARD GPR.

Both regressors model a standardised target :math:`u_s = (u - \bar u)/s_u` (u = y, or log y) with a
stationary kernel k plus white noise :math:`\sigma\delta`. Given the training inputs X, the core
factorises :math:`K + \sigma I = L L^T` (Cholesky) and stores :math:`\alpha = (K+\sigma I)^{-1} u_s`;
the posterior at x (Rasmussen & Williams Alg. 2.1), :math:`k_* = k(x, X)`:

.. math:: m = \bar u + s_u\,k_*^T\alpha,\qquad
          s^2 = s_u^2\,\big(k(x,x) + \sigma - |L^{-1}k_*|^2\big),

and the gradient of the mean for the squared-exponential kernels used here,
:math:`\partial m/\partial x_d = s_u\sum_i \alpha_i k(x, x_i)(x_{i,d} - x_d)/\ell_d^2`.

A subclass states only its kernel (:meth:`ExactGP._kernel`), its prior variance k(x, x), its noise
level, its squared length scales, and how it chooses them in ``fit``. Fitted regressors are rebuilt
from stored arrays without unpickling (:meth:`ExactGP._restore`); the Cholesky factor is then
recomputed lazily, on the first request for a std.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
from sklearn.base import BaseEstimator, RegressorMixin

from ..choices import check_choice
from ..errors import ShearcorrError

__all__ = ["ExactGP", "check_training_data", "standardise", "stored_float"]


def stored_float(name: str, value, *, positive: bool = False, nonnegative: bool = False) -> float:
    """A stored hyperparameter as a finite float (> 0 with ``positive``, >= 0 with ``nonnegative``);
    else a one-line ShearcorrError (model files and caches are inputs too)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ShearcorrError(f"stored hyperparameter {name} is not a number ({value!r})") from None
    if not np.isfinite(v):
        raise ShearcorrError(f"stored hyperparameter {name} is not finite ({value!r})")
    if (positive and v <= 0) or (nonnegative and v < 0):
        raise ShearcorrError(f"stored hyperparameter {name} must be {'> 0' if positive else '>= 0'}, got {v:g}")
    return v


def check_training_data(X, y) -> tuple[np.ndarray, np.ndarray]:
    """Training inputs X (n, d) and targets y (n,) as float64, n >= 2, all finite; else ShearcorrError."""
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if X.ndim != 2 or y.shape != (X.shape[0],) or X.shape[0] < 2:
        raise ShearcorrError(f"need X of shape (n, d) and y of shape (n,) with n >= 2, got {X.shape}, {y.shape}")
    if not (np.all(np.isfinite(X)) and np.all(np.isfinite(y))):
        raise ShearcorrError("training inputs or targets contain NaN or inf")
    return X, y


def standardise(y: np.ndarray) -> tuple[np.ndarray, float, float]:
    """(y - mean) / std with the mean and std (std 1 for a constant y)."""
    mean, std = float(np.mean(y)), float(np.std(y))
    std = std if std > 0 else 1.0
    return (y - mean) / std, mean, std


class ExactGP(RegressorMixin, BaseEstimator):
    """Base of the exact GP regressors: factorisation, posterior, gradient, target transform.

    Subclasses implement :meth:`_kernel`, :meth:`_prior_variance`, :meth:`_noise_variance`,
    :meth:`_squared_lengths` and ``fit`` (choose the hyperparameters, then call :meth:`_factorise`).
    The target transform is the attribute ``transform`` ("none" or "log").

    Attributes (fitted)
    -------------------
    X_train_, alpha_ : ndarray
    y_mean_, y_std_ : float
        Standardisation of the modelled u.
    n_features_in_ : int
    """

    #: Target transform: the GP models u = y ("none") or u = log y ("log").
    transform = "none"

    # --- what a subclass states ---------------------------------------------------------------------
    def _kernel(self, A: np.ndarray, B: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _prior_variance(self) -> float:  # pragma: no cover - abstract
        """k(x, x) without the white noise."""
        raise NotImplementedError

    def _noise_variance(self) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def _squared_lengths(self):  # pragma: no cover - abstract
        """l (scalar) or the l_d^2 (array (d,)) of the squared-exponential kernel."""
        raise NotImplementedError

    # --- target transform ----------------------------------------------------------------------------
    def _forward(self, y: np.ndarray) -> np.ndarray:
        """u = transform(y) (checks the transform name and, for "log", that y > 0)."""
        if check_choice("transform", self.transform) == "log":
            if np.any(y <= 0):
                raise ShearcorrError("transform 'log' needs strictly positive targets; use transform 'none'")
            return np.log(y)
        return y

    def inverse(self, u):
        """Map the modelled quantity u back to the target (identity or exp)."""
        return np.exp(u) if self.transform == "log" else np.asarray(u)

    # --- factorisation --------------------------------------------------------------------------------
    def _noisy_gram(self, X: np.ndarray) -> np.ndarray:
        K = self._kernel(X, X)
        K[np.diag_indices_from(K)] += self._noise_variance()
        return K

    def _factorise(self, X: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Standardise u, factorise K + sigma I on all rows, store alpha; returns the standardised u."""
        ys, self.y_mean_, self.y_std_ = standardise(u)
        try:
            L = scipy.linalg.cholesky(self._noisy_gram(X), lower=True)
        except np.linalg.LinAlgError:
            raise ShearcorrError(f"K + sigma I is not positive definite at noise level {self._noise_variance():.3g}; "
                                 "raise the lower bound of the noise level") from None
        self.X_train_, self._L = X, L
        self.alpha_ = scipy.linalg.cho_solve((L, True), ys)
        self.n_features_in_ = X.shape[1]
        return ys

    def _restore(self, X_train, alpha, y_mean, y_std) -> None:
        """Set the fitted state from stored arrays (model files, caches); Cholesky recomputed lazily."""
        self.X_train_ = np.asarray(X_train, dtype=np.float64)
        self.alpha_ = np.asarray(alpha, dtype=np.float64)
        if self.X_train_.ndim != 2 or self.alpha_.shape != (self.X_train_.shape[0],):
            raise ShearcorrError("stored GP arrays have inconsistent shapes (X_train and alpha)")
        if not (np.all(np.isfinite(self.X_train_)) and np.all(np.isfinite(self.alpha_))):
            raise ShearcorrError("stored GP arrays (X_train, alpha) contain NaN or inf")
        self.y_mean_ = stored_float("y_mean", y_mean)
        self.y_std_ = stored_float("y_std", y_std, positive=True)
        self.n_features_in_ = self.X_train_.shape[1]
        self._L = None

    def _cholesky(self) -> np.ndarray:
        if self._L is None:
            try:
                self._L = scipy.linalg.cholesky(self._noisy_gram(self.X_train_), lower=True)
            except np.linalg.LinAlgError:
                raise ShearcorrError(f"the stored regressor's K + sigma I is not positive definite (noise level "
                                     f"{self._noise_variance():.3g}); the model is damaged - retrain it") from None
        return self._L

    # --- prediction -----------------------------------------------------------------------------------
    def _check_X(self, X) -> np.ndarray:
        if not hasattr(self, "alpha_"):
            raise ShearcorrError("the regressor is not fitted; call fit(X, y) first")
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ShearcorrError(f"X must have shape (n, {self.n_features_in_}), got {X.shape}")
        return X

    def _posterior(self, X, return_std: bool):
        X = self._check_X(X)
        Ks = self._kernel(X, self.X_train_)
        mean = self.y_mean_ + self.y_std_ * (Ks @ self.alpha_)
        if not return_std:
            return mean, None
        v = scipy.linalg.solve_triangular(self._cholesky(), Ks.T, lower=True)
        var = np.clip(self._prior_variance() + self._noise_variance() - np.sum(v * v, axis=0), 0.0, None)
        return mean, self.y_std_ * np.sqrt(var)

    def predict_latent(self, X) -> tuple[np.ndarray, np.ndarray]:
        """Posterior (mean, std) of the modelled u (log y for "log"), the std including the white noise."""
        return self._posterior(X, True)

    def predict(self, X, return_std: bool = False):
        """Point estimate u^-1(m) (and the delta-method std |du^-1/du| s) of the target.

        For ``transform="none"`` these are the posterior mean and std (the std includes the white
        noise, like scikit-learn's ``predict`` with a ``WhiteKernel``); for "log", exp(m) (the median of
        the log-normal posterior) and exp(m) s.
        """
        m, s = self._posterior(X, return_std)
        y = self.inverse(m)
        if not return_std:
            return y
        return y, (y * s if self.transform == "log" else s)

    def mean_gradient(self, X) -> np.ndarray:
        r"""Gradient of the latent posterior mean m with respect to the inputs, shape (n, d).

        .. math:: \frac{\partial m}{\partial x_d} = s_u \sum_i \alpha_i\,k(x, x_i)\,\frac{x_{i,d} - x_d}{\ell_d^2}
        """
        X = self._check_X(X)
        Ks = self._kernel(X, self.X_train_) * self.alpha_[None, :]  # (n, N)
        return self.y_std_ * (Ks @ self.X_train_ - Ks.sum(axis=1)[:, None] * X) / self._squared_lengths()
