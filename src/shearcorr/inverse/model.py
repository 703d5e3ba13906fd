r"""The trained inversion: grid, feature transform, one exact-GP regressor per target, provenance.

Prediction for profile rows P = [g(theta) | g(q)] (:func:`~shearcorr.inverse.features.profiles`): the
feature transform gives x, each regressor the posterior (m, s) of its modelled u (u = y or log y,
:class:`~shearcorr.inverse.gpcore.ExactGP`), reported as the point estimate u^-1(m) with the
delta-method std, and as central intervals :math:`u^{-1}(m \pm z s)`.

Input noise (data with a standard error ``g_err`` of g(q, theta), e.g. Monte Carlo results): the GP
posterior is conditional on a noise-free input. To first order the input error adds

.. math:: s^2 \mathrel{+}= J\,\Sigma_x J^T,\qquad J_{kj} = \frac{\partial m}{\partial g(q_k,\theta_j)}
          = \frac{1}{n_q}\frac{\partial m}{\partial g(\theta_j)} + \frac{1}{n_\theta}\frac{\partial m}{\partial g(q_k)},

with :math:`\Sigma_x = \mathrm{diag}(g_{err}^2)` (grid points treated as independent; the chain rule
through g(theta) and g(q) keeps their shared origin), :math:`\partial m/\partial g(\cdot)` from the
analytic gradient of the GP mean (:meth:`ExactGP.mean_gradient`) pulled back through the linear
feature map (:meth:`ProfileFeatures.pullback`). It is added to the latent variance before the
inverse transform.

Per-sample stds (noise-aware models trained by :func:`shearcorr.inverse.training.train`): the latent std
of target t is scaled by :math:`c_t(d)`, a smooth function of the model's own standardised prediction d
fitted to leave-one-out z-scores (:mod:`shearcorr.inverse.calibration`), before any input-noise term.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import NamedTuple

import numpy as np
from scipy.stats import norm

from ..errors import ShearcorrError
from ..params import PARAM_NAMES, QGrid
from ..result import grid_from_dataset
from .ard import ARDGPR
from .calibration import Calibration, calibrate
from .features import ProfileFeatures, profiles
from .gpcore import ExactGP

__all__ = ["InversionModel", "Prediction", "input_errors", "dataset_fingerprint"]


class Prediction(NamedTuple):
    """Posterior summary of one target for n samples: ``mean`` and ``std``, arrays of shape (n,)."""

    mean: np.ndarray
    std: np.ndarray


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


def dataset_fingerprint(ds) -> str:
    """SHA-256 of the four parameter columns of a dataset: identifies "the same dataset" across runs."""
    h = hashlib.sha256()
    for name in PARAM_NAMES:
        if name not in ds:
            raise ShearcorrError(f"dataset has no parameter {name!r}; is it a shearcorr dataset?")
        h.update(np.ascontiguousarray(ds[name].values, dtype=np.float64).tobytes())
    return h.hexdigest()


@dataclass
class InversionModel:
    """Trained inversion: grid, feature transform, one exact-GP regressor per target, provenance.

    Attributes
    ----------
    grid : QGrid
        Grid of the training data; inputs on another grid are refused.
    features : ProfileFeatures
        Fitted feature transform.
    regressors : dict of str to ExactGP
        One :class:`~shearcorr.inverse.gpr.PaperGPR` or :class:`~shearcorr.inverse.ard.ARDGPR` per
        target, all of one kind, all on the same training inputs.
    train_index, test_index : ndarray of int
        Sample indices (into the training dataset) used for training / held out.
    provenance : dict
        JSON-able facts: dataset fingerprint and attrs, split seed, optimiser, package version, timings.
    calibration : Calibration or None
        Per-sample scale of the latent stds (:mod:`shearcorr.inverse.calibration`); None: the GP's std.
    """

    grid: QGrid
    features: ProfileFeatures
    regressors: dict[str, ExactGP]
    train_index: np.ndarray
    test_index: np.ndarray
    provenance: dict = field(default_factory=dict)
    calibration: Calibration | None = None

    def __post_init__(self):
        if self.calibration is not None and tuple(self.calibration.targets) != tuple(self.regressors):
            raise ShearcorrError(f"the calibration is of targets {', '.join(self.calibration.targets)}, the model's "
                                 f"are {', '.join(self.regressors)}")

    @classmethod
    def join(cls, parts) -> "InversionModel":
        """One model from models of the same training run, each trained on its own targets.

        :func:`~shearcorr.inverse.training.train` fits one regressor per target, seeded alike and
        independent of the others, so ``train(ds, s, targets=(t,), seed=k)`` for each t, joined, equals
        ``train(ds, s, targets=ts, seed=k)``: this lets the targets of one model train in parallel.

        Parameters
        ----------
        parts : sequence of InversionModel
            Uncalibrated models on disjoint targets with the same grid, split and fitted feature transform.

        Returns
        -------
        InversionModel
            Regressors of all parts in the order given; the first part's provenance with ``train_seconds``
            summed over the parts.
        """
        parts = list(parts)
        if not parts:
            raise ShearcorrError("joining models needs at least one model")
        first = parts[0]
        seen = []
        for m in parts:
            if m.calibration is not None:
                raise ShearcorrError("cannot join calibrated models: join the parts, then calibrate the result")
            same_features = (m.features.get_params() == first.features.get_params() and all(
                np.array_equal(getattr(m.features, a), getattr(first.features, a))
                for a in vars(first.features) if a.endswith("_") and not a.startswith("_")))
            if (first.grid.difference(m.grid) is not None or not np.array_equal(m.train_index, first.train_index)
                    or not np.array_equal(m.test_index, first.test_index) or not same_features):
                raise ShearcorrError("models to join must share grid, split and feature transform: train them "
                                     "on the same dataset with the same strategy and seed")
            overlap = set(m.regressors) & set(seen)
            if overlap:
                raise ShearcorrError(f"target {sorted(overlap)[0]} is in more than one model to join")
            seen += list(m.regressors)
        prov = {**first.provenance}
        if "train_seconds" in prov:
            prov["train_seconds"] = float(sum(m.provenance.get("train_seconds", 0.0) for m in parts))
        return cls(grid=first.grid, features=first.features,
                   regressors={t: r for m in parts for t, r in m.regressors.items()},
                   train_index=first.train_index, test_index=first.test_index, provenance=prov)

    def calibrated(self, **kwargs) -> "InversionModel":
        """The same model with per-sample stds fitted to its leave-one-out z-scores
        (:func:`shearcorr.inverse.calibration.calibrate`, keyword arguments passed on); the summary is
        recorded as ``provenance["calibration"]``. Meant for noise-aware models (module docstring)."""
        cal, summary = calibrate(self.regressors, **kwargs)
        return replace(self, calibration=cal, provenance={**self.provenance, "calibration": summary})

    def uncalibrated(self) -> "InversionModel":
        """The same model with the GP's own (homoscedastic) stds: no per-sample calibration."""
        prov = {k: v for k, v in self.provenance.items() if k != "calibration"}
        return replace(self, calibration=None, provenance=prov)

    @property
    def targets(self) -> tuple[str, ...]:
        return tuple(self.regressors)

    @property
    def kind(self) -> str:
        """"paper" or "ard" (from the regressors' type)."""
        return "ard" if isinstance(next(iter(self.regressors.values())), ARDGPR) else "paper"

    def check_grid(self, grid: QGrid) -> None:
        """Refuse data on a grid other than the training grid (one line naming the largest difference)."""
        diff = self.grid.difference(grid)
        if diff is not None:
            raise ShearcorrError(f"the data grid differs from the model's: {diff}; train a model on this grid "
                                 "(shearcorr dataset --q-min/--q-max/--n-q/--n-theta), or fit the data directly "
                                 "(shearcorr fit takes any grid)")

    @property
    def noise_configs(self) -> float | None:
        """N the training inputs were drawn for (:func:`shearcorr.inverse.augment.noisy_profiles`), or None."""
        n = self.provenance.get("noise_configs")
        return None if n is None else float(n)

    def trained_configs(self) -> float:
        """N of the training inputs: ``noise_configs`` for a noise-aware model, ``inf`` for the analytic
        engine's exact g (noise-free), else the store's ``configs``."""
        if self.noise_configs is not None:
            return self.noise_configs
        attrs = self.provenance.get("dataset_attrs", {})
        if str(attrs.get("engine", "analytic")) == "analytic":
            return float("inf")
        return float(attrs.get("configs", float("inf")))

    @property
    def levels(self) -> tuple:
        """``(trained N,)``: a single model as a family of one (:class:`~shearcorr.inverse.family.ModelFamily`)."""
        return (self.trained_configs(),)

    def member(self, configs=None) -> "InversionModel":
        """Itself (the interface of :meth:`ModelFamily.member <shearcorr.inverse.family.ModelFamily.member>`)."""
        return self

    def member_for(self, ds, *, sample=None) -> "InversionModel":
        """Itself (the interface of :meth:`ModelFamily.member_for <shearcorr.inverse.family.ModelFamily.member_for>`)."""
        return self

    def noise_warning(self, ds) -> str | None:
        """A warning when the input's noise lies outside what the model was trained on, else None.

        The input's N is its ``configs`` attribute (0 or absent with engine "analytic": noise-free); a
        file with finite ``g_err`` and no ``configs`` counts as noisy. The models of ``shearcorr train``
        learn from their store's g: trained on the analytic engine they never saw the estimator's bias
        and correlated noise, and their errors on noisy input exceed the stated std (docs/results.md).
        """
        trained = self.trained_configs()
        if self.noise_configs is not None and "sample" in ds.dims and self.is_training_dataset(ds):
            return None  # evaluate draws its held-out inputs at the trained N
        attrs = ds.attrs
        n = attrs.get("configs")
        n = float(n) if n is not None and float(n) > 0 else None
        if n is None and str(attrs.get("engine", "")) != "analytic" and input_errors(ds) is not None:
            n = float("nan")  # noisy, N unknown
        if n is None:
            if trained < float("inf"):
                return (f"the input is noise-free but the model was trained for averages over {trained:.0f} "
                        "configurations: its stds are too wide for it")
            return None
        what = "an unknown number of" if n != n else f"{n:.0f}"
        if trained == float("inf"):
            return (f"the input is an average over {what} configurations but the model was trained on noise-free "
                    "g: its errors are larger and its stds too small there (docs/results.md); `shearcorr fit` "
                    "models that noise")
        if n != n or not trained / 2 <= n <= 2 * trained:
            return (f"the input is an average over {what} configurations, the model was trained on {trained:.0f}; "
                    "outside a factor 2 of that its stds are not calibrated; `shearcorr fit` models any N")
        return None

    def displacement_warning(self, ds) -> str | None:
        """A warning when the input's displacement convention (its ``displacement`` attribute, if any)
        differs from the training dataset's: the map from g to D2 differs between them."""
        trained = str(self.provenance.get("dataset_attrs", {}).get("displacement", "uniform"))
        given = ds.attrs.get("displacement")
        if given is None or str(given) == trained:
            return None
        return (f"the input's displacements are {given}, the model was trained on {trained}: retrain on a dataset "
                f"generated with --displacement {given}, or use `shearcorr fit`")

    def is_training_dataset(self, ds) -> bool:
        """True if ``ds`` is the dataset the model was trained on (same parameter fingerprint)."""
        return dataset_fingerprint(ds) == self.provenance.get("dataset_fingerprint")

    def predict_latent(self, P, g_err=None) -> dict[str, Prediction]:
        r"""``{target: (m, s)}``: posterior mean and std of each regressor's modelled u (module docstring).

        Parameters
        ----------
        P : ndarray (n, n_theta + n_q)
            Profile rows [g(theta) | g(q)].
        g_err : ndarray (n, n_q, n_theta), optional
            Standard errors of g(q, theta); adds the linearised input-noise variance :math:`J\Sigma_x J^T`.

        With a :attr:`calibration`, each GP std s_t is first scaled by :math:`c_t(d, v_t)`, d the
        standardised predictions :math:`((m_t - \bar u_t)/s_{u,t})_t` and :math:`v_t` the log of the GP's
        variance over its noise level (:meth:`Calibration.factors`).
        """
        X = self.features.transform(P)
        nt = self.grid.theta.size
        nq = self.grid.q.size
        out = {}
        if g_err is not None:
            g_err = np.asarray(g_err, dtype=np.float64)
            if g_err.shape != (X.shape[0], nq, nt):
                raise ShearcorrError(f"g_err must have shape ({X.shape[0]}, {nq}, {nt}), got {g_err.shape}")
        gp_out = {t: gp.predict_latent(X) for t, gp in self.regressors.items()}
        if self.calibration is not None:
            D = np.column_stack([(gp_out[t][0] - gp.y_mean_) / gp.y_std_ for t, gp in self.regressors.items()])
            V = {t: np.log((gp_out[t][1] / gp.y_std_) ** 2 / gp._noise_variance()) for t, gp in self.regressors.items()}
            c = self.calibration.factors(D, V)
            gp_out = {t: (m, s * c[t]) for t, (m, s) in gp_out.items()}
        for t, gp in self.regressors.items():
            m, s = gp_out[t]
            if g_err is not None:
                G = self.features.pullback(gp.mean_gradient(X))  # (n, nt + nq)
                J = G[:, None, :nt] / nq + G[:, nt:, None] / nt  # (n, nq, nt): dm/dg(q_k, theta_j)
                s = np.sqrt(s**2 + np.sum((J * g_err) ** 2, axis=(1, 2)))
            out[t] = Prediction(m, s)
        return out

    def predict_profiles(self, P, g_err=None) -> dict[str, Prediction]:
        """``{target: (mean, std)}`` for profile rows (point estimate and delta-method std; no grid check)."""
        out = {}
        for t, (m, s) in self.predict_latent(P, g_err).items():
            gp = self.regressors[t]
            y = gp.inverse(m)
            out[t] = Prediction(y, y * s if gp.transform == "log" else s)
        return out

    def intervals(self, latent: dict, level: float) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """``{target: (lo, hi)}``: central ``level`` intervals u^-1(m +- z s) from :meth:`predict_latent`."""
        z = norm.ppf(0.5 + level / 2.0)
        return {t: (self.regressors[t].inverse(m - z * s), self.regressors[t].inverse(m + z * s))
                for t, (m, s) in latent.items()}

    def predict(self, ds, *, sample=None, input_noise: bool = True, polish: bool = True, **options):
        """``{target: (mean, std)}`` for a result or dataset (grid checked; g_err propagated if present,
        except for a noise-aware model, whose GP learned the input noise from its training draws).

        With ``polish`` (default) every noisy input with a full map is refined by the likelihood from the
        GP's answer (:func:`shearcorr.inverse.polishdata.polish_dataset`, ``options`` passed on); the result
        (:class:`~shearcorr.inverse.polishdata.Predictions`) records per sample which path gave the numbers.
        """
        from .polishdata import Predictions, polish_dataset, polished_predictions

        self.check_grid(grid_from_dataset(ds))
        err = input_errors(ds, sample=sample) if input_noise and self.noise_configs is None else None
        gp = self.predict_profiles(profiles(ds, sample=sample), err)
        if not polish:
            return Predictions(gp)
        disp = str(self.provenance.get("dataset_attrs", {}).get("displacement", "uniform"))
        return polished_predictions(gp, polish_dataset(ds, gp, sample=sample, displacement=disp, **options))
