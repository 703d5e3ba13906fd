r"""The polish over datasets: :func:`polish_g` per sample, the data's N, and predictions that record their path.

:func:`polish_dataset` takes a dataset (or one result) and the amortized model's means, finds each input's N
(:func:`data_configs`) and polishes it (:func:`shearcorr.inverse.polish.polish_g`), keeping the model's answer
with the reason for inputs that cannot be polished; :func:`polished_predictions` puts the polished numbers in
place of the model's and returns :class:`Predictions`, which say per sample which path gave them.
"""

from __future__ import annotations

import time

import numpy as np

from .polish import _kept, polish_g

__all__ = ["Predictions", "polish_dataset", "polished_predictions", "data_configs"]


def data_configs(ds, *, sample=None) -> float:
    """N of an input for the polish: its ``configs`` attribute (> 0), else inferred from its g_err
    (:func:`shearcorr.inverse.family.infer_configs`), else inf (noise-free: nothing to polish against)."""
    from .family import infer_configs

    n = ds.attrs.get("configs")
    if n is not None and float(n) > 0:
        return float(n)
    if str(ds.attrs.get("engine", "")) == "analytic":
        return float("inf")
    n = infer_configs(ds, sample=sample)
    return float(n) if np.isfinite(n) and n >= 2 else float("inf")


def polish_dataset(ds, start: dict, *, sample=None, displacement: str = "uniform", **options) -> list:
    """:func:`polish_g` of every sample (or of one result) of ``ds`` from the amortized means ``start``.

    Parameters
    ----------
    ds : xarray.Dataset
        A result (dims q, theta) or a dataset (sample, q, theta) holding ``g`` and, for noisy data,
        ``g_err`` and ``configs`` (N inferred from g_err without it, :func:`data_configs`).
    start : dict of str to Prediction
        ``{target: (mean, std)}`` arrays of shape (n,) for the n samples (``sample``, or all); targets
        rs, d2, gamma_l that are missing start at the centre of the paper's priors.
    sample : array-like of int, optional
    displacement : str
        Convention when the data carry no ``displacement`` attribute.
    **options : passed to :func:`polish_g` (``steps``, ``noise_samples``, ...).

    Returns
    -------
    list of Polished, one per sample (path "gp" for inputs that cannot be polished, with the reason)
    """
    from ..result import grid_from_dataset

    grid = grid_from_dataset(ds)
    many = "sample" in ds["g"].dims if "g" in ds else None
    index = None if not many else (np.arange(ds.sizes["sample"]) if sample is None else np.atleast_1d(sample))
    n = 1 if not many else len(index)
    centre = {"rs": 0.15, "d2": 1.75, "gamma_l": 17.5}
    out = []
    for k in range(n):
        t0 = time.perf_counter()
        st = {t: float(start[t].mean[k]) if t in start else centre[t] for t in centre}
        sd = {t: float(start[t].std[k]) if t in start else float("nan") for t in centre}
        if "g" not in ds:
            out.append(_kept(st, sd, "the input has no full map g(q, theta): the amortized model's answer", t0))
            continue
        one = ds.isel(sample=int(index[k])) if many else ds
        n_cfg = data_configs(ds, sample=None if not many else [int(index[k])])
        if not np.isfinite(n_cfg):
            out.append(_kept(st, sd, "noise-free input: the amortized model's answer (`shearcorr fit` for a "
                                     "noise-free g)", t0))
            continue
        g = np.asarray(one["g"].transpose("q", "theta").values, dtype=np.float64)
        err = None
        if "g_err" in one:
            err = np.asarray(one["g_err"].transpose("q", "theta").values, dtype=np.float64)
            if not np.any(np.isfinite(err) & (err > 0)):
                err = None
        if not np.all(np.isfinite(g)):
            out.append(_kept(st, sd, "the map holds NaN or inf: the amortized model's answer", t0))
            continue
        out.append(polish_g(g, grid, st, configs=n_cfg, start_std=sd, g_err=err,
                            estimator=str(ds.attrs.get("estimator", "symmetric")),
                            displacement=str(ds.attrs.get("displacement", displacement)), **options))
    return out


class Predictions(dict):
    """``{target: Prediction(mean, std)}`` (arrays over the samples) with how each sample was predicted.

    Attributes
    ----------
    polished : list of Polished or None
        Per sample the :class:`Polished` record (its ``path``: "polished" or "gp"); None when the polish
        was switched off.
    """

    def __init__(self, predictions: dict, polished: list | None = None):
        super().__init__(predictions)
        self.polished = polished

    @property
    def paths(self) -> list:
        """Per sample "polished" or "gp" (all "gp" without a polish)."""
        n = len(next(iter(self.values())).mean) if self else 0
        return ["gp"] * n if self.polished is None else [r.path for r in self.polished]


def polished_predictions(gp: dict, results: list) -> Predictions:
    """The amortized ``gp`` predictions with every polished sample of ``results`` (:func:`polish_dataset`)
    replaced by its polished mean and std (R_s: half the 68 % interval, as the fit's)."""
    from .model import Prediction

    out = {}
    for t, (m, s) in gp.items():
        m, s = np.array(m, dtype=np.float64), np.array(s, dtype=np.float64)
        for k, r in enumerate(results):
            if r.path == "polished" and t in r.values:
                m[k], s[k] = r.values[t], r.std[t]
        out[t] = Prediction(m, s)
    return Predictions(out, results)
