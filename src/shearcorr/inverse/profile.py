r"""Profile-likelihood intervals of :math:`u = R_s^2` where the Laplace interval meets the bound u = 0.

The fit's (:mod:`shearcorr.inverse.fit`) central intervals :math:`\hat u \pm z\sigma_u` assume a
likelihood quadratic in u. Near u = 0 it is not: g depends on u through log-normal moments
:math:`e^{k^2 u/2}` and through the baseline term :math:`B - 1 \propto u^2`, and its slope in u at the
form-factor minima falls several-fold between u = 0 and u ~ 1e-3 (docs/results.md), so a Jacobian taken at
the estimate over- or understates the information on the far side of the interval. There the interval is
read from the profile of the fit's own objective,

.. math:: \chi^2_p(u) = \min_{\nu}\ \chi^2(u, \nu),\qquad
          \Delta(u) = a\,\big(\chi^2_p(u) - \chi^2(\hat u, \hat\nu)\big),\qquad
          a = \frac{(A^{-1})_{uu}}{C_{uu}},

with :math:`\nu = (D_2, \gamma L[, n_{L^2}])` the other parameters, :math:`A = \tilde J^T\tilde J` and C the
fit's sandwich covariance: the weights of the fit come from a sampled covariance, so the curvature of
:math:`\chi^2` (A) is not the inverse of the estimator's variance (C); the factor a rescales the profile so
that its curvature at the minimum is :math:`1/C_{uu}` (the adjusted profile likelihood of Chandler & Bate,
Biometrika 94, 167, 2007). The interval at level :math:`\ell` is :math:`\{u \ge 0:\ \Delta(u) \le
\chi^2_{1,\ell}\}` (1.00 at 68.3 %, 3.84 at 95 %, Wilks), clipped at 0 where the profile at u = 0 is below
the threshold.

The minimum over ν at each u starts from the linear prediction :math:`\hat\nu + (A^{-1})_{\nu u}
(u - \hat u)/(A^{-1})_{uu}` and takes :data:`NUISANCE_STEPS` Gauss-Newton steps with the Jacobian of ν at
the estimate (the profile's nonlinearity lives in u; D2, gamma L and n_l2 enter g smoothly over such
shifts: on a Monte Carlo set at R_s = 0.015, N = 300, this matches a full trust-region minimisation over ν
to 0.6 in Δχ² at u = 0, where Δχ² = 19, and to 0.01 elsewhere). The profile is far from quadratic in u
there -- Δχ² rose from 0 at the estimate R_s = 0.023 to 1.5 at 0.015 and 19 at R_s = 0 -- and closer to
it in :math:`s = \sqrt u = R_s`: it is evaluated at :data:`BELOW` times the estimate of s, at u = 0, and at
:math:`u = \hat u + k\sigma_u` for k in :data:`ABOVE`, and interpolated in s (monotone cubic, PCHIP) on
each side of the minimum; beyond the last point above, extended along the last slope.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import chi2 as chi2_dist

__all__ = ["profile_rs2", "NUISANCE_STEPS", "BELOW", "ABOVE"]

#: Gauss-Newton steps of the other parameters at each u.
NUISANCE_STEPS = 1
#: Points of the profile below the estimate, as fractions of its R_s (0: R_s = 0).
BELOW = (0.0, 0.35, 0.6, 0.8)
#: Points above the estimate: u = u_hat + k sigma_u.
ABOVE = (0.7, 1.5, 2.5, 4.0)


def _profile_point(prob, x, u, A_inv, Jn) -> float:
    """chi^2_p(u): the other parameters from their linear prediction, then Gauss-Newton steps."""
    y = x.copy()
    y[0] = u
    y[1:] = x[1:] + A_inv[1:, 0] / A_inv[0, 0] * (u - x[0])
    y[1:] = np.clip(y[1:], prob.lo[1:], prob.hi[1:])
    r = prob.residual(y)
    best = float(r @ r)
    for _ in range(NUISANCE_STEPS):
        step = np.linalg.lstsq(Jn, -r, rcond=None)[0]
        z = y.copy()
        z[1:] = np.clip(y[1:] + step, prob.lo[1:], prob.hi[1:])
        rz = prob.residual(z)
        c = float(rz @ rz)
        if not c < best:
            break
        y, r, best = z, rz, c
    return best


def _crossing(s, d, threshold, side: int) -> float:
    """The s nearest the minimum on ``side`` (-1 below, +1 above) where the profile d(s) reaches ``threshold``."""
    from scipy.interpolate import PchipInterpolator

    i0 = int(np.argmin(d))
    ss, dd = (s[: i0 + 1], d[: i0 + 1]) if side < 0 else (s[i0:], d[i0:])
    if ss.size > 1:
        roots = PchipInterpolator(ss, dd - threshold).roots(extrapolate=False)
        if roots.size:
            return float(roots.max() if side < 0 else roots.min())
    if side < 0:
        return float(ss[0])  # below the threshold down to the first point, R_s = 0
    slope = (dd[-1] - dd[-2]) / (ss[-1] - ss[-2]) if ss.size > 1 else 0.0
    return float(ss[-1] + (threshold - dd[-1]) / slope) if slope > 0 else float("inf")


def profile_rs2(prob, x, J, cov, *, levels=(0.68, 0.95)) -> dict:
    r"""Profile-likelihood intervals of u = R_s^2 at the fit's estimate (module docstring).

    Parameters
    ----------
    prob : :class:`~shearcorr.inverse.likelihood.Likelihood`
        The fit's likelihood, its covariance in use (``use_covariance`` at the estimate).
    x : ndarray (p,)
        The latent estimate (R_s^2 first).
    J : ndarray (n, p)
        The whitened Jacobian at x (prior row included when n_l2 has one).
    cov : ndarray (p, p)
        The fit's latent covariance (the sandwich).
    levels : tuple of float
        Confidence levels.

    Returns
    -------
    dict
        ``intervals``: ``{"68": [lo, hi], ...}`` of u (lo >= 0); ``u`` and ``delta`` (the adjusted profile
        :math:`\Delta(u)`, sorted by u); ``adjust`` (a); ``n_eval`` (engine evaluations).
    """
    x = np.asarray(x, dtype=np.float64)
    A_inv = np.linalg.pinv(J.T @ J)
    su = float(np.sqrt(max(cov[0, 0], 1e-30)))
    adjust = float(A_inv[0, 0] / cov[0, 0]) if cov[0, 0] > 0 else 1.0
    n0 = prob.n_eval
    r0 = prob.residual(x)
    chi_min = float(r0 @ r0)
    s_hat = float(np.sqrt(max(x[0], 0.0)))
    us = {float((b * s_hat) ** 2) for b in BELOW} | {float(x[0] + k * su) for k in ABOVE} | {float(x[0])}
    us = np.array(sorted(u for u in us if u <= prob.hi[0]))
    chis = np.array([chi_min if u == x[0] else _profile_point(prob, x, u, A_inv, J[:, 1:]) for u in us])
    # a point of the profile below the fit's minimum (the fit stopped short): the profile's minimum rules
    delta = adjust * (chis - chis.min())
    s = np.sqrt(us)
    out = {"intervals": {}, "u": us.tolist(), "delta": delta.tolist(), "adjust": adjust}
    for level in levels:
        t = float(chi2_dist.ppf(level, 1))
        lo, hi = _crossing(s, delta, t, -1), _crossing(s, delta, t, +1)
        out["intervals"][f"{int(round(100 * level))}"] = [lo * lo, min(hi * hi, float(prob.hi[0]))]
    out["n_eval"] = prob.n_eval - n0
    return out
