r"""Per-sample (heteroscedastic) predictive stds for noise-aware models, calibrated on leave-one-out z-scores.

The GP of a noise-aware model (:mod:`shearcorr.inverse.augment`) has one white-noise level per target over
the whole prior box, while its error is not uniform: its z-scores are right on average and heavy-tailed
(too wide an interval for most inputs, too narrow for a few; docs/results.md). This module fits a smooth
scale :math:`c_t(x)` of the latent std of each target t, :math:`s_t \to c_t(x)\,s_t`, on data the GP did
not train on.

**Leave-one-out z-scores, in closed form.** For GP regression with :math:`K = K_f + \sigma I` and
standardised targets y (:mod:`shearcorr.inverse.gpcore`), :math:`\alpha = K^{-1}y`, the prediction of
training sample i by the GP of the other n - 1 samples (same hyperparameters) has (Rasmussen & Williams
eq. 5.12)

.. math:: y_i - \mu_{-i} = \alpha_i / [K^{-1}]_{ii},\qquad \sigma^2_{-i} = 1/[K^{-1}]_{ii}
          \quad\Rightarrow\quad z_i = \alpha_i / \sqrt{[K^{-1}]_{ii}} ,

with :math:`\sigma^2_{-i}` the predictive variance including the white noise, exactly the std the model
reports for a new input. The training inputs of a noise-aware model are draws of the estimator at its N,
as the inputs it will meet, so the z_i are held-out z-scores of that noise level at no extra cost.

**The scale.** Each sample is described, for target t, by the model's own prediction of all its targets,
standardised, :math:`d = ((m_k - \bar u_k)/s_{u,k})_k`, and by the GP's own predictive variance of t over
its noise level, :math:`v_t = \log(s_t^2/(s_{u,t}^2\sigma_t))` (for training sample i its leave-one-out
values :math:`\mu_{-i}` and :math:`\sigma^2_{-i}`), so the scale needs nothing but the prediction.
:math:`v_t` keeps what the GP already knows per sample: where it is unsure (an input unlike its training
inputs, e.g. an R_s - gamma L confusion at small D2) its std is large, and without this axis the scale
learned from well-predicted neighbours would shrink that std by up to 15x (measured on held-out draws:
|z| up to 16). :math:`c_t^2(d, v_t)` is a kernel-weighted geometric mean of the neighbours' :math:`z^2`,
shrunk towards the mean of :math:`\log z^2` by a pseudo-count :math:`\kappa` (:data:`PRIOR_COUNT`),
times a constant :math:`a_t` that restores the mean:

.. math:: c_t^2(d, v_t) = a_t \exp\!\Big(\frac{\sum_j w_j\,\log z_{tj}^2 + \kappa\,\overline{\log z_t^2}}
          {\sum_j w_j + \kappa}\Big),\qquad
          w_j = \exp\!\Big(-\tfrac12\sum_k \frac{(d_k - d_{jk})^2}{h_{tk}^2}
          - \tfrac12\frac{(v_t - v_{tj})^2}{h_{t,T+1}^2}\Big),

with :math:`a_t` such that the mean of :math:`z_{ti}^2 / c_{t,-i}^2(d_i)` over the training samples is 1
(:math:`c_{t,-i}`: sample i left out of its own scale). The bandwidths :math:`h_{tk}` (one per target
and descriptor axis) minimise the leave-one-out Gaussian negative log likelihood
:math:`\tfrac12\langle \log c_{t,-i}^2(d_i) + z_{ti}^2/c_{t,-i}^2(d_i)\rangle` (a proper scoring rule for
a variance): the best common h on a log grid (:data:`BANDWIDTHS`), then coordinate descent over the axes.
Far from every training sample (an input outside the prior box) the scale falls back to the average one.

*Why the geometric mean:* the z-scores are heavy-tailed (a few training samples near the edge D2 = 3 of
the prior box have |z| of 4-7 at N = 20 000); an arithmetic mean of :math:`z^2` lets such a sample set
the scale of all its neighbours. On the leave-one-out scores of the default family (train1500 store;
descriptor d alone, a development script) the geometric form had the lower cross-validated NLL in 15 of
17 member-target comparisons, and the arithmetic one left the leave-one-out z std at 0.82-0.99.

Limits: the scale depends on the sample only through the predicted parameters and the GP's variance (it
cannot tell two inputs apart that the GP maps to the same point: a sample at the edge of the prior box
whose prediction is pulled inwards keeps the scale of the interior); the hyperparameters were chosen with every sample, so
the leave-one-out z-scores are slightly optimistic (two hyperparameters per target against ~1000
samples); and the calibration holds for the noise the training inputs were drawn with - on data whose
noise differs from the noise model it is as good as that model.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import scipy.linalg

from ..errors import ShearcorrError

__all__ = ["Calibration", "calibrate", "loo_scores", "PRIOR_COUNT", "BANDWIDTHS", "METHOD"]

#: Name recorded in model files and provenance.
METHOD = "loo-kernel-geometric"
#: Pseudo-count kappa of the shrinkage towards the mean of log z^2 (in units of kernel weight).
PRIOR_COUNT = 1.0
#: Bandwidths tried by the cross-validation (standardised prediction units; the prior box is ~3.5 wide,
#: the largest value all but ignores an axis).
BANDWIDTHS = np.geomspace(0.03, 10.0, 16)
#: Coordinate-descent rounds over the axes after the common bandwidth.
ROUNDS = 2
#: At most this many training samples (a seeded subset) choose the bandwidths; all of them enter the scale.
MAX_CV = 1500
#: Floor of z^2 before the logarithm (an exact 0 has probability 0).
Z2_FLOOR = 1e-12
#: Rows per block when scales are evaluated (memory block x n_calibration floats).
BLOCK = 2048


def loo_scores(gp) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Closed-form leave-one-out prediction and z-score of each training sample of a fitted exact GP.

    Parameters
    ----------
    gp : ExactGP
        A fitted :class:`~shearcorr.inverse.gpr.PaperGPR` or :class:`~shearcorr.inverse.ard.ARDGPR`.

    Returns
    -------
    mu : ndarray (n,)
        Standardised leave-one-out means :math:`\mu_{-i} = y_i - \alpha_i/[K^{-1}]_{ii}`.
    z : ndarray (n,)
        Leave-one-out z-scores :math:`(y_i - \mu_{-i})/\sigma_{-i} = \alpha_i/\sqrt{[K^{-1}]_{ii}}`
        (module docstring); O(n^3/3) for the inverse of the Cholesky factor.
    var : ndarray (n,)
        Standardised leave-one-out predictive variances :math:`\sigma^2_{-i} = 1/[K^{-1}]_{ii}`.
    """
    L = gp._cholesky()
    alpha = np.asarray(gp.alpha_, dtype=np.float64)
    n = alpha.size
    Linv = scipy.linalg.solve_triangular(L, np.eye(n), lower=True, check_finite=False)
    kinv_diag = np.einsum("ij,ij->j", Linv, Linv)  # [K^-1]_ii = sum_k (L^-1)_ki^2
    y = L @ (L.T @ alpha)  # the standardised targets, K alpha
    return y - alpha / kinv_diag, alpha / np.sqrt(kinv_diag), 1.0 / kinv_diag


def _log_scale2(W: np.ndarray, lz: np.ndarray, kappa: float) -> np.ndarray:
    """Shrunk kernel average of log z^2 for weight rows W (the log of c^2 / a, module docstring)."""
    return (W @ lz + kappa * float(lz.mean())) / (W.sum(axis=1) + kappa)


def _weights(sq: list, h) -> np.ndarray:
    """Gaussian kernel weights from per-axis squared differences ``sq`` and bandwidths ``h``."""
    e = sum(q / (hk * hk) for q, hk in zip(sq, h))
    return np.exp(-0.5 * e)


def _loo_fit(sq: list, z2: np.ndarray, h, kappa: float) -> tuple[float, np.ndarray, float]:
    """(leave-one-out NLL, leave-one-out c^2, the factor a that restores the mean) at bandwidths ``h``."""
    W = _weights(sq, h)
    np.fill_diagonal(W, 0.0)
    base = np.exp(_log_scale2(W, np.log(np.maximum(z2, Z2_FLOOR)), kappa))
    a = float(np.mean(z2 / base))
    return 0.5 * float(np.mean(np.log(a * base) + z2 / (a * base))), a * base, a


def _loo_base(D: np.ndarray, z2: np.ndarray, h, kappa: float) -> np.ndarray:
    """exp of the shrunk kernel average of log z^2 at each calibration point, the point itself left out,
    in row blocks (memory BLOCK x n)."""
    lz = np.log(np.maximum(z2, Z2_FLOOR))
    out = np.empty(D.shape[0])
    for a in range(0, D.shape[0], BLOCK):
        rows = np.arange(a, min(a + BLOCK, D.shape[0]))
        W = _weights([(D[rows, k, None] - D[None, :, k]) ** 2 for k in range(D.shape[1])], h)
        W[np.arange(rows.size), rows] = 0.0
        out[rows] = np.exp(_log_scale2(W, lz, kappa))
    return out


def _choose_bandwidths(sq: list, z2: np.ndarray, kappa: float, grid) -> np.ndarray:
    """Bandwidth per axis minimising the leave-one-out NLL: best common value, then coordinate descent."""
    grid = np.asarray(grid, dtype=np.float64)
    T = len(sq)
    nll = [_loo_fit(sq, z2, np.full(T, h), kappa)[0] for h in grid]
    h, best = np.full(T, grid[int(np.argmin(nll))]), float(min(nll))
    for _ in range(ROUNDS):
        moved = False
        for k in range(T):
            for v in grid:
                if v == h[k]:
                    continue
                trial = h.copy()
                trial[k] = v
                f = _loo_fit(sq, z2, trial, kappa)[0]
                if f < best - 1e-12:
                    best, h, moved = f, trial, True
        if not moved:
            break
    return h


@dataclass(frozen=True)
class Calibration:
    r"""Per-sample scale of a model's latent stds (module docstring).

    Attributes
    ----------
    targets : tuple of str
        The model's targets; column k of ``points`` is the standardised prediction of target k.
    points : ndarray (n, T)
        Standardised leave-one-out predictions d_j of the training samples.
    spread : dict of str to ndarray (n,)
        The GP's own leave-one-out variance of each target over its noise level,
        :math:`v_{tj} = \log(\sigma^2_{t,-j}/\sigma_t)` (the last descriptor axis of target t).
    z2 : dict of str to ndarray (n,)
        Squared leave-one-out z-scores per target.
    bandwidth : dict of str to list of float
        Kernel bandwidths h_tk, one per axis: the T predictions, then v_t.
    factor : dict of str to float
        The constant a_t that restores the mean of z^2.
    prior_count : float
        Pseudo-count kappa of the shrinkage towards the mean of log z^2.
    """

    targets: tuple
    points: np.ndarray
    spread: dict
    z2: dict
    bandwidth: dict
    factor: dict
    prior_count: float = PRIOR_COUNT

    def __post_init__(self):
        P = np.asarray(self.points, dtype=np.float64)
        T = len(self.targets)
        if P.ndim != 2 or P.shape[1] != T or P.shape[0] < 2 or not np.all(np.isfinite(P)):
            raise ShearcorrError(f"calibration points must be finite with shape (n >= 2, {T}), got {P.shape}")
        for t in self.targets:
            z2 = np.asarray(self.z2.get(t, np.empty(0)), dtype=np.float64)
            if z2.shape != (P.shape[0],) or not np.all(np.isfinite(z2)) or np.any(z2 < 0) or not np.any(z2 > 0):
                raise ShearcorrError(f"calibration z^2 of {t} must be {P.shape[0]} finite values >= 0, not all 0")
            v = np.asarray(self.spread.get(t, np.empty(0)), dtype=np.float64)
            if v.shape != (P.shape[0],) or not np.all(np.isfinite(v)):
                raise ShearcorrError(f"calibration spreads of {t} must be {P.shape[0]} finite values")
            h = np.asarray(self.bandwidth.get(t, []), dtype=np.float64)
            if h.shape != (T + 1,) or not np.all(np.isfinite(h)) or np.any(h <= 0):
                raise ShearcorrError(f"calibration bandwidths of {t} must be {T + 1} numbers > 0, got {self.bandwidth.get(t)!r}")
            a = self.factor.get(t)
            if not (isinstance(a, (int, float)) and np.isfinite(a) and a > 0):
                raise ShearcorrError(f"calibration factor of {t} must be a number > 0, got {a!r}")
        if not (np.isfinite(self.prior_count) and self.prior_count > 0):
            raise ShearcorrError(f"calibration prior count must be > 0, got {self.prior_count!r}")

    def factors(self, D, V: dict) -> dict[str, np.ndarray]:
        r"""Scale :math:`c_t(d, v_t)` of each target's latent std.

        Parameters
        ----------
        D : ndarray (m, T)
            Standardised predictions :math:`((m_t - \bar u_t)/s_{u,t})_t` per input, columns in the order
            of ``targets``.
        V : dict of str to ndarray (m,)
            :math:`v_t = \log(s_t^2/(s_{u,t}^2\sigma_t))`: the GP's latent variance of target t over its
            noise level (standardised units).

        Returns
        -------
        dict of str to ndarray (m,)
        """
        D = np.asarray(D, dtype=np.float64)
        if D.ndim != 2 or D.shape[1] != len(self.targets):
            raise ShearcorrError(f"calibration needs predictions of shape (m, {len(self.targets)}), got {D.shape}")
        P = np.asarray(self.points, dtype=np.float64)
        out = {t: np.empty(D.shape[0]) for t in self.targets}
        for a in range(0, D.shape[0], BLOCK):
            sq = [(D[a:a + BLOCK, k, None] - P[None, :, k]) ** 2 for k in range(P.shape[1])]
            for t in self.targets:
                v = np.asarray(V[t], dtype=np.float64)[a:a + BLOCK]
                sq_t = sq + [(v[:, None] - np.asarray(self.spread[t], dtype=np.float64)[None, :]) ** 2]
                lz = np.log(np.maximum(np.asarray(self.z2[t], dtype=np.float64), Z2_FLOOR))
                W = _weights(sq_t, self.bandwidth[t])
                out[t][a:a + BLOCK] = np.sqrt(self.factor[t] * np.exp(_log_scale2(W, lz, self.prior_count)))
        return out

    # --- storage (model files): plain arrays + JSON ----------------------------------------------------
    def arrays(self) -> dict:
        """Arrays stored in a model file: ``calibration_points``, ``calibration_z2_<target>``,
        ``calibration_spread_<target>``."""
        out = {"calibration_points": np.asarray(self.points, dtype=np.float64)}
        out.update({f"calibration_z2_{t}": np.asarray(self.z2[t], dtype=np.float64) for t in self.targets})
        out.update({f"calibration_spread_{t}": np.asarray(self.spread[t], dtype=np.float64) for t in self.targets})
        return out

    def meta(self) -> dict:
        """JSON stored in a model file (the rest of the state)."""
        return {"method": METHOD, "targets": list(self.targets), "prior_count": float(self.prior_count),
                "bandwidth": {t: [float(v) for v in self.bandwidth[t]] for t in self.targets},
                "factor": {t: float(self.factor[t]) for t in self.targets}}

    @classmethod
    def from_stored(cls, arrays: dict, meta: dict) -> "Calibration":
        """Rebuild from :meth:`arrays` and :meth:`meta` (values checked; one ShearcorrError if damaged)."""
        if not isinstance(meta, dict) or meta.get("method") != METHOD:
            raise ShearcorrError(f"unknown calibration method {meta.get('method') if isinstance(meta, dict) else meta!r}")
        targets = tuple(str(t) for t in meta["targets"])
        return cls(targets=targets, points=arrays["calibration_points"],
                   spread={t: arrays[f"calibration_spread_{t}"] for t in targets},
                   z2={t: arrays[f"calibration_z2_{t}"] for t in targets},
                   bandwidth={t: [float(v) for v in meta["bandwidth"][t]] for t in targets},
                   factor={t: float(meta["factor"][t]) for t in targets}, prior_count=float(meta["prior_count"]))


def calibrate(regressors: dict, *, prior_count: float = PRIOR_COUNT, bandwidths=BANDWIDTHS,
              seed: int = 0) -> tuple[Calibration, dict]:
    r"""Fit the per-sample scale of every target of a model from its leave-one-out z-scores.

    Parameters
    ----------
    regressors : dict of str to ExactGP
        The fitted regressors of one model (all on the same training inputs).
    prior_count : float
        Pseudo-count kappa (module docstring).
    bandwidths : sequence of float
        Bandwidths tried by the leave-one-out cross-validation.
    seed : int
        Seed of the subset of :data:`MAX_CV` samples that chooses the bandwidths (when there are more).

    Returns
    -------
    (Calibration, dict)
        The calibration and a JSON-able summary for the provenance: bandwidths, factors, and the std,
        robust std (1.4826 MAD) and kurtosis of the leave-one-out z-scores before and after the scale
        (the latter with each sample left out of its own scale), the seconds it took.
    """
    t0 = time.perf_counter()
    targets = tuple(regressors)
    mus, zs, vs = {}, {}, {}
    for t, gp in regressors.items():
        mus[t], zs[t], var = loo_scores(gp)
        vs[t] = np.log(var / gp._noise_variance())
    D = np.column_stack([mus[t] for t in targets])
    n = D.shape[0]
    sub = np.sort(np.random.default_rng(seed).choice(n, MAX_CV, replace=False)) if n > MAX_CV else np.arange(n)
    sq_sub = [(D[sub, k, None] - D[None, sub, k]) ** 2 for k in range(len(targets))]
    bw, fac = {}, {}
    summary = {"method": METHOD, "prior_count": float(prior_count), "n": int(n), "n_cv": int(sub.size),
               "bandwidth": {}, "factor": {}, "loo_z": {}, "loo_z_calibrated": {}}
    for t in targets:
        z2 = zs[t] ** 2
        Dt = np.column_stack([D, vs[t]])
        h = _choose_bandwidths(sq_sub + [(vs[t][sub, None] - vs[t][None, sub]) ** 2], z2[sub], prior_count, bandwidths)
        base = _loo_base(Dt, z2, h, prior_count)
        a = float(np.mean(z2 / base))
        c2 = a * base
        bw[t], fac[t] = [float(v) for v in h], a
        summary["bandwidth"][t], summary["factor"][t] = bw[t], fac[t]
        summary["loo_z"][t] = _shape(zs[t])
        summary["loo_z_calibrated"][t] = _shape(zs[t] / np.sqrt(c2))
    summary["seconds"] = time.perf_counter() - t0
    return Calibration(targets=targets, points=D, spread=vs, z2={t: zs[t] ** 2 for t in targets}, bandwidth=bw,
                       factor=fac, prior_count=float(prior_count)), summary


def _shape(z: np.ndarray) -> dict:
    """std, robust std (1.4826 MAD) and kurtosis of z-scores."""
    z = np.asarray(z, dtype=np.float64)
    return {"std": float(np.std(z)), "robust_std": float(1.4826 * np.median(np.abs(z - np.median(z)))),
            "kurtosis": float(np.mean((z - z.mean()) ** 4) / np.var(z) ** 2)}
