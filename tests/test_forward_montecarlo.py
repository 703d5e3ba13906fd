"""Physics and reproducibility of the brute-force Monte Carlo engine (paper Sec. II A-B)."""

import subprocess
import sys

import numba
import numpy as np
import pytest
from conftest import chi2_per_dof

from shearcorr import physics
from shearcorr.cli import main
from shearcorr.errors import ShearcorrError
from shearcorr.forward.montecarlo import Configuration, intensity_pair, sample_configuration, simulate_mc
from shearcorr.params import QGrid, SystemParams
from shearcorr.result import load_result

BASE = SystemParams(150, 0.0, 0.5, 10.0)


def test_configuration_geometry_and_rearrangement():
    """4 n_l2 particles in [-L, L]^2; with d2 = 0 the move is the pure shear x' = x + gamma y."""
    p = SystemParams(150, 0.0, 0.0, 20.0)
    cfg = sample_configuration(p, seed=1)
    assert isinstance(cfg, Configuration) and cfg.n_particles == 600
    assert np.all(np.abs(cfg.x) <= 800) and np.all(np.abs(cfg.y) <= 800)
    np.testing.assert_allclose(cfg.x_after, cfg.x + (20.0 / 800.0) * cfg.y, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(cfg.y_after, cfg.y)
    inside = (np.abs(cfg.x) < 400) & (np.abs(cfg.y) < 400)
    np.testing.assert_array_equal(cfg.in_beam_before, inside)
    assert 100 < inside.sum() < 200  # binomial(600, 1/4): mean 150, sd 10.6


def test_sample_configuration_is_configuration_k_of_the_run():
    """Configuration index k of a run does not depend on how many configurations the run has."""
    p = SystemParams(100, 0.1, 1.0, 10.0)
    a, b = sample_configuration(p, 7, index=70), sample_configuration(p, 7, index=70)
    np.testing.assert_array_equal(a.x_after, b.x_after)
    assert not np.array_equal(a.x, sample_configuration(p, 7, index=71).x)


def test_intensity_symmetric_under_theta_plus_pi(small_grid):
    """I(q, theta + pi) = I(q, theta) for one configuration (eq. 1 is even in q), to 1e-5 of mean I."""
    theta = np.linspace(0, np.pi, 7)[:-1]
    grid = QGrid(small_grid.q, np.concatenate([theta, theta + np.pi]))
    i_b, i_a = intensity_pair(sample_configuration(SystemParams(150, 0.2, 1, 10), seed=2), grid)
    for i in (i_b, i_a):
        scale = i.mean(axis=1, keepdims=True)
        assert np.max(np.abs(i[:, :6] - i[:, 6:]) / scale) < 1e-5


def test_mean_intensity_is_form_factor_squared(small_grid):
    """rs = 0: E[I] = F^2(q) exactly for every configuration with a non-empty window (eq. 1 with
    equal V), so chi^2/dof of (<I> - F^2) / I_err over the 20 x 21 grid must be ~1 (bounds 0.6-1.5
    for 420 points, 1000 configurations: I_err ~ 3 % of I); a 10 % error in F^2 must be detected (chi^2/dof > 3)."""
    ds = simulate_mc(BASE, small_grid, configs=1000, seed=11)
    f2 = physics.form_factor(small_grid.q)[:, None] ** 2 * np.ones(small_grid.shape)
    chi2 = chi2_per_dof(ds["I"].values, f2, ds["I_err"].values)
    assert 0.6 < chi2 < 1.5, chi2
    assert chi2_per_dof(ds["I"].values, 1.10 * f2, ds["I_err"].values) > 3


EQ5_GRID = QGrid(np.geomspace(0.6, 1.5, 8), np.linspace(0, np.pi, 41))


@pytest.mark.parametrize("params", [SystemParams(150, 0, 0.5, 10), SystemParams(100, 0, 1.0, 30)],
                         ids=["150-0-0.5-10", "100-0-1-30"])
def test_monodisperse_ensemble_matches_eq5(params):
    """chi^2/dof of (g_MC - g_eq5) / g_err on q in [0.6, 1.5] (where g - 1 is resolved), 8 x 41 grid,
    4000 configurations: must lie in [0.6, 1.6]. Eq. 5 drops O(1/N) terms (g - 1 is biased low by
    ~(1/N + fraction leaving the beam) * (g - 1) <= 0.02), which is < 0.5 g_err at 4000 configurations;
    the slow test uses more. A 50 % error in d2 must be detected (chi^2/dof > 3; observed 6-8)."""
    ds = simulate_mc(params, EQ5_GRID, configs=4000, seed=21)
    g5 = physics.g_theory(EQ5_GRID.q, EQ5_GRID.theta, params.d2, params.gamma_l)
    chi2 = chi2_per_dof(ds["g"].values, g5, ds["g_err"].values)
    assert 0.6 < chi2 < 1.6, chi2
    wrong = physics.g_theory(EQ5_GRID.q, EQ5_GRID.theta, 1.5 * params.d2, params.gamma_l)
    assert chi2_per_dof(ds["g"].values, wrong, ds["g_err"].values) > 3


@pytest.mark.slow
@pytest.mark.parametrize("params", [SystemParams(150, 0, 0.5, 10), SystemParams(100, 0, 1.0, 30)],
                         ids=["150-0-0.5-10", "100-0-1-30"])
def test_monodisperse_ensemble_matches_eq5_full_grid(params):
    """The paper's full 100 x 101 grid, 20000 configurations (the paper's count).

    Over the whole grid chi^2/dof of (g_MC - g_eq5) / g_err must lie in [0.6, 1.5]. Restricted to
    q in [0.6, 1.5], where g - 1 is large, eq. 5's O(1/N) bias is ~0.5 g_err at the peak, so the bound
    is chi^2/dof < 1.5 for eq. 5, and the finite-N corrected eq. 5, 1 + k (g_eq5 - 1) with
    k = E[N_both (N_both - 1) / (N N')] from the window counts, must give chi^2/dof in [0.8, 1.25]."""
    grid = QGrid()
    ds = simulate_mc(params, grid, configs=20000, seed=22)
    g5 = physics.g_theory(grid.q, grid.theta, params.d2, params.gamma_l)
    chi2_full = chi2_per_dof(ds["g"].values, g5, ds["g_err"].values)
    assert 0.6 < chi2_full < 1.5, chi2_full
    sel = (grid.q >= 0.6) & (grid.q <= 1.5)
    g_mc, g_err, g5 = ds["g"].values[sel], ds["g_err"].values[sel], g5[sel]
    assert chi2_per_dof(g_mc, g5, g_err) < 1.5
    ks = []
    for k in range(0, 20000, 500):  # the same window counts as the run, every 500th configuration
        cfg = sample_configuration(params, 22, index=k)
        b, a = cfg.in_beam_before, cfg.in_beam_after
        ks.append((b & a).sum() * ((b & a).sum() - 1) / (b.sum() * a.sum()))
    g5c = 1 + np.mean(ks) * (g5 - 1)
    chi2 = chi2_per_dof(g_mc, g5c, g_err)
    assert 0.8 < chi2 < 1.25, chi2


def test_errors_are_calibrated(small_grid):
    """g_err, g_q_err (jackknife) and g_theta_err against the scatter of 8 independent runs:
    mean of ((g_s - mean_s g) / err)^2 * 8/7 must be ~1 (bounds 0.6-1.5 for g over 420 points x 8
    runs; 0.4-2.0 for g(q), g(theta) with 20 and 21 values)."""
    p = SystemParams(150, 0.1, 1.0, 10.0)
    runs = [simulate_mc(p, small_grid, configs=256, seed=100 + s) for s in range(8)]
    for var, err, lo, hi in (("g", "g_err", 0.6, 1.5), ("g_q", "g_q_err", 0.4, 2.0),
                             ("g_theta", "g_theta_err", 0.4, 2.0)):
        vals = np.stack([r[var].values for r in runs])
        errs = np.stack([r[err].values for r in runs])
        z2 = np.mean(((vals - vals.mean(0)) / errs) ** 2) * 8 / 7
        assert lo < z2 < hi, (var, z2)


def test_same_seed_same_result_different_seed_differs(small_grid):
    a = simulate_mc(BASE, small_grid, configs=70, seed=4)
    b = simulate_mc(BASE, small_grid, configs=70, seed=4)
    c = simulate_mc(BASE, small_grid, configs=70, seed=5)
    for var in ("I", "g", "g_err", "g_q_err", "g_theta_err"):
        np.testing.assert_array_equal(a[var].values, b[var].values)
    assert not np.allclose(a["g"].values, c["g"].values)
    assert a.attrs["seed"] == 4 and a.attrs["engine"] == "mc" and a.attrs["configs"] == 70


def test_result_independent_of_thread_count(small_grid):
    """1 thread vs all threads: equal to 1e-12 relative (in fact bitwise: each grid point and each
    configuration map is computed by one thread with the same arithmetic, sums in a fixed order)."""
    p = SystemParams(150, 0.2, 1.0, 10.0)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = simulate_mc(p, small_grid, configs=100, seed=9)
    finally:
        numba.set_num_threads(before)
    many = simulate_mc(p, small_grid, configs=100, seed=9)
    for var in ("I", "g", "g_err", "g_q_err"):
        np.testing.assert_allclose(one[var].values, many[var].values, rtol=1e-12, atol=0)


def test_empty_window_gives_zero_intensity(small_grid):
    """n_l2 = 0.25 (one particle in the box): most windows are empty and contribute I = 0, no NaN."""
    ds = simulate_mc(SystemParams(0.25, 0, 1, 10), small_grid, configs=64, seed=1)
    assert np.all(np.isfinite(ds["I"].values)) and np.all(ds["I"].values >= 0)
    f2 = physics.form_factor(small_grid.q) ** 2
    assert np.all(ds["I"].values <= f2[:, None] * (1 + 1e-6))  # E[I] = P(non-empty) F^2 <= F^2


def test_bad_input_is_one_line_error(small_grid):
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ShearcorrError, match="configs"):
            simulate_mc(BASE, small_grid, configs=bad)
    with pytest.raises(ShearcorrError, match="seed"):
        simulate_mc(BASE, small_grid, configs=1, seed=-1)
    with pytest.raises(ShearcorrError, match="index"):
        sample_configuration(BASE, 1, index=-1)


def test_single_configuration_has_nan_errors(small_grid):
    ds = simulate_mc(BASE, small_grid, configs=1, seed=1)
    assert np.all(np.isnan(ds["g_err"].values)) and np.all(np.isnan(ds["g_q_err"].values))


def test_progress_bar(small_grid, capsys):
    simulate_mc(BASE, small_grid, configs=70, seed=1, progress=True)
    err = capsys.readouterr().err
    assert "70/70" in err and "config/s" in err


def test_cli_simulate_mc_writes_reloadable_file(tmp_path, capsys):
    out = tmp_path / "run.nc"
    rc = main(["simulate", "--engine", "mc", "--configs", "64", "--seed", "3", "--n-q", "6", "--n-theta", "7",
               "--d2", "0.5", "--no-progress", "-o", str(out)])
    assert rc == 0
    ds = load_result(out)
    assert ds.sizes == {"q": 6, "theta": 7}
    np.testing.assert_allclose(ds["q"].values, np.geomspace(0.5, 5, 6))
    assert ds.attrs["engine"] == "mc" and ds.attrs["configs"] == 64 and ds.attrs["seed"] == 3
    assert ds.attrs["d2"] == 0.5 and ds.attrs["displacement"] == "uniform"
    direct = simulate_mc(SystemParams(150, 0, 0.5, 10), QGrid.log(0.5, 5, 6, 7), configs=64, seed=3)
    np.testing.assert_array_equal(ds["g"].values, direct["g"].values)


@pytest.mark.parametrize("argv", [["--configs", "0"], ["--configs", "x"], ["--n-l2", "-5", "--configs", "2"]])
def test_cli_bad_argument_exits_2_with_one_line(tmp_path, argv):
    cmd = [sys.executable, "-m", "shearcorr", "simulate", "--engine", "mc", *argv, "-o", str(tmp_path / "r.nc")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "error" in lines[0] and "Traceback" not in proc.stderr
