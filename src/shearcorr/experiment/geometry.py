r"""Detector geometry: per-pixel q and azimuth phi, and the map onto the model's units.

Axes (APS convention, used everywhere inside shearcorr): for a frame ``data[row, col]`` with the
beam centre at pixel ``(col_c, row_c)`` (0-based, pixel centres at integer indices),

.. math:: x = (\mathrm{col} - \mathrm{col}_c)\,p_x,\qquad y = -(\mathrm{row} - \mathrm{row}_c)\,p_y,
          \qquad \phi = \operatorname{atan2}(y, x)

i.e. phi is measured counter-clockwise from +x (increasing column) when the image is displayed
with row 0 at the **top** (``imshow(origin="upper")``, the usual way). pyFAI's chi is
``atan2(row - row_c, col - col_c)``, the opposite sign: :math:`\phi = -\chi`, converted here, at the edge.

Flat detector normal to the beam: :math:`2\theta_B = \arctan(r/D)`, :math:`q = 4\pi\sin(\theta_B)/\lambda`
with r the distance of the pixel centre from the beam centre and D the sample-detector distance
(exact, no small-angle approximation). Physical q is kept in 1/nm; ``q_unit`` is how the user
declares and reads q (1/angstrom = 10/nm). The model is dimensionless: q*R0, gammaL/R0, D2/R0 and
beam_size = L/R0, where R0 is the particle radius and L the beam size, both given in physical units.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..choices import CHOICES, check_choice
from ..errors import ShearcorrError
from ..params import finite_float

__all__ = ["DetectorGeometry", "flat_detector", "Q_UNITS", "HC_KEV_ANGSTROM"]

#: 1 q_unit expressed in 1/nm, for each unit of :data:`shearcorr.choices.CHOICES` ``["q_unit"]``.
Q_UNITS = dict(zip(CHOICES["q_unit"], (1.0, 10.0)))
#: h c in keV * angstrom (lambda[A] = 12.398 / E[keV]).
HC_KEV_ANGSTROM = 12.398419843320026


def _shape(shape) -> tuple[int, int]:
    """A detector shape [rows, cols] as two whole numbers >= 1 (one-line error otherwise)."""
    try:
        ny, nx = shape
        if any(isinstance(v, bool) or float(v) != int(v) or int(v) < 1 for v in (ny, nx)):
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        raise ShearcorrError(f"geometry: shape must be [rows, cols], two whole numbers >= 1, got {shape!r}") from None
    return int(ny), int(nx)


def _pos(name, v) -> float:
    v = finite_float(f"geometry: {name}", v)
    if v <= 0:
        raise ShearcorrError(f"geometry: {name} must be a positive number, got {v!r}")
    return v


@dataclass(frozen=True)
class DetectorGeometry:
    """Per-pixel q (1/nm) and phi (rad, APS convention) plus the sample scales.

    Attributes
    ----------
    q_nm : ndarray (ny, nx)
        |q| of each pixel centre in 1/nm.
    phi : ndarray (ny, nx)
        Azimuth in radians, counter-clockwise from +x (see module docstring), in (-pi, pi].
    particle_radius_nm : float
        R0, the particle radius (the model's length unit).
    beam_size_nm : float
        L, the side of the (square, uniformly illuminated) beam footprint.
    q_unit : {"1/nm", "1/angstrom"}
        Unit used to report q.
    info : dict
        How the geometry was defined (JSON-serialisable), for result.json.
    beam : shearcorr.beam.Beam or None
        The beam in model units (R0): footprint, coherence, scattering geometry (``"beam"`` of the
        geometry file, docs/experiment.md "Describe your beamline"); None is the paper's coherent
        square of side L in the 1-2 geometry.
    psf_sigma_px : float
        rms width of the detector's Gaussian point-spread function, in pixels (0: none).
    """

    q_nm: np.ndarray
    phi: np.ndarray
    particle_radius_nm: float
    beam_size_nm: float
    q_unit: str = "1/nm"
    info: dict = field(default_factory=dict)
    beam: Any = None
    psf_sigma_px: float = 0.0

    def __post_init__(self):
        check_choice("q_unit", self.q_unit, what="geometry: q_unit")
        _pos("particle_radius_nm", self.particle_radius_nm)
        _pos("beam_size_nm", self.beam_size_nm)
        if np.shape(self.q_nm) != np.shape(self.phi) or np.ndim(self.q_nm) != 2:
            raise ShearcorrError(f"geometry: q and phi maps must be 2-D of one shape, got {np.shape(self.q_nm)} and {np.shape(self.phi)}")
        psf = finite_float("geometry: psf_sigma_px", self.psf_sigma_px)
        if psf < 0:
            raise ShearcorrError(f"geometry: psf_sigma_px must be >= 0 (pixels), got {self.psf_sigma_px!r}")
        object.__setattr__(self, "psf_sigma_px", psf)

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(np.shape(self.q_nm))

    @property
    def qr0(self) -> np.ndarray:
        """Dimensionless q*R0 per pixel (the model's q)."""
        return self.q_nm * self.particle_radius_nm

    @property
    def beam_size_r0(self) -> float:
        """L / R0, the model's ``beam_size``."""
        return self.beam_size_nm / self.particle_radius_nm

    def q_to_unit(self, qr0):
        """Convert dimensionless q*R0 to the declared q unit."""
        return np.asarray(qr0) / self.particle_radius_nm / Q_UNITS[self.q_unit]

    def length_nm(self, value_r0: float) -> float:
        """Convert a length in R0 to nm."""
        return float(value_r0) * self.particle_radius_nm

    def with_instrument(self, beam=None, psf_sigma_px=None) -> DetectorGeometry:
        """A copy with another beam (R0 units) and/or point-spread width (None keeps the current one)."""
        return replace(self, beam=self.beam if beam is None else beam,
                       psf_sigma_px=self.psf_sigma_px if psf_sigma_px is None else psf_sigma_px)

    @property
    def shear_length_r0(self) -> float:
        """The length that multiplies gamma in gamma_l: L (1-2 geometry) or the gap h (1-3), in R0."""
        return self.beam.shear_length(self.beam_size_r0) if self.beam is not None else self.beam_size_r0

    def speckle_px(self, valid=None) -> float:
        """Speckle size in pixels: the first zero of the intensity autocorrelation, 2 pi / L in q, over the pixel
        pitch in q, the length of the q *vector* step between neighbouring pixels along rows (median over the
        ``valid`` pixel pairs). Not the change of |q| along a row: that is smaller by |cos| of the angle between
        the row and the radius (median 1/sqrt(2)) and made the speckle 1.4x too large."""
        qx, qy = self._qvec()
        dq = np.hypot(np.diff(qx, axis=1), np.diff(qy, axis=1))
        if valid is None:
            valid = np.ones(self.shape, dtype=bool)
        pairs = valid[:, 1:] & valid[:, :-1] & np.isfinite(dq)
        step = float(np.median(dq[pairs])) if pairs.any() else float(np.nanmedian(dq))
        return (2 * np.pi / self.beam_size_r0) / step if step > 0 else float("inf")

    def _qvec(self):
        q = self.qr0
        return q * np.cos(self.phi), q * np.sin(self.phi)

    def pixel_response(self, valid=None):
        r"""The detector response in q (:class:`shearcorr.pixels.PixelResponse`): the q-vectors spanned by
        one pixel step along columns and rows (central differences of :math:`q R_0(\cos\phi, \sin\phi)`,
        median over the valid interior pixels) and the point-spread width. The spread of the pixel
        vectors over the detector is in ``PixelResponse`` ``.variation`` (relative, max over pixels)."""
        from ..pixels import PixelResponse

        qx, qy = self._qvec()
        ok = np.ones(self.shape, bool) if valid is None else np.asarray(valid, bool)
        inner = ok[1:-1, 1:-1] & ok[1:-1, 2:] & ok[1:-1, :-2] & ok[2:, 1:-1] & ok[:-2, 1:-1]
        if inner.sum() < 4:
            raise ShearcorrError("geometry: too few valid pixels to measure the pixel size in q; check the mask")
        cx = (0.5 * (qx[1:-1, 2:] - qx[1:-1, :-2]))[inner], (0.5 * (qy[1:-1, 2:] - qy[1:-1, :-2]))[inner]
        rx = (0.5 * (qx[2:, 1:-1] - qx[:-2, 1:-1]))[inner], (0.5 * (qy[2:, 1:-1] - qy[:-2, 1:-1]))[inner]
        area = np.abs(cx[0] * rx[1] - cx[1] * rx[0])
        med = float(np.median(area))
        return PixelResponse((float(np.median(cx[0])), float(np.median(cx[1]))),
                             (float(np.median(rx[0])), float(np.median(rx[1]))), self.psf_sigma_px,
                             variation=float(np.max(np.abs(area / med - 1.0))) if med > 0 else 0.0)

    def qvec_at(self, rows, cols) -> tuple[np.ndarray, np.ndarray]:
        """q R0 and azimuth phi at fractional pixel positions (row, col) (pixel centres at integers):
        exact for a flat detector, bilinear in the q-vector maps otherwise (sub-pixel rendering)."""
        rows, cols = np.asarray(rows, dtype=np.float64), np.asarray(cols, dtype=np.float64)
        if self.info.get("type") == "flat":
            cx, cy = self.info["beam_center_px"]
            py, px = self.info["pixel_size_m"]
            x = (cols - cx) * px
            y = -(rows - cy) * py + 0.0
            two_theta = np.arctan2(np.hypot(x, y), self.info["distance_m"])
            q = 4.0 * np.pi * np.sin(two_theta / 2.0) / (self.info["wavelength_angstrom"] / 10.0) * self.particle_radius_nm
            return q, np.arctan2(y, x)
        from scipy.ndimage import map_coordinates

        qx, qy = self._qvec()
        coords = np.stack([rows.ravel(), cols.ravel()])
        vx = map_coordinates(qx, coords, order=1, mode="nearest").reshape(rows.shape)
        vy = map_coordinates(qy, coords, order=1, mode="nearest").reshape(rows.shape)
        return np.hypot(vx, vy), np.arctan2(vy, vx)

    def check_shape(self, shape) -> None:
        if tuple(shape) != self.shape:
            raise ShearcorrError(f"geometry is for a {self.shape[0]} x {self.shape[1]} detector but the frames are {shape[0]} x {shape[1]}")


def flat_detector(shape, beam_center, pixel_size, distance, *, wavelength=None, energy_kev=None,
                  particle_radius_nm, beam_size_nm, q_unit="1/nm", beam=None, psf_sigma_px=0.0) -> DetectorGeometry:
    """Geometry of a flat detector normal to the beam.

    Parameters
    ----------
    shape : (ny, nx)
    beam_center : (col, row)
        Direct-beam position in pixels (0-based, fractional allowed).
    pixel_size : float or (p_row, p_col)
        Pixel size in metres.
    distance : float
        Sample-detector distance in metres.
    wavelength : float, optional
        X-ray wavelength in angstrom (or give ``energy_kev``; lambda = 12.398 / E).
    beam, psf_sigma_px : see :class:`DetectorGeometry`.
    """
    ny, nx = _shape(shape)
    if ny < 2 or nx < 2:
        raise ShearcorrError(f"geometry: detector shape must be at least 2 x 2, got {shape}")
    try:
        cx, cy = (finite_float("geometry: beam_center_px", v) for v in beam_center)
    except (TypeError, ValueError):
        raise ShearcorrError(f"geometry: beam_center_px must be [col, row] (column first, then row; pixels, "
                             f"0-based), got {beam_center!r}") from None
    if np.ndim(pixel_size) == 0:
        py = px = pixel_size
    elif isinstance(pixel_size, (list, tuple, np.ndarray)) and len(pixel_size) == 2:
        py, px = pixel_size
    else:
        raise ShearcorrError(f"geometry: pixel_size_m must be one number or [row, col], got {pixel_size!r}")
    py, px = _pos("pixel_size_m", py), _pos("pixel_size_m", px)
    dist = _pos("distance_m", distance)
    if (wavelength is None) == (energy_kev is None):
        raise ShearcorrError("geometry: give exactly one of wavelength_angstrom and energy_kev")
    lam_a = _pos("wavelength_angstrom", wavelength) if wavelength is not None else HC_KEV_ANGSTROM / _pos("energy_kev", energy_kev)
    x = (np.arange(nx) - cx) * px
    y = -(np.arange(ny) - cy) * py + 0.0  # + 0.0 turns -0.0 into 0.0 (phi = pi, not -pi)
    r = np.hypot(x[None, :], y[:, None])
    two_theta = np.arctan2(r, dist)
    q_nm = 4.0 * np.pi * np.sin(two_theta / 2.0) / (lam_a / 10.0)
    phi = np.arctan2(np.broadcast_to(y[:, None], r.shape), np.broadcast_to(x[None, :], r.shape))
    info = {"type": "flat", "shape": [ny, nx], "beam_center_px": [cx, cy], "pixel_size_m": [py, px],
            "distance_m": dist, "wavelength_angstrom": lam_a}
    return DetectorGeometry(q_nm, phi, particle_radius_nm, beam_size_nm, q_unit, info, beam, psf_sigma_px)
