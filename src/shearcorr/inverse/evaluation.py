r"""How good an inversion is: the paper's Err, interval coverage, z-scores, the split, :func:`evaluate`.

Error metric (paper Sec. III C), over the evaluated samples,

.. math:: \mathrm{Err} = \Big\langle \frac{|\mu_{true} - \mu_{pred}|}{\max(\mu_{true}, \mu_{pred})} \Big\rangle .

All four parameters are non-negative, so predictions are first projected on the physical range
(negative -> 0; the GPR's Gaussian posterior knows no bounds). Then every term lies in [0, 1], and the
only undefined case, :math:`\mu_{true} = \mu_{pred} = 0` (possible for R_s), is a perfect prediction
and counts as 0. Note the metric is harsh near 0: R_s = 0.01 predicted as 0.02 counts 50 %.

Calibration: the fraction of samples whose truth lies inside the central 68 % and 95 % posterior
intervals, :math:`u^{-1}(m \pm z s)` with z = 0.994 / 1.960 and u the regressor's target transform
(identity for the paper model: mean +- z std), the std including the white-noise term; and the spread
of the z-scores :math:`(u(\mu_{true}) - m)/s` in the same latent space (1 when calibrated).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from scipy.stats import norm

from ..errors import ShearcorrError
from ..files import JSONRecord
from ..result import grid_from_dataset
from .features import finished_samples, profiles
from .model import InversionModel, input_errors

__all__ = ["relative_error", "coverage", "interval_coverage", "z_scores", "split_indices", "evaluation_samples",
           "evaluate", "evaluate_levels", "Evaluation", "Predicted", "LEVELS", "crb_stds", "rms_over_crb"]

#: Central posterior intervals whose coverage is reported.
LEVELS = (0.68, 0.95)


def relative_error(true, pred) -> float:
    r"""Paper's Err = mean |t - p| / max(t, p), with p clipped to >= 0 and 0/0 counted as 0 (module doc)."""
    t = np.asarray(true, dtype=np.float64)
    p = np.clip(np.asarray(pred, dtype=np.float64), 0.0, None)
    if t.shape != p.shape or t.size == 0:
        raise ShearcorrError(f"true and predicted values must have the same non-empty shape, got {t.shape}, {p.shape}")
    if np.any(t < 0):
        raise ShearcorrError("Err is defined for non-negative parameters; a true value is negative")
    den = np.maximum(t, p)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(den > 0, np.abs(t - p) / den, 0.0)
    return float(np.mean(r))


def coverage(true, mean, std, level: float) -> float:
    """Fraction of truths inside the central ``level`` Gaussian interval mean +- z(level) std."""
    z = norm.ppf(0.5 + level / 2.0)
    t, m, s = (np.asarray(a, dtype=np.float64) for a in (true, mean, std))
    return float(np.mean(np.abs(t - m) <= z * s))


def interval_coverage(true, lo, hi) -> float:
    """Fraction of truths inside [lo, hi]."""
    t, a, b = (np.asarray(x, dtype=np.float64) for x in (true, lo, hi))
    return float(np.mean((t >= a) & (t <= b)))


def z_scores(true, mean, std) -> np.ndarray:
    """(true - mean) / std elementwise (inf where std is 0 and the truth is off the mean)."""
    t, m, s = (np.asarray(a, dtype=np.float64) for a in (true, mean, std))
    with np.errstate(divide="ignore", invalid="ignore"):
        return (t - m) / s


def crb_stds(ds, index, configs: float, *, estimator: str = "symmetric") -> dict:
    """Cramér–Rao bound on the std of R_s, D2 and gamma L at the truth of each sample ``index`` of ``ds``,
    for a g averaged over ``configs`` configurations, n_l2 estimated with its prior
    (:func:`shearcorr.inverse.crb.cramer_rao`; ~1-3 s per sample). Returns ``{target: ndarray (n,)}``
    (R_s by the delta method from R_s^2: inf at R_s = 0)."""
    from ..params import PARAM_NAMES, SystemParams
    from .crb import cramer_rao

    grid = grid_from_dataset(ds)
    disp = str(ds.attrs.get("displacement", "uniform"))
    cols = {t: np.asarray(ds[t].values, dtype=np.float64) for t in PARAM_NAMES}
    out = {t: np.empty(len(index)) for t in ("rs", "d2", "gamma_l")}
    for k, i in enumerate(np.asarray(index, dtype=np.int64)):
        std = cramer_rao(SystemParams(*(cols[t][i] for t in PARAM_NAMES), displacement=disp), grid, configs,
                         estimator=estimator).std
        for t in out:
            out[t][k] = std[t]
    return out


def rms_over_crb(true, estimate, crb_std) -> float:
    r"""Root-mean-square error over the root-mean-square Cramér–Rao std, :math:`\sqrt{\langle(\hat y - y)^2\rangle
    / \langle\sigma_{CRB}^2\rangle}` over samples (1: at the information limit; efficiency = its inverse).
    Samples whose bound is infinite (R_s = 0) are left out."""
    t, e, c = (np.asarray(a, dtype=np.float64) for a in (true, estimate, crb_std))
    ok = np.isfinite(c)
    return float(np.sqrt(np.mean((e[ok] - t[ok]) ** 2) / np.mean(c[ok] ** 2))) if ok.any() else float("nan")


def split_indices(n: int, test_fraction: float = 0.3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random split of ``range(n)`` into sorted (train, test) index arrays."""
    if not 0.0 < float(test_fraction) < 1.0:
        raise ShearcorrError(f"test fraction must be between 0 and 1, got {test_fraction}")
    n_test = int(round(n * float(test_fraction)))
    if n_test < 1 or n - n_test < 2:
        raise ShearcorrError(f"{n} samples are too few to split with test fraction {test_fraction}")
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def evaluation_samples(model: InversionModel, ds) -> tuple[np.ndarray, str]:
    """Which samples :func:`evaluate` uses: the held-out split on the training dataset, else all finished ones.

    "The training dataset" is recognised by its fingerprint
    (:func:`~shearcorr.inverse.model.dataset_fingerprint`), not its path.
    """
    if model.is_training_dataset(ds):
        return np.asarray(model.test_index), "held-out test split of the training dataset"
    return finished_samples(ds), "all finished samples (not the training dataset)"


class Predicted(NamedTuple):
    """Truth and prediction of one target on the evaluated samples, arrays of shape (n,)."""

    true: np.ndarray
    mean: np.ndarray
    std: np.ndarray


@dataclass(frozen=True)
class Evaluation(JSONRecord):
    """Result of :func:`evaluate`. Per-target dicts ``{target: float}`` in the model's target order.

    Attributes
    ----------
    err : dict
        The paper's Err (module docstring).
    coverage68, coverage95 : dict
        Fraction of truths inside the central 68 % / 95 % posterior intervals.
    z_std : dict
        Standard deviation of the latent z-scores (1 for calibrated uncertainties).
    n_samples : int
    selection : str
        Which samples were evaluated (:func:`evaluation_samples`).
    seconds_per_sample : float
        Prediction time per sample.
    input_noise : bool
        Whether the input noise g_err was propagated.
    predictions : dict of str to Predicted
        The arrays behind the numbers (not part of :meth:`to_dict` unless asked).
    trained_configs : float
        N the predicting model (or family member) was trained for (inf: noise-free).
    rms_over_crb : dict or None
        With ``evaluate(..., crb=True)`` on noisy inputs: :func:`rms_over_crb` per target (predictions
        clipped at 0) against the bound at each sample's truth for the inputs' N.
    z_scores : dict of str to ndarray
        The latent z-score of every sample (not part of :meth:`to_dict`): the GP's latent u, or for a
        polished sample its latent R_s^2, D2, gamma L.
    paths : dict
        How many samples each path predicted: ``{"polished": n, "gp": m}`` (:mod:`shearcorr.inverse.polish`).
    """

    err: dict
    coverage68: dict
    coverage95: dict
    z_std: dict
    n_samples: int
    selection: str
    seconds_per_sample: float
    input_noise: bool
    predictions: dict
    trained_configs: float = float("inf")
    rms_over_crb: dict | None = None
    z_scores: dict | None = None
    paths: dict | None = None

    def to_dict(self, *, predictions: bool = False) -> dict:
        """JSON-able summary; with ``predictions`` also ``{target: {true, mean, std}}`` lists."""
        out = {"err": dict(self.err), "coverage68": dict(self.coverage68), "coverage95": dict(self.coverage95),
               "z_std": dict(self.z_std), "n_samples": self.n_samples, "selection": self.selection,
               "seconds_per_sample": self.seconds_per_sample, "input_noise": self.input_noise,
               "trained_configs": self.trained_configs, "rms_over_crb": self.rms_over_crb, "paths": self.paths}
        if predictions:
            out["predictions"] = {t: p._asdict() for t, p in self.predictions.items()}
        return out


#: Seed offset of the noisy held-out inputs of a noise-aware model (its training draws use the split seed).
HELD_OUT_STREAM = 1_000_003


def evaluate(model, ds, *, index=None, input_noise: bool = True, configs=None, crb: bool = False,
             draws=None, polish: bool = True, polish_options: dict | None = None) -> Evaluation:
    """Err, 68/95 % coverage and z-score spread per target on a dataset.

    ``model``: an :class:`InversionModel` or a :class:`~shearcorr.inverse.family.ModelFamily`, whose
    member for the data's N predicts (:meth:`~shearcorr.inverse.family.ModelFamily.member_for`), or
    the member nearest to ``configs`` when given (on the training dataset: the held-out inputs are
    then drawn at that member's N). Samples: ``index`` if given, else :func:`evaluation_samples`.
    With ``input_noise`` (default) and a dataset carrying finite ``g_err`` (engine "mc"), a
    noise-free model adds the linearised input-noise variance (:mod:`shearcorr.inverse.model`);
    ``Evaluation.input_noise`` says whether it was. With ``crb`` and noisy inputs (Monte Carlo data
    with ``configs``, or the held-out draws of a noise-aware model) also the RMS error over the
    Cramér–Rao bound per target (:func:`crb_stds`; seconds per sample). ``draws``: the
    :class:`~shearcorr.inverse.augment.NoiseDraws` of the evaluated samples, when they are drawn
    (:func:`evaluate_levels` computes it once for all members). With ``polish`` (default) every noisy
    input with a full map is refined by the likelihood from the model's answer
    (:mod:`shearcorr.inverse.polish`; ``polish_options`` passed on); drawn held-out profiles and
    noise-free inputs keep the model's answer (``Evaluation.paths`` counts both).
    """
    model = model.member(configs) if configs is not None else model.member_for(ds)
    drawn = model.noise_configs is not None and model.is_training_dataset(ds)
    data_configs = model.noise_configs if drawn else ds.attrs.get("configs")
    data_configs = float(data_configs) if data_configs is not None and float(data_configs) >= 2 else None
    if index is None:
        index, how = evaluation_samples(model, ds)
    else:
        index, how = np.asarray(index), "given samples"
    if len(index) == 0:
        raise ShearcorrError("no finished samples to evaluate in this dataset")
    n = int(ds.sizes["sample"])
    index = np.asarray(index)
    if index.dtype.kind not in "iu" or index.min() < 0 or index.max() >= n:
        raise ShearcorrError(f"sample indices to evaluate must be whole numbers in [0, {n - 1}] for this dataset of {n} "
                             f"samples, got {index.min()}..{index.max()}; is the model from another dataset? "
                             "(a damaged model file: retrain it)")
    missing = [t for t in model.targets if t not in ds]
    if missing:
        raise ShearcorrError(f"dataset has no true values of {', '.join(missing)}; cannot evaluate")
    model.check_grid(grid_from_dataset(ds))
    t0 = time.perf_counter()
    if drawn:
        # a noise-aware model on its own (analytic) dataset: held-out inputs drawn as it was trained,
        # with another stream than the training draws
        prov = model.provenance
        if draws is None:
            from .augment import NoiseDraws

            draws = NoiseDraws(ds, index, estimator=prov.get("estimator", "symmetric"))
        elif not np.array_equal(draws.index, index):
            raise ShearcorrError("the noise draws given to evaluate are of other samples than the evaluated ones")
        P = draws.profiles(model.noise_configs, int(prov.get("split_seed", 0)) + HELD_OUT_STREAM)
    else:
        P = profiles(ds, sample=index)
    err = input_errors(ds, sample=index) if input_noise and model.noise_configs is None else None
    latent = model.predict_latent(P, err)
    pred = model.predict_profiles(P, err)
    polished = None
    if polish and not drawn:
        from .polishdata import polish_dataset, polished_predictions

        disp = str(model.provenance.get("dataset_attrs", {}).get("displacement", "uniform"))
        polished = polish_dataset(ds, pred, sample=index, displacement=disp, **(polish_options or {}))
        pred = polished_predictions(pred, polished)
    dt = (time.perf_counter() - t0) / len(index)
    truth = {t: np.asarray(ds[t].values, dtype=np.float64)[index] for t in model.targets}
    iv = {lv: model.intervals(latent, lv) for lv in LEVELS}
    zs = {}
    for t, (m, s) in latent.items():
        with np.errstate(divide="ignore", invalid="ignore"):  # log of a zero truth: no latent z
            u = np.log(truth[t]) if model.regressors[t].transform == "log" else truth[t]
        zs[t] = z_scores(u, m, s)
    if polished is not None:
        _use_polished(polished, truth, iv, zs)
    z_std = {}
    for t, z in zs.items():
        z = z[np.isfinite(z)]
        z_std[t] = float(np.std(z)) if z.size > 1 else float("nan")
    paths = ["gp"] * len(index) if polished is None else [r.path for r in polished]
    return Evaluation(
        err={t: relative_error(truth[t], pred[t].mean) for t in model.targets},
        coverage68={t: interval_coverage(truth[t], *iv[0.68][t]) for t in model.targets},
        coverage95={t: interval_coverage(truth[t], *iv[0.95][t]) for t in model.targets},
        z_std=z_std, n_samples=int(len(index)), selection=how, seconds_per_sample=dt, input_noise=err is not None,
        predictions={t: Predicted(truth[t], *pred[t]) for t in model.targets}, trained_configs=model.trained_configs(),
        rms_over_crb=None if not crb or data_configs is None else _crb_ratios(ds, index, data_configs, truth, pred, model),
        z_scores=zs, paths={p: paths.count(p) for p in sorted(set(paths))},
    )


def _use_polished(polished, truth, iv, zs) -> None:
    """Intervals and z-scores of the polished samples from their own latent estimate and covariance
    (latent R_s^2, D2, gamma L as the fit's), in place of the GP's."""
    lat = {"rs": 0, "d2": 1, "gamma_l": 2}
    for k, r in enumerate(polished):
        if r.path != "polished":
            continue
        for t in zs:
            if t not in lat:
                continue
            j = lat[t]
            u = truth[t][k] ** 2 if t == "rs" else truth[t][k]
            zs[t][k] = (u - r.latent["value"][j]) / np.sqrt(r.latent["cov"][j, j])
            for lv in LEVELS:
                lo, hi = iv[lv][t]
                lo[k], hi[k] = r.intervals[t][f"{int(round(100 * lv))}"]


def evaluate_levels(model, ds, *, crb: bool = False, polish: bool = True) -> list[Evaluation]:
    """:func:`evaluate` of every member of a family (or of one model) on its training dataset, each on
    held-out inputs drawn at its N (their noise coefficients computed once), or of the member for the
    data's N on any other dataset (a list of one)."""
    if not model.is_training_dataset(ds):
        return [evaluate(model, ds, crb=crb, polish=polish)]
    draws = None
    if any(m.noise_configs is not None for m in (model.member(v) for v in model.levels)):
        from .augment import NoiseDraws

        draws = NoiseDraws(ds, model.test_index, estimator=model.provenance.get("estimator", "symmetric"))
    return [evaluate(model, ds, configs=v, crb=crb, draws=draws, polish=polish) for v in model.levels]


def _crb_ratios(ds, index, configs, truth, pred, model) -> dict:
    """:func:`rms_over_crb` of each shown target of ``model`` (estimator from its provenance)."""
    stds = crb_stds(ds, index, configs, estimator=model.provenance.get("estimator", "symmetric"))
    return {t: rms_over_crb(truth[t], np.clip(pred[t].mean, 0, None), stds[t]) for t in stds if t in pred}
