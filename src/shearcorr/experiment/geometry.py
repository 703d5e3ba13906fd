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

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..choices import CHOICES, check_choice
from ..errors import ShearcorrError
from ..params import finite_float

__all__ = ["DetectorGeometry", "flat_detector", "from_poni", "from_maps", "load_geometry", "Q_UNITS", "HC_KEV_ANGSTROM"]

#: 1 q_unit expressed in 1/nm, for each unit of :data:`shearcorr.choices.CHOICES` ``["q_unit"]``.
Q_UNITS = dict(zip(CHOICES["q_unit"], (1.0, 10.0)))
#: h c in keV * angstrom (lambda[A] = 12.398 / E[keV]).
HC_KEV_ANGSTROM = 12.398419843320026


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
    """

    q_nm: np.ndarray
    phi: np.ndarray
    particle_radius_nm: float
    beam_size_nm: float
    q_unit: str = "1/nm"
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        check_choice("q_unit", self.q_unit, what="geometry: q_unit")
        _pos("particle_radius_nm", self.particle_radius_nm)
        _pos("beam_size_nm", self.beam_size_nm)
        if np.shape(self.q_nm) != np.shape(self.phi) or np.ndim(self.q_nm) != 2:
            raise ShearcorrError(f"geometry: q and phi maps must be 2-D of one shape, got {np.shape(self.q_nm)} and {np.shape(self.phi)}")

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

    def check_shape(self, shape) -> None:
        if tuple(shape) != self.shape:
            raise ShearcorrError(f"geometry is for a {self.shape[0]} x {self.shape[1]} detector but the frames are {shape[0]} x {shape[1]}")


def flat_detector(shape, beam_center, pixel_size, distance, *, wavelength=None, energy_kev=None,
                  particle_radius_nm, beam_size_nm, q_unit="1/nm") -> DetectorGeometry:
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
    """
    ny, nx = (int(s) for s in shape)
    if ny < 2 or nx < 2:
        raise ShearcorrError(f"geometry: detector shape must be at least 2 x 2, got {shape}")
    try:
        cx, cy = (float(v) for v in beam_center)
    except (TypeError, ValueError):
        raise ShearcorrError(f"geometry: beam_center_px must be [col, row], got {beam_center!r}") from None
    py, px = (pixel_size, pixel_size) if np.ndim(pixel_size) == 0 else tuple(pixel_size)
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
    return DetectorGeometry(q_nm, phi, particle_radius_nm, beam_size_nm, q_unit, info)


def _parse_poni(path: Path) -> dict:
    out = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or ":" not in line:
            continue
        key, val = line.split(":", 1)
        out[key.strip().lower()] = val.strip()
    return out


def from_poni(path, shape, *, particle_radius_nm, beam_size_nm, q_unit="1/nm") -> DetectorGeometry:
    """Geometry from a pyFAI ``.poni`` file; phi = -chi (pyFAI's chi has the opposite sign).

    With pyFAI installed (extra ``pyfai``) any tilt is handled by pyFAI itself; without it, only an
    untilted detector (Rot1 = Rot2 = Rot3 = 0) is read, directly from the file.
    """
    path = Path(path)
    if not path.is_file():
        raise ShearcorrError(f"no such poni file: {path}")
    try:
        import pyFAI
    except ImportError:
        pyFAI = None
    if pyFAI is not None:
        try:
            ai = pyFAI.load(str(path))
            q_nm = np.asarray(ai.center_array(tuple(shape), unit="q_nm^-1"), dtype=np.float64)
            chi = np.asarray(ai.center_array(tuple(shape), unit="chi_rad"), dtype=np.float64)
        except Exception as exc:  # pyFAI raises many types for bad files
            raise ShearcorrError(f"pyFAI cannot read {path} ({type(exc).__name__}: {exc})") from None
        info = {"type": "poni", "poni": str(path), "reader": f"pyFAI {pyFAI.version}"}
        return DetectorGeometry(q_nm, -chi, particle_radius_nm, beam_size_nm, q_unit, info)
    p = _parse_poni(path)
    try:
        cfg = json.loads(p.get("detector_config", "{}"))
        pix1 = float(cfg.get("pixel1", p.get("pixelsize1", "nan")))
        pix2 = float(cfg.get("pixel2", p.get("pixelsize2", "nan")))
        dist, poni1, poni2 = float(p["distance"]), float(p["poni1"]), float(p["poni2"])
        lam_m = float(p["wavelength"])
        rots = [float(p.get(k, 0.0)) for k in ("rot1", "rot2", "rot3")]
    except (KeyError, ValueError, json.JSONDecodeError) as exc:
        raise ShearcorrError(f"{path} is not a readable poni file ({exc}); or install pyFAI: pip install pyFAI") from None
    if any(abs(r) > 1e-6 for r in rots):
        raise ShearcorrError(f"{path} describes a tilted detector; reading tilts needs pyFAI: pip install pyFAI")
    if int(cfg.get("orientation", 3)) != 3:
        raise ShearcorrError(f"{path} uses detector orientation {cfg['orientation']}; reading it needs pyFAI: pip install pyFAI")
    geo = flat_detector(shape, (poni2 / pix2 - 0.5, poni1 / pix1 - 0.5), (pix1, pix2), dist,
                        wavelength=lam_m * 1e10, particle_radius_nm=particle_radius_nm,
                        beam_size_nm=beam_size_nm, q_unit=q_unit)
    info = dict(geo.info, type="poni", poni=str(path), reader="shearcorr (untilted)")
    return DetectorGeometry(geo.q_nm, geo.phi, particle_radius_nm, beam_size_nm, q_unit, info)


def from_maps(q, phi, *, q_unit, phi_unit="rad", convention="aps", particle_radius_nm, beam_size_nm) -> DetectorGeometry:
    """Geometry from explicit per-pixel q (in ``q_unit``) and azimuth maps.

    ``convention="pyfai"`` means the map is pyFAI's chi (phi = -chi); ``phi_unit`` is ``rad`` or ``deg``.
    """
    check_choice("q_unit", q_unit, what="geometry: q_unit")
    check_choice("phi_unit", phi_unit, what="geometry: phi_unit")
    check_choice("azimuth_convention", convention, what="geometry: azimuth_convention")
    q = np.asarray(q, dtype=np.float64) * Q_UNITS[q_unit]
    ph = np.asarray(phi, dtype=np.float64)
    if phi_unit == "deg":
        ph = np.radians(ph)
    if convention == "pyfai":
        ph = -ph
    ph = np.angle(np.exp(1j * ph))
    info = {"type": "maps", "q_unit_in": q_unit, "phi_unit_in": phi_unit, "azimuth_convention": convention}
    return DetectorGeometry(q, ph, particle_radius_nm, beam_size_nm, q_unit, info)


def load_geometry(path, shape) -> DetectorGeometry:
    """Read a geometry JSON file (format in docs/experiment.md) for frames of ``shape``.

    Keys: ``particle_radius_nm``, ``beam_size_um`` (required), ``q_unit`` (default ``1/nm``),
    ``shape`` ([rows, cols], optional, checked against the frames) and
    either ``beam_center_px`` + ``pixel_size_m`` + ``distance_m`` + (``wavelength_angstrom`` |
    ``energy_kev``), or ``poni``, or ``q_map`` + ``phi_map`` (.npy; ``phi_unit``,
    ``azimuth_convention``), or ``aps_qmap`` (an APS 8-ID-I NeXus file with ``/xpcs/qmap``: beam
    centre, distance, pixel size, energy; its mask is applied by the analyses, :mod:`.nexus`).
    Relative file names are relative to the JSON file.
    """
    path = Path(path)
    if not path.is_file():
        raise ShearcorrError(f"no such geometry file: {path}")
    try:
        spec = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ShearcorrError(f"geometry file {path} is not valid JSON ({exc})") from None
    if not isinstance(spec, dict):
        raise ShearcorrError(f"geometry file {path} must hold a JSON object")
    for key in ("particle_radius_nm", "beam_size_um"):
        if key not in spec:
            raise ShearcorrError(f"geometry file {path} has no {key!r}; the model needs the particle radius and beam size")
    common = dict(particle_radius_nm=_pos("particle_radius_nm", spec["particle_radius_nm"]),
                  beam_size_nm=1000.0 * _pos("beam_size_um", spec["beam_size_um"]))
    q_unit = spec.get("q_unit", "1/nm")
    base = path.parent
    if "aps_qmap" in spec:
        from .nexus import aps_geometry

        geo = aps_geometry(base / spec["aps_qmap"], shape, q_unit=q_unit, **common)[0]
    elif "poni" in spec:
        geo = from_poni(base / spec["poni"], shape, q_unit=q_unit, **common)
    elif "q_map" in spec or "phi_map" in spec:
        if "q_map" not in spec or "phi_map" not in spec:
            raise ShearcorrError(f"geometry file {path}: explicit maps need both 'q_map' and 'phi_map'")
        from .frames import read_frame

        geo = from_maps(read_frame(base / spec["q_map"]), read_frame(base / spec["phi_map"]), q_unit=q_unit,
                        phi_unit=spec.get("phi_unit", "rad"), convention=spec.get("azimuth_convention", "aps"), **common)
    else:
        missing = [k for k in ("beam_center_px", "pixel_size_m", "distance_m") if k not in spec]
        if missing:
            raise ShearcorrError(f"geometry file {path} lacks {', '.join(missing)} (or give 'poni' or 'q_map'/'phi_map')")
        geo = flat_detector(shape, spec["beam_center_px"], spec["pixel_size_m"], spec["distance_m"],
                            wavelength=spec.get("wavelength_angstrom"), energy_kev=spec.get("energy_kev"),
                            q_unit=q_unit, **common)
    if "shape" in spec and [int(v) for v in spec["shape"]] != list(shape):
        raise ShearcorrError(f"geometry is for a {spec['shape'][0]} x {spec['shape'][1]} detector but the frames are {shape[0]} x {shape[1]}")
    geo.check_shape(shape)
    return geo
