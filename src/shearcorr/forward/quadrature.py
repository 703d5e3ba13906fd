r"""Quadrature rules of the semi-analytic engine: log-normal radius nodes and Laplace-variable nodes.

* :func:`radius_nodes` -- trapezoid nodes in units of rs for :math:`z = \ln(R/r_0) \sim
  \mathcal N(0, r_s^2)`; every single-particle expectation :math:`E_R[f(R)]` becomes
  :math:`\sum_j \lambda_j f(r_0 e^{r_s x_j})`.
* :func:`laplace_nodes` -- exp-sinh (double-exponential) nodes for :math:`\int_0^\infty f(\tau)\,d\tau`,
  :math:`\tau = \exp(\tfrac{\pi}{2}\sinh\xi)` with a uniform step in :math:`\xi`. The Laplace
  integrands :math:`E[Y e^{-\tau X}]` (X = S/<S>) are analytic, bounded near 0 and decay like
  :math:`e^{-\tau}`; both ends then decay double-exponentially in :math:`\xi`, so the trapezoid rule
  converges geometrically and handles the two scales present with heavy-tailed radii (1 and
  1/(b v_max) for a rare big particle).
* :func:`chebyshev_interpolation` -- Chebyshev nodes on an interval and the Lagrange matrix that
  interpolates from them (barycentric form), used to evaluate the pair-phase edge correction at a
  few displacement stds instead of at every radius node.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ..errors import ShearcorrError

__all__ = ["radius_nodes", "radius_range", "laplace_nodes", "chebyshev_interpolation", "log_s_nodes"]


def radius_range(rs: float) -> tuple[float, float]:
    r"""Range [x_lo, x_hi] of x = z / rs covered by :func:`radius_nodes`.

    The lower end -9 drops Gaussian mass < 1e-19. The heaviest integrand, :math:`F^4 v^2 \propto
    e^{12 r_s x - x^2/2}`, peaks at :math:`x = 12 r_s`; 8 more standard deviations drop < 1e-14 of it.
    """
    return -9.0, max(9.0, 12.0 * rs + 8.0)


def radius_nodes(rs: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    r"""Nodes :math:`z_j` and weights :math:`\lambda_j` (sum 1) for :math:`z = \ln(R/r_0) \sim \mathcal N(0, r_s^2)`.

    Trapezoid rule with ``n`` equally spaced nodes in :math:`x = z/r_s` over :func:`radius_range`,
    weights :math:`h\,e^{-x^2/2}/\sqrt{2\pi}` normalised to sum 1. For Gaussian-weighted analytic
    integrands the trapezoid rule converges geometrically once the step resolves the form-factor
    oscillations (period :math:`\pi/(q R\, r_s)` in x), unlike Gauss-Hermite, whose nodes thin out in
    the heavy tail :math:`V^4 \propto e^{12 z}` where those oscillations live.
    ``rs = 0`` gives the single node z = 0 (monodisperse; exact).
    """
    if rs < 0:
        raise ShearcorrError(f"rs must be >= 0, got {rs:g}")
    if rs == 0:
        return np.zeros(1), np.ones(1)
    if int(n) < 8:
        raise ShearcorrError(f"need at least 8 radius nodes, got {n}")
    lo, hi = radius_range(rs)
    x = np.linspace(lo, hi, int(n))
    w = np.exp(-0.5 * x * x)
    w /= w.sum()
    return rs * x, w


@lru_cache(maxsize=64)
def _exp_sinh(n: int, tau_min: float, tau_max: float) -> tuple[np.ndarray, np.ndarray]:
    xi_lo = np.arcsinh(2.0 / np.pi * np.log(tau_min))
    xi_hi = np.arcsinh(2.0 / np.pi * np.log(tau_max))
    xi = np.linspace(xi_lo, xi_hi, n)
    h = xi[1] - xi[0]
    tau = np.exp(0.5 * np.pi * np.sinh(xi))
    w = h * 0.5 * np.pi * np.cosh(xi) * tau
    tau.flags.writeable = False
    w.flags.writeable = False
    return tau, w


def laplace_nodes(n: int, tau_max: float = 40.0, tau_min: float = 1e-13) -> tuple[np.ndarray, np.ndarray]:
    r"""Exp-sinh nodes :math:`\tau_k` and weights :math:`\omega_k` for :math:`\int_0^\infty f(\tau)\,d\tau`.

    The truncation ``[tau_min, tau_max]`` drops at most :math:`f(0)\,\tau_{min}` at the lower end
    and :math:`\int_{\tau_{max}}^\infty f` at the upper one (the caller picks ``tau_max`` from the
    decay of its integrand). Doubling ``n`` halves the step.
    """
    if int(n) < 8:
        raise ShearcorrError(f"need at least 8 Laplace nodes, got {n}")
    if not (0 < tau_min < 1 < tau_max):
        raise ShearcorrError(f"need 0 < tau_min < 1 < tau_max, got {tau_min:g}, {tau_max:g}")
    tau, w = _exp_sinh(int(n), float(tau_min), float(tau_max))
    return tau, w


def chebyshev_interpolation(lo: float, hi: float, n: int, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r"""Chebyshev (first kind) nodes :math:`\xi_c` on [lo, hi] and the matrix :math:`P_{cj} = \ell_c(x_j)`.

    :math:`f(x_j) \approx \sum_c f(\xi_c) P_{cj}`; targets outside [lo, hi] are clamped to the
    interval (the caller puts them where their weight is negligible). Barycentric weights
    :math:`(-1)^c \sin((2c+1)\pi/(2n))`; the error for f analytic in the Bernstein ellipse
    :math:`E_\rho` is :math:`O(\rho^{-n})`.
    """
    if int(n) < 1 or not hi > lo:
        raise ShearcorrError(f"need n >= 1 and hi > lo, got n={n}, [{lo:g}, {hi:g}]")
    c = np.arange(int(n))
    theta = np.pi * (c + 0.5) / n
    t = np.cos(theta)
    nodes = 0.5 * (lo + hi) + 0.5 * (hi - lo) * t
    xt = np.clip((2.0 * np.asarray(x, dtype=np.float64) - lo - hi) / (hi - lo), -1.0, 1.0)
    d = xt[None, :] - t[:, None]  # (n, m)
    hit = np.abs(d) < 1e-14
    wb = (-1.0) ** c * np.sin(theta)
    r = wb[:, None] / np.where(hit, 1.0, d)
    P = r / r.sum(axis=0)
    cols = hit.any(axis=0)
    P[:, cols] = hit[:, cols].astype(np.float64)
    return nodes, P


def log_s_nodes(ls: np.ndarray, weight: np.ndarray, per_ln_s: float, n_min: int, n_max: int, tol: float,
                n_cheb: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    r"""Chebyshev nodes in ln s spanning the radius nodes that carry weight, and their interpolation matrix.

    ``ls`` are the ln s of the radius nodes and ``weight`` their largest weight in any sum; nodes with
    weight above ``tol`` times the largest set the span [lo, hi]; ``n_cheb`` defaults to
    ceil(``per_ln_s`` x span) clipped to [``n_min``, ``n_max``]. Returns the nodes (in ln s) and
    :func:`chebyshev_interpolation`'s matrix P (n_cheb, n_radius) (Stokes-Einstein pair phases,
    docs/theory.md sections 3 and 7).
    """
    rel = weight > tol * weight.max()
    lo, hi = ls[rel].min(), ls[rel].max()
    if n_cheb is None:
        n_cheb = int(np.clip(np.ceil(per_ln_s * (hi - lo)), n_min, n_max))
    if hi - lo < 1e-12:
        lo, hi = lo - 1e-6, hi + 1e-6
    return chebyshev_interpolation(lo, hi, n_cheb, ls)
