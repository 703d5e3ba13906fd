"""HDF5 / NeXus conventions of beamline files: compressed Eiger data, pixel masks, the APS 8-ID-I qmap.

* Compression: Eiger and most XPCS files compress frames with bitshuffle/LZ4 (or Blosc, Zstd); the
  HDF5 filters come with ``hdf5plugin``, imported (when installed) before any file is opened. A
  missing filter or a damaged chunk is reported in one line naming the file, the frames and the fix.
* Eiger master files keep the frames in blocks ``/entry/data/data_000001``, ``data_000002``, ...
  (often external links to data files); a group holding such blocks is read as one stack.
* NeXus detector mask: ``/entry/instrument/detector/pixel_mask`` (or ``detectorSpecific/pixel_mask``),
  0 = good pixel, any set bit = gap, dead, hot or noisy. Read automatically next to the frames.
* APS 8-ID-I (``/xpcs/qmap`` in result files, ``/qmap`` in qmap files): ``mask`` (1 = valid),
  ``beam_center_x`` / ``beam_center_y`` (pixels: column / row), ``detector_distance`` (m),
  ``pixel_size`` (m), ``energy`` (keV). A scalar missing there, or a file without a q map (the raw
  ``*_metadata.hdf`` written next to the frames), is read from the NeXus instrument:
  ``/entry/instrument/detector_1/`` ``distance``, ``x_pixel_size`` / ``y_pixel_size`` and the beam centre
  ``beam_center_x + (position_x - beam_center_position_x) / x_pixel_size`` (the direct beam recorded at
  detector position ``beam_center_position_*``, moved by the detector's translation since; likewise in y),
  and ``/entry/instrument/incident_beam/incident_energy``. Lengths are metres unless a ``units``
  attribute says mm, um or nm; energies keV unless it says eV.
  The azimuth there is phi = -atan2(row - bcy, col - bcx), the convention shearcorr uses.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..errors import ShearcorrError

__all__ = ["open_hdf5", "h5py_module", "read_error", "find_frames", "pixel_mask", "find_pixel_mask", "aps_qmap",
           "aps_geometry", "geometry_mask", "is_aps_file", "PIXEL_MASK_PATHS", "APS_QMAP_GROUPS"]

#: Where NeXus/Eiger files keep the detector's pixel mask (0 = good).
PIXEL_MASK_PATHS = ("/entry/instrument/detector/pixel_mask", "/entry/instrument/detector/detectorSpecific/pixel_mask",
                    "/entry/instrument/detector_1/pixel_mask")
#: Groups holding the APS 8-ID-I q map.
APS_QMAP_GROUPS = ("/xpcs/qmap", "/qmap")
#: The NeXus detector and beam of APS 8-ID-I files (raw ``*_metadata.hdf`` and results).
APS_DETECTOR = "/entry/instrument/detector_1"
APS_ENERGY = "/entry/instrument/incident_beam/incident_energy"
_LENGTH_UNITS = {"m": 1.0, "meter": 1.0, "metre": 1.0, "mm": 1e-3, "millimeter": 1e-3, "um": 1e-6, "µm": 1e-6,
                 "micron": 1e-6, "micrometer": 1e-6, "nm": 1e-9}
_BLOCK = re.compile(r"^data_\d+$")


def h5py_module():
    """``h5py`` with the compression filters of ``hdf5plugin`` registered (when it is installed)."""
    try:
        import h5py
    except ImportError:
        raise ShearcorrError("reading HDF5 files needs h5py: pip install 'shearcorr[io]'") from None
    try:
        import hdf5plugin  # noqa: F401  (registers bitshuffle/LZ4, Blosc, Zstd ... with HDF5)
    except ImportError:
        pass
    return h5py


def open_hdf5(path):
    """Open ``path`` read-only (filters registered); a one-line error if it is not an HDF5 file."""
    h5py = h5py_module()
    path = Path(path)
    if not path.is_file():
        raise ShearcorrError(f"no such file: {path}")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise ShearcorrError(f"cannot open {path} as HDF5 ({_first_line(exc)})") from None


def _first_line(exc) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def read_error(exc: Exception, path, what: str) -> ShearcorrError:
    """A one-line error for a failed HDF5 read: a missing compression filter or a damaged chunk."""
    text = _first_line(exc)
    low = str(exc).lower()
    if "filter" in low and ("not" in low or "available" in low or "registered" in low):
        try:
            import hdf5plugin  # noqa: F401

            hint = "the file uses an HDF5 filter that hdf5plugin does not provide"
        except ImportError:
            hint = "the file is compressed with a plugin filter: pip install 'shearcorr[io]' (hdf5plugin)"
        return ShearcorrError(f"cannot read {what} of {path}: {hint} ({text})")
    return ShearcorrError(f"cannot read {what} of {path}: the data are damaged (corrupt compressed chunk?) ({text})")


def find_frames(fh, dataset: str | None, path) -> list:
    """The HDF5 dataset(s) holding the frames: one 2-D/3-D dataset, or the ``data_NNNNNN`` blocks of
    an Eiger master file (``dataset`` naming their group, or ``/entry/data`` by default)."""
    h5py = h5py_module()
    if dataset is None:
        if "entry/data" in fh and isinstance(fh["entry/data"], h5py.Group) and _blocks(fh["entry/data"]):
            dataset = "/entry/data"
        else:
            found: list[str] = []
            fh.visititems(lambda name, obj: found.append(name) if isinstance(obj, h5py.Dataset) and obj.ndim in (2, 3)
                          and not name.endswith("pixel_mask") else None)
            if len(found) != 1:
                listing = ", ".join(found[:5]) or "none"
                raise ShearcorrError(f"{path}: give the dataset path with --dataset (2-D/3-D datasets found: {listing})")
            dataset = found[0]
    try:
        obj = fh[dataset]
    except KeyError:
        raise ShearcorrError(f"dataset {dataset!r} does not exist in {path}") from None
    except OSError as exc:  # a dangling external link
        raise ShearcorrError(f"dataset {dataset!r} of {path} cannot be opened ({_first_line(exc)})") from None
    if isinstance(obj, h5py.Dataset):
        return [obj]
    blocks = _blocks(obj)
    if not blocks:
        raise ShearcorrError(f"{dataset!r} in {path} is a group, not a dataset; give the path of the image data")
    return blocks


def _blocks(group) -> list:
    """The data_NNNNNN datasets of an Eiger master file's data group, in order.

    A block whose external link leads nowhere (its data file not copied, or not yet written) is an error:
    the frames after it would be shifted in time, and those in it lost, without a word.
    """
    h5py = h5py_module()
    out = []
    for name in sorted(k for k in group.keys() if _BLOCK.match(k)):
        try:
            out.append(group[name])
        except (KeyError, OSError):
            link = group.get(name, getlink=True)
            target = f" links to {link.filename}:{link.path}, which" if isinstance(link, h5py.ExternalLink) else ""
            raise ShearcorrError(f"{group.file.filename}: the Eiger data block {name}{target} cannot be opened; copy "
                                 "every data file next to the master file, or read one block with --dataset "
                                 f"{group.name}/<block>") from None
    return out


def find_pixel_mask(fh) -> np.ndarray | None:
    """The NeXus pixel mask of a file as bool, True = valid (pixel_mask == 0), or None."""
    for p in PIXEL_MASK_PATHS:
        if p in fh:
            try:
                raw = np.asarray(fh[p][()])
            except OSError:
                continue
            if raw.ndim == 2:
                return raw == 0
    return None


def pixel_mask(path) -> np.ndarray | None:
    """:func:`find_pixel_mask` of the file ``path`` (None for non-HDF5 files)."""
    from .frames import HDF5_SUFFIXES

    if not str(path).lower().endswith(HDF5_SUFFIXES):
        return None
    with open_hdf5(path) as fh:
        return find_pixel_mask(fh)


def is_aps_file(path) -> bool:
    """True if ``path`` is an HDF5 file with an APS 8-ID-I q map (:data:`APS_QMAP_GROUPS`) or the NeXus
    detector of an 8-ID-I metadata file (:data:`APS_DETECTOR` with a ``distance``)."""
    from .frames import HDF5_SUFFIXES

    if not str(path).lower().endswith(HDF5_SUFFIXES) or not Path(path).is_file():
        return False
    with open_hdf5(path) as fh:
        return any(g in fh for g in APS_QMAP_GROUPS) or f"{APS_DETECTOR}/distance" in fh


def _unit(fh, path) -> str:
    u = fh[path].attrs.get("units", b"")
    return (u.decode() if isinstance(u, bytes) else str(u)).strip()


def _scalar(fh, path, name, *, positive=True, length=False):
    """The number at ``path`` (the first element of an array); lengths converted to metres by their units."""
    try:
        v = float(np.asarray(fh[path][()]).reshape(-1)[0])
    except (KeyError, OSError, ValueError, IndexError, TypeError):
        raise ShearcorrError(f"{name} ({path}) is missing or unreadable in the APS file") from None
    if not np.isfinite(v) or (positive and v <= 0):
        raise ShearcorrError(f"{name} ({path}) in the APS file must be a {'positive' if positive else 'finite'} number, "
                             f"got {v}")
    if length:
        unit = _unit(fh, path) or "m"
        factor = _LENGTH_UNITS.get(unit.lower())
        if factor is None:
            raise ShearcorrError(f"{name} ({path}) is in {unit!r}; shearcorr reads m, mm, um or nm")
        v *= factor
    return v


def _first(fh, paths):
    return next((p for p in paths if p in fh), None)


def aps_qmap(path) -> dict:
    """Read the APS 8-ID-I geometry and mask (module docstring): ``mask`` (bool, True = valid; None when the
    file has no q map), ``beam_center_px`` ([col, row]), ``distance_m``, ``pixel_size_m`` (a number, or
    [row, col] when x and y differ), ``energy_kev``, the q-map group (or None) and ``sources`` (where each
    value came from)."""
    with open_hdf5(path) as fh:
        group = next((g for g in APS_QMAP_GROUPS if g in fh), None)
        if group is None and f"{APS_DETECTOR}/distance" not in fh:
            raise ShearcorrError(f"{path} has no APS q map ({' or '.join(APS_QMAP_GROUPS)}) and no NeXus detector "
                                 f"({APS_DETECTOR}/distance); give a geometry with beam_center_px, pixel_size_m, ...")
        mask = None
        if group is not None and f"{group}/mask" in fh:
            try:
                mask = np.asarray(fh[f"{group}/mask"][()])
            except OSError:
                raise ShearcorrError(f"{path}: {group}/mask is unreadable") from None
            if mask.ndim != 2:
                raise ShearcorrError(f"{path}: {group}/mask must be 2-D, got shape {mask.shape}")
        sources = {}

        def pick(key, what, qmap_name, det_name):
            """The first of the q map's and the detector's dataset for ``key`` that the file has."""
            paths = ([f"{group}/{qmap_name}"] if group else []) + [f"{APS_DETECTOR}/{det_name}"]
            where = _first(fh, paths)
            if where is None:
                raise ShearcorrError(f"{path}: no {what} ({' or '.join(paths)})")
            sources[key] = where
            return where

        p_pix = pick("pixel_size", "pixel size", "pixel_size", "x_pixel_size")
        pix_x = _scalar(fh, p_pix, "the pixel size", length=True)
        from_det = p_pix.startswith(APS_DETECTOR)
        pix_y = (_scalar(fh, f"{APS_DETECTOR}/y_pixel_size", "the pixel size in y", length=True)
                 if from_det and f"{APS_DETECTOR}/y_pixel_size" in fh else pix_x)
        dist = _scalar(fh, pick("distance", "detector distance", "detector_distance", "distance"), "the detector distance",
                       length=True)
        centre = []
        for axis, pix in (("x", pix_x), ("y", pix_y)):
            p_c = pick(f"beam_center_{axis}", f"beam centre {axis} (pixels)", f"beam_center_{axis}", f"beam_center_{axis}")
            c = _scalar(fh, p_c, f"the beam centre {axis}", positive=False)
            moved = [f"{APS_DETECTOR}/position_{axis}", f"{APS_DETECTOR}/beam_center_position_{axis}"]
            if p_c.startswith(APS_DETECTOR) and all(m in fh for m in moved):  # the detector moved since the direct beam
                shift = (_scalar(fh, moved[0], f"the detector position {axis}", positive=False, length=True)
                         - _scalar(fh, moved[1], f"the direct-beam position {axis}", positive=False, length=True)) / pix
                c += shift
                sources[f"beam_center_{axis}"] = f"{p_c} + ({moved[0]} - {moved[1]}) / pixel size"
            centre.append(c)
        p_e = _first(fh, ([f"{group}/energy"] if group else []) + [APS_ENERGY])
        if p_e is None:
            raise ShearcorrError(f"{path}: no incident energy ({(group + '/energy or ') if group else ''}{APS_ENERGY})")
        sources["energy"] = p_e
        energy = _scalar(fh, p_e, "the incident energy")
        unit = _unit(fh, p_e).lower() or "kev"
        if unit == "ev" or energy > 1000.0:  # eV written where keV is the convention
            energy /= 1000.0
    return {"mask": None if mask is None else mask != 0, "beam_center_px": centre, "distance_m": dist,
            "pixel_size_m": pix_x if pix_x == pix_y else [pix_y, pix_x], "energy_kev": energy, "group": group,
            "sources": sources, "file": str(path)}


def aps_geometry(path, shape, *, particle_radius_nm: float, beam_size_nm: float, q_unit: str = "1/angstrom"):
    """Flat-detector geometry and mask (True = valid; None without a q map) from an APS 8-ID-I file
    (:func:`aps_qmap`)."""
    from .geometry import DetectorGeometry, flat_detector

    qm = aps_qmap(path)
    if qm["mask"] is not None and tuple(qm["mask"].shape) != tuple(shape):
        raise ShearcorrError(f"the APS q map of {path} is {qm['mask'].shape[0]} x {qm['mask'].shape[1]} but the frames are "
                             f"{shape[0]} x {shape[1]}")
    geo = flat_detector(shape, qm["beam_center_px"], qm["pixel_size_m"], qm["distance_m"], energy_kev=qm["energy_kev"],
                        particle_radius_nm=particle_radius_nm, beam_size_nm=beam_size_nm, q_unit=q_unit)
    info = dict(geo.info, type="aps_qmap", aps_file=str(path), aps_group=qm["group"], aps_sources=qm["sources"],
                aps_mask=qm["mask"] is not None)
    return DetectorGeometry(geo.q_nm, geo.phi, particle_radius_nm, beam_size_nm, q_unit, info), qm["mask"]


def geometry_mask(geo):
    """The mask (True = valid) that a geometry read by :func:`aps_geometry` carries from its q map, or None (any
    other geometry, or an APS file without a q map)."""
    if geo.info.get("type") != "aps_qmap" or not geo.info.get("aps_mask", True):
        return None
    return aps_qmap(geo.info["aps_file"])["mask"]
