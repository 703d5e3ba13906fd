r"""The noise of an ensemble g: the estimator's expectation at finite N and its covariance over the map.

A measured or simulated g is a ratio of sample means over N configurations (frame pairs),
:math:`\hat g = f(\bar a, \bar b, \bar c)` with a = I I', b = I, c = I' per configuration. Which ratio
is the *estimator* (:data:`ESTIMATORS`, CHOICES["estimator"]):

``"symmetric"``  :math:`\bar a/(\bar b\,\bar c)` -- shearcorr's Monte Carlo (docs/montecarlo.md);
``"before"``     :math:`\bar a/\bar b^2` -- the paper's :math:`\langle I I'\rangle/\langle I\rangle^2`
                 with :math:`\langle I\rangle` over the before-patterns;
``"pooled"``     :math:`\bar a/((\bar b + \bar c)/2)^2` -- :math:`\langle I\rangle` over both.

To second order in the fluctuations (delta method), with :math:`\Sigma` the 3 x 3 covariance of (a, b, c)
per configuration relative to the means (:func:`relative_covariance`) and the relative gradient
e and Hessian h of f (for a power law :math:`a^{e_a}b^{e_b}c^{e_c}`: :math:`h_{ii} = e_i(e_i - 1)`,
:math:`h_{ij} = e_i e_j`):

.. math:: E[\hat g_N] = g\Big(1 + \frac{\tfrac12\sum_{ij} h_{ij}\Sigma_{ij}}{N}\Big),\qquad
          \mathrm{Var}(\hat g_N) = \frac{g^2\,e^T\Sigma e}{N}

(docs/theory.md §9). The bias is O(1/N) and negative (about -0.3/N averaged over the paper's map at
R_s = 0.1): the exact engine predicts the N -> infinity limit, a model meets E[g_N].

:math:`\Sigma` from the ensemble (:mod:`shearcorr.forward.moments`), with A = E[I^2]/E[I]^2, B the
decorrelated baseline, the normalised speckle correlation :math:`y = (g - B)/(A - B)` and the
ratios :math:`R_3 = E[U^3]E[U]/E[U^2]^2`, :math:`R_4 = E[U^4]E[U]^4/E[U^2]^4` of the incoherent
intensity U = P/S (exact; they carry the heavy tail of V^2 at large R_s): for Gaussian speckle given
the marks,

.. math:: \Sigma_{bb} = \Sigma_{cc} = A - 1,\quad \Sigma_{bc} = g - 1,\quad
          \Sigma_{ab} = \Sigma_{ac} = R_3 A\frac{1 + 2y}{1 + y} - 1,\quad
          \Sigma_{aa} = R_4 A^2\frac{1 + 4y + y^2}{(1 + y)^2} - 1 .

The first two are exact; the last two were checked against 2 x 10^5-configuration Monte Carlo moments
(docs/theory.md §9).

**Covariance across the map.** All grid points share the configurations. By the law of total
covariance over the marks and moves Z of a configuration (:mod:`shearcorr.forward.conditional`),

.. math:: \mathrm{Cov}(\hat g) = D + U U^T,\qquad
          U_{pk} = \frac{g_p\,F_{pk}}{\sqrt N},\quad
          \phi_{pk} = \sum_i e_i \frac{E[x_i \mid Z_k]}{E[x_i]}

over K sampled configurations (the shared part, low rank), with :math:`F F^T` the unbiased stratified
sample covariance of :math:`\phi` (:meth:`shearcorr.forward.conditional.ConditionalMoments.covariance_factor`:
common random numbers, so U is smooth in the parameters, and the configurations stratified over their
largest particle in the window, which carries the heavy tail of the V^2 weights at large R_s), and
D = diag(Var - rowsum(U^2)) the speckle part, independent between grid points (floored at
:data:`DIAGONAL_FLOOR` of the variance).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..choices import check_choice
from ..errors import ShearcorrError
from ..params import QGrid, SystemParams

__all__ = ["ESTIMATORS", "DIAGONAL_FLOOR", "relative_covariance", "bias_coefficient", "variance_coefficient",
           "expected_g", "ensemble_statistics", "ensemble_limits", "EnsembleNoise", "ensemble_noise", "Whitener"]

#: Estimators of g from N configurations (module docstring); shearcorr's own is the first.
ESTIMATORS = ("symmetric", "before", "pooled")

#: Smallest share of the per-point variance left to the independent (speckle) part D.
DIAGONAL_FLOOR = 0.05

#: Configurations sampled for the shared-noise factor U (its rank).
DEFAULT_SAMPLES = 64


def relative_covariance(g: np.ndarray, A: np.ndarray, B: np.ndarray, moments: np.ndarray) -> dict:
    r"""Covariance of (a, b, c) = (I I', I, I') per configuration relative to their means (module doc).

    Parameters
    ----------
    g : ndarray (n_q, n_theta)
        Exact ensemble g (the analytic engine).
    A, B : ndarray (n_q,)
        :func:`shearcorr.forward.moments.correlation_limits`.
    moments : ndarray (4, n_q)
        E[U^k], k = 1..4 (:func:`shearcorr.forward.moments.static_moments`).

    Returns
    -------
    dict with ``aa``, ``bb`` (= cc), ``bc``, ``ab`` (= ac), each (n_q, n_theta).
    """
    g = np.asarray(g, dtype=np.float64)
    A, B = np.asarray(A, dtype=np.float64)[:, None], np.asarray(B, dtype=np.float64)[:, None]
    m1, m2, m3, m4 = (np.asarray(moments[k], dtype=np.float64)[:, None] for k in range(4))
    y = np.clip((g - B) / (A - B), 0.0, 1.0)
    r3 = m3 * m1 / m2**2
    r4 = m4 * m1**4 / m2**4
    shape = g.shape
    return {
        "bb": np.broadcast_to(A - 1.0, shape),
        "bc": g - 1.0,
        "ab": r3 * A * (1.0 + 2.0 * y) / (1.0 + y) - 1.0,
        "aa": r4 * A**2 * (1.0 + 4.0 * y + y * y) / (1.0 + y) ** 2 - 1.0,
    }


def bias_coefficient(cov: dict, estimator: str = "symmetric") -> np.ndarray:
    r"""N (E[g_hat_N] - g) / g = half the Hessian contracted with the relative covariance (module doc)."""
    check_choice("estimator", estimator)
    bb, bc, ab = cov["bb"], cov["bc"], cov["ab"]
    if estimator == "symmetric":  # a b^-1 c^-1
        return 2.0 * bb + bc - 2.0 * ab
    if estimator == "before":  # a b^-2
        return 3.0 * bb - 2.0 * ab
    # pooled: a d^-2, d = (b + c)/2: Var d = (bb + bc)/2, Cov(a, d) = ab
    return 1.5 * (bb + bc) - 2.0 * ab


def variance_coefficient(cov: dict, estimator: str = "symmetric") -> np.ndarray:
    r"""N Var(g_hat_N) / g^2 = e^T Sigma e (module doc); "pooled" has the symmetric gradient."""
    check_choice("estimator", estimator)
    aa, bb, bc, ab = cov["aa"], cov["bb"], cov["bc"], cov["ab"]
    if estimator == "before":  # e = (1, -2, 0)
        return aa + 4.0 * bb - 4.0 * ab
    return aa + 2.0 * bb + 2.0 * bc - 4.0 * ab  # e = (1, -1, -1)


def _check_configs(configs) -> float:
    try:
        n = float(configs)
    except (TypeError, ValueError):
        raise ShearcorrError(f"configs must be a number of configurations >= 2, got {configs!r}") from None
    if not (np.isfinite(n) and n >= 2):
        raise ShearcorrError(f"configs must be a number of configurations >= 2, got {configs!r}")
    return n


def ensemble_limits(params: SystemParams, q) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(A, B, E[U^k]) of :mod:`shearcorr.forward.moments`: the D2- and gamma L-independent inputs."""
    from ..forward.moments import correlation_limits, static_moments

    A, B = correlation_limits(params, q)
    return A, B, static_moments(params, q)


def ensemble_statistics(params: SystemParams, grid: QGrid, limits=None, phase_nodes=None):
    """(E[I] (n_q,), exact g (n_q, n_theta), relative covariance dict) for the noise formulas.

    ``limits``: precomputed :func:`ensemble_limits` for these n_l2, rs, displacement and q (they do
    not depend on D2 or gamma L; a fit reuses them across its Jacobian). ``phase_nodes``: the engine's
    (:func:`shearcorr.forward.analytic.se_phase_nodes`).
    """
    from ..forward.analytic import ensemble_arrays

    I, g, _ = ensemble_arrays(params, grid, phase_nodes=phase_nodes)
    A, B, M = ensemble_limits(params, grid.q) if limits is None else limits
    return I[:, 0], g, relative_covariance(g, A, B, M)


def expected_g(params: SystemParams, grid: QGrid, configs, *, estimator: str = "symmetric",
               limits=None, statistics=None, phase_nodes=None) -> np.ndarray:
    """E[g_hat_N] on the grid, shape (n_q, n_theta): the exact g plus the estimator's O(1/N) bias.

    ``configs`` None or inf gives the exact (N -> infinity) g. ``limits``: see :func:`ensemble_statistics`;
    ``statistics``: its result for these params and grid, when the caller has it already; ``phase_nodes``: the
    engine's (:func:`shearcorr.forward.analytic.se_phase_nodes`).
    """
    check_choice("estimator", estimator)
    if configs is None or (np.isscalar(configs) and np.isinf(configs)):
        from ..forward.analytic import ensemble_arrays

        return ensemble_arrays(params, grid, phase_nodes=phase_nodes)[1]
    n = _check_configs(configs)
    _, g, cov = ensemble_statistics(params, grid, limits, phase_nodes) if statistics is None else statistics
    return g * (1.0 + bias_coefficient(cov, estimator) / n)


class Whitener:
    r"""Apply :math:`\Sigma^{-1/2}` for :math:`\Sigma = D + U U^T` in O(n K) (Woodbury, module doc).

    With :math:`\tilde U = D^{-1/2}U` and the eigendecomposition of its K x K Gram matrix
    :math:`\tilde U^T\tilde U = V\Lambda V^T` (:math:`\Lambda` the non-zero eigenvalues of :math:`\tilde U\tilde U^T`,
    whose eigenvectors are :math:`W = \tilde U V\Lambda^{-1/2}`):
    :math:`\Sigma^{-1/2} r = \tilde r + W((1 + \Lambda)^{-1/2} - 1)W^T\tilde r = \tilde r + \tilde U M \tilde U^T\tilde r`,
    :math:`M = V\,\mathrm{diag}\big(((1 + \lambda)^{-1/2} - 1)/\lambda\big)V^T`, :math:`\tilde r = D^{-1/2} r`
    (the factor is :math:`-1/(\sqrt{1+\lambda}(1 + \sqrt{1+\lambda}))`, finite at :math:`\lambda = 0`, so a
    rank-deficient U needs no cut), and :math:`\log\det\Sigma = \sum\log D + \sum\log(1 + \Lambda)`. The Gram
    matrix costs a third of a QR factorisation of :math:`\tilde U` (n x K) and gives the same operator.
    """

    def __init__(self, D: np.ndarray, U: np.ndarray):
        self.inv_sqrt_d = 1.0 / np.sqrt(D)
        if U.shape[1]:
            self.U = U * self.inv_sqrt_d[:, None]
            lam, V = np.linalg.eigh(self.U.T @ self.U)
            lam = np.clip(lam, 0.0, None)
            root = np.sqrt(1.0 + lam)
            self.M = (V * (-1.0 / (root * (1.0 + root)))) @ V.T
            self.logdet = float(np.sum(np.log(D)) + np.sum(np.log1p(lam)))
        else:
            self.U, self.M = np.zeros((D.size, 0)), np.zeros((0, 0))
            self.logdet = float(np.sum(np.log(D)))

    def __call__(self, r: np.ndarray) -> np.ndarray:
        """Whitened residuals, shape of ``r`` flattened: their squared norm is r^T Sigma^-1 r."""
        rt = np.ravel(r) * self.inv_sqrt_d
        return rt + self.U @ (self.M @ (self.U.T @ rt))

    def transpose(self, m: np.ndarray) -> np.ndarray:
        r""":math:`S^T m` for the whitener :math:`S = (1 + \tilde U M\tilde U^T) D^{-1/2}` (:math:`S^T S = \Sigma^{-1}`);
        ``m`` (n,) or (n, p)."""
        m = np.asarray(m, dtype=np.float64)
        s = self.inv_sqrt_d if m.ndim == 1 else self.inv_sqrt_d[:, None]
        return s * (m + self.U @ (self.M @ (self.U.T @ m)))


@dataclass(frozen=True)
class EnsembleNoise:
    r"""Expectation and covariance of a g estimated from ``configs`` configurations (module docstring).

    Attributes
    ----------
    grid : QGrid
    configs : float
        N, the number of configurations (or frame pairs) averaged.
    estimator : str
    g : ndarray (n_q, n_theta)
        The exact (N -> infinity) g.
    mean : ndarray (n_q, n_theta)
        E[g_hat_N].
    var : ndarray (n_q, n_theta)
        Var(g_hat_N) per grid point.
    factor : ndarray (n_q * n_theta, K)
        U, the shared (configuration) part: Cov = diag(var - rowsum U^2) + U U^T.
    """

    grid: QGrid
    configs: float
    estimator: str
    g: np.ndarray
    mean: np.ndarray
    var: np.ndarray
    factor: np.ndarray

    @property
    def diagonal(self) -> np.ndarray:
        """D, the independent part of the variance (flattened), floored at DIAGONAL_FLOOR x var."""
        v = self.var.ravel()
        return np.maximum(v - np.sum(self.factor**2, axis=1), DIAGONAL_FLOOR * v)

    def whitener(self, index=None) -> Whitener:
        """:class:`Whitener` of this covariance (residuals data - mean -> independent unit normals),
        restricted to the flat grid-point indices ``index`` when given."""
        if index is None:
            return Whitener(self.diagonal, self.factor)
        return Whitener(self.diagonal[index], self.factor[index])

    def chi2(self, data) -> float:
        """:math:`(d - E\\hat g)^T \\Sigma^{-1} (d - E\\hat g)` of a map ``data`` (n_q, n_theta)."""
        w = self.whitener()(np.asarray(data, dtype=np.float64) - self.mean)
        return float(w @ w)

    def with_errors(self, g_err) -> "EnsembleNoise":
        """The same correlation structure with the data's own standard errors setting the scale.

        Per q row the variance (and the shared factor) is scaled by sum g_err^2 / sum var over theta: a
        smooth scale (a point's own g_err is itself noisy, and weighting by it would favour points that
        fluctuated low; the median of the ratio would be biased low, g_err^2 being skewed). Returns a new object; ``scale`` of the rows is kept
        in ``error_scale``.
        """
        e = np.asarray(g_err, dtype=np.float64)
        if e.shape != self.var.shape:
            raise ShearcorrError(f"g_err has shape {e.shape}, the grid needs {self.var.shape}")
        ok = np.isfinite(e) & (e > 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            s = np.where(ok, e**2, 0.0).sum(axis=1) / np.where(ok, self.var, 0.0).sum(axis=1)
            s = np.where(np.isfinite(s) & (s > 0), s, np.where(ok, e**2, 0.0).sum() / np.where(ok, self.var, 0.0).sum())
        if not np.all(np.isfinite(s)):
            raise ShearcorrError("g_err holds no finite positive value; drop it to use the model's errors")
        nt = self.grid.theta.size
        new = replace(self, var=self.var * s[:, None], factor=self.factor * np.sqrt(np.repeat(s, nt))[:, None])
        object.__setattr__(new, "error_scale", s)
        return new

    def profile_covariance(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and covariance of the profile row [g(theta) | g(q)] (unweighted means, as the data's)."""
        from .likelihood import profile_operator

        P = profile_operator(self.grid.shape)
        PU = P @ self.factor
        mean = np.concatenate([self.mean.mean(axis=0), self.mean.mean(axis=1)])
        return mean, (P * self.diagonal[None, :]) @ P.T + PU @ PU.T

    def sample(self, n: int, seed=None) -> np.ndarray:
        """``n`` Gaussian draws of g_hat_N with this mean and covariance, shape (n, n_q, n_theta)."""
        from ..rng import as_generator

        rng = as_generator(seed)
        k = self.factor.shape[1]
        z = rng.standard_normal((int(n), self.var.size)) * np.sqrt(self.diagonal)
        if k:
            z += rng.standard_normal((int(n), k)) @ self.factor.T
        return self.mean[None] + z.reshape(int(n), *self.var.shape)


def ensemble_noise(params: SystemParams, grid: QGrid, configs, *, estimator: str = "symmetric",
                   n_samples: int = DEFAULT_SAMPLES, seed=0, limits=None, statistics=None) -> EnsembleNoise:
    r"""The noise model of a g averaged over ``configs`` configurations of ``params`` (module docstring).

    Parameters
    ----------
    params : SystemParams
    grid : QGrid
    configs : float
        N >= 2, configurations (or frame pairs) in the average.
    estimator : {"symmetric", "before", "pooled"}
    n_samples : int, default 64
        K, configurations sampled for the shared factor (:func:`shearcorr.forward.conditional.conditional_moments`);
        0 gives a diagonal covariance.
    seed : int, default 0
        Seed of those configurations.
    limits : tuple, optional
        Precomputed :func:`ensemble_limits` of these n_l2, rs, displacement and q (see
        :func:`ensemble_statistics`).
    statistics : tuple, optional
        :func:`ensemble_statistics` of these params and grid, when the caller has it already (a fit evaluates
        its model at the same point).
    """
    from ..forward.conditional import conditional_moments

    check_choice("estimator", estimator)
    n = _check_configs(configs)
    m, g, cov = ensemble_statistics(params, grid, limits) if statistics is None else statistics
    mean = g * (1.0 + bias_coefficient(cov, estimator) / n)
    var = g**2 * variance_coefficient(cov, estimator) / n
    K = int(n_samples)
    if K >= 2:
        cm = conditional_moments(params, grid, K, seed=seed)
        ma = (g * m[:, None] ** 2)[None]
        mb = m[None, :, None]
        phi = cm.a / ma - (2.0 * cm.b[:, :, None] / mb if estimator == "before"
                           else (cm.b + cm.c)[:, :, None] / mb)
        F = cm.covariance_factor(phi)
        U = (g[None] * F).reshape(F.shape[0], -1).T / np.sqrt(n)
    else:
        U = np.zeros((g.size, 0))
    return EnsembleNoise(grid=grid, configs=n, estimator=estimator, g=g, mean=mean, var=var, factor=U)
