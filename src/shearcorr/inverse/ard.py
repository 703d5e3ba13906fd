r"""Gaussian-process regression with one length scale per input (ARD), the default inversion model.

Kernel :math:`k(x, x') = A\exp(-\tfrac12\sum_d (x_d - x'_d)^2/\ell_d^2) + \sigma\delta_{xx'}` with
the amplitude A, length scales :math:`\ell_d` and noise :math:`\sigma` fitted by maximising the log
marginal likelihood (scikit-learn's optimiser, restarts); targets standardised, optionally modelled as
u = log y. The paper's isotropic model is :class:`shearcorr.inverse.gpr.PaperGPR`.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.spatial.distance import cdist
from sklearn.exceptions import ConvergenceWarning

from ..errors import ShearcorrError
from .gpcore import ExactGP, check_training_data, stored_float

__all__ = ["ARDGPR", "ard_rbf"]

#: Starting white-noise level of the optimisation (standardised target units).
NOISE_START = 1e-4


def ard_rbf(A: np.ndarray, B: np.ndarray, length_scale: np.ndarray, amplitude: float) -> np.ndarray:
    r"""ARD RBF kernel matrix :math:`A\exp(-\tfrac12\sum_d (a_d-b_d)^2/\ell_d^2)`."""
    ls = np.asarray(length_scale, dtype=np.float64)
    return amplitude * np.exp(-0.5 * cdist(A / ls, B / ls, "sqeuclidean"))


class ARDGPR(ExactGP):
    r"""GPR of one target: amplitude x ARD RBF + white noise, constant mean, optional log target.

    The GP models :math:`u = y` (``transform="none"``) or :math:`u = \log y` (``"log"``; for strictly
    positive targets whose error is relative, like D_2 and gamma L), standardised,
    :math:`u_s = (u - \bar u)/s_u`, with the kernel

    .. math:: k(x, x') = A\,\exp\Big(-\frac12\sum_{d}\frac{(x_d - x'_d)^2}{\ell_d^2}\Big) + \sigma\,\delta_{xx'},

    one length scale per input (automatic relevance determination). (A, l_1..l_d, sigma) maximise the log
    marginal likelihood with scikit-learn's ``GaussianProcessRegressor`` (L-BFGS-B in log space,
    ``n_restarts`` random restarts inside the bounds, ``normalize_y``) on a seeded random subset of at
    most ``max_opt_samples`` training rows (its gradient needs n^2 (d + 2) floats per step: 1.4 GB at
    n = 4200, d = 8); the kernel is then fixed and factorised once on all rows. Predictions use numpy
    from stored arrays (:meth:`from_state`), so a model rebuilt from a file predicts exactly as trained.
    Factorisation, posterior, gradient and transform are the exact-GP core's
    (:class:`~shearcorr.inverse.gpcore.ExactGP`).

    Posterior of u at x (R&W Alg. 2.1), :math:`k_* = k(x, X)`, :math:`L L^T = K + \sigma I`:

    .. math:: m = \bar u + s_u k_*^T\alpha,\qquad s^2 = s_u^2\,(A + \sigma - |L^{-1}k_*|^2).

    ``predict`` returns the point estimate :math:`y = u^{-1}(m)` (for "log": exp(m), the median of the
    log-normal posterior) and the delta-method std :math:`|du^{-1}/du|\,s` (exp(m) s); central intervals
    are :math:`u^{-1}(m \pm z s)` (:meth:`interval`), exact for the posterior of u.

    Parameters
    ----------
    transform : {"none", "log"}, default="none"
    n_restarts : int, default=3
    max_opt_samples : int, default=1500
    length_scale_bounds, amplitude_bounds, noise_bounds : (float, float)
        Bounds of l_d (input units), A and sigma (standardised target units).
    random_state : int, default=0
        Seed of the subset and of the restarts.

    Attributes
    ----------
    length_scale_ : ndarray (d,)
    amplitude_, noise_ : float
    X_train_, alpha_ : ndarray
    y_mean_, y_std_ : float
        Standardisation of u.
    log_marginal_likelihood_value_ : float
        LML of the optimisation subset at the optimum.
    """

    def __init__(self, *, transform: str = "none", n_restarts: int = 3, max_opt_samples: int = 1500,
                 length_scale_bounds=(1e-2, 1e4), amplitude_bounds=(1e-2, 1e3), noise_bounds=(1e-8, 1.0),
                 random_state: int = 0):
        self.transform = transform
        self.n_restarts = n_restarts
        self.max_opt_samples = max_opt_samples
        self.length_scale_bounds = length_scale_bounds
        self.amplitude_bounds = amplitude_bounds
        self.noise_bounds = noise_bounds
        self.random_state = random_state

    def _kernel(self, A, B):
        return ard_rbf(A, B, self.length_scale_, self.amplitude_)

    def _prior_variance(self) -> float:
        return self.amplitude_

    def _noise_variance(self) -> float:
        return self.noise_

    def _squared_lengths(self):
        return self.length_scale_**2

    def fit(self, X, y) -> "ARDGPR":
        """Optimise (A, l_d, sigma) on a subset with scikit-learn, then factorise K + sigma I on all rows."""
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

        X, y = check_training_data(X, y)
        u = self._forward(y)
        rng = np.random.default_rng(int(self.random_state))
        n_opt = min(X.shape[0], int(self.max_opt_samples))
        sub = np.sort(rng.choice(X.shape[0], size=n_opt, replace=False))
        lo, hi = self.length_scale_bounds
        ls0 = np.clip(np.std(X[sub], axis=0), lo, hi)
        ls0[ls0 <= 0] = 1.0
        kernel = (ConstantKernel(1.0, tuple(self.amplitude_bounds)) * RBF(ls0, (lo, hi))
                  + WhiteKernel(NOISE_START, tuple(self.noise_bounds)))
        gp = GaussianProcessRegressor(kernel, alpha=0.0, normalize_y=True, n_restarts_optimizer=int(self.n_restarts),
                                      random_state=int(self.random_state))
        with warnings.catch_warnings():  # a length scale at its upper bound = an irrelevant input: expected
            warnings.simplefilter("ignore", ConvergenceWarning)
            gp.fit(X[sub], u[sub])
        k = gp.kernel_
        self.length_scale_ = np.broadcast_to(np.asarray(k.k1.k2.length_scale, dtype=np.float64), (X.shape[1],)).copy()
        self.amplitude_, self.noise_ = float(k.k1.k1.constant_value), float(k.k2.noise_level)
        self._factorise(X, u)
        self.log_marginal_likelihood_value_ = float(gp.log_marginal_likelihood_value_)
        self.n_opt_samples_ = int(n_opt)
        return self

    @classmethod
    def from_state(cls, X_train, alpha, length_scale, amplitude, noise, y_mean, y_std, transform) -> "ARDGPR":
        """Rebuild a fitted regressor from stored arrays (used by the model file; no unpickling)."""
        gp = cls(transform=str(transform))
        gp._forward(np.ones(1))  # validates the transform name
        gp._restore(X_train, alpha, y_mean, y_std)
        gp.length_scale_ = np.asarray(length_scale, dtype=np.float64)
        if gp.length_scale_.shape != (gp.X_train_.shape[1],):
            raise ShearcorrError("ARD state arrays have inconsistent shapes")
        if not (np.all(np.isfinite(gp.length_scale_)) and np.all(gp.length_scale_ > 0)):
            raise ShearcorrError("stored ARD length scales must be finite and > 0")
        gp.amplitude_ = stored_float("amplitude", amplitude, positive=True)
        gp.noise_ = stored_float("noise", noise, nonnegative=True)
        return gp
