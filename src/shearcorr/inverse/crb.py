r"""The information limit: Fisher information and the Cramér–Rao bound of a noisy g.

For a Gaussian likelihood with mean :math:`\mu(\theta) = E[\hat g_N](\theta)` and covariance
:math:`\Sigma` (:mod:`shearcorr.inverse.noise`; its own weak dependence on :math:`\theta` neglected,
which the O(10^4) data points make negligible), the Fisher information of the latent parameters
:math:`\theta = (R_s^2, D_2, \gamma L[, n_{L^2}])` of :mod:`shearcorr.inverse.fit` is

.. math:: F = \tilde J^T\tilde J + \mathrm{diag}(0, 0, 0, \sigma_n^{-2}),\qquad
          \tilde J = \Sigma^{-1/2}\,\partial\mu/\partial\theta

(the last term: the Gaussian prior of n_l2 when it is fitted with one), and no unbiased estimator
has a covariance below :math:`F^{-1}` (Cramér–Rao; with the prior, the Bayesian bound of Van Trees).
For R_s the bound is given in :math:`u = R_s^2`; :math:`\sigma_{R_s} = \sigma_u/(2R_s)` holds where
:math:`R_s \gg \sqrt{\sigma_u}` -- below that R_s is not identifiable from the data (the report says
where).

The Jacobian is the fit's own (forward differences, :data:`shearcorr.inverse.likelihood.STEPS`), so the bound
and the fit's Laplace covariance are the same object evaluated at the truth and at the estimate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..files import JSONRecord
from ..params import QGrid, SystemParams
from .likelihood import N_L2_PRIOR

__all__ = ["CramerRao", "cramer_rao"]


@dataclass(frozen=True)
class CramerRao(JSONRecord):
    """The bound at one parameter set.

    Attributes
    ----------
    names : list of str
        Latent parameters (``rs2``, ``d2``, ``gamma_l`` and ``n_l2`` when it is free).
    cov : ndarray (k, k)
        :math:`F^{-1}`.
    std : dict of str to float
        Bound on the std of each physical parameter (``rs`` from ``rs2`` by the delta method; inf at R_s = 0).
    """

    names: list
    cov: np.ndarray
    std: dict

    def to_dict(self) -> dict:
        return {"names": list(self.names), "cov": np.asarray(self.cov).tolist(), "std": dict(self.std)}


def cramer_rao(params: SystemParams, grid: QGrid, configs, *, estimator: str = "symmetric",
               observable: str = "g", n_l2_fixed: bool = False, n_l2_prior: tuple[float, float] | None = N_L2_PRIOR,
               noise_samples: int = 64, seed: int = 0) -> CramerRao:
    r"""Cramér–Rao bound of (R_s, D2, gamma L[, n_l2]) for a g averaged over ``configs`` configurations.

    Parameters
    ----------
    params : SystemParams
        The true parameter set (units of r0).
    grid : QGrid
        Grid of the data.
    configs : float
        N >= 2.
    estimator, observable : as in :func:`shearcorr.inverse.fit.fit_g`.
    n_l2_fixed : bool, default False
        True: n_l2 is known (not a parameter); False: it is estimated with the prior ``n_l2_prior``
        (None: without a prior).
    noise_samples, seed : covariance settings (:func:`shearcorr.inverse.noise.ensemble_noise`).
    """
    from .likelihood import Likelihood

    n_l2 = float(params.n_l2) if n_l2_fixed else None
    truth = [params.rs**2, params.d2, params.gamma_l] + ([] if n_l2_fixed else [params.n_l2])
    x = np.array(truth, dtype=np.float64)
    nq, nt = grid.shape
    size = {"g": nq * nt, "g_theta": nt, "g_q": nq}[observable]
    prob = Likelihood(np.zeros(size), grid, observable, float(configs), None, estimator, params.displacement,
                    n_l2, None if n_l2_fixed else n_l2_prior, int(noise_samples), seed)
    prob.d = prob.reduce(prob.model(x))
    prob.use_covariance(x, full=True)
    J = prob.jacobian(x)
    cov = np.linalg.pinv(J.T @ J)
    sd = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    std = {"rs": float(sd[0] / (2.0 * params.rs)) if params.rs > 0 else float("inf"),
           "d2": float(sd[1]), "gamma_l": float(sd[2])}
    if not n_l2_fixed:
        std["n_l2"] = float(sd[3])
    std["rs2"] = float(sd[0])
    return CramerRao(names=list(prob.names), cov=cov, std=std)
