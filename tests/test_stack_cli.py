"""analyze-stack / synth-stack on the command line: the bad-input cases of issue 11 are one line on stderr,
exit status 2, and leave nothing behind; synth-stack writes an Eiger-like file that analyze-stack reads."""

import json

import numpy as np
import pytest

from shearcorr.cli import main

h5py = pytest.importorskip("h5py")


@pytest.fixture(scope="module")
def stack_dir(tmp_path_factory):
    """A small synthetic oscillatory stack written by the CLI (12 cycles of 4 frames, 48^2)."""
    d = tmp_path_factory.mktemp("synth")
    assert main(["synth-stack", "--protocol", "oscillatory", "--cycles", "12", "--period", "4", "--size", "48",
                 "--compression", "gzip", "-o", str(d / "st")]) == 0
    return d / "st"


def _fails(argv, capsys, needle):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2 and needle in err and len(err.splitlines()) == 1, err


def test_synth_stack_file_layout(stack_dir):
    truth = json.loads((stack_dir / "truth.json").read_text())
    with h5py.File(stack_dir / "stack.h5") as fh:
        assert fh["entry/data/data"].shape == (48, 48, 48) and fh["entry/data/data"].dtype == np.uint32
        assert fh["entry/data/time"].shape == (48,)
        assert (fh["entry/data/data"][0] == 2**32 - 1).any()  # module gaps carry the detector flag
    assert truth["period_frames"] == 4 and truth["files"]["dataset"] == "/entry/data/data"


def test_bad_stack_inputs_are_one_line(stack_dir, tmp_path, capsys):
    base = [str(stack_dir / "stack.h5"), "--geometry", str(stack_dir / "geometry.json")]
    out = tmp_path / "o"
    _fails(["analyze-stack", *base, "--mode", "steady", "--max-lag", "60", "-o", str(out)], capsys,
           "not more than the lag window")
    _fails(["analyze-stack", *base, "--mode", "echo", "--period", "5", "-o", str(out)], capsys, "does not divide")
    _fails(["analyze-stack", *base, "--mode", "echo", "--period-s", "0.025", "--timestamps", "/entry/data/time", "-o",
            str(out)], capsys, "whole number of frames")
    _fails(["analyze-stack", *base, "--mode", "echo", "--period", "4", "--frames", "0:40", "--timestamps",
            "/entry/instrument/detector/pixel_mask", "-o", str(out)], capsys, "values but the stack has 48 frames")
    _fails(["analyze-stack", *base, "--mode", "steady", "--frames", "0:99", "-o", str(out)], capsys, "outside the stack")
    _fails(["analyze-stack", str(stack_dir / "stack.h5"), *base, "--mode", "twotime", "-o", str(out)], capsys,
           "several files are for the echo")
    assert not out.exists() and not list(tmp_path.glob(".o.*"))


def test_mixed_shapes_and_damaged_chunk_are_one_line(stack_dir, tmp_path, capsys):
    geo = str(stack_dir / "geometry.json")
    with h5py.File(tmp_path / "mixed.h5", "w") as fh:
        fh["entry/data/data_000001"] = np.ones((4, 48, 48), np.uint32)
        fh["entry/data/data_000002"] = np.ones((4, 48, 40), np.uint32)
    _fails(["analyze-stack", str(tmp_path / "mixed.h5"), "--geometry", geo, "--mode", "steady", "-o",
            str(tmp_path / "o")], capsys, "frames of different shapes")
    rng = np.random.default_rng(0)
    data = rng.poisson(rng.gamma(1.0, 20.0, (40, 48, 48))).astype(np.uint32)  # speckle-like counts
    with h5py.File(tmp_path / "bad.h5", "w") as fh:
        ds = fh.create_dataset("entry/data/data", data=data, chunks=(1, 48, 48), compression="gzip")
        off = ds.id.get_chunk_info(30).byte_offset
    raw = bytearray((tmp_path / "bad.h5").read_bytes())
    raw[off + 8:off + 300] = bytes(292)
    (tmp_path / "bad.h5").write_bytes(bytes(raw))
    _fails(["analyze-stack", str(tmp_path / "bad.h5"), "--geometry", geo, "--mode", "twotime", "--time-bins", "10",
            "-o", str(tmp_path / "o")], capsys, "damaged")
    assert not (tmp_path / "o").exists() and not list(tmp_path.glob(".o.*"))


def test_synth_stack_in_a_gaussian_beam_writes_it_to_the_geometry(tmp_path, capsys):
    """--beam-profile gaussian: the footprint lights the particles (intensity-weighted count ~ n_l2 x 2 pi sigma^2 /
    L^2 = 1.13 n_l2 for a FWHM of L) and goes into geometry.json, so analyze-stack models it; the 1-3 plane and a
    beam for the oscillatory protocol are one-line refusals that leave nothing behind."""
    out = tmp_path / "g"
    assert main(["synth-stack", "--protocol", "steady", "--frames", "3", "--size", "48", "--n-l2", "40",
                 "--beam-profile", "gaussian", "-o", str(out)]) == 0
    geo = json.loads((out / "geometry.json").read_text())
    truth = json.loads((out / "truth.json").read_text())
    assert geo["beam"]["profile"] == "gaussian" and truth["beam"]["profile"] == "gaussian"
    assert truth["n_in_beam_mean"] == pytest.approx(40 * 2 * np.pi / (8 * np.log(2)), rel=0.25)
    capsys.readouterr()
    _fails(["synth-stack", "--protocol", "steady", "--frames", "3", "--size", "48", "--beam-profile", "gaussian",
            "--plane", "1-3", "--gap", "500", "-o", str(tmp_path / "p13")], capsys, "1-2 plane")
    _fails(["synth-stack", "--protocol", "oscillatory", "--size", "48", "--beam-profile", "gaussian",
            "-o", str(tmp_path / "osc")], capsys, "square beam only")
    assert not (tmp_path / "p13").exists() and not (tmp_path / "osc").exists()
