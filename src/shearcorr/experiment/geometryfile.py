"""Detector geometry from a description: a geometry JSON file, a pyFAI ``.poni`` file, or per-pixel maps.

Each returns a :class:`~shearcorr.experiment.geometry.DetectorGeometry` (axes, units and the azimuth
convention are in that module's docstring); the JSON format is in docs/experiment.md.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..choices import check_choice
from ..errors import ShearcorrError
from ..params import finite_float
from .geometry import Q_UNITS, DetectorGeometry, _pos, _shape, flat_detector

__all__ = ["from_poni", "from_maps", "load_geometry"]


def _parse_poni(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ShearcorrError(f"{path} is not a text file; a .poni file is pyFAI's 'Key: value' text") from None
    out = {}
    for line in text.splitlines():
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
    need_pyfai = "pip install 'shearcorr[pyfai]'"
    try:
        cfg = json.loads(p.get("detector_config", "{}"))
    except (ValueError, RecursionError):
        raise ShearcorrError(f"{path}: Detector_config is not JSON; fix the poni file") from None
    if not isinstance(cfg, dict):
        raise ShearcorrError(f"{path}: Detector_config must be a JSON object like {{\"pixel1\": 7.5e-05, ...}}, "
                             f"got {type(cfg).__name__}")
    detector = p.get("detector", "Detector").strip()
    if "pixel1" not in cfg and "pixelsize1" not in p and detector.lower() not in ("", "detector"):
        raise ShearcorrError(f"{path} names the detector {detector!r}, whose pixel size only pyFAI knows; {need_pyfai}")
    try:
        pix1 = _pos("poni pixel1", cfg.get("pixel1", p.get("pixelsize1")))
        pix2 = _pos("poni pixel2", cfg.get("pixel2", p.get("pixelsize2")))
        dist, poni1, poni2 = (_pos("poni Distance", p["distance"]), finite_float("poni Poni1", p["poni1"]),
                              finite_float("poni Poni2", p["poni2"]))
        lam_m = _pos("poni Wavelength", p["wavelength"])
        rots = [finite_float(f"poni {k}", p.get(k, 0.0)) for k in ("rot1", "rot2", "rot3")]
    except KeyError as exc:
        raise ShearcorrError(f"{path} has no {exc.args[0]!r} entry; not a readable poni file (or {need_pyfai})") from None
    if any(abs(r) > 1e-6 for r in rots):
        raise ShearcorrError(f"{path} describes a tilted detector; reading tilts needs pyFAI: {need_pyfai}")
    orientation = cfg.get("orientation", 3)
    if orientation not in (3, "3"):
        raise ShearcorrError(f"{path} uses detector orientation {orientation!r}; shearcorr reads orientation 3 "
                             f"(pyFAI's default) itself, others need pyFAI: {need_pyfai}")
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
    for name, arr in (("q_map", q), ("phi_map", ph)):
        bad = int(np.sum(~np.isfinite(arr)))
        if bad:
            raise ShearcorrError(f"geometry: the {name} holds {bad} NaN or inf values; give every pixel a finite value "
                                 "(exclude pixels with the mask instead)")
    if np.any(q < 0):
        raise ShearcorrError("geometry: the q_map holds negative values; |q| is >= 0")
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
    either ``beam_center_px`` ([col, row]: column first, as x then y; 0-based pixel centres) +
    ``pixel_size_m`` (one number or [row, col]) + ``distance_m`` + (``wavelength_angstrom`` |
    ``energy_kev``), or ``poni``, or ``q_map`` + ``phi_map`` (.npy; ``phi_unit``,
    ``azimuth_convention``), or ``aps_qmap`` (an APS 8-ID-I NeXus file with ``/xpcs/qmap``: beam
    centre, distance, pixel size, energy; its mask is applied by the analyses, :mod:`.nexus`).
    Relative file names are relative to the JSON file.
    The instrument (optional): ``beam`` (an object with ``profile``, ``size_um``,
    ``coherence_length_um``, ``plane``, ``gap_um``, ``zero_velocity_um``, ``profile_file``,
    ``profile_step_um``; :meth:`shearcorr.beam.Beam.from_spec`) and ``psf_sigma_px``.
    """
    path = Path(path)
    if not path.is_file():
        raise ShearcorrError(f"no such geometry file: {path}")
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ShearcorrError(f"geometry file {path} is not valid JSON ({exc})") from None
    except RecursionError:
        raise ShearcorrError(f"geometry file {path} is nested too deeply to be a geometry; it holds one JSON object "
                             "of numbers and file names (docs/experiment.md)") from None
    if not isinstance(spec, dict):
        raise ShearcorrError(f"geometry file {path} must hold a JSON object")
    for key in ("particle_radius_nm", "beam_size_um"):
        if key not in spec:
            raise ShearcorrError(f"geometry file {path} has no {key!r}; the model needs the particle radius and beam size")
    common = dict(particle_radius_nm=_pos("particle_radius_nm", spec["particle_radius_nm"]),
                  beam_size_nm=1000.0 * _pos("beam_size_um", spec["beam_size_um"]))
    q_unit = spec.get("q_unit", "1/nm")
    base = path.parent
    for key in ("poni", "q_map", "phi_map", "aps_qmap"):
        if key in spec and not isinstance(spec[key], str):
            raise ShearcorrError(f"geometry file {path}: {key!r} must be a file name, got {spec[key]!r}")
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
    if "shape" in spec and list(_shape(spec["shape"])) != list(shape):
        raise ShearcorrError(f"geometry is for a {spec['shape'][0]} x {spec['shape'][1]} detector but the frames are {shape[0]} x {shape[1]}")
    geo.check_shape(shape)
    beam = _beam_from_spec(spec.get("beam"), base, common["particle_radius_nm"]) if spec.get("beam") is not None else None
    return geo.with_instrument(beam=beam, psf_sigma_px=spec.get("psf_sigma_px", 0.0))


def _beam_from_spec(bspec, base: Path, particle_radius_nm: float):
    """The ``"beam"`` object of a geometry file as a :class:`shearcorr.beam.Beam` in R0 (reads ``profile_file``)."""
    from ..beam import Beam

    if not isinstance(bspec, dict):
        raise ShearcorrError("geometry: 'beam' must be a JSON object (docs/experiment.md, 'Describe your beamline')")
    bspec = dict(bspec)
    if "profile_file" in bspec:
        from .frames import read_frame

        bspec["profile_map"] = read_frame(base / bspec.pop("profile_file"))
    return Beam.from_spec(bspec, particle_radius_nm=particle_radius_nm)
