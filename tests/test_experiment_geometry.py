"""Detector geometry: exact q of a flat detector, the APS azimuth, pyFAI files and maps, geometry JSON."""

import json
import math

import numpy as np
import pytest

from shearcorr.errors import ShearcorrError
from shearcorr.experiment.geometry import flat_detector
from shearcorr.experiment.geometryfile import from_maps, from_poni, load_geometry

GEO = dict(particle_radius_nm=10.0, beam_size_nm=8000.0)


def test_flat_detector_exact_q_and_aps_azimuth():
    g = flat_detector((101, 201), (100, 50), 1e-4, 1.0, wavelength=1.0, **GEO)
    # 50 pixels to the right: 2theta = atan(5 mm / 1 m), q = 4 pi sin(theta)/lambda (lambda = 0.1 nm)
    expect = 4 * math.pi * math.sin(math.atan(50e-4) / 2) / 0.1
    assert g.q_nm[50, 150] == pytest.approx(expect, rel=1e-12)
    assert g.phi[50, 150] == pytest.approx(0.0)
    assert math.degrees(g.phi[20, 100]) == pytest.approx(90.0)  # smaller row = up = +90 deg
    assert math.degrees(g.phi[50, 60]) == pytest.approx(180.0)
    assert g.qr0[50, 150] == pytest.approx(10 * expect)
    assert g.beam_size_r0 == pytest.approx(800.0)
    e = flat_detector((101, 201), (100, 50), 1e-4, 1.0, energy_kev=12.398419843320026, **GEO)
    np.testing.assert_allclose(e.q_nm, g.q_nm, rtol=1e-12)


def test_poni_untilted_matches_flat_and_chi_sign(tmp_path):
    poni = tmp_path / "d.poni"
    poni.write_text('poni_version: 2.1\nDetector: Detector\nDetector_config: {"pixel1": 0.0001, "pixel2": 0.0001, '
                    '"max_shape": [101, 201], "orientation": 3}\nDistance: 1.0\nPoni1: 0.00505\nPoni2: 0.01005\n'
                    'Rot1: 0\nRot2: 0\nRot3: 0\nWavelength: 1e-10\n')
    p = from_poni(poni, (101, 201), **GEO)
    f = flat_detector((101, 201), (100, 50), 1e-4, 1.0, wavelength=1.0, **GEO)
    np.testing.assert_allclose(p.q_nm, f.q_nm, rtol=1e-6, atol=1e-9)
    d = np.angle(np.exp(1j * (p.phi - f.phi)))
    assert np.all(np.abs(d)[f.q_nm > 0.05] < 1e-6)


def test_maps_pyfai_convention_flips_sign():
    q = np.full((4, 4), 0.2)
    chi = np.full((4, 4), 30.0)
    g = from_maps(q, chi, q_unit="1/angstrom", phi_unit="deg", convention="pyfai", **GEO)
    assert np.allclose(np.degrees(g.phi), -30.0) and np.allclose(g.q_nm, 2.0)


def test_geometry_json(tmp_path):
    spec = {"beam_center_px": [10, 10], "pixel_size_m": 55e-6, "distance_m": 10.0, "wavelength_angstrom": 1.0,
            "particle_radius_nm": 10.0, "beam_size_um": 8.0, "q_unit": "1/angstrom", "shape": [21, 21]}
    path = tmp_path / "g.json"
    path.write_text(json.dumps(spec))
    g = load_geometry(path, (21, 21))
    assert g.shape == (21, 21) and g.q_unit == "1/angstrom"
    with pytest.raises(ShearcorrError, match="21 x 21 detector"):
        load_geometry(path, (20, 21))
    path.write_text(json.dumps({k: v for k, v in spec.items() if k != "distance_m"}))
    with pytest.raises(ShearcorrError, match="distance_m"):
        load_geometry(path, (21, 21))
