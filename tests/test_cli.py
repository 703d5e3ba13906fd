"""CLI frame: bad input is one line on stderr, exit status 2, no traceback."""

import subprocess
import sys

import pytest

from shearcorr.cli import main


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["simulate", "--n-l2", "-3", "-o", "x.nc"], "n_l2 must be > 0"),
        (["simulate", "--rs", "-0.1", "-o", "x.nc"], "rs must be >= 0"),
        (["simulate", "--n-q", "0", "-o", "x.nc"], "--n-q: must be >= 1"),
        (["simulate", "--q-min", "0", "-o", "x.nc"], "q_min"),
        (["simulate", "--engine", "mc", "-o", "x.nc"], "--configs"),
        (["simulate", "--configs", "0", "-o", "x.nc"], "must be >= 1"),
        (["simulate", "--seed", "-1", "-o", "x.nc"], "seed must be >= 0"),
        (["simulate", "--d2", "abc", "-o", "x.nc"], "--d2: must be a number"),
        (["simulate", "-o", "no/such/folder/x.nc"], "does not exist"),
        (["simulate", "--bogus"], "error"),
        (["analyze", "a.tif", "b.tif", "--geometry", "g.json", "--rs-prior", "0.2", "0.1", "-o", "x.nc"], "rs_prior"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(argv, needle, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        code = main(argv)
        raise SystemExit(code)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert needle in err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "x.nc").exists()


def test_console_script_prints_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "shearcorr", "simulate", "--d2", "-1", "-o", str(tmp_path / "a.nc")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip() == "shearcorr: error: d2 must be >= 0 (non-affine displacement std), got -1"


def test_version_and_help(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith("shearcorr ")
    assert main([]) == 2
