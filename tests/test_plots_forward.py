"""Figures of the forward model (paper Figs. 1-3) and the `shearcorr plot` command."""

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from shearcorr.cli import main
from shearcorr.forward.montecarlo import sample_configuration, simulate_mc
from shearcorr.params import QGrid
from shearcorr.plots import forward as figs

GRID = QGrid.log(0.5, 5, 12, 13)


def _is_png(path):
    return path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000


def test_fig1_axes_and_frame():
    axes = figs.fig1(sample_configuration(figs.FIG1_PARAMS, 0), GRID)
    assert len(axes) == 4
    frame = [p for p in axes[0].patches if p.get_width() == 800]  # the beam window [-L/2, L/2]^2
    assert len(frame) == 1 and frame[0].get_xy() == (-400, -400)


def test_polar_map_full_circle_and_shape_check():
    values = np.arange(12 * 13, dtype=float).reshape(12, 13) + 1
    ax = figs.plot_polar_map(values, GRID.q, GRID.theta, log=True)
    x0, x1 = ax.get_xlim()
    assert x0 < -4.9 and x1 > 4.9  # completed to theta + pi
    with pytest.raises(Exception, match="shape"):
        figs.plot_polar_map(values[:, :5], GRID.q, GRID.theta)


def test_fig2_and_fig3_from_mc(tmp_path):
    ds = simulate_mc(figs.FIG2_PARAMS, GRID, configs=64, seed=1)
    assert len(figs.fig2(ds)) == 3
    sweeps = {"d2": (0.5, 1.0), "gamma_l": (10.0, 20.0)}
    data = figs.fig3_data(engine="mc", configs=32, seed=1, grid=GRID, sweeps=sweeps)
    assert [float(r.attrs["d2"]) for r in data["d2"]] == [0.5, 1.0]
    axes = figs.fig3(data)
    assert axes.shape == (2, 2)
    assert len(axes[0, 0].lines) == 2 and axes[0, 0].lines[1].get_color() == "k"  # baseline d2 = 1 in black
    out = figs.save_fig3(tmp_path / "f3.png", data=data)
    assert _is_png(out)


def test_save_fig1_and_fig2_write_png(tmp_path):
    assert _is_png(figs.save_fig1(tmp_path / "f1.png", seed=2, grid=GRID))
    assert _is_png(figs.save_fig2(tmp_path / "f2.png", engine="mc", configs=32, seed=2, grid=GRID))


def test_cli_plot(tmp_path, capsys):
    run = tmp_path / "run.nc"
    assert main(["simulate", "--engine", "mc", "--configs", "32", "--n-q", "8", "--n-theta", "9",
                 "--no-progress", "-o", str(run)]) == 0
    out = tmp_path / "figs"
    assert main(["plot", "fig2", "--result", str(run), "-o", str(out)]) == 0
    assert _is_png(out / "fig2.png")
    assert main(["plot", "fig1", "--seed", "3", "-o", str(out)]) == 0
    assert _is_png(out / "fig1.png")
    assert main(["plot", "fig2", "--result", str(tmp_path / "missing.nc"), "-o", str(out)]) == 2
    assert "no such file" in capsys.readouterr().err
