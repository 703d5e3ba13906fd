r"""Direct fit of one pair: from the correlation map to (gamma L, D2, R_s, flow angle, beta) with uncertainties.

:func:`fit_pair`: weighted least squares of

.. math:: C_b - 1 = \beta\, y_{\rm model}(q_b, \phi_b - \phi_0;\ \gamma L, D_2, R_s)

over the usable bins, with the contrast beta as a nuisance parameter tied to its self-calibrated
estimate by a Gaussian prior (fixed when the user gives it) and eliminated in closed form. Start
values from a coarse (gamma L, D2) grid times a full scan of the flow angle; errors from a variance
law evaluated at the model prediction (two passes), never from the bins' own scatter.
Covariance (J^T J)^-1, scaled by chi2_red when chi2_red > 1; the second-order bias subtracted (step 6 of
:func:`fit_pair`). R_s is held at its prior centre by
default (one pair does not constrain it; ``fit_rs=True`` fits it within [rs_min, rs_max] and reports it as
constrained only when its std is below the prior std (rs_max - rs_min)/sqrt(12)).

The GPR inversions of a pair are in :mod:`.regression`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

from ..errors import ShearcorrError
from ..files import JSONRecord
from ..rng import child_seed, seed_sequence
from .flow import wrap_half
from .nlbias import second_order_bias
from .model import (configuration_maps, configuration_profiles, configuration_samples, draw_configurations,
                    profile_slope, rs_levels)
from .results import Estimate

__all__ = ["fit_pair", "PairFit", "PAIR_PARAMS", "MIN_BINS", "condition_on_profile", "pair_profile"]

#: The pair model's parameter vector, in the order of :meth:`BinnedPairModel.y`'s arguments.
PAIR_PARAMS = ("gamma_l", "d2", "rs", "flow")
#: Fewest usable bins a fit accepts.
MIN_BINS = 8
#: Optimiser scale per parameter (gamma L, D2, R_s in R0 and flow in rad): their typical uncertainties.
X_SCALE = np.array([1.0, 0.1, 0.05, 0.01])
#: Central-difference steps of the covariance Jacobian per parameter (beta: this fraction of beta).
JAC_STEP = np.array([0.05, 0.005, 0.005, 1e-3])
BETA_JAC_STEP = 1e-3
#: Lower bound of D2 in the fit (R0): keeps the model away from the perfectly correlated limit.
D2_MIN = 0.01
#: Half-width (rad) of the flow-angle bounds around the start value.
FLOW_HALF_RANGE = np.pi / 4
#: Single-configuration maps sampled for the intrinsic (configuration) term of the covariance. The spread
#: is heavy-tailed (a few large particles dominate at R_s >~ 0.2): 32 samples gave a configuration std
#: anywhere in 0.77-1.54 x its converged value depending on the seed; 128 give 0.93-1.17 x
#: (docs/experiment.md, "The error of one pair").
N_CONFIGS = 128
#: With the pair's intensity profile (``fit_pair(profile=...)``): configuration draws over the R_s prior per sample
#: kept; the term is computed from the ``n_configs`` draws whose profile slope is nearest the pair's (1/8 of the prior).
CONDITION_DRAWS = 8
#: Child stream of ``seed`` for the conditioning draws (the marginal draws use children 0..15, one per R_s level).
CONDITION_STREAM = 1000
#: Fewest q rows with a positive, finite ring intensity for the profile conditioning.
MIN_PROFILE_ROWS = 4
#: Steps of the Hessian of the model in (gamma L, D2, R_s) for the bias correction (larger than JAC_STEP: second
#: differences); the flow angle's step is HESS_FLOW_CELLS cells of the model's fine theta grid (the model interpolates
#: linearly there, so a step of whole cells gives the grid's own second difference).
HESS_STEP = np.array([0.2, 0.02, 0.02])
HESS_FLOW_CELLS = 2
#: The bias correction is applied only where the expansion holds: |bias| < BIAS_MAX_SIGMA x the parameter's std (a
#: larger predicted bias means the second-order term is not small against the first; docs/experiment.md).
BIAS_MAX_SIGMA = 1.0
#: ... and only where gamma L is determined to within this relative std (std / value): the expansion is in the noise
#: relative to the scale of the model's nonlinearity, which for gamma L is its value (where the decorrelation is weak the
#: map depends on (gamma L)^2, and the estimate behaves like the square root of a noisy quantity, whose second-order
#: bias ~ sigma^2 / value grows without bound at a low estimate: the mean of the plug-in corrections then exceeds the
#: bias, tests/test_experiment_nlbias.py). Hard pairs of seed 6124 with std/value > 0.25 had their flow part
#: over-corrected (+4.8 % -> -12.9 %, 8 pairs; the 33 below: +2.2 % -> -0.2 %); docs/experiment.md.
BIAS_MAX_REL_STD = 0.25
#: least_squares settings of the refits (relative finite-difference step, tolerances, evaluations).
LSQ = {"diff_step": 1e-4, "xtol": 1e-8, "ftol": 1e-9, "max_nfev": 200}


def _beta_star(m, c, w, beta0, beta_err):
    """Closed-form contrast for fixed shape m: weighted LS of c = beta m with the prior N(beta0, beta_err)."""
    if not beta_err > 0:
        return beta0
    num = np.sum(w * m * c) + beta0 / beta_err**2
    den = np.sum(w * m * m) + 1.0 / beta_err**2
    return num / den


@dataclass(frozen=True)
class PairFit(JSONRecord):
    """Result of :func:`fit_pair`. Estimates are (value, std); angles in rad.

    ``free`` names the fitted parameters; ``std_speckle`` and ``std_configuration`` split the std of the
    free parameters (and beta) into the speckle-noise and the single-configuration terms. ``model_y`` (the
    fitted y on all bins) and ``errors`` (of the usable bins' C) are arrays outside the JSON.
    """

    gamma_l: Estimate
    d2: Estimate
    rs: Estimate
    rs_constrained: bool
    rs_fitted: bool
    flow_angle: Estimate
    beta: Estimate
    chi2: float
    dof: int
    chi2_red: float
    n_bins: int
    success: bool
    nfev: int
    free: tuple
    std_speckle: tuple
    std_configuration: tuple
    model_y: np.ndarray
    errors: np.ndarray
    std_configuration_marginal: tuple = ()
    conditioning: dict | None = None
    bias_correction: dict | None = None

    def to_dict(self) -> dict:
        return {"gamma_l": list(self.gamma_l), "d2": list(self.d2), "rs": list(self.rs),
                "rs_constrained": self.rs_constrained, "rs_fitted": self.rs_fitted, "flow_angle": list(self.flow_angle),
                "beta": list(self.beta), "chi2": self.chi2, "dof": self.dof, "chi2_red": self.chi2_red,
                "n_bins": self.n_bins, "success": self.success, "nfev": self.nfev, "free": list(self.free),
                "std_speckle": list(self.std_speckle), "std_configuration": list(self.std_configuration),
                "std_configuration_marginal": list(self.std_configuration_marginal), "conditioning": self.conditioning,
                "bias_correction": self.bias_correction}


class _Problem:
    """The fit's data and model: the full vector v = (gamma L, D2, R_s, flow) with ``free`` components
    fitted and the rest at ``base``; residuals with beta eliminated or explicit."""

    def __init__(self, cmap, model, free, base):
        self.ok = cmap.ok
        self.c = cmap.C[self.ok] - 1.0
        self.beta0, self.beta_err = cmap.beta, cmap.beta_err
        self.model, self.free, self.base = model, free, base

    def full(self, xf):
        v = self.base.copy()
        v[self.free] = xf
        return v

    def shape(self, xf):
        """y_model on the usable bins at the free parameters ``xf``."""
        gamma_l, d2, rs, flow = self.full(xf)
        return self.model.y(gamma_l, d2, rs, flow)[self.ok]

    def beta_at(self, m, err):
        return _beta_star(m, self.c, 1.0 / err**2, self.beta0, self.beta_err)

    def weighted(self, m, beta, err):
        """(c - beta m)/err, and the prior term of beta when it has one."""
        r = (self.c - beta * m) / err
        return np.append(r, (beta - self.beta0) / self.beta_err) if self.beta_err > 0 else r

    def profile_residuals(self, xf, err):
        """Residuals with beta at its optimum for the shape at ``xf`` (variable projection)."""
        m = self.shape(xf)
        return self.weighted(m, self.beta_at(m, err), err)

    def joint_residuals(self, v, err):
        """Residuals of (free parameters, beta) with beta explicit (last entry when it has a prior)."""
        n = len(self.free)
        return self.weighted(self.shape(v[:n]), v[n] if self.beta_err > 0 else self.beta0, err)


def _start(P: _Problem, err, fit_flow, grid_gamma, grid_d2, n_scan):
    """Best point of a coarse (gamma L, D2) grid times a scan of the flow angle over [0, pi)."""
    scan = np.arange(n_scan) * (np.pi / n_scan) if fit_flow else np.array([P.base[3]])
    best = (np.inf, None)
    for gl in grid_gamma:
        for d2 in grid_d2:
            for ph in scan:
                v = np.array([gl, d2, P.base[2], ph])
                cost = float(np.sum(P.profile_residuals(v[P.free], err) ** 2))
                if cost < best[0]:
                    best = (cost, v[P.free])
    return best[1]


def _refine(P: _Problem, cmap, x0, err, lo, hi, starts=None):
    """Pass 1 (row-constant errors), pass 2 (errors at the prediction), final fit; returns (solution, errors,
    the solution of each pass). Each pass starts at the previous pass' solution, or at ``starts[k]`` (the
    passes of a fit of a slightly different model: each pass converges to its own minimum either way)."""
    xs = []
    for k in range(3):
        start = x0 if starts is None else starts[k]
        sol = least_squares(P.profile_residuals, np.clip(start, lo + 1e-9, hi - 1e-9), bounds=(lo, hi), args=(err,),
                            x_scale=X_SCALE[P.free], **LSQ)
        x0 = sol.x
        xs.append(sol.x)
        if k < 2:
            m_full = P.model.y(*P.full(x0))
            err = cmap.errors(P.beta_at(m_full[P.ok], err) * m_full)[P.ok]
    return sol, err, xs


def _jacobian(P: _Problem, v, err, beta):
    """Central-difference Jacobian of the joint residuals at ``v`` = (free parameters, [beta])."""
    r0 = P.joint_residuals(v, err)
    steps = np.append(JAC_STEP[P.free], [BETA_JAC_STEP * max(beta, 1e-3)] if P.beta_err > 0 else [])
    J = np.empty((r0.size, v.size))
    for j in range(v.size):
        vp, vm = v.copy(), v.copy()
        vp[j] += steps[j]
        vm[j] -= steps[j]
        J[:, j] = (P.joint_residuals(vp, err) - P.joint_residuals(vm, err)) / (2 * steps[j])
    return r0, J


def _hessian_steps(P: _Problem, v):
    """Steps of the model Hessian for the full vector v = (gamma L, D2, R_s, flow), of the free components."""
    h = np.append(HESS_STEP, HESS_FLOW_CELLS * np.pi / P.model.n_fine)
    h[0] = min(h[0], 0.5 * v[0]) if v[0] > 0 else h[0]  # gamma L and D2 stay positive
    h[1] = min(h[1], 0.5 * v[1])
    h[2] = min(h[2], 0.5 * v[2]) if v[2] > 0 else h[2]
    return h[P.free]


def _whitened_derivatives(P: _Problem, xf, err, beta):
    r"""First and second derivatives of the whitened model beta m(x)/err in (free parameters, beta) on the usable bins.

    Central differences of :meth:`_Problem.shape`: diagonal (m(x + h_a) - 2 m + m(x - h_a))/h_a^2, off-diagonal
    (m(x + h_a + h_b) + m(x - h_a - h_b) - m(x + h_a) - m(x - h_a) - m(x + h_b) - m(x - h_b) + 2 m)/(2 h_a h_b)
    (second order in h, two evaluations per pair beyond the diagonal's); beta enters linearly:
    d^2/dbeta^2 = 0, d^2/(dbeta dx_a) = dm/dx_a / err. Returns jac (n, p + 1), hess (n, p + 1, p + 1).
    """
    p = xf.size
    h = _hessian_steps(P, P.full(xf))
    m0 = P.shape(xf)
    E = np.diag(h)
    mp = [P.shape(xf + E[a]) for a in range(p)]
    mm = [P.shape(xf - E[a]) for a in range(p)]
    n = m0.size
    jac = np.zeros((n, p + 1))
    hess = np.zeros((n, p + 1, p + 1))
    for a in range(p):
        jac[:, a] = (mp[a] - mm[a]) / (2 * h[a])
        hess[:, a, a] = (mp[a] - 2 * m0 + mm[a]) / h[a] ** 2
        for b in range(a):
            mpp, mmm = P.shape(xf + E[a] + E[b]), P.shape(xf - E[a] - E[b])
            hess[:, a, b] = hess[:, b, a] = (mpp + mmm - mp[a] - mm[a] - mp[b] - mm[b] + 2 * m0) / (2 * h[a] * h[b])
    jac[:, p] = m0
    hess[:, :p, p] = hess[:, p, :p] = jac[:, :p]
    hess[:, :p, :p] *= beta
    jac[:, :p] *= beta
    return jac / err[:, None], hess / err[:, None, None]


def _bias(P: _Problem, xf, err, beta, dev, lo, hi, std):
    r"""Second-order bias (:func:`.nlbias.second_order_bias`) of (free parameters, beta) at the solution ``xf``.

    Noise of the whitened map: speckle, the identity (the weights are its inverse variance), plus the configuration
    spread, the K samples ``dev`` (K, n) = beta (y_k - mean)/err as rows of L/sqrt(K - 1). The beta prior is one more
    observation, linear in beta, of unit whitened variance. beta is a parameter of the expansion: it is profiled
    (variable projection), and the profiled estimate is the joint least-squares estimate, whose bias the expansion
    gives; its cross-derivatives with the shape parameters (dm/dx) enter the bias of the others.
    Returns (bias (p + 1,), reason or None): the reason why it is not applied (a parameter at or within 0.1 std of
    a bound, a relative std of gamma L above BIAS_MAX_REL_STD, or |bias| above BIAS_MAX_SIGMA std).
    """
    jac, hess = _whitened_derivatives(P, xf, err, beta)
    low = None if dev is None or len(dev) < 2 else dev / np.sqrt(len(dev) - 1)
    if P.beta_err > 0:
        jac = np.vstack([jac, np.append(np.zeros(xf.size), 1.0 / P.beta_err)])
        hess = np.concatenate([hess, np.zeros((1,) + hess.shape[1:])])
        low = None if low is None else np.hstack([low, np.zeros((len(low), 1))])
    else:  # beta fixed at its given value: not a parameter
        jac, hess = jac[:, :-1], hess[:, :-1, :-1]
    b, _ = second_order_bias(jac, hess, low_rank=low)
    b = np.append(b, 0.0) if P.beta_err <= 0 else b
    names = [PAIR_PARAMS[i] for i in P.free]
    near = [nm for nm, x, l, u, sd in zip(names, xf, lo, hi, std) if min(x - l, u - x) <= 0.1 * sd]
    if near:
        return b, f"at a bound of the fit ({', '.join(near)}): the expansion does not hold there"
    if not std[0] < BIAS_MAX_REL_STD * xf[0]:
        return b, (f"relative std of gamma_l above {BIAS_MAX_REL_STD:g}: the second-order expansion does not hold (the "
                   "plug-in correction over-shoots)")
    big = [nm for nm, bi, sd in zip(names, b, std) if abs(bi) > BIAS_MAX_SIGMA * sd]
    if big:
        return b, (f"second-order bias above {BIAS_MAX_SIGMA:g} std ({', '.join(big)}): the expansion does not hold "
                   "(poorly determined flow?)")
    return b, None


def fit_pair(cmap, model, *, phi0=None, fit_flow=True, fit_rs=False, rs_max=0.3, rs_min=0.0, gamma_max=80.0, d2_max=6.0,
             grid_gamma=(4.0, 8.0, 14.0, 22.0, 32.0), grid_d2=(0.4, 0.9, 1.6, 2.6), n_scan=90, n_configs=N_CONFIGS,
             reorient=None, reorient_tol=np.radians(5.0), seed=0, profile=None, profile_slope_err=0.0,
             bias_correct=True) -> PairFit:
    r"""Direct physics fit of a :class:`CorrelationMap` with a :class:`BinnedPairModel` (same bins).

    Model :math:`C_b - 1 = \beta\,y(q_b, \phi_b - \phi_0; \gamma L, D_2, R_s)`; beta enters linearly
    and is eliminated in closed form (variable projection, Gaussian prior from the contrast estimate).

    R_s is not identifiable from one pair (docs/experiment.md): by default (``fit_rs=False``) it is
    held at its prior centre (rs_min + rs_max)/2 and its influence enters the covariance through the
    configuration spread, which is marginalised over R_s ~ U(rs_min, rs_max) (:func:`.model.rs_levels`).
    The reported R_s is then the prior, (rs_min + rs_max)/2 +- (rs_max - rs_min)/sqrt(12), with
    ``rs_constrained = False``. The configuration spread grows steeply with R_s (3x between R_s = 0 and
    0.3 at n_l2 = 150): the marginal std is honest on average over the prior, too small for a sample at
    its top and too large at its bottom; a sample whose R_s is known (SAXS) should narrow the prior.

    1. Start: for every (gamma L, D2) of the coarse grid ``grid_gamma`` x ``grid_d2``, y is evaluated
       once on the fine theta grid and the flow angle is scanned over ``n_scan`` values in [0, pi)
       (``phi0`` fixes it instead, with ``fit_flow=False``).
    2. Pass 1: errors with the per-row variance law at c = 0 (the same for all bins of a row, so the
       weights do not depend on the bins' own fluctuations).
    3. Pass 2: errors from :meth:`CorrelationMap.errors` at the pass-1 prediction, refit.

    4. Re-orientation (``reorient``, a function flow angle (rad) -> model, for a model whose pixel response
       is oriented by the flow, :attr:`.model.BinnedPairModel.flow_angle`): when the fitted flow differs
       from the model's orientation by more than ``reorient_tol`` (rad), steps 2-3 are repeated with
       ``reorient(fitted flow)``, once, each pass starting from the same pass of the first model (flow
       bounds re-centred on the solution); the covariance is computed only for the final model. Each pass
       converges to the same minimum as a new fit from the grid scan would, without repeating the scan.

    Bounds: gamma L in [0, gamma_max], D2 in [0.01, d2_max], R_s in [rs_min, rs_max], flow within +-45 deg
    of the start. Covariance: (J^T J)^-1 of the free parameters (and beta with its prior) at the
    solution, scaled by chi2_red when > 1, plus the intrinsic single-pair term: the spread of
    ``n_configs`` single-configuration maps (:func:`.model.configuration_samples`) at the solution,
    propagated as H J^T Cov J H (sandwich); it dominates for gamma L and D2 at these count rates.

    5. Conditioning on the pair's intensity profile (``profile``: the mean intensity of the pair per q row of
       ``cmap``, any scale, e.g. :func:`pair_profile`; ``profile_slope_err`` the noise of its
       :func:`.model.profile_slope`): the configuration term depends on *which* particles the pair holds --
       grows with R_s and with a few large particles (V^2 ~ R^6) --, and so does the profile's fall with q.
       ``CONDITION_DRAWS`` x ``n_configs`` configurations over the R_s prior are drawn, and the term is computed
       from the ``n_configs`` whose profile slope (plus a draw of the slope noise) is nearest the pair's
       (:func:`condition_on_profile`; nearest-neighbour conditioning; only their maps are computed; the draws
       come from child ``CONDITION_STREAM`` of ``seed``). The marginal term (exactly what the fit reports without ``profile``)
       is ``std_configuration_marginal``; ``conditioning`` reports the slope, its quantile among the draws and
       the R_s of the kept draws. A slope far outside the draws' range (a profile the model of spheres in the
       beam cannot explain: background, structure factor, a wrong particle radius) falls back to the marginal
       term (``conditioning["used"] = False`` and the reason).

    6. Second-order bias correction (``bias_correct``, default on): the bias of the estimate to second order in the
       map's noise (:func:`.nlbias.second_order_bias`; speckle plus the configuration term's samples, i.e. the noise
       the covariance describes) is subtracted from the free parameters and beta; ``bias_correction`` reports it
       (``applied``, ``reason`` and the bias per parameter, flow in rad). Fitting the flow biases gamma L up where
       the flow is poorly determined (gamma L / D2 <~ 8: +2 to +8 %); the correction removes it (docs/experiment.md,
       "The second-order bias correction of the pair fit"). Not applied at a bound, where the relative std of gamma L
       exceeds BIAS_MAX_REL_STD (the expansion over-shoots there) or where |bias| > BIAS_MAX_SIGMA std. The std is
       the first-order one, unchanged; ``model_y`` is the fit's (uncorrected) prediction.
    """
    ok = cmap.ok
    if ok.sum() < MIN_BINS:
        raise ShearcorrError(f"only {int(ok.sum())} usable (q, phi) bins; use fewer bins or check the mask")
    if not 0.0 <= rs_min <= rs_max:
        raise ShearcorrError(f"the R_s prior needs 0 <= rs_min <= rs_max, got [{rs_min:g}, {rs_max:g}]")
    rs_fixed = 0.5 * (rs_min + rs_max)
    free = [0, 1] + ([2] if fit_rs else []) + ([3] if fit_flow else [])
    P = _Problem(cmap, model, free, np.array([0.0, 0.0, rs_fixed, 0.0 if phi0 is None else float(phi0)]))
    err0 = cmap.errors(np.zeros(cmap.C.shape))[ok]
    x0 = _start(P, err0, fit_flow, grid_gamma, grid_d2, n_scan)

    def bounds(flow0):
        lo_f = np.array([0.0, D2_MIN, rs_min, flow0 - FLOW_HALF_RANGE if fit_flow else 0.0])
        hi_f = np.array([gamma_max, d2_max, rs_max, flow0 + FLOW_HALF_RANGE if fit_flow else 0.0])
        return lo_f[free], hi_f[free]

    box = bounds(x0[-1])
    sol, err, passes = _refine(P, cmap, x0, err0, *box)
    if reorient is not None and fit_flow and abs(wrap_half(sol.x[-1] - model.flow_angle)) > reorient_tol:
        model = P.model = reorient(wrap_half(float(sol.x[-1])))
        box = bounds(sol.x[-1])
        sol, err, _ = _refine(P, cmap, sol.x, err0, *box, starts=passes)
    gl, d2, rs, ph = P.full(sol.x)
    m_full = model.y(gl, d2, rs, ph)
    beta = P.beta_at(m_full[ok], err)
    # covariance of (free parameters, [beta]) from a central-difference Jacobian
    full = np.append(sol.x, [beta] if P.beta_err > 0 else [])
    r0, J = _jacobian(P, full, err, beta)
    n, k = P.c.size, full.size
    chi2 = float(np.sum(r0**2))
    dof = max(n - k, 1)
    red = chi2 / dof
    H = np.linalg.pinv(J.T @ J)
    cov = H * max(red, 1.0)
    cov_conf = cov_marg = np.zeros_like(cov)
    dev_conf, conditioning = None, None
    if n_configs:
        # intrinsic single-pair uncertainty: the pair's own ~n_l2 particles sample the ensemble
        # (configuration_samples); propagated through the linearised fit (sandwich estimator).
        # R_s is not constrained by one pair: the spread is marginalised over its prior U(rs_min, rs_max),
        # or conditioned on the pair's intensity profile (step 5)
        def sandwich(y):
            dev = beta * (y[:, ok] - y[:, ok].mean(axis=0)) / err  # (K, n) weighted data perturbations
            G = dev @ J[:n]  # each row: J^T d_k
            return H @ (G.T @ G / max(len(y) - 1, 1)) @ H, dev

        cov_marg, dev_conf = sandwich(configuration_samples(model, gl, d2, rs_levels(n_configs, rs_max, lo=rs_min),
                                                            ph, n_samples=n_configs, seed=seed))
        cov_conf = cov_marg
        if profile is not None:  # screen CONDITION_DRAWS x n_configs further draws by their profile; maps of the kept
            n_draw = n_configs * CONDITION_DRAWS
            draws = draw_configurations(model, gl, d2, rs_levels(n_draw, rs_max, lo=rs_min), n_draw,
                                        child_seed(seed_sequence(seed), CONDITION_STREAM))
            keep, conditioning = _profile_keep(profile, profile_slope_err, configuration_profiles(model, draws),
                                               model.q_edges, draws.rs, n_configs, seed)
            if keep is not None:
                cov_conf, dev_conf = sandwich(configuration_maps(model, draws.take(keep), ph))
        cov = cov + cov_conf
    std_f = np.sqrt(np.clip(np.diag(cov), 0, None))
    correction = None
    if bias_correct:  # second-order bias of the estimate (fitted flow, nonlinear model), subtracted when it is valid
        b, reason = _bias(P, sol.x, err, beta, dev_conf, *box, std_f[:sol.x.size])
        correction = {"applied": reason is None, "reason": reason,
                      **{PAIR_PARAMS[i]: float(bi) for i, bi in zip(free, b)}, "beta": float(b[-1])}
        if reason is None:
            gl, d2, rs, ph = P.full(sol.x - b[:sol.x.size])
            beta = beta - float(b[-1]) if P.beta_err > 0 else beta
    std = np.zeros(4)
    std[free] = std_f[:sol.x.size]
    rs_prior = (rs_max - rs_min) / np.sqrt(12.0)
    rs_constrained = bool(fit_rs and np.isfinite(std[2]) and std[2] < rs_prior)
    pad = lambda a: tuple(float(v) for v in np.sqrt(np.clip(np.diag(a), 0, None)))  # noqa: E731
    return PairFit(
        gamma_l=Estimate(float(gl), float(std[0])), d2=Estimate(float(d2), float(std[1])),
        rs=Estimate(float(rs), float(std[2]) if rs_constrained else float(rs_prior)), rs_constrained=rs_constrained,
        rs_fitted=bool(fit_rs), flow_angle=Estimate(wrap_half(ph), float(std[3]) if fit_flow else 0.0),
        beta=Estimate(float(beta), float(std_f[-1]) if P.beta_err > 0 else 0.0),
        chi2=chi2, dof=int(dof), chi2_red=float(red), n_bins=int(n), success=bool(sol.success), nfev=int(sol.nfev),
        free=tuple(PAIR_PARAMS[i] for i in free), std_speckle=pad(H * max(red, 1.0)), std_configuration=pad(cov_conf),
        model_y=m_full, errors=err, std_configuration_marginal=pad(cov_marg), conditioning=conditioning,
        bias_correction=correction)


def pair_profile(before, after, qr0, phi, valid, q_edges, n_sectors=36):
    """The pair's intensity profile and the noise of its slope, for ``fit_pair(profile=..., profile_slope_err=...)``.

    Profile: per q row (``q_edges``, q R0), the mean count of the valid pixels of each frame; the geometric
    mean of the two frames (NaN where a row has no valid pixel). The static intensity of a dilute sample is
    isotropic, so the row's ``n_sectors`` azimuthal sectors (over [0, pi), Friedel) are independent estimates of
    it: var(ln I_row) = sum_b n_b^2 (I_b - I_row)^2 / (sum_b n_b)^2 x B/(B - 1) / I_row^2 (speckle, photons,
    mask and pixel response included, no model of them), the larger of the two frames (their speckle is
    correlated at low q), propagated to the slope of :func:`.model.profile_slope`. Shapes: frames, ``qr0``,
    ``phi`` (rad) and ``valid`` (bool) of the detector; returns (profile (n_q,), slope std (R0^2)).
    """
    n_q = len(q_edges) - 1
    iq = np.searchsorted(q_edges, qr0[valid], side="right") - 1
    ib = np.minimum((np.mod(phi[valid], np.pi) * (n_sectors / np.pi)).astype(int), n_sectors - 1)
    use = (iq >= 0) & (iq < n_q)
    idx = iq[use] * n_sectors + ib[use]
    n_b = np.bincount(idx, None, n_q * n_sectors).reshape(n_q, n_sectors)
    n_row = n_b.sum(axis=1)
    means, var_ln = [], []
    for frame in (before, after):
        s_b = np.bincount(idx, np.asarray(frame, float)[valid][use], n_q * n_sectors).reshape(n_q, n_sectors)
        with np.errstate(invalid="ignore", divide="ignore"):
            row = s_b.sum(axis=1) / n_row
            i_b = np.where(n_b > 0, s_b / np.maximum(n_b, 1), row[:, None])
            n_sec = (n_b > 0).sum(axis=1)
            v = np.sum(n_b**2 * (i_b - row[:, None]) ** 2, axis=1) / n_row**2 * n_sec / np.maximum(n_sec - 1, 1)
            means.append(row)
            var_ln.append(v / row**2)
    with np.errstate(invalid="ignore"):
        prof = np.sqrt(means[0] * means[1])
    var = np.maximum(var_ln[0], var_ln[1])
    good = np.isfinite(prof) & (prof > 0) & np.isfinite(var)
    qc = np.sqrt(np.asarray(q_edges[:-1]) * np.asarray(q_edges[1:]))
    x = qc[good] ** 2
    if x.size < 2:
        return prof, 0.0
    x = x - x.mean()
    return prof, float(np.sqrt(np.sum(x**2 * var[good])) / np.sum(x**2))


def condition_on_profile(slope, slopes, n_keep, slope_err=0.0, seed=0):
    """Indices of the ``n_keep`` draws whose profile slope is nearest the pair's, and a summary.

    Nearest-neighbour conditioning (approximate Bayesian computation): each draw's slope gets an independent
    draw of the measurement noise N(0, ``slope_err``^2) (seeded), and the draws nearest ``slope`` are kept.
    Returns (indices or None, info); None when the slope lies outside the draws' range by more than
    max(3 slope_err, 10 % of the range): the model cannot explain the profile, and the marginal term is kept.
    """
    slopes = np.asarray(slopes, float)
    lo, hi = float(slopes.min()), float(slopes.max())
    info = {"slope_r0sq": float(slope), "slope_err_r0sq": float(slope_err), "draws_slope_range": [lo, hi],
            "quantile": float(np.mean(slopes < slope)), "n_draws": int(slopes.size), "n_kept": 0, "used": False}
    margin = max(3.0 * slope_err, 0.1 * (hi - lo))
    if not np.isfinite(slope) or slope < lo - margin or slope > hi + margin:
        info["reason"] = ("the pair's intensity profile falls outside the profiles of the model's configurations "
                          "(background, structure factor or a wrong particle radius?); configuration term not conditioned")
        return None, info
    noisy = slopes + float(slope_err) * np.random.default_rng(seed).standard_normal(slopes.size)
    keep = np.argsort(np.abs(noisy - slope), kind="stable")[:int(n_keep)]
    info.update(n_kept=int(keep.size), used=True)
    return keep, info


def _profile_keep(profile, slope_err, prof, q_edges, rs_k, n_keep, seed):
    """:func:`condition_on_profile` on the q rows where the pair's profile is positive and finite; adds the R_s
    of the kept draws (median and 16-84 %) to the info."""
    profile = np.asarray(profile, float)
    qc = np.sqrt(q_edges[:-1] * q_edges[1:])
    with np.errstate(invalid="ignore"):
        rows = np.isfinite(profile) & (profile > 0)
    if profile.shape != qc.shape or rows.sum() < MIN_PROFILE_ROWS:
        return None, {"used": False, "reason": f"fewer than {MIN_PROFILE_ROWS} q rows with a ring intensity"}
    keep, info = condition_on_profile(profile_slope(qc[rows], profile[rows]), profile_slope(qc[rows], prof[:, rows]),
                                      n_keep, slope_err, seed)
    if keep is not None:
        info["rs_kept"] = [float(v) for v in np.percentile(rs_k[keep], [50, 16, 84])]
    return keep, info
