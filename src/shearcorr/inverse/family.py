r"""A family of amortized models, one per noise level: the default of ``shearcorr train``.

Every measured g is an estimate over N configurations (Monte Carlo, an average of frame pairs), biased
by O(1/N) and noisy with noise shared by the grid points (docs/theory.md section 9). A model trained on
inputs drawn at one N (:mod:`shearcorr.inverse.augment`) is calibrated near that N only: its GP's
white-noise term learned that level. A family holds one such member per level N_k (default 300, 2000
and 20 000 configurations; ``inf``, a noise-free member, on request) and predicts every input with the
member of the nearest level in log N:

.. math:: k^* = \arg\min_k |\ln N_{in} - \ln N_k|,\qquad \ln\infty \equiv \ln 10^7 .

The input's N is its ``configs`` attribute; without one, a noisy input (finite ``g_err``) gets N inferred
from its errors (:func:`infer_configs`) and noise-free input (neither) counts as N = inf. Outside a
factor 2 of the levels' range (or for noise-free input without a noise-free member) the prediction
comes with a warning (:meth:`ModelFamily.noise_warning`). :meth:`ModelFamily.predict` then refines the
member's answer for a noisy map by a few Gauss-Newton steps of the likelihood
(:mod:`shearcorr.inverse.polish`; ``polish=False`` for the member's answer alone).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..errors import ShearcorrError
from .model import InversionModel, input_errors

__all__ = ["ModelFamily", "infer_configs", "DEFAULT_LEVELS", "INF_AS"]

#: Noise levels (configurations averaged) of the members ``shearcorr train`` makes by default.
DEFAULT_LEVELS = (300.0, 2000.0, 20000.0)
#: N that stands for "noise-free" (inf) when levels are compared in log N.
INF_AS = 1e7


def infer_configs(ds, *, sample=None) -> float:
    r"""Effective N of noisy data without a ``configs`` attribute, from their ``g_err``.

    The variance of an N-configuration estimate is :math:`g^2 v/N` with v the estimator's variance
    coefficient (:func:`shearcorr.inverse.noise.variance_coefficient`); with v taken at the centre of the
    paper's priors (:data:`shearcorr.inverse.augment.REFERENCE`),

    .. math:: \hat N = \mathrm{median}_{q,\theta}\big(g^2 v_{ref} / g_{err}^2\big).

    v varies with the parameters (by a factor ~2 over the priors), which is far finer than the spacing
    of a family's levels (factors 7-10); :func:`shearcorr.inverse.fit.fit_g` infers N at the fitted
    parameters instead. Returns NaN for the analytic engine's output (its g_err is a bound of the
    engine's approximation, not noise) and for data without finite g_err.
    """
    from ..params import QGrid
    from ..result import grid_from_dataset
    from .augment import REFERENCE
    from .noise import ensemble_noise

    err = None if str(ds.attrs.get("engine", "")) == "analytic" else input_errors(ds, sample=sample)
    if err is None:
        return float("nan")
    grid = grid_from_dataset(ds)
    g = ds["g"]
    if "sample" in g.dims:
        g = g.isel(sample=np.asarray(sample, dtype=np.int64)) if sample is not None else g
        g = np.asarray(g.transpose("sample", "q", "theta").values, dtype=np.float64)
    else:
        g = np.asarray(g.transpose("q", "theta").values, dtype=np.float64)[None]
    disp = str(ds.attrs.get("displacement", "uniform"))
    ref = ensemble_noise(replace(REFERENCE, displacement=disp), QGrid(grid.q, grid.theta), 1e6, n_samples=0)
    v_rel = ref.var * 1e6 / ref.g**2  # v of the reference (N = 1)
    ok = (err > 0) & np.isfinite(g)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = g**2 * v_rel[None] / err**2
    return float(np.median(ratio[ok])) if ok.any() else float("nan")


@dataclass
class ModelFamily:
    """Members trained on the same dataset, split and strategy, one per noise level (module docstring).

    Attributes
    ----------
    members : tuple of InversionModel
        Sorted by their trained N (:meth:`InversionModel.trained_configs`; inf last).
    """

    members: tuple

    def __post_init__(self):
        if not self.members:
            raise ShearcorrError("a model family needs at least one member")
        self.members = tuple(sorted(self.members, key=lambda m: m.trained_configs()))
        first = self.members[0]
        for m in self.members[1:]:
            if m.targets != first.targets or m.grid.difference(first.grid) is not None or m.kind != first.kind:
                raise ShearcorrError("the members of a model family must share targets, grid and kind")
        levels = self.levels
        if len(set(levels)) != len(levels):
            raise ShearcorrError(f"the members of a model family need distinct noise levels, got {levels}")

    def calibrated(self, **kwargs) -> "ModelFamily":
        """The family with per-sample stds in every noise-aware member (:meth:`InversionModel.calibrated`);
        a noise-free member keeps its own."""
        return ModelFamily(tuple(m.calibrated(**kwargs) if m.noise_configs is not None else m for m in self.members))

    def uncalibrated(self) -> "ModelFamily":
        """The family with every member's own GP (homoscedastic) stds (:meth:`InversionModel.uncalibrated`)."""
        return ModelFamily(tuple(m.uncalibrated() for m in self.members))

    # -- what the family shares with its members
    @property
    def levels(self) -> tuple:
        """Trained N of each member (inf: noise-free)."""
        return tuple(m.trained_configs() for m in self.members)

    @property
    def targets(self):
        return self.members[0].targets

    @property
    def kind(self) -> str:
        return self.members[0].kind

    @property
    def grid(self):
        return self.members[0].grid

    @property
    def train_index(self):
        return self.members[0].train_index

    @property
    def test_index(self):
        return self.members[0].test_index

    @property
    def provenance(self) -> dict:
        return self.members[0].provenance

    def check_grid(self, grid) -> None:
        self.members[0].check_grid(grid)

    def is_training_dataset(self, ds) -> bool:
        return self.members[0].is_training_dataset(ds)

    def displacement_warning(self, ds) -> str | None:
        return self.members[0].displacement_warning(ds)

    # -- choosing a member
    def input_configs(self, ds, *, sample=None) -> float:
        """N of an input: its ``configs`` attribute (> 0), else inferred from g_err
        (:func:`infer_configs`), else inf (noise-free: an analytic result or no errors);
        :func:`shearcorr.inverse.polishdata.data_configs`."""
        from .polishdata import data_configs

        return data_configs(ds, sample=sample)

    def member(self, configs: float) -> InversionModel:
        """The member of the level nearest to ``configs`` in log N (inf counts as :data:`INF_AS`)."""
        x = np.log(min(float(configs), INF_AS))
        lv = np.log(np.minimum(np.asarray(self.levels, dtype=np.float64), INF_AS))
        return self.members[int(np.argmin(np.abs(lv - x)))]

    def member_for(self, ds, *, sample=None) -> InversionModel:
        """The member that predicts ``ds`` (:meth:`input_configs`, :meth:`member`)."""
        return self.member(self.input_configs(ds, sample=sample))

    def noise_warning(self, ds) -> str | None:
        """A warning when the input's N lies outside what the family was trained for, else None."""
        if "sample" in ds.dims and self.is_training_dataset(ds):
            return None  # evaluate draws the held-out inputs of every level
        n = self.input_configs(ds)
        finite = [v for v in self.levels if np.isfinite(v)]
        if n == float("inf"):
            if float("inf") in self.levels:
                return None
            return (f"the input is noise-free but the models were trained for averages over at most {max(finite):.0f} "
                    "configurations: its stds are too wide for it (train with --noise-configs ... inf)")
        lo, hi = min(finite, default=float("inf")), max(finite, default=0.0)
        if float("inf") in self.levels and n > 2 * hi:
            if not finite or n >= np.sqrt(hi * INF_AS):  # nearer the noise-free member (member())
                return None
            return (f"the input is an average over {n:.0f} configurations, between the family's {hi:.0f} and "
                    "noise-free members: its stds are not calibrated; `shearcorr fit` models any N")
        if not lo / 2 <= n <= 2 * hi:
            return (f"the input is an average over {n:.0f} configurations, outside the family's levels "
                    f"{', '.join(f'{v:.0f}' for v in finite)} (a factor 2 around them): its stds are not calibrated; "
                    "`shearcorr fit` models any N")
        return None

    def predict(self, ds, *, sample=None, input_noise: bool = True, polish: bool = True, **options):
        """``{target: (mean, std)}`` by the member for this input (:meth:`InversionModel.predict`), polished
        by the likelihood unless ``polish=False`` (:mod:`shearcorr.inverse.polish`)."""
        return self.member_for(ds, sample=sample).predict(ds, sample=sample, input_noise=input_noise, polish=polish,
                                                          **options)
