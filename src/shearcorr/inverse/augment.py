r"""Training inputs drawn as the estimator sees them: noise-aware profiles for amortized models.

A model trained on the analytic engine's exact g meets, at prediction time, a g averaged over N
configurations: biased by O(1/N) and noisy, with noise shared by all grid points (docs/theory.md
section 9). Trained on such draws instead, a GP learns the map from *noisy* profiles to parameters
and its noise term learns the input noise. For sample i of a dataset (exact map g_i) the profile rows
[g(theta) | g(q)] = R g are replaced by

.. math:: \tilde p_i = R\big(g_i (1 + \beta_i/N)\big) + R\,\sqrt{v_i (1 - s)/N}\odot\epsilon_i
          + c_i\,R U_{\rm ref}\,\eta_i / \sqrt N,

with the per-point bias and variance coefficients :math:`\beta_i, v_i` of the sample itself
(:func:`shearcorr.inverse.noise.bias_coefficient`, :func:`~shearcorr.inverse.noise.variance_coefficient`;
exact delta-method terms from the sample's g and the engine's moments, ~0.1 s per sample), and the
shared part :math:`U_{\rm ref}` (unit N) of the centre of the paper's priors, (150, 0.15, 1.75, 17.5),
scaled by :math:`c_i = \sqrt{\bar v_i / \bar v_{\rm ref}}` (its share s of each point's variance,
0.04-0.5 %, changes slowly with the parameters; computing it per sample would cost ~0.5 s each).
:math:`\epsilon_i, \eta_i` are standard normal, drawn from ``child_seed(seed, i)``: the same sample
gets the same draw whatever the order or split.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..choices import check_choice
from ..errors import ShearcorrError
from ..params import PARAM_NAMES, SystemParams
from ..rng import as_generator, child_seed
from .likelihood import profile_operator

__all__ = ["noisy_profiles", "NoiseDraws", "REFERENCE"]

#: Parameter set whose shared-noise factor is used for every sample (centre of the paper's priors).
REFERENCE = SystemParams(150.0, 0.15, 1.75, 17.5)


class NoiseDraws:
    """The per-sample noise coefficients of a dataset's samples, computed once, drawn at any N.

    ``NoiseDraws(ds, index, estimator).profiles(N, seed)`` equals :func:`noisy_profiles` with the same
    arguments; a family of models (:func:`shearcorr.inverse.training.train_family`) computes the
    coefficients (~0.05-0.1 s per sample) once for all its noise levels. Memory: one float64 map per
    sample (the noise scale of each point), e.g. 85 MB for 1050 samples of 100 x 101 points.

    Parameters
    ----------
    ds : xarray.Dataset
        An analytic-engine dataset with the full map ``g`` (sample, q, theta) and the parameters.
    index : array-like of int
        Samples.
    estimator : {"symmetric", "before", "pooled"}
        The estimator of the data the model will meet (:mod:`shearcorr.inverse.noise`).
    log : callable(str), optional
        Progress messages.
    """

    def __init__(self, ds, index, *, estimator: str = "symmetric", log=None):
        from ..result import grid_from_dataset
        from .noise import bias_coefficient, ensemble_limits, ensemble_noise, relative_covariance, variance_coefficient

        check_choice("estimator", estimator)
        if "g" not in ds:
            raise ShearcorrError("noise-aware training needs the full map g of each sample; this dataset has only profiles")
        if str(ds.attrs.get("engine", "analytic")) != "analytic":
            raise ShearcorrError("noise-aware training draws the noise itself: train it on an analytic-engine dataset")
        grid = grid_from_dataset(ds)
        R = profile_operator(grid.shape)
        disp = str(ds.attrs.get("displacement", "uniform"))
        ref = ensemble_noise(replace(REFERENCE, displacement=disp), grid, 1e6, estimator=estimator)  # any N: ratios
        share = np.clip((ref.factor**2).sum(axis=1) / ref.var.ravel(), 0.0, 0.95)
        self.index, self._R = np.asarray(index, dtype=np.int64), R
        self._RU = R @ ref.factor
        v_ref = float(ref.var.mean())
        n = self.index.size
        self._p0 = np.empty((n, R.shape[0]))  # R g
        self._pb = np.empty((n, R.shape[0]))  # R (g beta): the bias at N = 1
        self._sd = np.empty((n, grid.q.size * grid.theta.size))  # independent noise std at N = 1
        self._c = np.empty(n)  # scale of the shared part at N = 1
        for k, i in enumerate(self.index):
            row = ds.isel(sample=int(i))
            p = SystemParams(*(float(row[name]) for name in PARAM_NAMES), displacement=disp)
            g = np.asarray(row["g"].transpose("q", "theta").values, dtype=np.float64)
            cov = relative_covariance(g, *ensemble_limits(p, grid.q))
            var = (g**2 * variance_coefficient(cov, estimator)).ravel()
            self._p0[k] = R @ g.ravel()
            self._pb[k] = R @ (g * bias_coefficient(cov, estimator)).ravel()
            self._sd[k] = np.sqrt(var * (1.0 - share))
            self._c[k] = np.sqrt(var.mean() / v_ref)
            if log is not None and (k + 1) % 500 == 0:
                log(f"  noise coefficients of the training inputs: {k + 1}/{n}")

    def profiles(self, configs: float, seed=0) -> np.ndarray:
        r"""Profile rows (len(index), n_theta + n_q) drawn as N-configuration estimates (module docstring).

        ``configs`` = inf gives the exact profiles R g. The draws of sample i come from
        ``child_seed(seed, i)`` (the same standard normals at every N, scaled by :math:`1/\sqrt N`).
        """
        n = float(configs)
        if n == float("inf"):
            return self._p0.copy()
        if not (np.isfinite(n) and n >= 2):
            raise ShearcorrError(f"configs of the training noise must be a number >= 2, got {configs!r}")
        out = self._p0 + self._pb / n
        for k, i in enumerate(self.index):
            rng = as_generator(child_seed(seed, int(i)))
            eps = rng.standard_normal(self._sd.shape[1]) * self._sd[k]
            eta = rng.standard_normal(self._RU.shape[1])
            out[k] += (self._R @ eps + self._c[k] * (self._RU @ eta)) / np.sqrt(n)
        return out


def noisy_profiles(ds, index, configs: float, *, estimator: str = "symmetric", seed=0, log=None) -> np.ndarray:
    """Profile rows (len(index), n_theta + n_q) of the samples ``index`` of an analytic dataset as an
    estimate over ``configs`` = N >= 2 configurations gives them (module docstring):
    ``NoiseDraws(ds, index, estimator=estimator, log=log).profiles(configs, seed)``."""
    n = float(configs)
    if not (np.isfinite(n) and n >= 2):
        raise ShearcorrError(f"configs of the training noise must be a number >= 2, got {configs!r}")
    return NoiseDraws(ds, index, estimator=estimator, log=log).profiles(n, seed)
