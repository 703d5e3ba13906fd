r"""The flow direction from the high-correlation strip.

Affine shear leaves y (the gradient direction) unchanged, so the correlation is highest for q along
the gradient, theta = pi/2 from the flow. With the azimuthal profile p(phi) = <(C - 1)/beta>_q
(folded, phi mod pi), the strip axis is the doubled-angle circular mean

.. math:: \psi = \tfrac12 \arg \sum_k w_k\,p_k\,e^{2 i \phi_k},\qquad \phi_{\rm flow} = \psi - \pi/2

and its uncertainty is the spread over a bootstrap of the q rows (with the bin errors as noise).
This is the start value; the direct fit refines the angle jointly with gamma L and D2.
"""

from __future__ import annotations

import numpy as np

from ..rng import as_generator

__all__ = ["strip_angle", "wrap_half"]


def wrap_half(angle: float) -> float:
    """Wrap an angle (rad) into [-pi/2, pi/2): the flow axis is defined modulo pi."""
    return float((angle + np.pi / 2) % np.pi - np.pi / 2)


def _psi(y, phi, w):
    p = np.nansum(np.where(np.isfinite(y), y * w, 0), axis=0)
    p = p - p.min()
    return 0.5 * np.angle(np.sum(p * np.exp(2j * phi)))


def strip_angle(cmap, n_boot: int = 100, seed=0) -> tuple[float, float]:
    """Flow angle (rad, detector azimuth of the flow axis, in [-pi/2, pi/2)) and its bootstrap std."""
    y = np.where(cmap.ok, cmap.y, np.nan)
    w = np.where(cmap.ok, 1.0 / np.maximum(cmap.C_err, 1e-12) ** 2, 0.0)
    rows = np.flatnonzero(np.isfinite(y).any(axis=1))
    psi0 = _psi(y[rows], cmap.phi, w[rows])
    rng = as_generator(seed)
    boots = []
    err = np.where(cmap.ok, cmap.C_err / cmap.beta, 0)
    for _ in range(n_boot):
        pick = rng.choice(rows, rows.size)
        yb = y[pick] + err[pick] * rng.standard_normal(err[pick].shape)
        d = _psi(yb, cmap.phi, w[pick]) - psi0
        boots.append((d + np.pi / 2) % np.pi - np.pi / 2)
    flow = wrap_half(psi0 + cmap.phi_offset - np.pi / 2)
    return flow, float(np.std(boots))
