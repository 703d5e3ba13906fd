"""The three modes end to end on small synthetic stacks: quick smoke runs in the default suite (tiny
frames, coarse tables: outputs and loose physics), one realisation each at a useful size (slow), and
the calibrated synthetic-truth studies in benchmarks/bench_stack.py (docs/stacks.md)."""

import json

import numpy as np
import pytest

from shearcorr.params import SystemParams
from shearcorr.stack import analyze_stack
from shearcorr.stack.transit import overlap_fraction
from shearcorr.stack.synth import oscillatory_stack, startup_stack, steady_stack

P = SystemParams(n_l2=150, rs=0.0, d2=1.0, gamma_l=10.0)
DQ = 2 * (2 * np.pi / 800)  # half a pixel per speckle: q R0 up to ~0.5 on 64^2 frames
FAST = {"n_q": 6, "n_phi": 12, "table_steps": {"du": 0.25, "dd": 0.25}}


def test_overlap_fraction_limits():
    L = 800.0
    assert overlap_fraction(0.0, 0.0, L) == pytest.approx(1.0)
    assert overlap_fraction(L, 0.0, L) == pytest.approx(0.0)
    assert overlap_fraction(80.0, 0.0, L) == pytest.approx(0.9)
    assert overlap_fraction(0.0, 0.04, L) == pytest.approx(1 - 0.04 / 4, abs=1e-4)  # shear only: 1 - gamma L / (4 L)


@pytest.mark.slow
def test_steady_mode_recovers_the_shear_rate(tmp_path):
    st = steady_stack(P, 240, shear_rate=8 / 800, diffusion=0.2, transit=40.0, shape=(64, 64), dq=DQ, seed=3,
                      frame_time=0.01)
    r = analyze_stack(st.frames, st.geometry, tmp_path / "out", mode="steady", max_lag=6, mask=st.mask,
                      cache_dir=tmp_path / "cache", plots=True, frame_time=0.01, **FAST)
    s = json.loads((tmp_path / "out" / "result.json").read_text())
    sr = s["shear_rate"]["per_frame"]
    assert s["shear_rate"]["unit"] == "1/s"
    assert abs(sr["value"] / 0.01 - 1) < 0.08 and abs(sr["value"] - 0.01) < 4 * sr["std"]
    assert abs(s["flow_angle_deg"]["value"] - 30.0) < 3.0
    # the configuration term (> 0 here) is in the covariance as in the stds, and the Peclet number carries it
    f = r.analysis.fit
    assert r.analysis.info["configurations"]["shear_rate_std"] > 0
    assert np.allclose([f.std[n] ** 2 for n in f.free], np.diag(f.cov), rtol=1e-9, atol=0)
    assert s["peclet"]["std"] == pytest.approx(f.peclet()[1], rel=1e-9)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["gamma_l.png", "lag_maps.png", "msd.png",
                                                                    "result.h5", "result.json"]
    h5py = pytest.importorskip("h5py")
    with h5py.File(tmp_path / "out" / "result.h5") as fh:
        assert fh["entry/process"].attrs["NX_class"] == "NXprocess"
        g2 = fh["xpcs/multitau/normalized_g2"][()]
        roi = fh["xpcs/qmap/dynamic_roi_map"][()]
        assert g2.shape == (6, r.plan.n_bins) and roi.max() <= r.plan.n_bins
        assert json.loads(fh["entry/process/parameters/data"][()])["mode"] == "steady"


@pytest.mark.slow
def test_twotime_mode_follows_a_startup(tmp_path):
    st = startup_stack(P, 36, start_frame=12, shear_rate=3 / 800, diffusion_rest=0.01, diffusion_flow=0.05,
                       shape=(64, 64), dq=DQ, seed=4)
    r = analyze_stack(st.frames, st.geometry, None, mode="twotime", time_bins=36, mask=st.mask,
                      cache_dir=tmp_path / "cache", **FAST)
    a = r.analysis
    strain = np.asarray(st.truth["strain"])
    true_g = (strain[None, :] - strain[:, None]) * 800
    iu = np.triu_indices(36, 1)
    ok = np.isfinite(a.gamma_l[iu]) & (true_g[iu] < 40)
    z = ((a.gamma_l - true_g) / a.gamma_l_std)[iu][ok]
    assert ok.sum() > 200 and abs(np.median(z)) < 0.7 and 0.6 < np.std(z) < 1.6
    assert np.nanmax(a.gamma_l[0, 1:12]) < 3.0  # at rest before the start-up


@pytest.mark.slow
def test_echo_mode_measures_the_irreversible_step(tmp_path):
    st = oscillatory_stack(P, 16, 8, strain_amplitude=0.04, d2_cycle=1.4, irreversible_fraction=0.4, shape=(64, 64),
                           dq=DQ, seed=5)
    r = analyze_stack(st.frames, st.geometry, None, mode="echo", period=8, mask=st.mask, cache_dir=tmp_path / "cache",
                      max_cycles=3, **FAST)
    d, s = r.analysis.d2_irreversible
    truth = st.truth["d2_irreversible"]
    assert abs(d / truth - 1) < 0.15 and abs(d - truth) < 4 * s
    assert r.summary["flow_angle_deg"]["source"] == "quarter-period pairs"


SMOKE = {"n_q": 4, "n_phi": 8, "table_steps": {"du": 0.4, "dd": 0.4}}


def test_smoke_all_modes(tmp_path):
    st = steady_stack(P, 90, shear_rate=8 / 800, diffusion=0.2, transit=40.0, shape=(48, 48), dq=DQ, seed=1)
    r = analyze_stack(st.frames, st.geometry, tmp_path / "s", mode="steady", max_lag=4, mask=st.mask, groups=8,
                      normalization="frame", cache_dir=tmp_path / "cache", **SMOKE)
    assert abs(r.summary["shear_rate"]["value"] / 0.01 - 1) < 0.25
    assert (tmp_path / "s" / "result.h5").is_file() and r.summary["rs"]["constrained"] is False
    assert r.summary["ratio_bias_correction"] == "thin-ring segments"  # the engine's segment sums reached the fit
    # "frame" maps (the default for detector frames): R_s from the row means of the raw frames all the same
    assert r.summary["rs"]["source"] == "row means" and r.summary["rs"]["row_model_chi2_red"] > 0
    # every term of the reported stds (jackknife + configuration term) is in the covariance, and the Peclet
    # number is propagated from it (issue 11: the configuration term was in the stds only)
    f = r.analysis.fit
    assert np.allclose([f.std[n] ** 2 for n in f.free], np.diag(f.cov), rtol=1e-9, atol=0)
    # the configuration term is > 0 here too (it was exactly 0: the gain of its unit-error fit was zeroed as 'at a bound')
    conf = r.analysis.info["configurations"]
    assert conf["shear_rate_std"] > 0 and conf["propagation"].startswith("global fit")
    # split into the part of which particles are in the beam and the part of their steps (issue 11): both >= 0,
    # summing to one configuration's spread through the global fit, the steps' part renewed within a group
    one, share = conf["one_configuration_rel_std"], conf["jackknife_blind_share"]
    assert 0 <= one["shear_rate_persistent"] <= one["shear_rate"] and share["steps"] <= share["persistent"]
    # the MSD exponent, read through the same particles, gets its part too (it had none: on Gaussian-beam stacks of
    # ~8 independent configurations its z reached 3.9)
    k = f.free.index("exponent")
    assert conf["exponent_std"] > 0
    assert f.info["cov_terms"]["configuration"][k, k] == pytest.approx(conf["exponent_std"] ** 2, rel=1e-12)
    sr, d = r.summary["shear_rate"], r.summary["diffusion"]
    i, j = f.free.index("shear_rate"), f.free.index("diffusion")
    rel2 = (sr["std"] / sr["value"]) ** 2 + (d["std"] / d["value"]) ** 2 - 2 * f.cov[i, j] / (sr["value"] * d["value"])
    assert r.summary["peclet"]["std"] == pytest.approx(sr["value"] / d["value"] * np.sqrt(rel2), rel=1e-9)
    su = startup_stack(P, 20, start_frame=8, shear_rate=4 / 800, diffusion_rest=0.01, diffusion_flow=0.05, shape=(48, 48),
                       dq=DQ, seed=2)
    t = analyze_stack(su.frames, su.geometry, None, mode="twotime", time_bins=20, mask=su.mask, cache_dir=tmp_path / "cache",
                      **SMOKE).analysis
    ramp = t.gamma_l[0, 10:]
    assert np.nanmax(t.gamma_l[0, 1:8]) < np.nanmedian(ramp) and np.all(np.isfinite(t.gamma_l_std[0, 1:]))
    osc = oscillatory_stack(P, 8, 4, strain_amplitude=0.04, d2_cycle=1.4, irreversible_fraction=0.4, shape=(48, 48),
                            dq=DQ, seed=3)
    e = analyze_stack(osc.frames, osc.geometry, None, mode="echo", period=4, mask=osc.mask, max_cycles=2,
                      cache_dir=tmp_path / "cache", **SMOKE).analysis
    assert abs(e.d2_irreversible[0] / osc.truth["d2_irreversible"] - 1) < 0.3


def test_stack_q_range_is_the_pair_models(tmp_path):
    """The stack binned the frame's whole q range, below the pair model's validated domain (q R0 >= 0.075 for the
    paper's beam at L = 800 R0, experiment.checks.model_q_range); it is now clipped there with a warning, as in
    `analyze`, and a --q-min below it is refused."""
    from shearcorr.errors import ShearcorrError

    st = steady_stack(P, 40, shear_rate=8 / 800, diffusion=0.2, shape=(48, 48), dq=DQ, seed=1, beamstop=0.03)
    assert st.geometry.qr0[st.mask].min() < 0.05
    r = analyze_stack(st.frames, st.geometry, None, mode="steady", max_lag=4, mask=st.mask, groups=8,
                      cache_dir=tmp_path / "cache", plots=False, **SMOKE)
    assert any("left out" in w for w in r.summary["warnings"])
    # R_s from the row means ("time" normalisation) comes with the row model's chi^2 per value, a check of that model
    rm = r.analysis.info["rs_row_means"]
    assert r.summary["rs"]["row_model_chi2_red"] == pytest.approx(rm["chi2"] / rm["n_values"], rel=1e-12)
    assert rm["n_values"] > 0 and rm["chi2"] > 0
    assert r.plan.q_edges[0] == pytest.approx(0.0751, abs=1e-3)
    with pytest.raises(ShearcorrError, match="--q-min 0.05 is outside"):
        analyze_stack(st.frames, st.geometry, None, mode="steady", max_lag=4, mask=st.mask, q_min=0.05, **SMOKE)


def test_detector_counts_with_their_gain_give_the_photon_count_analysis(tmp_path):
    """Frames written at 3 detector counts per photon: with gain=3 the shot noise removed from lag 0 (steady) and
    from each frame's contrast (two-time) is that of the photons, so the analysis is the photon-count one; without
    it the contrast reads high by (3 - 1)/n and the fitted numbers move."""
    st = steady_stack(P, 60, shear_rate=8 / 800, diffusion=0.2, transit=40.0, shape=(48, 48), dq=DQ, seed=4, counts=3.0)
    kw = dict(mode="steady", max_lag=4, mask=st.mask, groups=6, cache_dir=tmp_path / "cache", fit_transit=False, **SMOKE)
    ref = analyze_stack(st.frames, st.geometry, None, **kw).summary
    adu = analyze_stack(3 * st.frames, st.geometry, None, gain=3.0, **kw).summary
    raw = analyze_stack(3 * st.frames, st.geometry, None, **kw).summary
    for name in ("shear_rate", "diffusion", "contrast"):
        assert adu[name]["value"] == pytest.approx(ref[name]["value"], rel=1e-4), name
    assert abs(raw["diffusion"]["value"] / ref["diffusion"]["value"] - 1) > 1e-3
    tk = dict(mode="twotime", time_bins=12, mask=st.mask, cache_dir=tmp_path / "cache", **SMOKE)
    t_ref = analyze_stack(st.frames, st.geometry, None, **tk).analysis
    t_adu = analyze_stack(3 * st.frames, st.geometry, None, gain=3.0, **tk).analysis
    assert np.allclose(t_adu.gamma_l, t_ref.gamma_l, rtol=1e-4, atol=1e-6, equal_nan=True)
    from shearcorr.errors import ShearcorrError

    with pytest.raises(ShearcorrError, match="gain"):
        analyze_stack(st.frames, st.geometry, None, gain=0.0, **kw)
