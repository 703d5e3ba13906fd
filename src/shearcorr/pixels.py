r"""The detector's response in q and the pair transfer of the instrument (docs/theory.md section 7).

:class:`PixelResponse`: the q-space footprint of one pixel and a Gaussian point-spread function;
:func:`transfer`: the pair transfer M of a beam's partial coherence times that response, the factor the
general engine (:mod:`shearcorr.forward.beamengine`) applies to the pair density.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .beam import Beam
from .errors import ShearcorrError

__all__ = ["PixelResponse", "transfer"]


@dataclass(frozen=True)
class PixelResponse:
    """Detector response in q: the footprint of one pixel and a Gaussian point-spread function.

    Parameters
    ----------
    col, row : (float, float)
        q-space vectors (1/R0, detector frame: APS x = +column, y = up) spanned by one pixel step
        along increasing column and row (the local Jacobian of q; :meth:`DetectorGeometry.pixel_response`).
    psf_sigma_px : float
        rms width of a Gaussian point-spread function, in pixels (0: none).
    variation : float
        Largest relative deviation of the pixel's q-area from the median over the detector (information:
        the model uses one pixel response per analysis).
    """

    col: tuple[float, float]
    row: tuple[float, float]
    psf_sigma_px: float = 0.0
    variation: float = 0.0

    def __post_init__(self):
        for name in ("col", "row"):
            v = tuple(float(x) for x in getattr(self, name))
            if len(v) != 2 or not all(math.isfinite(x) for x in v):
                raise ShearcorrError(f"pixel response: {name} must be a finite 2-vector, got {getattr(self, name)!r}")
            object.__setattr__(self, name, v)
        s = float(self.psf_sigma_px)
        if not (s >= 0 and math.isfinite(s)):
            raise ShearcorrError(f"psf_sigma_px must be >= 0 (pixels), got {self.psf_sigma_px!r}")
        object.__setattr__(self, "psf_sigma_px", s)

    def to_dict(self) -> dict:
        return {"pixel_q_col": list(self.col), "pixel_q_row": list(self.row), "psf_sigma_px": self.psf_sigma_px,
                "pixel_area_variation": self.variation}

    def transfer(self, rho_x, rho_y, flow_angle: float = 0.0) -> np.ndarray:
        r""":math:`|\hat R(\boldsymbol\rho)|^2` of pixel box and PSF in the flow frame (x at detector azimuth
        ``flow_angle``): :math:`\prod_{j\in\{col,row\}} \mathrm{sinc}^2(\boldsymbol\rho\cdot\mathbf j/2)\,
        \exp(-\sigma^2\sum_j(\boldsymbol\rho\cdot\mathbf j)^2)`."""
        rho_x, rho_y = np.asarray(rho_x, dtype=np.float64), np.asarray(rho_y, dtype=np.float64)
        c, s = math.cos(flow_angle), math.sin(flow_angle)
        out = 1.0
        gauss = 0.0
        for jx, jy in (self.col, self.row):
            ax, ay = c * jx + s * jy, -s * jx + c * jy  # the pixel vector in the flow frame
            proj = rho_x * ax + rho_y * ay
            out = out * np.sinc(proj / (2.0 * np.pi)) ** 2
            gauss = gauss + proj * proj
        if self.psf_sigma_px > 0:
            out = out * np.exp(-(self.psf_sigma_px**2) * gauss)
        return np.broadcast_to(out, np.broadcast_shapes(rho_x.shape, rho_y.shape))


def transfer(beam: Beam, pixel: PixelResponse | None = None, flow_angle: float = 0.0):
    r"""The pair transfer :math:`M(\rho_x, \rho_y)` (callable) of coherence, pixel and PSF, or None when it is 1."""
    parts = []
    if not beam.coherent:
        parts.append(beam.coherence_transfer)
    if pixel is not None:
        parts.append(lambda rx, ry: pixel.transfer(rx, ry, flow_angle))
    if not parts:
        return None

    def M(rx, ry):
        out = parts[0](rx, ry)
        for p in parts[1:]:
            out = out * p(rx, ry)
        return out

    return M
