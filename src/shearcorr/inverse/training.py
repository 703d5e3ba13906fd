r"""Training one GPR per target on a dataset: two strategies sharing the exact-GP core.

Pipeline (paper Sec. III C): profiles [g(theta) | g(q)] of every finished sample
(:func:`~shearcorr.inverse.features.profiles`) -> a seeded 70/30 split
(:func:`~shearcorr.inverse.evaluation.split_indices`) -> a feature transform fitted on the training rows
-> one regressor per target -> an :class:`~shearcorr.inverse.model.InversionModel`.

Strategies (how features and regressors are chosen; each a small class with ``fit``):

:class:`PaperTraining`
    The paper's configuration: :class:`~shearcorr.inverse.gpr.PaperGPR` (isotropic RBF) on the raw
    feature (default g(theta)), hyperparameters from one tridiagonal-trick LML grid shared by all targets,
    optionally refined by scikit-learn's L-BFGS-B.
:class:`ARDTraining` (default)
    The selected profile columns z-scored and projected on their top principal axes
    (:class:`~shearcorr.inverse.features.ProfileFeatures` with ``standardise``), one
    :class:`~shearcorr.inverse.ard.ARDGPR` per target (amplitude x ARD RBF + white noise), targets
    n_l2, d2, gamma_l modelled in log space (:data:`ARD_TRANSFORMS`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .._version import __version__
from ..choices import check_choice
from ..errors import ShearcorrError
from ..files import JSONRecord
from ..params import PARAM_NAMES, TARGETS
from ..result import grid_from_dataset
from .ard import ARDGPR
from .evaluation import split_indices
from .features import ProfileFeatures, finished_samples, profiles
from .gpr import SIGMA_BOUNDS, LMLSearch, PaperGPR, default_bounds, optimise_hyperparameters
from .model import InversionModel, dataset_fingerprint

__all__ = ["train", "train_family", "PaperTraining", "ARDTraining", "STRATEGIES", "TrainingInfo", "ARD_TRANSFORMS", "blas_threads"]

#: Target transform of the ARD strategy (R_s can be 0, so it stays linear).
ARD_TRANSFORMS = {"n_l2": "log", "rs": "none", "d2": "log", "gamma_l": "log"}


def blas_threads(threads: int | None = None):
    """Context manager limiting BLAS/OpenMP threads to ``threads`` (default 1).

    The thread count changes the order of floating-point sums inside BLAS/LAPACK; the hyperparameter
    optimiser amplifies those round-off differences into different optima (issue 14: a gamma L length
    scale of 9.53 with 1 thread, 9.06 with 2, and different predictions). The default, one thread, makes
    a trained model a function of the data and the seed only, whatever the machine's load; a given
    ``threads`` reproduces itself. One thread is also the fast choice on a busy machine: OpenBLAS threads
    spin while they wait (2-core machine at load ~8: ``eigh`` of a 2500 x 2500 matrix 7.7 s with 1
    thread, 19.1 s with 2).
    """
    from threadpoolctl import threadpool_limits

    threads = 1 if threads is None else threads
    if isinstance(threads, bool) or int(threads) != threads or int(threads) < 1:
        raise ShearcorrError(f"threads must be a positive integer, got {threads}")
    return threadpool_limits(limits=int(threads))


@dataclass(frozen=True)
class TrainingInfo(JSONRecord):
    """What :func:`train` found, besides the model.

    Attributes
    ----------
    model, feature : str
        Strategy name ("paper" or "ard") and input feature.
    targets : tuple of str
    train_seconds : float
        Wall time of features + hyperparameters + factorisation.
    hyper : dict
        Fitted hyperparameters per target: ``{l, sigma}`` (paper) or ``{length_scale, amplitude, noise, lml}`` (ARD).
    search : LMLSearch, optional
        The paper strategy's LML landscape and optimum per target (Figs. 6b-d, Table I).
    l_bounds : (float, float), optional
        Range of l searched (paper strategy).
    grid_seconds : float, optional
        Time until the end of the LML grid search (paper strategy).
    """

    model: str
    feature: str
    targets: tuple
    train_seconds: float
    hyper: dict
    search: LMLSearch | None = None
    l_bounds: tuple | None = None
    grid_seconds: float | None = None

    @classmethod
    def join(cls, parts) -> "TrainingInfo":
        """The info of :meth:`InversionModel.join <shearcorr.inverse.model.InversionModel.join>`'s model:
        targets and hyperparameters side by side, training seconds summed (ARD strategy: the paper
        strategy's LML grid is shared by its targets and is not split)."""
        parts = list(parts)
        if not parts or any(p.search is not None for p in parts) or len({(p.model, p.feature) for p in parts}) != 1:
            raise ShearcorrError("only infos of one ARD model's separately trained targets can be joined")
        return cls(model=parts[0].model, feature=parts[0].feature, targets=tuple(t for p in parts for t in p.targets),
                   train_seconds=float(sum(p.train_seconds for p in parts)),
                   hyper={t: h for p in parts for t, h in p.hyper.items()})

    def to_dict(self) -> dict:
        out = {"model": self.model, "feature": self.feature, "targets": list(self.targets),
               "train_seconds": self.train_seconds, "hyper": self.hyper}
        if self.search is not None:
            out.update(l_bounds=list(self.l_bounds), grid_seconds=self.grid_seconds,
                       lml_optimum={t: {"l": self.search.l[i], "sigma": self.search.sigma[i],
                                        "lml": self.search.lml_opt[i]} for i, t in enumerate(self.targets)})
        return out


@dataclass(frozen=True)
class _Fitted:
    """What a strategy's ``fit`` returns to :func:`train`."""

    features: ProfileFeatures
    regressors: dict
    hyper: dict
    provenance: dict
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class PaperTraining:
    """The paper's configuration: PaperGPR on the raw feature, hyperparameters from an LML grid.

    Parameters
    ----------
    feature : {"g_theta", "g_q", "both", "svd"}, default "g_theta" (the paper's input)
    k : int, default 3
        Singular vectors for ``feature="svd"``.
    optimizer : {"grid", "sklearn"}, default "grid"
        "grid": ``n_grid`` x ``n_grid`` tridiagonal-trick LML landscape + refinement
        (:func:`~shearcorr.inverse.gpr.optimise_hyperparameters`), shared across targets; "sklearn": the
        same landscape, then scikit-learn's L-BFGS-B with ``restarts`` random restarts inside the bounds,
        started at the grid optimum.
    n_grid : int, default 30
    restarts : int, default 10
    l_bounds : (float, float), optional
        Range of l (default from the pair distances, :func:`~shearcorr.inverse.gpr.default_bounds`).
    sigma_bounds : (float, float), default (1e-6, 1)
    """

    feature: str = "g_theta"
    k: int = 3
    optimizer: str = "grid"
    n_grid: int = 30
    restarts: int = 10
    l_bounds: tuple | None = None
    sigma_bounds: tuple = SIGMA_BOUNDS

    name = "paper"

    def __post_init__(self):
        check_choice("feature", self.feature)
        check_choice("optimizer", self.optimizer)

    def fit(self, P: np.ndarray, Y: np.ndarray, targets: tuple, *, n_theta: int, seed: int, t0: float, log) -> _Fitted:
        feats = ProfileFeatures(feature=self.feature, n_theta=n_theta, k=self.k).fit(P)
        X = feats.transform(P)
        lb = default_bounds(X) if self.l_bounds is None else tuple(map(float, self.l_bounds))
        log(f"{self.feature}: {X.shape[0]} training samples x {X.shape[1]} features; LML grid {self.n_grid} x "
            f"{self.n_grid}, l in [{lb[0]:.3g}, {lb[1]:.3g}]")
        search = optimise_hyperparameters(X, Y, l_bounds=lb, sigma_bounds=self.sigma_bounds, n_l=self.n_grid,
                                          n_sigma=self.n_grid)
        grid_seconds = time.perf_counter() - t0
        regs = {}
        for i, t in enumerate(targets):
            gp = PaperGPR(l=search.l[i], sigma=search.sigma[i], optimizer="sklearn" if self.optimizer == "sklearn" else None,
                          l_bounds=lb, sigma_bounds=self.sigma_bounds, n_restarts=self.restarts,
                          random_state=seed).fit(X, Y[:, i])
            regs[t] = gp
            log(f"{self.feature}/{t}: l = {gp.l_:.4g}, sigma = {gp.sigma_:.3g}, LML = {gp.log_marginal_likelihood_value_:.1f}")
        prov = {"optimizer": self.optimizer, "restarts": int(self.restarts), "n_grid": int(self.n_grid),
                "l_bounds": [float(lb[0]), float(lb[1])],
                "sigma_bounds": [float(self.sigma_bounds[0]), float(self.sigma_bounds[1])]}
        return _Fitted(feats, regs, {t: {"l": gp.l_, "sigma": gp.sigma_} for t, gp in regs.items()}, prov,
                       {"search": search, "l_bounds": lb, "grid_seconds": grid_seconds})


@dataclass(frozen=True)
class ARDTraining:
    """The default: z-scored profile columns on their top principal axes, one ARDGPR per target.

    Parameters
    ----------
    feature : {"g_theta", "g_q", "both", "svd"}, default "both"
    k : int, default 3
        Singular vectors for ``feature="svd"``.
    n_components : int, default 8
        Principal axes kept (per block with ``pca_blocks``: 8 + 8 for "both").
    pca_blocks : bool, default True
        With feature "both": principal axes of g(theta) and g(q) separately.
    max_opt_samples : int, default 1000
        Training rows used to optimise the kernel hyperparameters.
    restarts : int, default 1
        L-BFGS-B restarts of the hyperparameter optimisation.
    """

    feature: str = "both"
    k: int = 3
    n_components: int = 8
    pca_blocks: bool = True
    max_opt_samples: int = 1000
    restarts: int = 1

    name = "ard"

    def __post_init__(self):
        check_choice("feature", self.feature)

    def fit(self, P: np.ndarray, Y: np.ndarray, targets: tuple, *, n_theta: int, seed: int, t0: float, log) -> _Fitted:
        blocks = bool(self.pca_blocks) and self.feature == "both"
        width = (min(n_theta, P.shape[1] - n_theta) if blocks else
                 ProfileFeatures(feature=self.feature, n_theta=n_theta, k=self.k).fit(P).transform(P[:1]).shape[1])
        feats = ProfileFeatures(feature=self.feature, n_theta=n_theta, k=self.k, standardise=True,
                                n_components=min(int(self.n_components), width, P.shape[0]), pca_blocks=blocks).fit(P)
        X = feats.transform(P)
        log(f"ard/{self.feature}: {X.shape[0]} training samples x {X.shape[1]} principal components; "
            f"hyperparameters on {min(X.shape[0], self.max_opt_samples)} rows, {self.restarts} restarts")
        regs, hyper = {}, {}
        for i, t in enumerate(targets):
            gp = ARDGPR(transform=ARD_TRANSFORMS[t], n_restarts=self.restarts, max_opt_samples=self.max_opt_samples,
                        random_state=seed).fit(X, Y[:, i])
            regs[t] = gp
            hyper[t] = {"length_scale": gp.length_scale_.tolist(), "amplitude": gp.amplitude_,
                        "noise": gp.noise_, "lml": gp.log_marginal_likelihood_value_}
            log(f"ard/{self.feature}/{t}: amplitude {gp.amplitude_:.3g}, noise {gp.noise_:.2g}, length scales "
                + " ".join(f"{v:.3g}" for v in gp.length_scale_))
        prov = {"optimizer": "sklearn-lbfgsb-subset", "restarts": int(self.restarts),
                "n_components": int(feats.n_components), "pca_blocks": bool(feats.pca_blocks),
                "max_opt_samples": int(self.max_opt_samples)}
        return _Fitted(feats, regs, hyper, prov)


#: Strategy classes by model name (:data:`shearcorr.choices.CHOICES` ``["model"]``).
STRATEGIES = {"ard": ARDTraining, "paper": PaperTraining}


def train(ds, strategy: PaperTraining | ARDTraining | None = None, *, targets=TARGETS, test_fraction: float = 0.3,
          seed: int = 0, threads: int | None = None, noise_configs: float | None = None, estimator: str = "symmetric",
          calibrate: bool = True, log=None) -> tuple[InversionModel, TrainingInfo]:
    r"""Train one GPR per target on the training split of a dataset.

    Parameters
    ----------
    ds : xarray.Dataset
        Dataset with dims (sample, q, theta) (:func:`shearcorr.data.open_dataset`).
    strategy : PaperTraining or ARDTraining, default ``ARDTraining()``
        How features and regressors are chosen (module docstring).
    targets : sequence of str
        Any of n_l2, rs, d2, gamma_l (default rs, d2, gamma_l).
    test_fraction, seed : float, int
        Seeded split (:func:`~shearcorr.inverse.evaluation.split_indices`) of the finished samples; the
        seed also seeds the optimiser's restarts.
    threads : int, optional
        BLAS threads during training (:func:`blas_threads`; default 1: the model does not depend on the load).
    noise_configs : float, optional
        Train for inputs averaged over N configurations: each training profile is drawn as that
        estimator would give it (:class:`shearcorr.inverse.augment.NoiseDraws`; needs an analytic
        dataset with the full map g). Default (or inf): the dataset's exact profiles (a noise-free model).
    estimator : {"symmetric", "before", "pooled"}
        Estimator of those inputs (with ``noise_configs``).
    calibrate : bool, default True
        With ``noise_configs``: per-sample stds, a scale of each target's std fitted to the
        leave-one-out z-scores of the noisy training inputs (:mod:`shearcorr.inverse.calibration`;
        ~1 s for 1000 samples). False: the GP's own std (one noise level over the whole prior box).
    log : callable(str), optional
        Progress messages.

    Returns
    -------
    (InversionModel, TrainingInfo)
    """
    level = float("inf") if noise_configs is None else float(noise_configs)
    ((model, info),) = _train_levels(ds, ARDTraining() if strategy is None else strategy, (level,), targets=targets,
                                     test_fraction=test_fraction, seed=seed, threads=threads, estimator=estimator,
                                     calibrate=calibrate, log=log)
    return model, info


def train_family(ds, strategy: PaperTraining | ARDTraining | None = None, *, levels=None, targets=TARGETS,
                 test_fraction: float = 0.3, seed: int = 0, threads: int | None = None, estimator: str = "symmetric",
                 calibrate: bool = True, log=None):
    r"""Train a :class:`~shearcorr.inverse.family.ModelFamily`: one model per noise level, same split.

    The default of ``shearcorr train``: the paper GPR on g(theta)+g(q) (``PaperTraining(feature="both")``,
    chosen by its accuracy and calibration on noisy Monte Carlo inputs, docs/inversion.md) for inputs
    averaged over 300, 2000 and 20 000 configurations (:data:`~shearcorr.inverse.family.DEFAULT_LEVELS`).
    The noise coefficients of the training samples are computed once for all levels
    (:class:`~shearcorr.inverse.augment.NoiseDraws`); every level draws from the same normals (seed
    ``seed``), scaled by its :math:`1/\sqrt N`.

    Parameters
    ----------
    levels : sequence of float, optional
        N of each member (>= 2; inf for a noise-free member). Default ``DEFAULT_LEVELS``.
    strategy, targets, test_fraction, seed, threads, estimator, calibrate, log
        As in :func:`train` (default strategy ``PaperTraining(feature="both")``).

    Returns
    -------
    (ModelFamily, dict of level to TrainingInfo)
    """
    from .family import DEFAULT_LEVELS, ModelFamily

    levels = DEFAULT_LEVELS if levels is None else tuple(float(v) for v in levels)
    if not levels:
        raise ShearcorrError("a model family needs at least one noise level")
    if len(set(levels)) != len(levels):
        raise ShearcorrError(f"noise levels must be distinct, got {', '.join(f'{v:g}' for v in levels)}")
    strategy = PaperTraining(feature="both") if strategy is None else strategy
    pairs = _train_levels(ds, strategy, levels, targets=targets, test_fraction=test_fraction, seed=seed,
                          threads=threads, estimator=estimator, calibrate=calibrate, log=log)
    return ModelFamily(tuple(m for m, _ in pairs)), {lv: info for lv, (_, info) in zip(levels, pairs)}


def _train_levels(ds, strategy, levels, *, targets, test_fraction, seed, threads, estimator, calibrate, log) -> list:
    """(model, info) per noise level (inf: the exact profiles), one split and one set of noise coefficients."""
    log = log or (lambda msg: None)
    if not isinstance(strategy, (PaperTraining, ARDTraining)):
        raise ShearcorrError(f"strategy must be a PaperTraining or ARDTraining, got {type(strategy).__name__}")
    targets = tuple(targets)
    bad = [t for t in targets if t not in PARAM_NAMES]
    if bad or not targets:
        raise ShearcorrError(f"targets must be among {', '.join(PARAM_NAMES)}, got {', '.join(map(str, targets)) or 'none'}")
    for v in levels:
        if not (v == float("inf") or (np.isfinite(v) and v >= 2)):
            raise ShearcorrError(f"configs of the training noise must be a number >= 2 (or inf: noise-free), got {v:g}")
    grid = grid_from_dataset(ds)
    done = finished_samples(ds)
    tr, te = split_indices(done.size, test_fraction, seed)
    train_index, test_index = done[tr], done[te]
    Y = np.column_stack([np.asarray(ds[t].values, dtype=np.float64)[train_index] for t in targets])
    draws = None
    t_draws = 0.0
    if any(np.isfinite(v) for v in levels):
        from .augment import NoiseDraws

        t0 = time.perf_counter()
        log(f"noise coefficients of {train_index.size} training samples ({estimator} estimator)")
        draws = NoiseDraws(ds, train_index, estimator=estimator, log=log)
        t_draws = time.perf_counter() - t0
    common = {  # provenance shared by the members
        "dataset_fingerprint": dataset_fingerprint(ds),
        "dataset_attrs": {k: (v if isinstance(v, (str, int, float, bool)) else str(v)) for k, v in ds.attrs.items()},
        "n_samples": int(ds.sizes["sample"]), "test_fraction": float(test_fraction), "split_seed": int(seed),
        "model": strategy.name, "estimator": estimator, "shearcorr_version": __version__,
    }
    out = []
    for level in levels:
        t0 = time.perf_counter()
        if np.isfinite(level):
            log(f"training inputs drawn as {estimator} estimates over N = {level:g} configurations")
            P = draws.profiles(level, seed)
        else:
            P = profiles(ds, sample=train_index)
        with blas_threads(threads):
            fitted = strategy.fit(P, Y, targets, n_theta=grid.theta.size, seed=seed, t0=t0, log=log)
        t_fit = time.perf_counter() - t0 + (t_draws if np.isfinite(level) else 0.0)
        prov = {**common, **fitted.provenance, "train_seconds": float(t_fit),
                "noise_configs": None if not np.isfinite(level) else float(level)}
        model = InversionModel(grid=grid, features=fitted.features, regressors=fitted.regressors,
                               train_index=train_index, test_index=test_index, provenance=prov)
        if calibrate and np.isfinite(level):
            with blas_threads(threads):
                model = model.calibrated()
            log("per-sample stds: leave-one-out z std (robust std) " + ", ".join(
                f"{t} {v['std']:.2f} ({v['robust_std']:.2f}) -> {c['std']:.2f} ({c['robust_std']:.2f})"
                for (t, v), c in zip(model.provenance["calibration"]["loo_z"].items(),
                                     model.provenance["calibration"]["loo_z_calibrated"].values())))
        out.append((model, TrainingInfo(model=strategy.name, feature=strategy.feature, targets=targets,
                                        train_seconds=t_fit, hyper=fitted.hyper, **fitted.extra)))
    return out
