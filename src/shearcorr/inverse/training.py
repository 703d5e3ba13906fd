r"""Inversion g -> (rs, d2, gamma_l): training per-target GPRs on a dataset, evaluation, calibration.

Pipeline (paper Sec. III C): profiles [g(theta) | g(q)] of every finished sample
(:func:`shearcorr.inverse.features.profiles`) -> a seeded 70/30 split -> feature transform fitted on the
training rows -> one :class:`~shearcorr.inverse.gpr.PaperGPR` per target, hyperparameters by maximising the
LML -> predictions with std on the held-out rows.

Error metric (paper Sec. III C), over the evaluated samples,

.. math:: \mathrm{Err} = \Big\langle \frac{|\mu_{true} - \mu_{pred}|}{\max(\mu_{true}, \mu_{pred})} \Big\rangle .

All four parameters are non-negative, so predictions are first projected on the physical range
(negative -> 0; the GPR's Gaussian posterior knows no bounds). Then every term lies in [0, 1], and the
only undefined case, :math:`\mu_{true} = \mu_{pred} = 0` (possible for R_s), is a perfect prediction
and counts as 0. Note the metric is harsh near 0: R_s = 0.01 predicted as 0.02 counts 50 %.

Models (``model=``): ``"paper"`` - the paper's configuration, :class:`~shearcorr.inverse.gpr.PaperGPR` (isotropic RBF
on the raw feature, LML grid); ``"ard"`` (default) - the selected profile columns z-scored and projected on
their top-k principal axes (:class:`~shearcorr.inverse.features.ProfileFeatures` with ``standardise``), one
:class:`~shearcorr.inverse.gpr.ARDGPR` per target (amplitude x ARD RBF + white noise), log-transformed targets for
the strictly positive n_l2, d2, gamma_l.

Calibration: the fraction of samples whose truth lies inside the central 68 % and 95 % posterior
intervals, :math:`u^{-1}(m \pm z s)` with z = 0.994 / 1.960 and u the regressor's target transform
(identity for the paper model: mean +- z std), the std including the white-noise term.

Input noise (data with a standard error ``g_err`` of g(q, theta), e.g. Monte Carlo results): the GP
posterior is conditional on a noise-free input. To first order the input error adds

.. math:: s^2 \mathrel{+}= J\,\Sigma_x J^T,\qquad J_{kj} = \frac{\partial m}{\partial g(q_k,\theta_j)}
          = \frac{1}{n_q}\frac{\partial m}{\partial g(\theta_j)} + \frac{1}{n_\theta}\frac{\partial m}{\partial g(q_k)},

with :math:`\Sigma_x = \mathrm{diag}(g_{err}^2)` (grid points treated as independent; the chain rule
through g(theta) and g(q) keeps their shared origin), :math:`\partial m/\partial g(\cdot)` from the
analytic gradient of the GP mean (:meth:`ARDGPR.mean_gradient`) pulled back through the linear
feature map (:meth:`ProfileFeatures.pullback`). It is added to the latent variance before the
inverse transform.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import norm

from .._version import __version__
from ..errors import ShearcorrError
from .features import FEATURES, ProfileFeatures, profiles
from .ard import ARDGPR
from .gpr import SIGMA_BOUNDS, PaperGPR, default_bounds, optimise_hyperparameters
from ..params import PARAM_NAMES, QGrid
from ..result import grid_from_dataset

__all__ = ["TARGETS", "MODELS", "relative_error", "coverage", "interval_coverage", "split_indices",
           "dataset_fingerprint", "finished_samples", "input_errors", "blas_threads", "InversionModel", "train",
           "evaluate", "predict_dataset"]

#: Default regression targets (n_l2 can be added to show it is not recoverable).
TARGETS = ("rs", "d2", "gamma_l")
#: Model kinds of :func:`train`.
MODELS = ("ard", "paper")
#: Target transform of the "ard" model (R_s can be 0, so it stays linear).
ARD_TRANSFORMS = {"n_l2": "log", "rs": "none", "d2": "log", "gamma_l": "log"}


def blas_threads(threads: int | None = None):
    """Context manager limiting BLAS/OpenMP threads to ``threads`` (default: the idle CPUs, at least 1).

    OpenBLAS otherwise starts one thread per core regardless of other processes, and its threads spin
    while they wait: on a busy machine that oversubscribes the cores and stalls every eigendecomposition
    (measured on the 2-core machine at load ~8: ``eigh`` of a 2500 x 2500 matrix 7.7 s with 1 thread,
    19.1 s with 2). The default is the number of CPUs available to the process minus the 1-minute load
    average (rounded), clipped to [1, CPUs]; results do not depend on it beyond round-off.
    """
    import os

    from threadpoolctl import threadpool_limits

    if threads is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
        threads = int(min(cpus, max(1, round(cpus - load))))
    if int(threads) < 1:
        raise ShearcorrError(f"threads must be a positive integer, got {threads}")
    return threadpool_limits(limits=int(threads))


def input_errors(ds, *, sample=None):
    """Standard errors g_err of g(q, theta), shape (n, n_q, n_theta), or None when the data carry none.

    None when ``g_err`` is missing or not finite everywhere (analytic datasets store NaN or nothing).
    """
    if "g_err" not in ds:
        return None
    e = ds["g_err"]
    if "sample" in e.dims:
        if sample is not None:
            e = e.isel(sample=np.asarray(sample, dtype=np.int64))
        e = np.asarray(e.transpose("sample", "q", "theta").values, dtype=np.float64)
    else:
        e = np.asarray(e.transpose("q", "theta").values, dtype=np.float64)[None]
    if not np.all(np.isfinite(e)):
        return None
    return e


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

    @property
    def kind(self) -> str:
        """"paper" or "ard" (from the regressors' type)."""
        return "ard" if isinstance(next(iter(self.regressors.values())), ARDGPR) else "paper"

    def predict_latent(self, P, g_err=None) -> dict:
        r"""``{target: (m, s)}``: posterior mean and std of each regressor's modelled u (module docstring).

        Parameters
        ----------
        P : ndarray (n, n_theta + n_q)
            Profile rows [g(theta) | g(q)].
        g_err : ndarray (n, n_q, n_theta), optional
            Standard errors of g(q, theta); adds the linearised input-noise variance :math:`J\Sigma_x J^T`.
        """
        X = self.features.transform(P)
        nt = self.grid.theta.size
        nq = self.grid.q.size
        out = {}
        if g_err is not None:
            g_err = np.asarray(g_err, dtype=np.float64)
            if g_err.shape != (X.shape[0], nq, nt):
                raise ShearcorrError(f"g_err must have shape ({X.shape[0]}, {nq}, {nt}), got {g_err.shape}")
        for t, gp in self.regressors.items():
            m, s = gp.predict_latent(X)
            if g_err is not None:
                G = self.features.pullback(gp.mean_gradient(X))  # (n, nt + nq)
                J = G[:, None, :nt] / nq + G[:, nt:, None] / nt  # (n, nq, nt): dm/dg(q_k, theta_j)
                s = np.sqrt(s**2 + np.sum((J * g_err) ** 2, axis=(1, 2)))
            out[t] = (m, s)
        return out

    def predict_profiles(self, P, g_err=None) -> dict:
        """``{target: (mean, std)}`` for profile rows (point estimate and delta-method std; no grid check)."""
        out = {}
        for t, (m, s) in self.predict_latent(P, g_err).items():
            gp = self.regressors[t]
            y = gp.inverse(m) if hasattr(gp, "inverse") else m
            out[t] = (y, y * s if getattr(gp, "transform", "none") == "log" else s)
        return out

    def intervals(self, latent: dict, level: float) -> dict:
        """``{target: (lo, hi)}``: central ``level`` intervals u^-1(m +- z s) from :meth:`predict_latent`."""
        z = norm.ppf(0.5 + level / 2.0)
        out = {}
        for t, (m, s) in latent.items():
            inv = getattr(self.regressors[t], "inverse", lambda u: u)
            out[t] = (inv(m - z * s), inv(m + z * s))
        return out

    def predict(self, ds, *, sample=None, input_noise: bool = True) -> dict:
        """``{target: (mean, std)}`` for a result or dataset (grid checked; g_err propagated if present)."""
        self.check_grid(grid_from_dataset(ds))
        err = input_errors(ds, sample=sample) if input_noise else None
        return self.predict_profiles(profiles(ds, sample=sample), err)


def train(ds, *, feature: str | None = None, model: str = "ard", targets=TARGETS, test_fraction: float = 0.3,
          seed: int = 0, optimizer: str = "grid", n_grid: int = 30, restarts: int | None = None, k: int = 3,
          n_components: int = 8, pca_blocks: bool = True, max_opt_samples: int = 1000, l_bounds=None, sigma_bounds=SIGMA_BOUNDS,
          threads: int | None = None, log=None) -> tuple[InversionModel, dict]:
    r"""Train one GPR per target on the training split of a dataset.

    Parameters
    ----------
    ds : xarray.Dataset
        Dataset with dims (sample, q, theta) (:func:`shearcorr.data.generate.open_dataset`).
    feature : {"g_theta", "g_q", "both", "svd"}, optional
        Profile columns the regressor sees; default "both" for ``model="ard"``, "g_theta" (the paper's
        input) for ``model="paper"``.
    model : {"ard", "paper"}, default "ard"
        "paper": :class:`PaperGPR`, isotropic RBF on the raw feature, hyperparameters from the LML grid
        (the paper's configuration). "ard": the feature columns z-scored and projected on their top
        ``n_components`` principal axes (per block with ``pca_blocks``: 8 + 8 for "both" by default), one
        :class:`ARDGPR` per target (targets n_l2, d2, gamma_l modelled in log space, :data:`ARD_TRANSFORMS`).
    targets : sequence of str
        Any of n_l2, rs, d2, gamma_l.
    test_fraction, seed : float, int
        Seeded split (:func:`split_indices`) of the finished samples.
    optimizer : {"grid", "sklearn"}
        Paper model only. "grid": n_grid x n_grid eigen-trick LML landscape + refinement
        (:func:`optimise_hyperparameters`), shared across targets; "sklearn": the same landscape, then
        scikit-learn's L-BFGS-B with ``restarts`` random restarts inside the bounds, started at the grid optimum.
    restarts : int, optional
        Optimiser restarts (default 10 for the paper's "sklearn" optimiser, 1 for "ard").
    n_components, max_opt_samples : int
        "ard" only: principal axes kept; training rows used to optimise the kernel hyperparameters.
    pca_blocks : bool
        "ard" with feature "both" only: principal axes of g(theta) and g(q) separately, ``n_components``
        each (:class:`~shearcorr.inverse.features.ProfileFeatures`).
    threads : int, optional
        BLAS threads during training (:func:`blas_threads`; default the CPUs available to the process).
    log : callable(str), optional
        Progress messages.

    Returns
    -------
    (InversionModel, dict)
        For the paper model the dict holds the LML landscape (``l_values``, ``sigma_values``, ``lml``
        (n_l, n_sigma, T)) and the optimum per target, for Figs. 6b-d and Table I; for both, ``targets``,
        ``train_seconds`` and the fitted hyperparameters ``hyper`` ``{target: dict}``.
    """
    log = log or (lambda msg: None)
    targets = tuple(targets)
    bad = [t for t in targets if t not in PARAM_NAMES]
    if bad or not targets:
        raise ShearcorrError(f"targets must be among {', '.join(PARAM_NAMES)}, got {', '.join(map(str, targets)) or 'none'}")
    if model not in MODELS:
        raise ShearcorrError(f"model must be one of {', '.join(MODELS)}, got {model!r}")
    feature = feature or ("both" if model == "ard" else "g_theta")
    if feature not in FEATURES:
        raise ShearcorrError(f"feature must be one of {', '.join(FEATURES)}, got {feature!r}")
    if optimizer not in ("grid", "sklearn"):
        raise ShearcorrError(f"optimizer must be 'grid' or 'sklearn', got {optimizer!r}")
    restarts = (1 if model == "ard" else 10) if restarts is None else int(restarts)
    grid = grid_from_dataset(ds)
    done = finished_samples(ds)
    tr, te = split_indices(done.size, test_fraction, seed)
    train_index, test_index = done[tr], done[te]
    t0 = time.perf_counter()
    P = profiles(ds, sample=train_index)
    Y = np.column_stack([np.asarray(ds[t].values, dtype=np.float64)[train_index] for t in targets])
    info: dict = {"targets": targets, "model": model, "feature": feature}
    with blas_threads(threads):
        if model == "ard":
            blocks = bool(pca_blocks) and feature == "both"
            width = (min(grid.theta.size, grid.q.size) if blocks else
                     ProfileFeatures(feature=feature, n_theta=grid.theta.size, k=k).fit(P).transform(P[:1]).shape[1])
            feats = ProfileFeatures(feature=feature, n_theta=grid.theta.size, k=k, standardise=True,
                                    n_components=min(int(n_components), width, P.shape[0]), pca_blocks=blocks).fit(P)
            X = feats.transform(P)
            log(f"ard/{feature}: {X.shape[0]} training samples x {X.shape[1]} principal components; "
                f"hyperparameters on {min(X.shape[0], max_opt_samples)} rows, {restarts} restarts")
            regs, hyper = {}, {}
            for i, t in enumerate(targets):
                gp = ARDGPR(transform=ARD_TRANSFORMS[t], n_restarts=restarts, max_opt_samples=max_opt_samples,
                            random_state=seed).fit(X, Y[:, i])
                regs[t] = gp
                hyper[t] = {"length_scale": gp.length_scale_.tolist(), "amplitude": gp.amplitude_,
                            "noise": gp.noise_, "lml": gp.log_marginal_likelihood_value_}
                log(f"ard/{feature}/{t}: amplitude {gp.amplitude_:.3g}, noise {gp.noise_:.2g}, length scales "
                    + " ".join(f"{v:.3g}" for v in gp.length_scale_))
            info["hyper"] = hyper
            lb = None
        else:
            feats = ProfileFeatures(feature=feature, n_theta=grid.theta.size, k=k).fit(P)
            X = feats.transform(P)
            lb = default_bounds(X) if l_bounds is None else tuple(map(float, l_bounds))
            log(f"{feature}: {X.shape[0]} training samples x {X.shape[1]} features; LML grid {n_grid} x {n_grid}, "
                f"l in [{lb[0]:.3g}, {lb[1]:.3g}]")
            opt = optimise_hyperparameters(X, Y, l_bounds=lb, sigma_bounds=sigma_bounds, n_l=n_grid, n_sigma=n_grid)
            info.update(opt, grid_seconds=time.perf_counter() - t0, l_bounds=lb)
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
            info["hyper"] = {t: {"l": gp.l_, "sigma": gp.sigma_} for t, gp in regs.items()}
    t_fit = time.perf_counter() - t0
    prov = {
        "dataset_fingerprint": dataset_fingerprint(ds),
        "dataset_attrs": {k_: (v if isinstance(v, (str, int, float, bool)) else str(v)) for k_, v in ds.attrs.items()},
        "n_samples": int(ds.sizes["sample"]),
        "test_fraction": float(test_fraction),
        "split_seed": int(seed),
        "model": model,
        "optimizer": optimizer if model == "paper" else "sklearn-lbfgsb-subset",
        "restarts": int(restarts),
        "train_seconds": float(t_fit),
        "shearcorr_version": __version__,
    }
    if model == "paper":
        prov.update(n_grid=int(n_grid), l_bounds=[float(lb[0]), float(lb[1])],
                    sigma_bounds=[float(sigma_bounds[0]), float(sigma_bounds[1])])
    else:
        prov.update(n_components=int(feats.n_components), pca_blocks=bool(feats.pca_blocks),
                    max_opt_samples=int(max_opt_samples))
    out = InversionModel(grid=grid, features=feats, regressors=regs, train_index=train_index,
                         test_index=test_index, provenance=prov)
    info["train_seconds"] = t_fit
    return out, info


def evaluation_samples(model: InversionModel, ds) -> tuple[np.ndarray, str]:
    """Which samples :func:`evaluate` uses: the held-out split on the training dataset, else all finished ones.

    "The training dataset" is recognised by its fingerprint (:func:`dataset_fingerprint`), not its path.
    """
    if dataset_fingerprint(ds) == model.provenance.get("dataset_fingerprint"):
        return np.asarray(model.test_index), "held-out test split of the training dataset"
    return finished_samples(ds), "all finished samples (not the training dataset)"


def predict_dataset(model: InversionModel, ds, index, *, input_noise: bool = True) -> dict:
    """Predictions ``{target: (mean, std)}`` for the given samples of a dataset (grid checked)."""
    return model.predict(ds, sample=index, input_noise=input_noise)


def evaluate(model: InversionModel, ds, *, index=None, input_noise: bool = True) -> dict:
    """Err and 68/95 % coverage per target on a dataset (sample choice: :func:`evaluation_samples`).

    With ``input_noise`` (default) and a dataset carrying finite ``g_err`` (engine "mc"), the linearised
    input-noise variance is added (module docstring); ``input_noise`` in the result says whether it was.

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
    model.check_grid(grid_from_dataset(ds))
    t0 = time.perf_counter()
    P = profiles(ds, sample=index)
    err = input_errors(ds, sample=index) if input_noise else None
    latent = model.predict_latent(P, err)
    pred = model.predict_profiles(P, err)
    dt = (time.perf_counter() - t0) / len(index)
    truth = _targets_of(ds, model.targets, index)
    iv = {lv: model.intervals(latent, lv) for lv in (0.68, 0.95)}
    out = {"err": {}, "coverage68": {}, "coverage95": {}, "n_samples": int(len(index)), "selection": how,
           "seconds_per_sample": dt, "input_noise": err is not None, "predictions": {}}
    for t in model.targets:
        m, s = pred[t]
        out["err"][t] = relative_error(truth[t], m)
        out["coverage68"][t] = interval_coverage(truth[t], *iv[0.68][t])
        out["coverage95"][t] = interval_coverage(truth[t], *iv[0.95][t])
        out["predictions"][t] = (truth[t], m, s)
    return out
