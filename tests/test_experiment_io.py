"""Frames, masks and geometry of the experiment sub-package (no physics)."""

import json
import math

import numpy as np
import pytest

from shearcorr.errors import ShearcorrError
from shearcorr.experiment.frames import load_pair, make_pair, read_frame, read_mask
from shearcorr.experiment.geometry import flat_detector, from_maps, from_poni, load_geometry

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


def test_frames_hdf5_stack_and_errors(tmp_path):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "s.h5"
    with h5py.File(path, "w") as fh:
        fh["entry/data/data"] = np.arange(2 * 4 * 5).reshape(2, 4, 5)
    assert read_frame(path, "/entry/data/data", 1)[0, 0] == 20
    with pytest.raises(ShearcorrError, match="does not exist"):
        read_frame(path, "/entry/nothing", 0)
    with pytest.raises(ShearcorrError, match="--frame-index"):
        read_frame(path, "/entry/data/data")
    with pytest.raises(ShearcorrError, match="outside the stack"):
        read_frame(path, "/entry/data/data", 5)


def test_tiff_and_mask_conventions(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    tifffile.imwrite(tmp_path / "f.tif", a)
    np.testing.assert_array_equal(read_frame(tmp_path / "f.tif"), a)
    m = np.zeros((3, 4), np.uint8)
    m[0, 0] = 1
    np.save(tmp_path / "m.npy", m)
    assert read_mask(tmp_path / "m.npy", "valid").sum() == 1
    assert read_mask(tmp_path / "m.npy", "masked").sum() == 11


def test_pair_masks_bad_pixels_and_refuses_bad_input(tmp_path):
    b = np.ones((4, 4))
    a = np.ones((4, 4))
    b[0, 0], a[1, 1], b[2, 2] = np.nan, -1, 1e9
    pair = make_pair(b, a, saturation=1e6)
    assert not pair.valid[0, 0] and not pair.valid[1, 1] and not pair.valid[2, 2]
    assert pair.n_flagged == {"non_finite": 1, "negative": 1, "saturated": 1}
    with pytest.raises(ShearcorrError, match="different shapes"):
        make_pair(np.ones((4, 4)), np.ones((4, 5)))
    with pytest.raises(ShearcorrError, match="all 16 pixels are masked"):
        make_pair(b, a, mask=np.zeros((4, 4), bool))
    np.save(tmp_path / "x.npy", b)
    with pytest.raises(ShearcorrError, match="no such file"):
        load_pair(tmp_path / "x.npy", tmp_path / "missing.npy")
