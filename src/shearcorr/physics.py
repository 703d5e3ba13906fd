"""Single-particle physics of the paper (Sec. II A-B): form factor, volumes, radii, Gamma, eq. 5.

Units: lengths in r0 (R0 = 1), q in 1/r0, angles in radians from the flow (x) axis.
"""

from __future__ import annotations

import numpy as np

from .errors import ShearcorrError
from .params import SystemParams
from .rng import as_generator

__all__ = [
    "form_factor",
    "sphere_volume",
    "sample_radii",
    "pdi",
    "displacement_std",
    "rearrange",
    "g_theory",
]

# Taylor coefficients of F(x) = 3 (sin x - x cos x) / x^3 = sum_k a_k x^(2k):
# a_k = 3 (-1)^k (2k + 2) / (2k + 3)!   (k = 0: 1, k = 1: -1/10, k = 2: 1/280, ...)
_F_SERIES = np.array([3.0 * (-1) ** k * (2 * k + 2) / float(np.prod(np.arange(1, 2 * k + 4))) for k in range(6)])
_F_SMALL = 0.1  # below this |x| the series (error < 1e-19) replaces the cancelling closed form


def form_factor(qr: np.ndarray | float) -> np.ndarray:
    r"""Sphere form-factor amplitude, paper eq. 2.

    .. math:: F(x) = 3\,\frac{\sin x - x\cos x}{x^3},\qquad x = qR

    F(0) = 1 and F(x) = 1 - x^2/10 + O(x^4); the first zero is at x = 4.4934 (tan x = x).
    Evaluated with a Taylor series for |x| < 0.1, where the closed form loses digits to cancellation.

    Parameters
    ----------
    qr : array-like
        Dimensionless q R.

    Returns
    -------
    ndarray of float64, same shape as ``qr``.
    """
    x = np.asarray(qr, dtype=np.float64)
    small = np.abs(x) < _F_SMALL
    xs = np.where(small, 1.0, x)  # avoid 0/0 in the branch that is discarded
    closed = 3.0 * (np.sin(xs) - xs * np.cos(xs)) / xs**3
    series = np.polynomial.polynomial.polyval(x * x, _F_SERIES)
    return np.where(small, series, closed)


def sphere_volume(radius: np.ndarray | float) -> np.ndarray:
    r"""Sphere volume :math:`V = \tfrac{4\pi}{3} R^3` (units r0^3)."""
    r = np.asarray(radius, dtype=np.float64)
    return (4.0 * np.pi / 3.0) * r**3


def sample_radii(n: int, rs: float, r0: float = 1.0, seed=None) -> np.ndarray:
    r"""Draw ``n`` log-normal radii, :math:`\ln R \sim \mathcal N(\ln r_0, r_s^2)` (units r0).

    ``rs = 0`` gives ``n`` copies of ``r0`` and draws no random numbers.
    """
    if n < 0:
        raise ShearcorrError(f"number of radii must be >= 0, got {n}")
    if rs < 0:
        raise ShearcorrError(f"rs must be >= 0, got {rs:g}")
    if rs == 0:
        return np.full(n, float(r0))
    return r0 * np.exp(rs * as_generator(seed).standard_normal(n))


def pdi(rs: float) -> float:
    r"""Polydispersity index :math:`\langle R^6\rangle/\langle R^3\rangle^2 = e^{9 r_s^2}` of the log-normal."""
    return float(np.exp(9.0 * rs * rs))


def displacement_std(radius: np.ndarray | float, d2: float, convention: str = "uniform", r0: float = 1.0) -> np.ndarray:
    r"""Per-axis std of the non-affine step (units r0).

    ``"uniform"``: :math:`s_i = D_2` (paper text); ``"stokes-einstein"``: :math:`s_i = D_2\sqrt{r_0/R_i}`
    (a diffusive step with D proportional to 1/R, as in the authors' published code).
    """
    r = np.asarray(radius, dtype=np.float64)
    if convention == "uniform":
        return np.full(r.shape, float(d2))
    if convention == "stokes-einstein":
        return d2 * np.sqrt(r0 / r)
    raise ShearcorrError(f"displacement must be 'uniform' or 'stokes-einstein', got {convention!r}")


def rearrange(
    x: np.ndarray, y: np.ndarray, radius: np.ndarray, params: SystemParams, seed=None
) -> tuple[np.ndarray, np.ndarray]:
    r"""Apply the rearrangement :math:`\Gamma` of paper eq. 3 to positions (units r0).

    .. math:: x' = x + \gamma y + \delta x,\qquad y' = y + \delta y,\qquad \gamma = \gamma L / L

    with :math:`\delta x, \delta y \sim \mathcal N(0, s_i^2)`, :math:`s_i` from :func:`displacement_std`.
    The shear uses the position before the random step. Returns new arrays ``(x', y')``.
    """
    rng = as_generator(seed)
    s = displacement_std(radius, params.d2, params.displacement, params.r0)
    dx = rng.standard_normal(np.shape(x)) * s
    dy = rng.standard_normal(np.shape(y)) * s
    return x + params.gamma * y + dx, y + dy


def g_theory(q: np.ndarray, theta: np.ndarray, d2: float, gamma_l: float) -> np.ndarray:
    r"""The paper's monodisperse, infinite-N prediction, eq. 5, on the polar grid.

    .. math:: g(q,\theta) = 1 + \mathrm{sinc}^2\!\left(\frac{q\gamma L\cos\theta}{2}\right) e^{-q^2 D_2^2}

    with sinc(x) = sin(x)/x. Returns shape ``(len(q), len(theta))``.
    """
    q = np.asarray(q, dtype=np.float64)[:, None]
    th = np.asarray(theta, dtype=np.float64)[None, :]
    arg = q * gamma_l * np.cos(th) / 2.0
    return 1.0 + np.sinc(arg / np.pi) ** 2 * np.exp(-(q**2) * d2**2)
