"""The beam and instrument description (shearcorr.beam): validation, units, transfer, coherent modes."""

import json
import math

import numpy as np
import pytest

from shearcorr.beam import FWHM_PER_SIGMA, Beam
from shearcorr.pixels import PixelResponse, transfer
from shearcorr.forward.modes import coherent_modes
from shearcorr.errors import ShearcorrError


@pytest.mark.parametrize("kwargs, fragment", [
    (dict(profile="round"), "profile"),
    (dict(profile="rectangular"), "needs size"),
    (dict(profile="square", size=(800, 600)), "one size"),
    (dict(plane="1-3"), "gap"),
    (dict(gap=1000.0), "only by the 1-3"),
    (dict(plane="1-3", gap=1000.0, zero_velocity=600.0), "zero_velocity"),
    (dict(coherence=-3.0), "coherence"),
    (dict(plane="2-3"), "plane"),
    (dict(profile="measured"), "profile_map"),
    (dict(coherence=300.0, coherence_mix=[(1.0, 300.0, 300.0)]), "not both"),
    (dict(coherence_mix=[(1.0, 300.0)]), "coherence_mix"),
    (dict(coherence_mix=[(-1.0, 300.0, 300.0), (2.0, 1.0, 1.0)]), "weights"),
])
def test_bad_beam_is_one_line_error(kwargs, fragment):
    with pytest.raises(ShearcorrError, match=fragment) as exc:
        Beam(**kwargs)
    assert "\n" not in str(exc.value)


def test_measured_profile_must_fall_to_zero_and_is_normalised():
    x = np.linspace(-1, 1, 41)
    flat = np.ones((41, 41))
    with pytest.raises(ShearcorrError, match="edge of the map"):
        Beam("measured", profile_map=flat, profile_step=40.0)
    g = 5.0 * np.exp(-(x[None, :] ** 2 + x[:, None] ** 2) / (2 * 0.2**2))
    b = Beam("measured", profile_map=g, profile_step=40.0)
    assert b.profile_map.max() == 1.0 and b.half_extent() == (800.0, 800.0)
    # cubic interpolation of a sampled Gaussian reproduces it between the samples
    sig = 0.2 * 800.0
    xs = np.array([13.0, -77.0, 150.0])
    assert np.allclose(b.intensity(xs, 0.5 * xs), np.exp(-(1.25 * xs**2) / (2 * sig**2)), atol=2e-3)


def test_dict_is_strict_json_and_spec_round_trip_in_physical_units():
    b = Beam("rectangular", (800.0, 500.0), coherence=(300.0, math.inf), plane="1-3", gap=2000.0, zero_velocity=-400.0)
    d = b.to_dict()
    json.dumps(d, allow_nan=False)  # infinite coherence is written as null
    assert d["coherence"] == [300.0, None]
    spec = b.to_spec(10.0)  # R0 = 10 nm: 800 R0 = 8 um
    assert spec["size_um"] == [8.0, 5.0] and spec["gap_um"] == 20.0 and spec["coherence_length_um"][1] == "inf"
    assert Beam.from_spec(json.loads(json.dumps(spec)), particle_radius_nm=10.0) == b
    with pytest.raises(ShearcorrError, match="unknown beam key"):
        Beam.from_spec({"profile": "square", "fwhm_um": 3}, particle_radius_nm=10.0)


def test_coherence_mixture():
    mix = Beam("square", coherence_mix=[(2.0, math.inf, math.inf), (2.0, 50.0, 80.0)])
    assert mix.coherence_mix == ((0.5, math.inf, math.inf), (0.5, 50.0, 80.0)) and not mix.coherent
    assert Beam(coherence_mix=[(1.0, math.inf, math.inf)]).coherent
    # far apart only the coherent component interferes: |mu|^2 -> w^2; at rho = 0 it is 1
    assert mix.coherence_transfer(0.0, 0.0) == pytest.approx(1.0)
    assert mix.coherence_transfer(2000.0, 0.0) == pytest.approx(0.25)
    spec = json.loads(json.dumps(mix.to_spec(10.0)))
    assert Beam.from_spec(spec, particle_radius_nm=10.0) == mix
    json.dumps(mix.to_dict(), allow_nan=False)


def test_paper_beam_and_resolution():
    assert Beam().is_paper(800.0) and Beam("square", 800.0).is_paper(800.0)
    assert not Beam("square", 700.0).is_paper(800.0) and not Beam(coherence=500.0).is_paper(800.0)
    assert Beam("square", plane="1-3", gap=100.0).resolved(800.0).size == (800.0, 800.0)
    assert Beam("square", plane="1-3", gap=1500.0).shear_length(800.0) == 1500.0
    assert Beam().shear_length(640.0) == 640.0
    assert Beam("gaussian", 800.0).box_half_width(800.0) > 5.0 * 800.0 / FWHM_PER_SIGMA


def test_pixel_transfer():
    dq = 0.004
    pr = PixelResponse((dq, 0.0), (0.0, -dq), psf_sigma_px=0.5)
    assert pr.transfer(0.0, 0.0) == pytest.approx(1.0)
    rho = 600.0
    # along the flow with the flow along the detector columns: sinc^2 of the column pixel, PSF Gaussian
    expect = np.sinc(rho * dq / (2 * np.pi)) ** 2 * np.exp(-(0.5**2) * (rho * dq) ** 2)
    assert pr.transfer(rho, 0.0, flow_angle=0.0) == pytest.approx(expect, rel=1e-12)
    # rotating the flow by 90 deg turns the row pixel onto the flow axis (same size here)
    assert pr.transfer(rho, 0.0, flow_angle=np.pi / 2) == pytest.approx(expect, rel=1e-12)
    # at 45 deg both pixel axes project: the product of two sinc^2 of rho dq / sqrt 2
    s2 = np.sinc(rho * dq / np.sqrt(2) / (2 * np.pi)) ** 4 * np.exp(-(0.5**2) * (rho * dq) ** 2)
    assert pr.transfer(rho, 0.0, flow_angle=np.pi / 4) == pytest.approx(s2, rel=1e-12)
    M = transfer(Beam(coherence=(300.0, 500.0)), pr, 0.0)
    assert M(rho, 100.0) == pytest.approx(np.exp(-(rho / 300) ** 2 - (100 / 500) ** 2) * pr.transfer(rho, 100.0))
    assert transfer(Beam(), None) is None


@pytest.mark.parametrize("beam", [Beam("square", coherence=(240.0, 600.0)), Beam("gaussian", (800.0, 600.0), coherence=(300.0, 1e9)),
                                  Beam("rectangular", (800.0, 500.0), coherence=(400.0, math.inf)),
                                  Beam("square", coherence_mix=[(0.7, math.inf, math.inf), (0.3, 60.0, 60.0)])])
def test_coherent_modes_reproduce_the_cross_spectral_density(beam):
    """sum_k nu_k E_k(r1) E_k(r2) = a(r1) a(r2) mu(r1 - r2) (Gaussian Schell model) at random point pairs."""
    b = beam.resolved(800.0)
    nu, ev = coherent_modes(b, eps=1e-6)
    rng = np.random.default_rng(0)
    hx, hy = b.half_extent()
    r1 = rng.uniform(-0.9, 0.9, (2, 200)) * np.array([[hx], [hy]]) * (0.5 if b.profile == "gaussian" else 1.0)
    r2 = r1 + rng.normal(0, 150.0, r1.shape)
    J = np.einsum("k,kn,kn->n", nu, ev(*r1), ev(*r2))
    mu = sum(w * np.exp(-0.5 * ((r1[0] - r2[0]) / xx) ** 2 - 0.5 * ((r1[1] - r2[1]) / xy) ** 2)
             for w, xx, xy in b.coherence_components)
    exact = b.amplitude(*r1) * b.amplitude(*r2) * mu
    assert np.max(np.abs(J - exact)) < 5e-3
    # the trace is the integrated intensity
    assert nu.sum() == pytest.approx(4 * hx * hy if b.is_slit else 2 * np.pi * np.prod(np.array(b.size) / FWHM_PER_SIGMA), rel=1e-5)
