"""The instrument in the experiment: geometry.json beam keys, pixel response, sub-pixel rendering, the
pair model told the pixels, and the CLI (synth-frames, analyze, simulate with a beam)."""

import json

import numpy as np
import pytest

from shearcorr.beam import Beam
from shearcorr.cli import main
from shearcorr.experiment import AnalysisOptions, analyze, render_pair, write_synth
from shearcorr.experiment.geometry import flat_detector
from shearcorr.experiment.geometryfile import from_maps, load_geometry
from shearcorr.experiment.synth import pair_configuration, render_frame
from shearcorr.forward.analytic import ensemble_arrays
from shearcorr.params import QGrid, SystemParams

L = 800.0


def _measured():
    x = np.arange(-60, 61) * 12.0
    X, Y = np.meshgrid(x, x)
    return np.exp(-((X / 400.0) ** 4) - (Y / 300.0) ** 4)


@pytest.mark.parametrize("beam", [Beam("gaussian", (800.0, 600.0), coherence=(300.0, np.inf), plane="1-3", gap=2000.0,
                                       zero_velocity=500.0),
                                  Beam("measured", coherence=500.0, profile_map=_measured(), profile_step=12.0)])
def test_geometry_json_carries_the_beam_in_physical_units(beam, tmp_path):
    p = render_pair(SystemParams(150, 0.0, 1.0, 10), shape=(64, 64), seed=1, beam=beam, pixel_subsamples=1,
                    psf_sigma_px=0.7)
    out = write_synth(p, tmp_path / "pair")
    spec = json.loads((out / "geometry.json").read_text())
    assert spec["beam"]["profile"] == beam.profile and spec["psf_sigma_px"] == 0.7
    geo = load_geometry(out / "geometry.json", (64, 64))
    assert geo.beam == beam and geo.psf_sigma_px == 0.7
    assert geo.shear_length_r0 == beam.shear_length(L)


def test_pixel_response_of_a_flat_detector():
    """One pixel spans k p / D in q at small angles (APS axes: columns along +x, rows along -y)."""
    geo = flat_detector((64, 80), (40.0, 31.5), 75e-6, 5.0, wavelength=1.0, particle_radius_nm=10.0, beam_size_nm=8000.0,
                        psf_sigma_px=0.3)
    pr = geo.pixel_response()
    dq = 2 * np.pi / 0.1 * 75e-6 / 5.0 * 10.0  # k (1/nm) * p / D * R0
    assert pr.col[0] == pytest.approx(dq, rel=1e-6) and abs(pr.col[1]) < 1e-9 * dq
    assert pr.row[1] == pytest.approx(-dq, rel=1e-6) and abs(pr.row[0]) < 1e-9 * dq
    assert pr.psf_sigma_px == 0.3 and pr.variation < 1e-5
    # qvec_at: exact at the pixel centres, and the maps version interpolates the same field
    rows, cols = np.mgrid[0:64, 0:80]
    q, ph = geo.qvec_at(rows, cols)
    assert np.allclose(q, geo.qr0, rtol=1e-13) and np.allclose(np.cos(ph - geo.phi), 1.0)
    maps = from_maps(geo.q_nm, geo.phi, q_unit="1/nm", particle_radius_nm=10.0, beam_size_nm=8000.0)
    qm, _ = maps.qvec_at(rows[:-1, :-1] + 0.5, cols[:-1, :-1] + 0.5)
    qe, _ = geo.qvec_at(rows[:-1, :-1] + 0.5, cols[:-1, :-1] + 0.5)
    assert np.max(np.abs(qm / qe - 1)[qe > 5 * dq]) < 1e-3


def test_rendered_contrast_of_integrating_pixels_is_the_models():
    """A static speckle pattern (the same particles twice) integrated over 1.6-pixel speckles: the contrast
    per ring follows the engine told the pixels, A(q) - 1 with A = g(gamma_l = d2 = 0), not the point model."""
    p = SystemParams(150, 0.0, 0.0, 0.0)
    spx = 1.6
    dq = 2 * np.pi / L / spx
    contrasts = []
    for seed in range(2):
        pair = render_pair(p, shape=(224, 224), dq=dq, contrast=1.0, counts=1e5, seed=seed, pixel_subsamples=1)
        geo = pair.geometry
        cfg = pair_configuration(p, seed)
        frame = render_frame(cfg.x, cfg.y, cfg.radius, geo, flow_angle_deg=0.0, rng=np.random.default_rng(0),
                             counts=1e7, pixel_subsamples=4).astype(float)
        q = geo.qr0
        ring = (q > 0.2) & (q < 0.5)  # full rings inside the frame
        edges = np.geomspace(0.2, 0.5, 9)
        idx = np.digitize(q[ring], edges) - 1
        v = frame[ring]
        m = np.bincount(idx, v, 8) / np.bincount(idx, None, 8)
        i = v / m[idx]
        contrasts.append(np.bincount(idx, (i - 1) ** 2, 8))
        counts = np.bincount(idx, None, 8)
    qc = np.sqrt(edges[1:] * edges[:-1])
    grid = QGrid(qc, np.array([0.0]))
    a_pix = ensemble_arrays(p, grid, pixel=geo.pixel_response(), flow_angle=0.0)[1][:, 0] - 1
    a_pt = ensemble_arrays(p, grid)[1][:, 0] - 1
    # pooled over the rings (~4000 speckles per frame: ~2 % statistical error)
    measured = np.sum(contrasts) / (len(contrasts) * counts.sum())
    assert measured == pytest.approx(np.sum(counts * a_pix) / counts.sum(), rel=0.05)
    assert measured < 0.8 * np.sum(counts * a_pt) / counts.sum()  # the point model is far off at this sampling


@pytest.mark.slow
def test_model_told_the_pixels_removes_the_pixel_bias():
    """Noise-free frames of one configuration, flow known: pixel integration at 2.2 px/speckle lowers
    gamma L of the point-pixel model; the model told the pixels returns the point-sampled value."""
    p = SystemParams(150, 0.0, 0.5, 25.0)
    out = {}
    for sub in (1, 4):
        pair = render_pair(p, flow_angle_deg=20.0, contrast=1.0, counts=1e5, shape=(320, 320), seed=7, pixel_subsamples=sub)
        for pix in (False, True):
            o = AnalysisOptions(mask=pair.mask, plots=False, flow_angle_deg=20.0, pixel_integration=pix, n_q=10)
            out[sub, pix] = analyze(pair.before, pair.after, pair.geometry, options=o).gamma_l.value
    assert out[4, False] < 0.96 * out[1, False]  # the bias of issue 12
    assert abs(out[4, True] / out[1, False] - 1) < 0.04
    assert abs(out[4, True] - out[1, False]) < 0.5 * abs(out[4, False] - out[1, False])


def test_cli_synth_frames_and_analyze_with_a_gap_beam(tmp_path, capsys):
    d = tmp_path / "pair"
    assert main(["synth-frames", "--size", "96", "--beam-profile", "rectangular", "--beam-width", "800", "600",
                 "--plane", "1-3", "--gap", "2000", "--pixel-subsamples", "2", "-o", str(d)]) in (0, None)
    truth = json.loads((d / "truth.json").read_text())
    assert truth["beam"]["plane"] == "1-3" and truth["shear_length"] == 2000.0 and truth["pixel_subsamples"] == 2
    for extra, pixels in (([], True), (["--point-pixels"], False)):
        out = tmp_path / f"res{len(extra)}"
        assert main(["analyze", str(d / "before.npy"), str(d / "after.npy"), "--geometry", str(d / "geometry.json"),
                     "--mask", str(d / "mask.npy"), "--n-q", "6", "--n-phi", "12", "--no-plots", "-o", str(out), *extra]) in (0, None)
        inst = json.loads((out / "result.json").read_text())["geometry"]["instrument"]
        assert inst["beam"]["plane"] == "1-3" and inst["shear_length_r0"] == 2000.0
        assert (inst["pixel_response"] is not None) == pixels
    capsys.readouterr()


@pytest.mark.parametrize("beam, fragment", [({"profile": "square", "fwhm_um": 3}, "unknown beam key"),
                                            ({"profile": "square", "plane": "1-3"}, "gap"),
                                            ("square", "must be a JSON object")])
def test_bad_beam_in_geometry_file_exit_2(beam, fragment, tmp_path, capsys):
    d = tmp_path / "pair"
    render = render_pair(SystemParams(150, 0.0, 1.0, 10), shape=(64, 64), seed=1, pixel_subsamples=1)
    write_synth(render, d)
    spec = json.loads((d / "geometry.json").read_text())
    spec["beam"] = beam
    (d / "geometry.json").write_text(json.dumps(spec))
    rc = main(["analyze", str(d / "before.npy"), str(d / "after.npy"), "--geometry", str(d / "geometry.json"),
               "-o", str(tmp_path / "res")])
    err = capsys.readouterr().err
    assert rc == 2 and fragment in err and err.count("\n") == 1 and not (tmp_path / "res").exists()


def test_cli_simulate_with_a_beam(tmp_path, capsys):
    out = tmp_path / "g.nc"
    assert main(["simulate", "--n-q", "6", "--n-theta", "5", "--beam-profile", "rectangular", "--beam-width", "800", "500",
                 "--coherence", "300", "inf", "-o", str(out)]) in (0, None)
    from shearcorr.result import load_result

    ds = load_result(out)
    b = json.loads(ds.attrs["beam"])
    assert b["size"] == [800.0, 500.0] and b["coherence"] == [300.0, None]
    capsys.readouterr()
    assert main(["simulate", "--beam-profile", "rectangular", "-o", str(tmp_path / "x.nc")]) == 2
    assert "needs size" in capsys.readouterr().err


def test_fit_reorients_the_pixel_response_as_a_fresh_fit_would():
    """fit_pair(reorient=...) started with the pixel response 25 deg off the flow: re-oriented once, at the
    first fit's flow, it returns what a fresh fit (grid scan and all passes) of the re-oriented model
    returns, to the optimiser's tolerance; a model already oriented within the tolerance is kept. (Point-sampled
    frames: the test is of the fit's logic, the pixel model only has to be one that depends on the flow.)"""
    from shearcorr.experiment.correlation import correlation_map, q_bin_edges
    from shearcorr.experiment.flow import wrap_half
    from shearcorr.experiment.pair import make_pair
    from shearcorr.experiment.inference import fit_pair
    from shearcorr.experiment.model import BinnedPairModel
    from threadpoolctl import threadpool_limits

    p = SystemParams(150, 0.0, 1.0, 20.0)
    s = render_pair(p, flow_angle_deg=20.0, contrast=0.5, counts=1e3, shape=(192, 192), dq=2 * np.pi / L / 2.2, seed=3,
                    pixel_subsamples=1)
    pair, geo = make_pair(s.before, s.after, s.mask), s.geometry
    qe = q_bin_edges(geo.qr0, pair.valid, 8, 0.25, 1.1)
    cm = correlation_map(pair, geo, qe, 24)
    pixel = geo.pixel_response(pair.valid)
    calls = []

    def make(phi):
        return BinnedPairModel(qe, cm.phi_edges, n_l2=150, beam_size=L, pixel=pixel, flow_angle=phi)

    def reorient(phi):
        calls.append(phi)
        return make(phi)

    far = np.radians(45.0)
    kw = dict(phi0=far, n_configs=0, grid_gamma=(8.0, 16.0, 32.0), grid_d2=(0.5, 1.5), n_scan=36)
    with threadpool_limits(1, "blas"):  # as analyze runs it (BLAS threads only add overhead on these small matrices)
        first = fit_pair(cm, make(far), bias_correct=False, **kw)  # re-oriented at the fit's solution, not the corrected one
        fit = fit_pair(cm, make(far), reorient=reorient, **kw)
        assert len(calls) == 1 and calls[0] == pytest.approx(wrap_half(first.flow_angle.value), abs=1e-12)
        fresh = fit_pair(cm, make(calls[0]), **dict(kw, phi0=calls[0]))
        calls.clear()
        fit_pair(cm, make(fresh.flow_angle.value + np.radians(3.0)), reorient=reorient, **kw)
        assert not calls
    for name in ("gamma_l", "d2", "flow_angle", "beta"):
        a, b = getattr(fit, name), getattr(fresh, name)
        assert a.value == pytest.approx(b.value, rel=1e-4) and a.std == pytest.approx(b.std, rel=1e-3), name
    assert abs(np.degrees(fit.flow_angle.value) - 20.0) < 5.0
