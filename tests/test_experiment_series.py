"""The flow-angle bound of one pair (oracle) and the joint flow angle of a series of pairs."""

import json

import numpy as np
import pytest

from shearcorr.cli import main
from shearcorr.errors import ShearcorrError
from shearcorr.experiment import AnalysisOptions, PairFrames, analyze_series, render_pair
from shearcorr.experiment.series import combine_flow, series_pairs
from shearcorr.experiment.synth import flow_oracle, pair_configuration
from shearcorr.params import SystemParams

SIZE = 384


def test_flow_oracle_reaches_its_cramer_rao_bound():
    # gamma L / D2 = 5: an observer who knows every particle still misses the flow by ~2 deg
    p = SystemParams(150, 0.0, 2.0, 10.0)
    o = [flow_oracle(pair_configuration(p, seed), p) for seed in range(80)]
    full = np.array([v["full"] for v in o])
    disp = np.array([v["displacements"] for v in o])
    n = np.mean([v["n_particles"] for v in o])
    s_full = np.mean([v["sigma_full"] for v in o])
    s_disp = np.mean([v["sigma_displacements"] for v in o])
    # the closed forms for N particles uniform in the beam (flow_oracle's docstring), within 10 %
    assert s_full == pytest.approx(np.sqrt(6) * 2.0 / (10.0 * np.sqrt(n)), rel=0.1)
    assert s_disp == pytest.approx(np.sqrt(12) * 2.0 / (10.0 * np.sqrt(n)) * np.sqrt(1 + 12 * 2.0**2 / 10.0**2), rel=0.1)
    # unbiased, and the spread over configurations is the bound (80 samples: std known to ~8 %)
    assert abs(full.mean()) < 3 * s_full / np.sqrt(80) and abs(disp.mean()) < 3 * s_disp / np.sqrt(80)
    assert np.std(full) == pytest.approx(s_full, rel=0.25)
    assert np.std(disp) == pytest.approx(s_disp, rel=0.25)


def test_combine_flow_wraps_the_axis_and_inflates_on_disagreement():
    r = combine_flow([89.0, -89.0], [2.0, 2.0])  # the same axis seen from both sides of +-90
    assert abs((r.value + 90) % 180 - 90 - (-90)) < 1e-9 or abs(abs(r.value) - 90) < 1e-9
    assert r.std == pytest.approx(2 / np.sqrt(2)) and r.chi2 == pytest.approx(0.5)
    r = combine_flow([10.0, 20.0, 30.0], [1.0, 1.0, 4.0])  # inverse-variance weights
    assert r.value == pytest.approx((10 + 20 + 30 / 16) / (2 + 1 / 16))
    r = combine_flow([0.0, 40.0], [1.0, 1.0])  # 28 sigma apart: Birge ratio sqrt(chi2/dof)
    assert r.std == pytest.approx(np.sqrt(0.5) * np.sqrt(800.0))
    with pytest.raises(ShearcorrError, match="positive std"):
        combine_flow([0.0, 1.0], [1.0, 0.0])


def test_series_pairs():
    assert series_pairs(["a", "b", "c"]) == [PairFrames("a", "b"), PairFrames("b", "c")]
    assert [(p.frame_index, p.frame_index_after) for p in series_pairs(["s.h5"], "disjoint", [0, 1, 4, 5])] == [(0, 1), (4, 5)]
    with pytest.raises(ShearcorrError, match="even number"):
        series_pairs(["a", "b", "c"], "disjoint")
    with pytest.raises(ShearcorrError, match="at least 2"):
        series_pairs(["a"])


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    """Three independent pairs of one hard parameter set (gamma L / D2 = 5), flow at 40 deg."""
    params = SystemParams(150, 0.1, 2.4, 12.0)
    return [render_pair(params, flow_angle_deg=40.0, contrast=0.3, shape=(SIZE, SIZE), seed=60 + k) for k in range(3)]


def test_series_joint_flow_is_the_inverse_variance_mean(series, tmp_path):
    pairs = [PairFrames(p.before, p.after) for p in series]
    r = analyze_series(pairs, series[0].geometry, tmp_path / "out", options=AnalysisOptions(mask=series[0].mask))
    f = r.flow
    s = np.array([v.std for v in f.per_pair])
    assert f.std == pytest.approx(max(1.0, np.sqrt(f.chi2_red)) / np.sqrt(np.sum(1 / s**2)), rel=1e-9)
    assert f.std < s.min()
    # truth 40 deg within 3 joint std; each pair alone within 3 of its own std
    assert abs((f.value - 40 + 90) % 180 - 90) < 3 * f.std
    assert all(abs((v.value - 40 + 90) % 180 - 90) < 3 * v.std for v in f.per_pair)
    out = tmp_path / "out"
    saved = json.loads((out / "series.json").read_text())
    assert saved == json.loads(r.to_json())
    assert set(saved["flow_angle_deg"]) == {"value", "std", "chi2", "dof", "chi2_red", "residuals", "per_pair",
                                            "pairs_used", "fixed", "convention"}
    assert [set(p) for p in saved["pairs"]] == [{"folder", "gamma_l", "d2", "rs", "contrast", "chi2", "inputs"}] * 3
    for k in range(3):
        pr = json.loads((out / f"pair_{k:03d}" / "result.json").read_text())
        assert pr["flow_angle_deg"]["fixed"] and pr["flow_angle_deg"]["value"] == pytest.approx(f.value)
        assert abs(pr["gamma_l"]["value"] - 12.0) < 3 * pr["gamma_l"]["std"] + 1.2
    assert (out / "flow.png").is_file()


def test_cli_series_from_a_stack_and_bad_input(series, tmp_path, capsys):
    h5py = pytest.importorskip("h5py")
    geo = tmp_path / "geometry.json"
    geo.write_text(json.dumps(series[0].geometry_spec))
    np.save(tmp_path / "mask.npy", series[0].mask.astype(np.uint8))
    with h5py.File(tmp_path / "stack.h5", "w") as fh:
        fh["entry/data/data"] = np.stack([f for p in series[:2] for f in (p.before, p.after)]).astype(np.int32)
    common = ["--geometry", str(geo), "--mask", str(tmp_path / "mask.npy"), "--dataset", "/entry/data/data"]
    out = tmp_path / "res"
    rc = main(["analyze-series", str(tmp_path / "stack.h5"), "--frames", "0:4", "--pairing", "disjoint", "--no-plots",
               "-o", str(out)] + common)
    assert rc == 0
    r = json.loads((out / "series.json").read_text())
    assert len(r["pairs"]) == 2 and not r["flow_angle_deg"]["fixed"]
    assert r["pairs"][1]["inputs"]["frame_index"] == 2 and r["pairs"][1]["inputs"]["frame_index_after"] == 3
    fixed = tmp_path / "fixed"
    assert main(["analyze-series", str(tmp_path / "stack.h5"), "--frames", "0:2", "--flow-angle", "40", "--no-plots",
                 "-o", str(fixed)] + common) == 0
    r = json.loads((fixed / "series.json").read_text())
    assert r["flow_angle_deg"] == {"value": 40.0, "std": 0.0, "fixed": True, "convention": r["flow_angle_deg"]["convention"]}
    capsys.readouterr()
    for args, msg in ((["--frames", "0:3", "--pairing", "disjoint"], "even number"), (["--frames", "4"], "START:STOP"),
                      (["--frames", "0:9"], "outside the stack")):
        bad = tmp_path / "bad"
        assert main(["analyze-series", str(tmp_path / "stack.h5"), "--no-plots", "-o", str(bad)] + args + common) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and msg in err
        assert not bad.exists() and not list(tmp_path.glob(".bad*"))


def test_render_series_composes_shear_steps():
    from shearcorr.experiment import analyze
    from shearcorr.experiment.synth import render_series

    params = SystemParams(150, 0.1, 1.0, 12.0)
    frames, mask, geo, truth = render_series(params, 3, flow_angle_deg=-20.0, shape=(SIZE, SIZE), seed=4)
    pair = render_pair(params, flow_angle_deg=-20.0, shape=(SIZE, SIZE), seed=4)
    assert np.array_equal(frames[0], pair.before) and np.array_equal(frames[1], pair.after)
    # two steps: the affine strains add (gamma L -> 24) and the non-affine variances add (D2 -> sqrt 2);
    # fitted within 3 std + 10 % (the single-pair accuracy of the 20-pair study)
    r = analyze(frames[0], frames[2], geo, options=AnalysisOptions(mask=mask, plots=False, flow_angle_deg=-20.0))
    assert abs(r.gamma_l.value - 24.0) < 3 * r.gamma_l.std + 2.4
    assert abs(r.d2.value - np.sqrt(2)) < 3 * r.d2.std + 0.14
    with pytest.raises(ShearcorrError, match="out of the simulation box"):
        render_series(SystemParams(150, 0.1, 1.0, 30.0), 40, shape=(64, 64))
