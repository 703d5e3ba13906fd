r"""Polish of an amortized prediction: a few Gauss-Newton steps of the likelihood from the GP's answer.

The amortized model (a GP on g(theta)+g(q), :mod:`shearcorr.inverse.family`) is fast but its error is
its interpolation between training samples, not the noise of the data: at 20 000 configurations
10-250x the Cramér-Rao bound (docs/results.md). The likelihood of the direct fit
(:mod:`shearcorr.inverse.fit`, :class:`~shearcorr.inverse.likelihood.Likelihood`) reaches the bound but
needs a scan and a trust-region search. The polish starts where the GP ends and takes a fixed number
of steps of the same likelihood, in the latent coordinates :math:`x = (R_s^2, D_2, \gamma L, n_{L^2})`:

.. math:: r(x) = \big[\Sigma^{-1/2}(d - E[\hat g_N](x))\,;\ (n_{L^2} - \mu_n)/\sigma_n\big],\qquad
          x_{k+1} = \Pi\big(x_k - (J^TJ)^{-1}J^T r(x_k)\big)

with d the measured map (the points of :func:`~shearcorr.inverse.likelihood.engine_points`),
:math:`E[\hat g_N]` the exact engine plus the estimator's O(1/N) bias
(:func:`~shearcorr.inverse.noise.expected_g`), :math:`\Sigma = D + UU^T` the noise covariance with its
shared configuration part (:func:`~shearcorr.inverse.noise.ensemble_noise`, ``noise_samples``
configurations; scaled per q row to the data's g_err), built once at the start :math:`x_0` (the GP's
means, n_l2 at its prior mean :data:`~shearcorr.inverse.likelihood.N_L2_PRIOR`) -- its mean is
:math:`E[\hat g_N](x_0)`, so the first residual costs nothing more. n_l2 is a parameter with the fit's
Gaussian prior (never held silently). :math:`\Pi` projects on the fit's bounds
(:data:`~shearcorr.inverse.likelihood.FIT_BOUNDS`; R_s^2 >= 0). The inputs of the bias that depend on
n_l2 and R_s alone (A, B, E[U^k], :func:`~shearcorr.inverse.noise.ensemble_limits`, about 1.5 engine
calls each) are kept at their values at the point of the covariance: the bias is O(1/N), and moving R_s by
0.02 or n_l2 by 20 % changes chi^2 through them by < 0.003 at N = 300. J is the forward-difference Jacobian at
:math:`x_0` (:meth:`Likelihood.jacobian <shearcorr.inverse.likelihood.Likelihood.jacobian>`, 4 engine
calls), updated after each step by Broyden's rank-one rule
:math:`J \leftarrow J + (\Delta r - J\Delta x)\Delta x^T/\Delta x^T\Delta x` (no new engine calls); a step is
kept only when it lowers :math:`|r|^2` (else halved, up to twice). Converged when the next step would
lower :math:`\chi^2 = |r|^2` by less than :data:`CONVERGED`; otherwise -- a poor start, or a step that
failed (the R_s^2-n_l2 valley is curved near R_s = 0) -- J is recomputed at the current point (and the
covariance too when the estimate moved by more than the fit's rebuild threshold) and the steps
repeated, up to :data:`MAX_REFRESH` times. The latent covariance is the fit's sandwich

.. math:: C = A^{-1} M A^{-1},\qquad A = J^TJ,

M the meat with an independent sample of the shared covariance
(:meth:`~shearcorr.inverse.likelihood.Likelihood.score_covariance`; with K = 8 configurations A^-1
alone is biased low by the weights following their sampling noise), J a fresh forward-difference
Jacobian at the result (Broyden's updates serve the steps only: along the curved R_s^2-n_l2 valley they
bend J; and a J from the start overstates the information on R_s^2 near 0, where the baseline term
B - 1 ∝ R_s^4 has a slope in R_s^2 that grows with R_s^2: sd(R_s^2) 3x too small on a Monte Carlo set at
R_s = 0.05, N = 300), the prior of n_l2 included in J; intervals :math:`x \pm z\sqrt{C_{kk}}`, for
R_s the interval of R_s^2 mapped back with the lower end clipped at 0, or, where the 95 % interval of R_s^2
reaches 0, the profile-likelihood interval as in the fit (:func:`shearcorr.inverse.fit.profile_near_zero`).

Cost: two noise models (the covariance and the meat; the shared factor dominates: ``noise_samples`` = 8 and
``meat_samples`` = 16 configurations by default; 64 and 64 in the fit)
and 8 + ``steps`` engine evaluations on the full map, ~0.3-0.6 s on one core (docs/results.md).

Hand-over: when the steps have not converged after the refreshes, or end with R_s^2 = 0 inside the 95 %
interval of the result (at the bound, or near it), the answer is the full fit's
(:func:`shearcorr.inverse.fit.fit_g`: its scan and starts), with a warning saying so -- near R_s = 0 the
likelihood in R_s^2 is far from quadratic (g is steep in R_s^2 at the form-factor minima) and the steps can
settle on the bound or a false minimum of the R_s^2-n_l2 valley (2 of 30 Monte Carlo sets of the quick report,
N = 300), or crawl along the curved valley while each step predicts a chi^2 decrease below :data:`CONVERGED`
(a Stokes-Einstein set at R_s = 0.016, N = 300: the steps stopped at R_s = 0.056 +- 0.016, chi^2 1.9 above
the fit's minimum at 0.027, the fresh Jacobian there predicting 0.10 per step while four steps gained 1.8).
Near R_s = 0 the answer costs the fit's time (1-3 s) instead of the polish's. Fallback: when the polish fails (an exception of the engine, a non-finite residual, no step that lowers
:math:`|r|^2`), the GP's answer is kept with a warning; noise-free inputs (no configs, no g_err) and
inputs without a full map (profiles only) keep it too. :attr:`Polished.path` says which.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..errors import ShearcorrError
from ..files import JSONRecord
from ..params import QGrid
from .likelihood import N_L2_PRIOR, Likelihood

__all__ = ["Polished", "polish_g", "POLISH_STEPS", "POLISH_SAMPLES", "POLISH_MEAT_SAMPLES"]

#: Gauss-Newton (Broyden) steps after the start.
POLISH_STEPS = 2
#: Configurations sampled for the shared part of the covariance that weights the data (the fit uses 64). 8 since
#: 2026-11-30 (16 before): on 100 + 46 + 100 Monte Carlo sets (uniform N = 300, 2000; Stokes-Einstein N = 300)
#: the same Err, RMS/CRB and z std within their scatter, one noise model's kernel half as long (docs/results.md).
POLISH_SAMPLES = 8
#: Configurations of the sandwich's independent second sample (the meat): 16 -- with 8 the R_s z std rose by
#: 0.04-0.06 on the same three sets of sets (a noisier meat), with 16 it did not.
POLISH_MEAT_SAMPLES = 16
#: Step halvings tried before a step is given up.
_HALVINGS = 2
#: Converged when the next Gauss-Newton step would lower chi^2 by less than this.
CONVERGED = 0.2
#: Fresh Jacobians (and covariances, when the estimate moved by more than the fit's rebuild threshold)
#: tried when the steps have not converged or a step failed: a poor start costs up to this many times more.
MAX_REFRESH = 3


@dataclass(frozen=True)
class Polished(JSONRecord):
    """Outcome of :func:`polish_g` for one input.

    Attributes
    ----------
    values, std : dict of str to float
        ``rs, d2, gamma_l, n_l2``; the R_s std is half the width of its 68 % interval (as the fit's).
    intervals : dict
        ``{target: {"68": [lo, hi], "95": [lo, hi]}}``.
    latent : dict
        ``names`` (rs2, d2, gamma_l, n_l2), ``value`` and ``cov`` (4 x 4): what z-scores use.
    path : str
        ``"polished"`` or ``"gp"`` (the start was kept: see ``warnings``).
    chi2_start, chi2 : float
        :math:`|r|^2` at the start and at the result (prior term included).
    steps : int
        Steps taken (kept).
    n_eval : int
        Engine evaluations (the noise model's counted as one).
    seconds : float
    warnings : list of str
    """

    values: dict
    std: dict
    intervals: dict
    latent: dict
    path: str
    chi2_start: float
    chi2: float
    steps: int
    n_eval: int
    seconds: float
    warnings: list = field(default_factory=list)

    def to_dict(self) -> dict:
        out = {k: getattr(self, k) for k in ("values", "std", "intervals", "path", "chi2_start", "chi2", "steps",
                                             "n_eval", "seconds", "warnings")}
        out["latent"] = {"names": list(self.latent["names"]), "value": list(map(float, self.latent["value"])),
                         "cov": np.asarray(self.latent["cov"]).tolist()}
        return out


def _start_vector(start: dict, prob: Likelihood) -> np.ndarray:
    rs = max(float(start["rs"]), 0.0)
    x = np.array([rs * rs, float(start["d2"]), float(start["gamma_l"]), float(start.get("n_l2", prob.prior[0]))])
    if not np.all(np.isfinite(x)):
        raise ShearcorrError(f"the start of the polish is not finite: {start}")
    return np.clip(x, prob.lo, prob.hi)


def _kept(start: dict, start_std: dict | None, warning: str, t0: float, n_eval: int = 0) -> Polished:
    """The start (the GP's answer) as the result, with ``warning``."""
    from scipy.stats import norm

    values = {t: float(start[t]) for t in ("rs", "d2", "gamma_l")}
    values["rs"] = max(values["rs"], 0.0)
    std = {t: float((start_std or {}).get(t, np.nan)) for t in values}
    iv = {t: {f"{int(round(100 * lv))}": [values[t] - norm.ppf(0.5 + lv / 2) * std[t],
                                          values[t] + norm.ppf(0.5 + lv / 2) * std[t]] for lv in (0.68, 0.95)}
          for t in values}
    lat = np.array([values["rs"] ** 2, values["d2"], values["gamma_l"]])
    cov = np.diag([(2.0 * values["rs"] * std["rs"]) ** 2, std["d2"] ** 2, std["gamma_l"] ** 2])
    return Polished(values=values, std=std, intervals=iv, latent={"names": ["rs2", "d2", "gamma_l"], "value": lat,
                    "cov": cov}, path="gp", chi2_start=float("nan"), chi2=float("nan"), steps=0, n_eval=n_eval,
                    seconds=time.perf_counter() - t0, warnings=[warning])


def _change(x, ref) -> np.ndarray:
    """|change| of R_s (absolute), D2, gamma L and n_l2 (relative) between two latent vectors."""
    return np.abs(np.array([np.sqrt(max(x[0], 0.0)) - np.sqrt(max(ref[0], 0.0)),
                            *((x[1:] - ref[1:]) / np.maximum(np.abs(ref[1:]), 1e-12))]))


def _noise_at(prob: Likelihood, x) -> np.ndarray:
    """Build the covariance at x (sets ``prob.whiten``) and freeze the limits (A, B, E[U^k]) of x for the
    model until the next call (module docstring); returns the residual at x (the noise model's mean is
    the model there)."""
    from .noise import ensemble_limits

    prob.frozen_limits = ensemble_limits(prob.params(x), prob.grid.q)
    nm = prob.use_covariance(x, full=True)
    r = np.append(prob.whiten(prob.d - prob.reduce(nm.mean)), (x[3] - prob.prior[0]) / prob.prior[1])
    prob.n_eval += 1
    if not np.all(np.isfinite(r)):
        raise FloatingPointError("non-finite residual")
    prob._last = (x.copy(), r)
    return r


def _jacobian(prob: Likelihood, x, r) -> np.ndarray:
    """Forward-difference Jacobian at x (the residual r at x reused)."""
    prob._last = (x.copy(), r)
    return prob.jacobian(x)


def _broyden(prob: Likelihood, x, r, J, steps: int):
    r"""Up to ``steps`` Gauss-Newton steps with Broyden updates of J (module docstring).

    Returns x, r, J, the steps kept, the chi^2 decrease the next step predicts, :math:`|J\Delta x|^2`, and
    whether a step failed (no halving lowered chi^2: the updated J is off, a fresh one is needed).
    """
    chi2, taken, stalled = float(r @ r), 0, False
    for _ in range(steps):
        dx = -np.linalg.lstsq(J, r, rcond=None)[0]
        for _half in range(_HALVINGS + 1):
            xn = np.clip(x + dx, prob.lo, prob.hi)
            rn = prob.residual(xn)
            if np.all(np.isfinite(rn)) and float(rn @ rn) < chi2:
                break
            dx = 0.5 * dx
        else:
            stalled = True
            break
        step = xn - x
        if step @ step > 0:
            J = J + np.outer((rn - r) - J @ step, step) / (step @ step)
        x, r, chi2 = xn, rn, float(rn @ rn)
        taken += 1
    dx = -np.linalg.lstsq(J, r, rcond=None)[0]
    dx = np.clip(x + dx, prob.lo, prob.hi) - x
    return x, r, J, taken, float(np.sum((J @ dx) ** 2)), stalled


def polish_g(data, grid: QGrid, start: dict, *, configs: float, start_std: dict | None = None, g_err=None,
             estimator: str = "symmetric", displacement: str = "uniform", steps: int = POLISH_STEPS,
             noise_samples: int = POLISH_SAMPLES, meat_samples: int = POLISH_MEAT_SAMPLES,
             n_l2_prior: tuple[float, float] = N_L2_PRIOR, seed: int = 0) -> Polished:
    r"""Polish an estimate of (R_s, D2, gamma L) of a measured map by Gauss-Newton steps (module docstring).

    Parameters
    ----------
    data : array-like (n_q, n_theta)
        The measured g(q, theta) on ``grid`` (q in 1/r0, theta in rad from the flow axis).
    grid : QGrid
    start : dict
        ``rs, d2, gamma_l`` (and optionally ``n_l2``) to start from: the amortized model's means.
    configs : float
        N, configurations averaged in ``data`` (>= 2).
    start_std : dict, optional
        Stds of the start, returned with it when the polish fails.
    g_err : array-like (n_q, n_theta), optional
        The data's standard errors: they scale the covariance per q row (as in the fit).
    estimator, displacement : as in :func:`shearcorr.inverse.fit.fit_g`.
    steps : int, default :data:`POLISH_STEPS`
        Gauss-Newton steps (0: only the covariance at the start, the GP's means kept).
    noise_samples : int, default :data:`POLISH_SAMPLES`
        K, configurations for the shared part of the covariance (0: diagonal).
    meat_samples : int, default :data:`POLISH_MEAT_SAMPLES`
        Configurations of the sandwich's independent second sample (unused with a diagonal covariance).
    n_l2_prior : (mean, std)
        Gaussian prior of n_l2 (the fit's).
    seed : int
        Seed of the K configurations.

    Returns
    -------
    Polished
    """
    from .fit import _REBUILD_CHANGE, _intervals, profile_near_zero, rs2_reaches_zero

    t0 = time.perf_counter()
    d = np.asarray(data, dtype=np.float64)
    if d.shape != grid.shape:
        raise ShearcorrError(f"the map to polish has shape {d.shape}, the grid needs {grid.shape}")
    prob = Likelihood(d, grid, "g", float(configs), g_err, estimator, displacement, None, n_l2_prior,
                      int(noise_samples), seed)
    try:
        x = _start_vector(start, prob)
        r = _noise_at(prob, x)
        x_cov, chi2_start = x.copy(), float(r @ r)
        J = _jacobian(prob, x, r)
        x, r, J, taken, pred, stalled = _broyden(prob, x, r, J, int(steps))
        for _ in range(MAX_REFRESH if steps else 0):
            if pred <= CONVERGED and not stalled:
                break
            # far from the start (a poor amortized answer): the covariance and the Jacobian at x
            if np.any(_change(x, x_cov) > np.array(_REBUILD_CHANGE)):
                r = _noise_at(prob, x)
                x_cov = x.copy()
            J = _jacobian(prob, x, r)
            x, r, J, more, pred, stalled = _broyden(prob, x, r, J, int(steps))
            taken += more
            if stalled and not more:
                break  # even the fresh Jacobian finds no step that lowers chi2: a minimum
        if steps and not taken:
            return _kept(start, start_std, f"the polish found no step that lowers chi2 (start chi2 {chi2_start:.4g})",
                         t0, prob.n_eval)
        chi2 = float(r @ r)
        J_fd = _jacobian(prob, x, r)  # at the result: near R_s = 0 the baseline's slope in R_s^2 grows as R_s^2
        cov = np.linalg.pinv(J_fd.T @ J_fd)
        cov = cov @ (prob.score_covariance(J_fd[:-1], int(meat_samples)) + np.outer(J_fd[-1], J_fd[-1])) @ cov  # sandwich (fit)
        if not np.all(np.isfinite(cov)):
            raise FloatingPointError("non-finite covariance")
    except (ShearcorrError, FloatingPointError, np.linalg.LinAlgError, ValueError) as exc:
        return _kept(start, start_std, f"polish failed ({exc}); the amortized model's answer is kept", t0,
                     prob.n_eval)
    if steps and (pred > CONVERGED or x[0] <= 0.0 or rs2_reaches_zero(x, cov)):
        why = ("did not converge" if pred > CONVERGED else "ended at R_s = 0" if x[0] <= 0.0 else
               "ended with R_s^2 = 0 inside its 95 % interval")
        return _handed_over(d, grid, configs, g_err, estimator, displacement, n_l2_prior, seed, taken, prob.n_eval,
                            chi2_start, t0, why)
    values, std, iv = _intervals(x, cov, prob.names)
    profile_near_zero(prob, x, J_fd, cov, iv, std)
    warnings = []
    for k, name in enumerate(prob.names):
        span = prob.hi[k] - prob.lo[k]
        if name != "rs2" and (x[k] - prob.lo[k] < 1e-6 * span or prob.hi[k] - x[k] < 1e-6 * span):
            warnings.append(f"{name} is at its bound {x[k]:.4g}; the interval is not reliable")
    if x[0] <= 0.0:
        warnings.append(f"R_s^2 is at 0: R_s is not resolved (95 % upper limit {iv['rs']['95'][1]:.3g})")
    return Polished(values=values, std=std, intervals=iv, latent={"names": list(prob.names), "value": x.copy(),
                    "cov": cov}, path="polished", chi2_start=chi2_start, chi2=chi2, steps=taken, n_eval=prob.n_eval,
                    seconds=time.perf_counter() - t0, warnings=warnings)




def _handed_over(d, grid, configs, g_err, estimator, displacement, n_l2_prior, seed, steps, n_eval, chi2_start, t0,
                 why: str) -> Polished:
    """The full fit's answer (:func:`shearcorr.inverse.fit.fit_g`: scan, several starts, trust region) where the
    steps from the amortized start stalled or stopped at the R_s^2 bound: near R_s = 0 the likelihood in R_s^2
    is far from quadratic (the form-factor minima make g steep in R_s^2 there), the steps can settle on the
    bound or a false minimum of the R_s^2-n_l2 valley, and a Jacobian at the bound misstates sd(R_s^2)."""
    from .fit import fit_g

    f = fit_g(d, grid, configs=configs, g_err=g_err, estimator=estimator, displacement=displacement,
              n_l2_prior=n_l2_prior, seed=seed)
    return Polished(values=f.values, std=f.std, intervals=f.intervals, latent=f.latent, path="polished",
                    chi2_start=chi2_start, chi2=f.chi2, steps=steps, n_eval=n_eval + f.n_eval,
                    seconds=time.perf_counter() - t0,
                    warnings=[f"the polish {why}: the numbers are the full fit's (`shearcorr fit`)"] + list(f.warnings))
