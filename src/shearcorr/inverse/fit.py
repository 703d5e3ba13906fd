r"""The likelihood fit: generalised least squares of the ensemble model to a measured g, with honest errors.

Model: :math:`m(p) = E[\hat g_N](p)`, the analytic engine's g plus the O(1/N) bias of the estimator
that averaged N configurations (:func:`shearcorr.inverse.noise.expected_g`), reduced to the observable
(the full map ``"g"``, or the profiles ``"g_theta"`` / ``"g_q"``). Noise: the covariance
:math:`\Sigma = D + UU^T` of :class:`~shearcorr.inverse.noise.EnsembleNoise` (speckle part independent
between grid points, configuration part shared by all of them), evaluated at the current estimate and
scaled per q row to the data's own g_err when they carry one. The fit minimises

.. math:: \chi^2(p) = (d - m(p))^T\,\Sigma^{-1}\,(d - m(p)) + \Big(\frac{n_{L^2} - \mu_n}{\sigma_n}\Big)^2

(trust-region reflective, whitened residuals :math:`\Sigma^{-1/2}(d - m)` by Woodbury). n_l2 hardly
changes g (the paper's Fig. 5a), so it is handled explicitly: fitted with a Gaussian prior
(:data:`N_L2_PRIOR`, the mean and std of the paper's U(100, 200)), or fixed when given. It is never
held at its start silently: the model is defined for whole particle numbers N = round(4 n_l2), so its
derivative is taken over :data:`N_L2_STEP` particles.

Parameters are fitted in latent coordinates :math:`(R_s^2, D_2, \gamma L, n_{L^2})`: g depends on R_s
through :math:`R_s^2` (log-normal moments are :math:`e^{k^2 R_s^2/2}`), so the likelihood is regular at
R_s = 0 in :math:`u = R_s^2` (its derivative in R_s vanishes there, and (J^TJ)^-1 at that bound is
meaningless). Covariance of the latent parameters: a sandwich :math:`C = A^{-1} M A^{-1}` with
:math:`A = \tilde J^T\tilde J` (whitened Jacobian, plus the prior) and a meat M that whitens with the
covariance in use but takes the spread from a second, independent sample of its shared part
(:meth:`~shearcorr.inverse.likelihood.Likelihood.score_covariance`): the weights come from K sampled
configurations, and :math:`A^{-1}` alone is biased low by their sampling noise. Central intervals
:math:`u \pm z\sigma_u` mapped back (R_s = sqrt of the interval clipped at 0), so R_s intervals are
right near 0; where the central 95 % interval of R_s^2 reaches 0, the R_s intervals come from the profile
likelihood of R_s^2 instead (:mod:`shearcorr.inverse.profile`: near 0 the likelihood is not quadratic in
R_s^2). At the truth, :math:`A^{-1}` is the Cramér-Rao bound (:mod:`shearcorr.inverse.crb`).

Start values: a coarse scan of (D2, gamma L) on a subsampled map, then the best :data:`N_STARTS`
starts are fitted with a diagonal covariance, and the best is refined with the full covariance
rebuilt at that solution (a second rebuild when the estimate moves by more than its std).

Without ``configs`` and without ``g_err`` the data are taken as noise-free model output (unit weights,
std scaled by the residual scatter, which then means "numerically exact", not "physically certain").
Without ``configs`` but with ``g_err``, N is inferred from g_err and the model variance.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import norm

from ..choices import check_choice
from ..errors import ShearcorrError
from ..files import JSONRecord
from ..params import QGrid, SystemParams
from .likelihood import N_L2_PRIOR, Likelihood

__all__ = ["FitResult", "fit_g", "fit_dataset"]

#: Starts of the coarse scan and how many are refined.
_SCAN_D2 = (0.5, 1.0, 1.7, 2.6)
_SCAN_GAMMA = (6.0, 12.0, 20.0, 30.0, 45.0)
N_STARTS = 2
#: Size of the coarse sub-grid of the full map used by the scan and the first (diagonal) fit.
_SUB_Q, _SUB_THETA = 12, 25
#: Rebuild the covariance at the solution when it moved by more than this (R_s absolute; D2, gamma L
#: relative; n_l2 relative): the covariance changes slowly with the parameters.
_REBUILD_CHANGE = (0.05, 0.05, 0.05, 0.25)


@dataclass(frozen=True)
class FitResult(JSONRecord):
    """Outcome of :func:`fit_g`.

    Attributes
    ----------
    values, std : dict of str to float
        Estimate and standard error of every parameter (n_l2 too; its std is 0 when it was fixed).
        For R_s the std is half the width of the central 68 % interval (the interval is exact in R_s^2).
    intervals : dict of str to dict
        ``{"68": [lo, hi], "95": [lo, hi]}`` per parameter.
    latent : dict
        Latent estimate and covariance (names ``rs2, d2, gamma_l[, n_l2]``): what z-scores use.
    chi2, dof, chi2_red : float, int, float
        Generalised chi^2 at the optimum (prior term excluded) and chi^2 / dof.
    configs : float or None
        N used by the noise model (given or inferred; None for noise-free data).
    estimator, displacement : str
    n_l2_mode : str
        ``"prior"`` (fitted with :data:`N_L2_PRIOR`), ``"free"`` or ``"fixed"``.
    success : bool
    n_eval : int
        Engine evaluations.
    seconds : float
    warnings : list of str
        Parameters at a bound, chi^2 far from 1, data errors inconsistent with the model, inferred N.
    profile : dict or None
        Where the central 95 % interval of R_s^2 reaches 0: its profile likelihood
        (:func:`~shearcorr.inverse.profile.profile_rs2`: ``u``, ``delta``, ``adjust``, ``intervals`` of
        R_s^2), from which the R_s intervals and std then come; None elsewhere.
    """

    values: dict
    std: dict
    intervals: dict
    latent: dict
    chi2: float
    dof: int
    chi2_red: float
    configs: float | None
    estimator: str
    displacement: str
    n_l2_mode: str
    success: bool
    n_eval: int
    seconds: float
    warnings: list = field(default_factory=list)
    profile: dict | None = None

    def to_dict(self) -> dict:
        out = {k: getattr(self, k) for k in ("values", "std", "intervals", "chi2", "dof", "chi2_red", "configs",
                                             "estimator", "displacement", "n_l2_mode", "success", "n_eval",
                                             "seconds", "warnings", "profile")}
        out["latent"] = {"names": list(self.latent["names"]), "value": list(map(float, self.latent["value"])),
                         "cov": np.asarray(self.latent["cov"]).tolist()}
        return out


def _subgrid(grid: QGrid) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a coarse sub-grid (<= _SUB_Q x _SUB_THETA points) for the scan and the first fit."""
    iq = np.unique(np.linspace(0, grid.q.size - 1, min(grid.q.size, _SUB_Q)).round().astype(int))
    it = np.unique(np.linspace(0, grid.theta.size - 1, min(grid.theta.size, _SUB_THETA)).round().astype(int))
    return iq, it


def _scan_start(prob: Likelihood) -> list[np.ndarray]:
    """Best starts from a coarse (D2, gamma L) scan of the exact model (unit weights)."""
    from ..forward.analytic import ensemble_arrays

    rs2 = 0.15**2
    n_l2 = prob.n_l2_fixed if prob.n_l2_fixed is not None else N_L2_PRIOR[0]
    scored = []
    for d2 in _SCAN_D2:
        for gl in _SCAN_GAMMA:
            x = np.array([rs2, d2, gl] + ([] if prob.n_l2_fixed is not None else [n_l2]))
            prob.n_eval += 1
            m = prob.reduce(ensemble_arrays(prob.params(x), prob.grid)[1])
            scored.append((float(np.sum((prob.d - m) ** 2)), x))
    scored.sort(key=lambda t: t[0])
    return [t[1] for t in scored[:N_STARTS]]


def _intervals(x, cov, names) -> tuple[dict, dict, dict]:
    """values, std and central intervals of the physical parameters from the latent estimate."""
    values, std, iv = {}, {}, {}
    sd = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    for k, name in enumerate(names):
        phys = "rs" if name == "rs2" else name
        bands = {}
        for level in (0.68, 0.95):
            z = norm.ppf(0.5 + level / 2.0)
            lo, hi = x[k] - z * sd[k], x[k] + z * sd[k]
            if name == "rs2":
                lo, hi = np.sqrt(max(lo, 0.0)), np.sqrt(max(hi, 0.0))
            bands[f"{int(round(100 * level))}"] = [float(lo), float(hi)]
        values[phys] = float(np.sqrt(max(x[k], 0.0))) if name == "rs2" else float(x[k])
        std[phys] = float((bands["68"][1] - bands["68"][0]) / 2.0) if name == "rs2" else float(sd[k])
        iv[phys] = bands
    return values, std, iv


def rs2_reaches_zero(x, cov) -> bool:
    """Whether the central 95 % interval of R_s^2 (latent ``x[0]``, variance ``cov[0, 0]``) reaches 0, where the
    likelihood is far from quadratic in R_s^2 (:func:`profile_near_zero`; the polish hands over to the fit there)."""
    return bool(x[0] - norm.ppf(0.975) * np.sqrt(max(cov[0, 0], 0.0)) < 0.0)


def profile_near_zero(prob, x, J, cov, iv, std) -> dict | None:
    """Where the central 95 % interval of R_s^2 reaches 0: the R_s intervals and std in ``iv`` and ``std``
    (from :func:`_intervals`) replaced, in place, by those of the profile likelihood of R_s^2
    (:func:`shearcorr.inverse.profile.profile_rs2`, with the whitened Jacobian J and the sandwich cov at x);
    returns the profile, or None (nothing changed) elsewhere."""
    from .profile import profile_rs2

    if not rs2_reaches_zero(x, cov):
        return None
    prof = profile_rs2(prob, x, J, cov)
    iv["rs"] = {lv: [float(np.sqrt(lo)), float(np.sqrt(hi))] for lv, (lo, hi) in prof["intervals"].items()}
    std["rs"] = float((iv["rs"]["68"][1] - iv["rs"]["68"][0]) / 2.0)
    return prof


def _infer_configs(prob: Likelihood, x) -> float:
    """Effective N from the data's g_err and the model variance at x (median over the grid)."""
    from .noise import ensemble_noise

    nm = ensemble_noise(prob.params(x), prob.grid, 1e6, estimator=prob.estimator, n_samples=0)
    e = np.asarray(prob.g_err, dtype=np.float64)
    ok = np.isfinite(e) & (e > 0)
    return float(np.median(nm.var[ok] * 1e6 / e[ok] ** 2))


def fit_g(data, grid: QGrid, *, configs=None, g_err=None, estimator: str = "symmetric",
          displacement: str = "uniform", observable: str = "g", n_l2: float | None = None,
          n_l2_prior: tuple[float, float] | None = N_L2_PRIOR, noise_samples: int = 64, seed: int = 0) -> FitResult:
    """Fit (R_s, D2, gamma L, n_l2) of the ensemble model to a measured g (module docstring).

    Parameters
    ----------
    data : array-like
        g(q, theta) of shape ``grid.shape`` (observable "g"), or g(theta) (n_theta,) / g(q) (n_q,).
    grid : QGrid
        Grid of the data (q in 1/r0, theta in rad from the flow axis).
    configs : float, optional
        N, configurations (or frame pairs) averaged in ``data``; sets the bias and the covariance.
    g_err : array-like (n_q, n_theta), optional
        The data's standard errors of g: they set the scale of the covariance per q row (and N when
        ``configs`` is not given).
    estimator : {"symmetric", "before", "pooled"}
        How ``data`` was estimated (:mod:`shearcorr.inverse.noise`).
    displacement : {"uniform", "stokes-einstein"}
        Convention of the model (must match the data's).
    observable : {"g", "g_theta", "g_q"}
    n_l2 : float, optional
        Fix n_l2; by default it is fitted with the prior ``n_l2_prior``.
    n_l2_prior : (mean, std) or None
        Gaussian prior of a fitted n_l2; None fits it without a prior.
    noise_samples : int, default 64
        Configurations sampled for the shared part of the covariance (0: diagonal covariance); common
        random numbers and stratified over the largest particle (:mod:`shearcorr.forward.conditional`),
        so 64 hold the bound on R_s to a few % up to R_s = 0.3 (docs/results.md).
    seed : int, default 0
        Seed of those configurations.

    Returns
    -------
    FitResult
    """
    t0 = time.perf_counter()
    check_choice("observable", observable)
    check_choice("estimator", estimator)
    check_choice("displacement", displacement)
    d = np.asarray(data, dtype=np.float64)
    expected = {"g": grid.shape, "g_theta": (grid.theta.size,), "g_q": (grid.q.size,)}[observable]
    if d.shape != expected:
        raise ShearcorrError(f"{observable} data has shape {d.shape}, the grid needs {expected}")
    if not np.all(np.isfinite(d)):
        raise ShearcorrError("the data hold NaN or inf; a fit needs a finite g at every grid point")
    if g_err is not None:
        g_err = np.asarray(g_err, dtype=np.float64)
        if g_err.shape != grid.shape:
            raise ShearcorrError(f"g_err has shape {g_err.shape}, the grid needs {grid.shape}")
        if not np.any(np.isfinite(g_err) & (g_err > 0)):
            g_err = None
    if configs is not None:
        try:
            configs = float(configs)
        except (TypeError, ValueError):
            raise ShearcorrError(f"configs must be a number >= 2, got {configs!r}") from None
        if not configs >= 2 or not np.isfinite(configs):
            configs = None if configs in (0.0, float("inf")) else configs
            if configs is not None:
                raise ShearcorrError(f"configs must be >= 2 (configurations averaged), got {configs:g}")
    if n_l2 is not None:
        SystemParams(n_l2=n_l2, rs=0, d2=0, gamma_l=0)  # validates
    warnings: list[str] = []
    args = (observable, configs, g_err, estimator, displacement, None if n_l2 is None else float(n_l2), n_l2_prior,
            int(noise_samples), seed)
    prob = Likelihood(d, grid, *args)
    noisy = configs is not None or g_err is not None
    if not noisy:
        prob.prior = None  # noise-free model output determines n_l2 by itself
    # stage 1: scan and first fit on a coarse sub-grid (full map) with a diagonal covariance
    if observable == "g":
        iq, it = _subgrid(grid)
        sub = QGrid(grid.q[iq], grid.theta[it])
        data_sub, err_sub = d[np.ix_(iq, it)], None if g_err is None else g_err[np.ix_(iq, it)]
    else:
        sub, data_sub, err_sub = grid, d, g_err
    # the first fit holds n_l2 at its prior mean: it is the slow, weakly determined direction
    n_first = prob.n_l2_fixed if prob.n_l2_fixed is not None else (n_l2_prior or N_L2_PRIOR)[0]
    coarse = Likelihood(data_sub, sub, observable, configs, err_sub, estimator, displacement, n_first, None,
                      0, seed)
    starts = _scan_start(coarse)
    if configs is None and g_err is not None:
        prob.configs = coarse.configs = _infer_configs(coarse, starts[0])  # noqa: SIM114
        warnings.append(f"configs not given: N = {prob.configs:.0f} inferred from g_err and the model variance")
    coarse.use_covariance(starts[0], full=False)
    first = coarse.solve(starts[0], coarse=True)
    if not first.success or first.cost > 2.0 * max(first.fun.size, 1):  # a poor minimum: try the other starts
        first = min([first] + [coarse.solve(x, coarse=True) for x in starts[1:]], key=lambda sol: sol.cost)
    x = first.x if prob.n_l2_fixed is not None else np.append(first.x, n_first)
    scale = None
    if noisy:
        sd = np.sqrt(np.clip(np.diag(np.linalg.pinv(first.jac.T @ first.jac)), 1e-18, None))
        scale = sd if prob.n_l2_fixed is not None else np.append(sd, (n_l2_prior or N_L2_PRIOR)[1])
    # stage 2: the full data with the full covariance at the estimate (rebuilt if the estimate moves)
    for _ in range(2):
        prob.use_covariance(x, full=noisy)
        best = prob.solve(x, scale)
        old, x = x, best.x
        change = np.abs(np.array([np.sqrt(max(x[0], 0)) - np.sqrt(max(old[0], 0)), *((x[1:] - old[1:]) / old[1:])]))
        if not noisy or np.all(change < np.array(_REBUILD_CHANGE)[: x.size]):
            break
    prob.n_eval += coarse.n_eval
    J = best.jac
    n_prior = 1 if (prob.n_l2_fixed is None and prob.prior is not None) else 0
    r = best.fun[: best.fun.size - n_prior]
    dof = max(r.size - x.size, 1)
    chi2 = float(r @ r)
    cov = np.linalg.pinv(J.T @ J)
    if noisy:  # the sandwich: weights from one sampled covariance, the spread from an independent one
        nd = J.shape[0] - n_prior
        cov = cov @ (prob.score_covariance(J[:nd]) + J[nd:].T @ J[nd:]) @ cov
    else:
        cov = cov * chi2 / dof  # noise-free: the residual scatter sets the scale
    values, std, iv = _intervals(x, cov, prob.names)
    profile = profile_near_zero(prob, x, J, cov, iv, std) if noisy else None
    if prob.n_l2_fixed is not None:
        values["n_l2"], std["n_l2"] = prob.n_l2_fixed, 0.0
        iv["n_l2"] = {"68": [prob.n_l2_fixed] * 2, "95": [prob.n_l2_fixed] * 2}
    for k, name in enumerate(prob.names):
        span = prob.hi[k] - prob.lo[k]
        if name != "rs2" and (x[k] - prob.lo[k] < 1e-6 * span or prob.hi[k] - x[k] < 1e-6 * span):
            warnings.append(f"{name} is at its fit bound {x[k]:.4g}; the interval is not reliable")
    if prob.error_scale is not None:
        s = np.asarray(prob.error_scale)
        if np.any(s < 0.5) or np.any(s > 2.0):
            warnings.append(f"the data's g_err differ from the model's by a factor {np.sqrt(s.min()):.2g}-"
                            f"{np.sqrt(s.max()):.2g}; check configs and the estimator")
    red = chi2 / dof
    if noisy and not 0.5 < red < 2.0:
        warnings.append(f"chi2/dof = {red:.2f}: the model does not describe the data within their noise")
    return FitResult(values=values, std=std, intervals=iv,
                     latent={"names": prob.names, "value": x.copy(), "cov": cov},
                     chi2=chi2, dof=int(dof), chi2_red=float(red), configs=prob.configs, estimator=estimator,
                     displacement=displacement,
                     n_l2_mode="fixed" if prob.n_l2_fixed is not None else ("prior" if prob.prior else "free"),
                     success=bool(best.success), n_eval=prob.n_eval, seconds=time.perf_counter() - t0,
                     warnings=warnings, profile=profile)


def fit_dataset(ds, *, observable: str = "g", estimator: str | None = None, configs=None,
                n_l2: float | None = None, **options) -> FitResult:
    """:func:`fit_g` on one result (an xarray Dataset with dims q, theta): its g, g_err and attrs.

    Attributes used (files of other codes may carry only g, g_err and ``configs``): ``configs`` (N;
    0 or absent with an ``engine`` "analytic" means noise-free model output), ``estimator`` (default
    "symmetric"), ``displacement`` (default "uniform"). ``estimator`` and ``configs`` given here
    override the attributes.
    """
    from ..result import flow_axis_warning, grid_from_dataset

    if "g" not in ds:
        raise ShearcorrError("the file has no g(q, theta); fit needs the full map")
    grid = grid_from_dataset(ds)
    g = np.asarray(ds["g"].transpose("q", "theta").values, dtype=np.float64)
    err = np.asarray(ds["g_err"].transpose("q", "theta").values, dtype=np.float64) if "g_err" in ds else None
    attrs = ds.attrs
    analytic = str(attrs.get("engine", "")) == "analytic"
    if configs is None:
        configs = attrs.get("configs")
        configs = None if configs is None or float(configs) <= 0 else float(configs)
    if analytic and configs is None:
        err = None  # the analytic engine's g_err is a numerical bound, not noise
    est = estimator or str(attrs.get("estimator", "symmetric"))
    disp = str(attrs.get("displacement", "uniform"))
    data = {"g": g, "g_theta": g.mean(axis=0), "g_q": g.mean(axis=1)}[check_choice("observable", observable)]
    result = fit_g(data, grid, configs=configs, g_err=err, estimator=est, displacement=disp, observable=observable,
                   n_l2=n_l2, **options)
    axis = flow_axis_warning(ds)
    if axis:
        result.warnings.append(axis)
    return result
