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

__all__ = ["noisy_profiles", "REFERENCE"]

#: Parameter set whose shared-noise factor is used for every sample (centre of the paper's priors).
REFERENCE = SystemParams(150.0, 0.15, 1.75, 17.5)


def noisy_profiles(ds, index, configs: float, *, estimator: str = "symmetric", seed=0, log=None) -> np.ndarray:
    """Profile rows of the samples ``index`` of a dataset as an N-configuration estimate would give them.

    Parameters
    ----------
    ds : xarray.Dataset
        An analytic-engine dataset with the full map ``g`` (sample, q, theta) and the parameters.
    index : array-like of int
        Samples.
    configs : float
        N, configurations averaged (>= 2).
    estimator : {"symmetric", "before", "pooled"}
        The estimator of the data the model will meet (:mod:`shearcorr.inverse.noise`).
    seed : int
        Seed of the draws (module docstring).
    log : callable(str), optional
        Progress messages.

    Returns
    -------
    ndarray (len(index), n_theta + n_q)
    """
    from ..result import grid_from_dataset
    from .noise import bias_coefficient, ensemble_limits, ensemble_noise, relative_covariance, variance_coefficient

    check_choice("estimator", estimator)
    n = float(configs)
    if not (np.isfinite(n) and n >= 2):
        raise ShearcorrError(f"configs of the training noise must be a number >= 2, got {configs!r}")
    if "g" not in ds:
        raise ShearcorrError("noise-aware training needs the full map g of each sample; this dataset has only profiles")
    if str(ds.attrs.get("engine", "analytic")) != "analytic":
        raise ShearcorrError("noise-aware training draws the noise itself: train it on an analytic-engine dataset")
    grid = grid_from_dataset(ds)
    R = profile_operator(grid.shape)
    disp = str(ds.attrs.get("displacement", "uniform"))
    ref = ensemble_noise(replace(REFERENCE, displacement=disp), grid, 1e6, estimator=estimator)  # any N: ratios below
    share = np.clip((ref.factor**2).sum(axis=1) / ref.var.ravel(), 0.0, 0.95)
    RU = R @ ref.factor
    v_ref = float(ref.var.mean())
    index = np.asarray(index, dtype=np.int64)
    out = np.empty((index.size, R.shape[0]))
    for k, i in enumerate(index):
        row = ds.isel(sample=int(i))
        p = SystemParams(*(float(row[name]) for name in PARAM_NAMES), displacement=disp)
        g = np.asarray(row["g"].transpose("q", "theta").values, dtype=np.float64)
        cov = relative_covariance(g, *ensemble_limits(p, grid.q))
        mean = g * (1.0 + bias_coefficient(cov, estimator) / n)
        var = g**2 * variance_coefficient(cov, estimator) / n
        rng = as_generator(child_seed(seed, int(i)))
        eps = rng.standard_normal(g.size) * np.sqrt(var.ravel() * (1.0 - share))
        eta = rng.standard_normal(RU.shape[1])
        out[k] = R @ (mean.ravel() + eps) + np.sqrt(var.mean() / v_ref) * (RU @ eta)
        if log is not None and (k + 1) % 500 == 0:
            log(f"  noisy training inputs: {k + 1}/{index.size}")
    return out
