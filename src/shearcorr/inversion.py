r"""Inversion g -> (rs, d2, gamma_l): training per-target GPRs on a dataset, evaluation, calibration.

Pipeline (paper Sec. III C): profiles [g(theta) | g(q)] of every finished sample
(:func:`shearcorr.features.profiles`) -> a seeded 70/30 split -> feature transform fitted on the
training rows -> one :class:`~shearcorr.gpr.PaperGPR` per target, hyperparameters by maximising the
LML -> predictions with std on the held-out rows.

Error metric (paper Sec. III C), over the evaluated samples,

.. math:: \mathrm{Err} = \Big\langle \frac{|\mu_{true} - \mu_{pred}|}{\max(\mu_{true}, \mu_{pred})} \Big\rangle .

All four parameters are non-negative, so predictions are first projected on the physical range
(negative -> 0; the GPR's Gaussian posterior knows no bounds). Then every term lies in [0, 1], and the
only undefined case, :math:`\mu_{true} = \mu_{pred} = 0` (possible for R_s), is a perfect prediction
and counts as 0. Note the metric is harsh near 0: R_s = 0.01 predicted as 0.02 counts 50 %.

Calibration: the fraction of samples whose truth lies inside mean +- z std, z = 0.994 (68 %) and 1.960
(95 %), with the std of :meth:`PaperGPR.predict` (including the white-noise term).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import norm

from ._version import __version__
from .errors import ShearcorrError
from .features import FEATURES, ProfileFeatures, profiles
from .gpr import SIGMA_BOUNDS, PaperGPR, default_bounds, optimise_hyperparameters
from .params import PARAM_NAMES, QGrid
from .result import grid_from_dataset

__all__ = ["TARGETS", "relative_error", "coverage", "split_indices", "dataset_fingerprint", "finished_samples",
           "InversionModel", "train", "evaluate", "predict_dataset"]

#: Default regression targets (n_l2 can be added to show it is not recoverable).
TARGETS = ("rs", "d2", "gamma_l")


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


def split_indices(n: int, test_fraction: float = 0.3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random split of ``range(n)`` into sorted (train, test) index arrays."""
    if not 0.0 < float(test_fraction) < 1.0:
        raise ShearcorrError(f"test fraction must be between 0 and 1, got {test_fraction}")
    n_test = int(round(n * float(test_fraction)))
    if n_test < 1 or n - n_test < 2:
        raise ShearcorrError(f"{n} samples are too few to split with test fraction {test_fraction}")
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def finished_samples(ds) -> np.ndarray:
    """Indices of the samples of a dataset that are finished (``done``) with finite g(theta), g(q)."""
    n = ds.sizes["sample"]
    ok = np.ones(n, dtype=bool) if "done" not in ds else np.asarray(ds["done"].values, dtype=bool)
    for name in ("g_theta", "g_q"):
        if name in ds:
            v = ds[name].values.reshape(n, -1)
            ok &= np.all(np.isfinite(v), axis=1)
    return np.flatnonzero(ok)


def dataset_fingerprint(ds) -> str:
    """SHA-256 of the four parameter columns of a dataset: identifies "the same dataset" across runs."""
    h = hashlib.sha256()
    for name in PARAM_NAMES:
        if name not in ds:
            raise ShearcorrError(f"dataset has no parameter {name!r}; is it a shearcorr dataset?")
        h.update(np.ascontiguousarray(ds[name].values, dtype=np.float64).tobytes())
    return h.hexdigest()


def _targets_of(ds, targets, index) -> dict:
    return {t: np.asarray(ds[t].values, dtype=np.float64)[index] for t in targets}


@dataclass
class InversionModel:
    """Trained inversion: grid, feature transform, one :class:`PaperGPR` per target, provenance.

    Attributes
    ----------
    grid : QGrid
        Grid of the training data; inputs on another grid are refused.
    features : ProfileFeatures
        Fitted feature transform.
    regressors : dict of str to PaperGPR
    train_index, test_index : ndarray of int
        Sample indices (into the training dataset) used for training / held out.
    provenance : dict
        JSON-able facts: dataset fingerprint and attrs, split seed, optimiser, package version, timings.
    """

    grid: QGrid
    features: ProfileFeatures
    regressors: dict
    train_index: np.ndarray
    test_index: np.ndarray
    provenance: dict = field(default_factory=dict)

    @property
    def targets(self) -> tuple[str, ...]:
        return tuple(self.regressors)

    def check_grid(self, grid: QGrid) -> None:
        """Refuse data on a grid other than the training grid (one-line ShearcorrError)."""
        if grid != self.grid:
            raise ShearcorrError(
                f"data grid ({grid.q.size} q in [{grid.q[0]:g}, {grid.q[-1]:g}], {grid.theta.size} theta) differs "
                f"from the model's ({self.grid.q.size} q in [{self.grid.q[0]:g}, {self.grid.q[-1]:g}], "
                f"{self.grid.theta.size} theta); interpolate the data onto the model grid or train on this grid")

    def predict_profiles(self, P) -> dict:
        """``{target: (mean, std)}`` for profile rows [g(theta) | g(q)] (no grid check: caller's job)."""
        X = self.features.transform(P)
        return {t: gp.predict(X, return_std=True) for t, gp in self.regressors.items()}

    def predict(self, ds, *, sample=None) -> dict:
        """``{target: (mean, std)}`` for a result or dataset (checked against the model grid)."""
        self.check_grid(grid_from_dataset(ds))
        return self.predict_profiles(profiles(ds, sample=sample))


def train(ds, *, feature: str = "g_theta", targets=TARGETS, test_fraction: float = 0.3, seed: int = 0,
          optimizer: str = "grid", n_grid: int = 30, restarts: int = 10, k: int = 3, l_bounds=None,
          sigma_bounds=SIGMA_BOUNDS, log=None) -> tuple[InversionModel, dict]:
    """Train one GPR per target on the training split of a dataset.

    Parameters
    ----------
    ds : xarray.Dataset
        Dataset with dims (sample, q, theta) (:func:`shearcorr.dataset.open_dataset`).
    feature : {"g_theta", "g_q", "both", "svd"}
    targets : sequence of str
        Any of n_l2, rs, d2, gamma_l.
    test_fraction, seed : float, int
        Seeded split (:func:`split_indices`) of the finished samples.
    optimizer : {"grid", "sklearn"}
        "grid": n_grid x n_grid eigen-trick LML landscape + refinement (:func:`optimise_hyperparameters`),
        shared across targets; "sklearn": the same landscape, then scikit-learn's L-BFGS-B with
        ``restarts`` random restarts inside the bounds, started at the grid optimum.
    log : callable(str), optional
        Progress messages.

    Returns
    -------
    (InversionModel, dict)
        The dict holds the LML landscape (``l_values``, ``sigma_values``, ``lml`` (n_l, n_sigma, T)),
        the optimum per target and timings, for Figs. 6b-d and Table I.
    """
    log = log or (lambda msg: None)
    targets = tuple(targets)
    bad = [t for t in targets if t not in PARAM_NAMES]
    if bad or not targets:
        raise ShearcorrError(f"targets must be among {', '.join(PARAM_NAMES)}, got {', '.join(map(str, targets)) or 'none'}")
    if feature not in FEATURES:
        raise ShearcorrError(f"feature must be one of {', '.join(FEATURES)}, got {feature!r}")
    if optimizer not in ("grid", "sklearn"):
        raise ShearcorrError(f"optimizer must be 'grid' or 'sklearn', got {optimizer!r}")
    grid = grid_from_dataset(ds)
    done = finished_samples(ds)
    tr, te = split_indices(done.size, test_fraction, seed)
    train_index, test_index = done[tr], done[te]
    t0 = time.perf_counter()
    P = profiles(ds, sample=train_index)
    feats = ProfileFeatures(feature=feature, n_theta=grid.theta.size, k=k).fit(P)
    X = feats.transform(P)
    Y = np.column_stack([np.asarray(ds[t].values, dtype=np.float64)[train_index] for t in targets])
    lb = default_bounds(X) if l_bounds is None else tuple(map(float, l_bounds))
    log(f"{feature}: {X.shape[0]} training samples x {X.shape[1]} features; LML grid {n_grid} x {n_grid}, "
        f"l in [{lb[0]:.3g}, {lb[1]:.3g}]")
    opt = optimise_hyperparameters(X, Y, l_bounds=lb, sigma_bounds=sigma_bounds, n_l=n_grid, n_sigma=n_grid)
    t_grid = time.perf_counter() - t0
    regs = {}
    for i, t in enumerate(targets):
        if optimizer == "sklearn":
            gp = PaperGPR(l=opt["l"][i], sigma=opt["sigma"][i], optimizer="sklearn", l_bounds=lb,
                          sigma_bounds=sigma_bounds, n_restarts=restarts, random_state=seed).fit(X, Y[:, i])
        else:
            gp = PaperGPR(l=opt["l"][i], sigma=opt["sigma"][i], optimizer=None, l_bounds=lb,
                          sigma_bounds=sigma_bounds).fit(X, Y[:, i])
        regs[t] = gp
        log(f"{feature}/{t}: l = {gp.l_:.4g}, sigma = {gp.sigma_:.3g}, LML = {gp.log_marginal_likelihood_value_:.1f}")
    t_fit = time.perf_counter() - t0
    prov = {
        "dataset_fingerprint": dataset_fingerprint(ds),
        "dataset_attrs": {k: (v if isinstance(v, (str, int, float, bool)) else str(v)) for k, v in ds.attrs.items()},
        "n_samples": int(ds.sizes["sample"]),
        "test_fraction": float(test_fraction),
        "split_seed": int(seed),
        "optimizer": optimizer,
        "n_grid": int(n_grid),
        "restarts": int(restarts),
        "l_bounds": [float(lb[0]), float(lb[1])],
        "sigma_bounds": [float(sigma_bounds[0]), float(sigma_bounds[1])],
        "train_seconds": float(t_fit),
        "shearcorr_version": __version__,
    }
    model = InversionModel(grid=grid, features=feats, regressors=regs, train_index=train_index,
                           test_index=test_index, provenance=prov)
    info = dict(opt, targets=targets, grid_seconds=t_grid, train_seconds=t_fit, l_bounds=lb)
    return model, info


def evaluation_samples(model: InversionModel, ds) -> tuple[np.ndarray, str]:
    """Which samples :func:`evaluate` uses: the held-out split on the training dataset, else all finished ones.

    "The training dataset" is recognised by its fingerprint (:func:`dataset_fingerprint`), not its path.
    """
    if dataset_fingerprint(ds) == model.provenance.get("dataset_fingerprint"):
        return np.asarray(model.test_index), "held-out test split of the training dataset"
    return finished_samples(ds), "all finished samples (not the training dataset)"


def predict_dataset(model: InversionModel, ds, index) -> dict:
    """Predictions ``{target: (mean, std)}`` for the given samples of a dataset (grid checked)."""
    model.check_grid(grid_from_dataset(ds))
    return model.predict_profiles(profiles(ds, sample=index))


def evaluate(model: InversionModel, ds, *, index=None) -> dict:
    """Err and 68/95 % coverage per target on a dataset (sample choice: :func:`evaluation_samples`).

    Returns
    -------
    dict with ``err``, ``coverage68``, ``coverage95`` (each ``{target: float}``), ``n_samples``,
    ``selection``, ``seconds_per_sample`` and ``predictions`` ``{target: (true, mean, std)}``.
    """
    if index is None:
        index, how = evaluation_samples(model, ds)
    else:
        index, how = np.asarray(index), "given samples"
    if len(index) == 0:
        raise ShearcorrError("no finished samples to evaluate in this dataset")
    missing = [t for t in model.targets if t not in ds]
    if missing:
        raise ShearcorrError(f"dataset has no true values of {', '.join(missing)}; cannot evaluate")
    t0 = time.perf_counter()
    pred = predict_dataset(model, ds, index)
    dt = (time.perf_counter() - t0) / len(index)
    truth = _targets_of(ds, model.targets, index)
    out = {"err": {}, "coverage68": {}, "coverage95": {}, "n_samples": int(len(index)), "selection": how,
           "seconds_per_sample": dt, "predictions": {}}
    for t in model.targets:
        m, s = pred[t]
        out["err"][t] = relative_error(truth[t], m)
        out["coverage68"][t] = coverage(truth[t], m, s, 0.68)
        out["coverage95"][t] = coverage(truth[t], m, s, 0.95)
        out["predictions"][t] = (truth[t], m, s)
    return out
