"""analyze refuses what it cannot measure and flags what its numbers do not mean (experiment/checks.py)."""

import json

import numpy as np
import pytest

from shearcorr.errors import ShearcorrError
from shearcorr.experiment import AnalysisOptions, analyze, render_pair
from shearcorr.experiment import checks
from shearcorr.params import SystemParams

OPT = AnalysisOptions(n_q=8, n_phi=16, plots=False)


@pytest.fixture(scope="module")
def pair():
    return render_pair(SystemParams(150, 0.1, 1.5, 20), shape=(160, 160), seed=2)


@pytest.mark.parametrize("changes, needle", [
    ({"n_phi": 0}, r"n_phi \(--n-phi\) must be a whole number in \[4, 720\]"),
    ({"n_phi": 100000}, r"\[4, 720\]"),
    ({"n_q": -3}, r"n_q \(--n-q\) must be a whole number"),
    ({"flow_angle_deg": float("nan")}, "must be finite"),
    ({"flow_angle_deg": 1e300}, r"flow angle must be in \[-360, 360\]"),
    ({"n_l2": 1e300}, "must be in"),
    ({"contrast": 0.0}, r"contrast \(--contrast\) must be in \(0, 1\]"),
    ({"saturation": -1.0}, "saturation"),
    ({"q_min": 0.5, "q_max": 0.2}, "need q_min < q_max"),
    ({"gain": 0.0}, r"gain \(--gain\) must be > 0 detector counts per photon"),
    ({"gain": float("nan")}, "must be finite"),
    ({"gain": 4.0, "photon_counts": False}, "no meaning with --not-photon-counts"),
])
def test_options_out_of_range_are_refused_at_construction(changes, needle):
    with pytest.raises(ShearcorrError, match=needle):
        OPT.replace(**changes)


def test_speckle_size_is_the_renderer_s(pair):
    """speckle_px in result.json was 1.4x too large (it divided by the step of |q| along a row, not by
    the length of the q-vector step); now it is the synthetic frames' own speckle size."""
    spx = pair.geometry.speckle_px(pair.mask)
    assert spx == pytest.approx(pair.truth["speckle_px"], rel=2e-3)
    r = analyze(pair.before, pair.after, pair.geometry, options=OPT.replace(mask=pair.mask))
    assert r.geometry["speckle_px"] == pytest.approx(pair.truth["speckle_px"], rel=2e-3)
    assert r.warnings == () and json.loads(r.to_json())["warnings"] == []


def test_identical_frames_flag_the_bounds_and_the_undefined_flow(pair):
    """Identical frames gave flow 51.0 deg +- 3.6e-8 with success true; the flow is now null, and the
    parameters at the bounds of the fit are flagged in the result (and by the CLI on stderr)."""
    r = analyze(pair.before, pair.before, pair.geometry, options=OPT.replace(mask=pair.mask))
    d = json.loads(r.to_json())
    assert d["flow_angle_deg"]["value"] is None and d["flow_angle_deg"]["std"] is None
    text = " ".join(r.warnings)
    assert "the flow direction is undefined" in text and "d2 = 0.01 R0 is at the lower bound" in text


def test_the_default_q_range_is_clipped_to_the_model_domain(pair):
    """A beamline frame reaching below the model's smallest valid q: those bins are left out, and said."""
    from shearcorr.experiment.geometry import DetectorGeometry

    g = pair.geometry
    small = DetectorGeometry(g.q_nm, g.phi, g.particle_radius_nm, g.beam_size_nm / 4, g.q_unit, dict(g.info))  # L = 200 R0
    lo = checks.model_q_range(small.qr0, pair.mask, OPT, small.beam_size_r0)
    assert lo[0] is not None and lo[0] > small.qr0[pair.mask].min() and "left out" in lo[2][0]
    with pytest.raises(ShearcorrError, match="outside the pair model's validated domain"):
        checks.model_q_range(small.qr0, pair.mask, OPT.replace(q_min=0.01), small.beam_size_r0)


def test_bins_speckles_and_fit_bounds():
    with pytest.raises(ShearcorrError, match="pixels per bin"):
        checks.check_bins(16, 720, 100_000)
    checks.check_bins(16, 36, 1_000_000)
    with pytest.raises(ShearcorrError, match="speckles of"):
        checks.check_speckle(200.0, (1024, 1024))
    assert checks.check_speckle(2.2, (1024, 1024)) == [] and "smaller than a pixel" in checks.check_speckle(0.5, (64, 64))[0]
    big, small = checks.fit_bounds(OPT, 800.0), checks.fit_bounds(OPT, 60.0)
    assert big == {"gamma_max": 80.0, "d2_max": 6.0}
    assert small["gamma_max"] < 0.9 * 60 and small["d2_max"] < 0.5 * 60 * (1 - small["gamma_max"] / 60) / 6
    assert checks.flow_defined(10.0, 1.0) and not checks.flow_defined(1e-9, 180.0)


def test_cache_folder_named_by_the_user_must_be_writable(tmp_path):
    folder, notes = checks.cache_folder(tmp_path / "c", lambda: tmp_path / "default")
    assert folder == tmp_path / "c" and folder.is_dir() and notes == []
    (tmp_path / "file").write_text("x")
    with pytest.raises(ShearcorrError, match="cache folder"):
        checks.cache_folder(tmp_path / "file" / "c", lambda: tmp_path)
    folder, notes = checks.cache_folder(None, lambda: tmp_path / "file" / "c")  # the default: caching off
    assert folder is None and "not cached" in notes[0]


def test_render_checks():
    with pytest.raises(ShearcorrError, match="out of the simulated box"):
        checks.check_render(SystemParams(150, 0, 1e6, 10), 10.0, 0.3, (64, 64), 2)
    with pytest.raises(ShearcorrError, match="counts must be > 0"):
        checks.check_render(SystemParams(150, 0, 1, 10), 0.0, 0.3, (64, 64), 2)
    with pytest.raises(ShearcorrError, match="of memory"):
        checks.check_render(SystemParams(150, 0, 1, 10), 10.0, 0.3, (100_000, 100_000), 2)
    assert np.isfinite(checks.RENDER_BYTES_PER_PIXEL)


def test_non_integer_frames_analysed_as_counts_are_named():
    from shearcorr.experiment.checks import counts_warning

    rng = np.random.default_rng(0)
    valid = np.ones((64, 64), bool)
    intensity = rng.exponential(2.0, (2, 64, 64))  # a speckle intensity, not counts
    counts = rng.poisson(intensity).astype(np.float64)  # counts stored as floats
    assert counts_warning(counts, valid, True) == []
    (w,) = counts_warning(intensity, valid, True)
    assert "100 % of the valid pixels hold non-integer values" in w and "--not-photon-counts" in w
    assert counts_warning(intensity, valid, False) == []


def test_frames_in_detector_units_are_named_and_converted_by_the_gain():
    """Frames of 3 counts per photon (an integrating detector's ADU) analysed as photon counts: the Poisson term of
    the contrast is 3x too small, and gamma L and D2 come out biased (+20-35 % on this kind of pair at ~3 photons
    per pixel). The variance-mean law of the q rings names the gain; --gain 3 gives the photon-count analysis."""
    from shearcorr.experiment.checks import gain_warning, shot_noise_gain

    sp = render_pair(SystemParams(150, 0.1, 2.0, 20), shape=(256, 256), counts=1.0, seed=3)
    photons = (sp.before, sp.after)
    m1 = shot_noise_gain(photons, sp.mask, sp.geometry.qr0)
    m3 = shot_noise_gain([3 * f for f in photons], sp.mask, sp.geometry.qr0)
    assert abs(m1["gain"] - 1.0) < max(0.15, 3 * m1["std"]) and m1["std"] < 0.15  # photon counts: g = 1
    assert m3["gain"] == pytest.approx(3 * m1["gain"], rel=1e-9)  # g scales with the counts per photon
    assert m3["beta"] == pytest.approx(m1["beta"], rel=1e-9) and m3["mu_min"] == pytest.approx(3 * m1["mu_min"])
    assert gain_warning(photons, sp.mask, sp.geometry.qr0, 1.0, True) == []
    opt = OPT.replace(n_phi=36)
    ref = analyze(sp.before, sp.after, sp.geometry, options=opt)
    adu = analyze(3 * sp.before, 3 * sp.after, sp.geometry, options=opt)
    assert any("detector counts per photon" in w and "--gain 3" in w for w in adu.warnings)
    assert adu.gamma_l.value > 1.1 * ref.gamma_l.value  # the wrong Poisson term reads as decorrelation
    fixed = analyze(3 * sp.before, 3 * sp.after, sp.geometry, options=opt.replace(gain=3.0))
    assert not any("detector counts per photon" in w for w in fixed.warnings)
    for name in ("gamma_l", "d2"):
        assert getattr(fixed, name).value == pytest.approx(getattr(ref, name).value, rel=1e-9)
    assert fixed.inputs["gain"] == 3.0
    # intensities without shot noise, rounded to integers (the non-integer check cannot see them): named too
    smooth = render_pair(SystemParams(150, 0.1, 2.0, 20), shape=(256, 256), counts=1e6, seed=3)
    rounded = [np.round(f * 3e-6) for f in (smooth.before, smooth.after)]
    assert shot_noise_gain(rounded, smooth.mask, smooth.geometry.qr0)["gain"] < 0.5
    (w,) = gain_warning(rounded, smooth.mask, smooth.geometry.qr0, 1.0, True)
    assert "no shot noise" in w and "--not-photon-counts" in w
