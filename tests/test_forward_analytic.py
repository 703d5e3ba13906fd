"""Tests of the semi-analytic ensemble engine (shearcorr.forward.analytic, .window, .quadrature).

Fast: exact limits, convergence under doubled resolution, edge geometry vs direct quadrature,
a coarse-grid comparison with the Monte Carlo engine. Slow (``pytest -m slow``): the full-grid
chi^2 validation of docs/theory.md.
"""

import numpy as np
import pytest
from scipy.special import gammaln

from shearcorr.forward.analytic import default_resolution, ensemble, ensemble_arrays
from shearcorr.errors import ShearcorrError
from shearcorr.forward import simulate
from shearcorr.params import QGrid, SystemParams
from shearcorr.physics import displacement_std, form_factor, g_theory, sample_radii
from shearcorr.forward.window import both_probability, pair_phase

from conftest import chi2_per_dof

L = 800.0


# ----------------------------------------------------------------------------- helpers
def _binomial_logpmf(N, p):
    n = np.arange(N + 1)
    return n, gammaln(N + 1) - gammaln(n + 1) - gammaln(N - n + 1) + n * np.log(p) + (N - n) * np.log1p(-p)


def _exact_rs0(p: SystemParams, grid: QGrid):
    """rs = 0: I = F^2 on a non-empty window, so E[I I'] is a multinomial sum over the counts
    (n10, n01, n11): E[I I'] = F^4 E[1(n>0, n'>0) (1 + c^2 n11 (n11 - 1) / (n n'))], c = K / p11."""
    N = p.n_particles
    p11 = float(both_probability(p.d2, p.gamma_l, p.beam_size))
    p10, p00 = 0.25 - p11, 0.5 + p11
    n11 = np.arange(N + 1)[:, None, None]
    n10 = np.arange(N + 1)[None, :, None]
    n01 = np.arange(N + 1)[None, None, :]
    n00 = N - n11 - n10 - n01
    ok = n00 >= 0
    n00c = np.where(ok, n00, 0)
    lp = (gammaln(N + 1) - gammaln(n11 + 1) - gammaln(n10 + 1) - gammaln(n01 + 1) - gammaln(n00c + 1)
          + n11 * np.log(p11) + (n10 + n01) * np.log(p10) + n00c * np.log(p00))
    P = np.where(ok, np.exp(lp), 0.0)
    n, n1 = n11 + n10, n11 + n01
    both = (n > 0) & (n1 > 0)
    A = np.sum(P * both)
    B = np.sum(np.where(both, P * n11 * (n11 - 1) / np.maximum(n * n1, 1), 0.0))
    q, th = grid.q, grid.theta
    K = pair_phase(q[:, None] * np.cos(th), q[:, None] * np.sin(th), p.d2, p.gamma_l, p.beam_size)
    F2 = form_factor(q) ** 2
    EI = F2 * (1 - 0.75**N)
    return EI, F2[:, None] ** 2 * (A + (K / p11) ** 2 * B) / EI[:, None] ** 2


def _marks_mc(p: SystemParams, q: np.ndarray, configs: int, seed: int, static: bool):
    """Direct sampling of positions and radii (no phases): per configuration X = P/S, X' = P'/S' and,
    for ``static``, the Gaussian-speckle second moment (2 P^2 - sum m w^4)/S^2. Returns the estimate of
    g = E[num]/E[X]^2 and its jackknife error at each q."""
    rng = np.random.default_rng(seed)
    N = p.n_particles
    nums, xs = [], []
    for _ in range(configs // 500):
        x = rng.uniform(-L, L, (500, N))
        y = rng.uniform(-L, L, (500, N))
        R = sample_radii(500 * N, p.rs, seed=rng).reshape(500, N)
        s = displacement_std(R, p.d2, p.displacement)
        x2 = x + p.gamma * y + s * rng.standard_normal((500, N))
        y2 = y + s * rng.standard_normal((500, N))
        m = (np.abs(x) < L / 2) & (np.abs(y) < L / 2)
        m2 = (np.abs(x2) < L / 2) & (np.abs(y2) < L / 2)
        V2 = R**6
        w2 = V2[..., None] * form_factor(q * R[..., None]) ** 2  # (c, N, nq)
        S, S2 = (m * V2).sum(1), (m2 * V2).sum(1)
        P = (m[..., None] * w2).sum(1)
        X = P / S[:, None]
        if static:
            num = (2 * P**2 - (m[..., None] * w2**2).sum(1)) / S[:, None] ** 2
        else:
            num = X * (m2[..., None] * w2).sum(1) / S2[:, None]
        nums.append(num)
        xs.append(X)
    num, X = np.concatenate(nums), np.concatenate(xs)
    est = num.mean(0) / X.mean(0) ** 2
    blocks = np.array_split(np.arange(len(X)), 20)
    jk = np.array([np.delete(num, b, 0).mean(0) / np.delete(X, b, 0).mean(0) ** 2 for b in blocks])
    err = np.sqrt(19 / 20 * np.sum((jk - jk.mean(0)) ** 2, axis=0))
    return est, err


def _k_reference(qx, qy, s, gamma_l, ny=8001, nd=1601):
    """4 L^2 K = int dy A_x(y) A_y(y) by brute-force quadrature of both Gaussian averages."""
    g = gamma_l / L
    y = np.linspace(-L / 2, L / 2, ny)
    d = np.linspace(-9 * s, 9 * s, nd)
    wd = np.exp(-0.5 * (d / s) ** 2)
    wd /= wd.sum()
    wy = np.full(ny, y[1] - y[0])
    wy[[0, -1]] *= 0.5
    out = 0j
    for ch in np.array_split(np.arange(ny), 40):
        yy = y[ch][:, None]
        u = g * yy + d
        ax = ((L - np.abs(u)) * np.exp(1j * qx * u)) @ wd
        ay = ((np.abs(yy + d) < L / 2) * np.exp(1j * qy * d)) @ wd
        out += np.sum(ax * ay * wy[ch])
    return out / (4 * L * L)


# ----------------------------------------------------------------------------- geometry
@pytest.mark.parametrize("qx,qy,s,gl", [(0, 0, 3, 5), (0.5, 0, 3, 5), (0.478, 0.148, 1, 30), (0.2, 0.1, 4, 0.0)])
def test_pair_phase_matches_direct_quadrature(qx, qy, s, gl):
    ref = _k_reference(qx, qy, s, gl)
    k = float(pair_phase(qx, qy, s, gl, L))
    assert abs(ref.imag) < 1e-6  # K is real
    # neglected second-order edge terms: relative <~ 2 s^2 / L^2 (see window.py)
    assert abs(k - ref.real) < 2e-6 + 3 * s * s / L**2 * abs(ref)


def test_both_probability_limits():
    assert both_probability(0.0, 0.0, L) == pytest.approx(0.25, abs=1e-15)
    assert both_probability(0.0, 20.0, L) == pytest.approx(0.25 * (1 - 20 / L / 4), abs=1e-15)
    # y-edge loss ~ 2 E[delta+] / L, x-edge the same at gamma = 0
    assert both_probability(2.0, 0.0, L) == pytest.approx(0.25 * (1 - 2 / L * 2 / np.sqrt(2 * np.pi)) ** 2, abs=1e-9)


# ----------------------------------------------------------------------------- exact limits
@pytest.mark.parametrize("n_l2,d2,gl", [(25, 1.0, 10), (50, 0.5, 5), (10, 3.0, 30)])
def test_monodisperse_matches_exact_multinomial_sum(n_l2, d2, gl):
    p = SystemParams(n_l2, 0.0, d2, gl)
    grid = QGrid.log(0.5, 5, 12, 13)
    EI, g_ex = _exact_rs0(p, grid)
    I, g, _ = ensemble_arrays(p, grid)
    assert np.max(np.abs(g - g_ex)) < 1e-8
    assert np.max(np.abs(I[:, 0] / EI - 1)) < 1e-8


@pytest.mark.parametrize("conv", ["uniform", "stokes-einstein"])
def test_eq5_limit(conv):
    p = SystemParams(150, 0.0, 1.3, 17, displacement=conv)
    grid = QGrid()
    _, g, _ = ensemble_arrays(p, grid, finite_n=False, edges=False)
    assert np.max(np.abs(g - g_theory(grid.q, grid.theta, 1.3, 17))) < 1e-6


def test_monodisperse_static_limit_exact():
    """gamma_l = d2 = 0: g = E[I^2]/E[I]^2 = (2 P(n>0) - E[1/n; n>0]) / P(n>0)^2, n ~ Bin(N, 1/4)."""
    p = SystemParams(30, 0.0, 0.0, 0.0)
    n, lp = _binomial_logpmf(p.n_particles, 0.25)
    pr = np.exp(lp)
    p_pos = 1 - pr[0]
    expected = (2 * p_pos - np.sum(pr[1:] / n[1:])) / p_pos**2
    _, g, _ = ensemble_arrays(p, QGrid.log(0.5, 5, 5, 7))
    assert np.max(np.abs(g - expected)) < 1e-9


@pytest.mark.parametrize("conv", ["uniform", "stokes-einstein"])
def test_polydisperse_static_limit_vs_sampling(conv):
    p = SystemParams(60, 0.3, 0.0, 0.0, displacement=conv)
    q = np.array([0.5, 1.5, 4.0])
    est, err = _marks_mc(p, q, 20000, 7, static=True)
    _, g, _ = ensemble_arrays(p, QGrid(q, np.array([0.3])))
    assert np.all(np.abs(g[:, 0] - est) < 4 * err + 1e-6)


def test_large_d2_baseline():
    """d2 -> large: every pair phase vanishes and g -> E[(P/S)(P'/S')] / E[P/S]^2 = 1 + Cov/E^2 > 1 for
    rs > 0 (shared particles correlate the two normalised intensities), exactly 1 - O((3/4)^N) for rs = 0."""
    grid = QGrid.log(0.5, 5, 8, 9)
    _, g0, _ = ensemble_arrays(SystemParams(100, 0.0, 30.0, 10), grid)
    # only the sharp-edge tails of K survive (algebraic in q s, ~1e-8 in g at q = 0.5 on the axes)
    assert np.max(np.abs(g0 - 1)) < 1e-6
    p = SystemParams(60, 0.3, 30.0, 10)
    _, g, _ = ensemble_arrays(p, grid)
    assert np.all(g > 1.001)
    est, err = _marks_mc(p, grid.q[[0, 3, 7]], 20000, 11, static=False)
    assert np.all(np.abs(g[[0, 3, 7], 0] - est) < 4 * err + 1e-6)
    assert np.ptp(g, axis=1).max() < 1e-6  # no theta dependence left


# ----------------------------------------------------------------------------- convergence
@pytest.mark.parametrize("conv", ["uniform", "stokes-einstein"])
@pytest.mark.parametrize("point", [(100, 0.3, 0.5, 5), (200, 0.15, 3.0, 30), (100, 0.05, 1.0, 10), (150, 0.0, 0.5, 5)])
def test_doubling_resolution_changes_g_below_1e5(conv, point):
    p = SystemParams(*point, displacement=conv)
    grid = QGrid.log(0.5, 5, 40, 41)
    nr, nl = default_resolution(p)
    _, g1, _ = ensemble_arrays(p, grid)
    _, g2, _ = ensemble_arrays(p, grid, resolution=(2 * nr - 1, 2 * nl))
    assert np.max(np.abs(g2 - g1)) < 1e-5
    _, _, est = ensemble_arrays(p, grid, error="estimate")
    assert np.max(est) < 1e-5


@pytest.mark.parametrize("point", [(100, 0.3, 0.5, 5), (200, 0.3, 3.0, 30), (100, 0.3, 3.0, 5), (200, 0.15, 0.5, 30),
                                   (150, 0.05, 3.0, 10)])
def test_stokes_einstein_fast_path_matches_direct(point):
    """Chebyshev-in-ln-s edge correction + separated quadratic form vs K at every (q, theta, radius node)."""
    from shearcorr.forward.analytic import _moments

    p = SystemParams(*point, displacement="stokes-einstein")
    grid = QGrid()
    q, th = np.asarray(grid.q), np.asarray(grid.theta)
    nr, nl = default_resolution(p)
    EI0, EII0 = _moments(p, q, th, nr, nl, True, True, n_cheb=0)
    EI1, EII1 = _moments(p, q, th, nr, nl, True, True)
    assert np.max(np.abs(EII1 / EI1[:, None] ** 2 - EII0 / EI0[:, None] ** 2)) < 2e-6
    # and without the mirror shortcut (theta grid not symmetric about pi/2)
    g = QGrid.log(0.5, 5, 10, 7)
    th2 = np.linspace(0.1, 3.0, 7)
    a0 = _moments(p, g.q, th2, nr, nl, True, True, n_cheb=0)
    a1 = _moments(p, g.q, th2, nr, nl, True, True)
    assert np.max(np.abs(a1[1] / a1[0][:, None] ** 2 - a0[1] / a0[0][:, None] ** 2)) < 2e-6


def test_chebyshev_interpolation_and_edge_split():
    from shearcorr.forward.quadrature import chebyshev_interpolation
    from shearcorr.forward.window import bulk_factor, edge_correction

    x = np.linspace(-1.0, 2.0, 23)
    nodes, P = chebyshev_interpolation(-1.0, 2.0, 6, x)
    f = lambda t: 1 - 2 * t + 0.5 * t**3 - 0.1 * t**5  # degree 5: exact with 6 nodes
    assert np.allclose(f(nodes) @ P, f(x), atol=1e-12)
    _, P2 = chebyshev_interpolation(0.0, 1.0, 4, np.array([-5.0, 7.0]))  # clamped to the ends
    assert np.allclose(P2.sum(axis=0), 1.0)
    q = np.geomspace(0.5, 5, 6)[:, None, None]
    th = np.linspace(0, np.pi, 9)[None, :, None]
    s = np.array([0.3, 1.0, 4.0])
    qx, qy = q * np.cos(th), q * np.sin(th)
    K = pair_phase(qx, qy, s, 10.0, L)
    split = bulk_factor(qx, 10.0, L) * np.exp(-0.5 * (q * s) ** 2) + edge_correction(qx, qy, s, 10.0, L)
    assert np.allclose(K, split, rtol=0, atol=1e-15)
    assert np.allclose(edge_correction(qx, qy, s, 10.0, L, mirror_axis=1), edge_correction(qx, qy, s, 10.0, L),
                       rtol=0, atol=1e-15)


# ----------------------------------------------------------------------------- Monte Carlo
@pytest.mark.parametrize("conv", ["uniform", "stokes-einstein"])
def test_matches_monte_carlo_coarse_grid(conv):
    montecarlo = pytest.importorskip("shearcorr.forward.montecarlo")
    p = SystemParams(100, 0.3, 0.5, 5, displacement=conv)
    grid = QGrid.log(0.5, 5, 12, 13)
    ds = montecarlo.simulate_mc(p, grid, configs=3000, seed=2024)
    I, g, _ = ensemble_arrays(p, grid)
    chi2 = chi2_per_dof(ds.g.values, g, ds.g_err.values)
    assert 0.6 < chi2 < 1.5
    assert abs(np.mean((ds.I.values - I) / ds.I_err.values)) < 0.5


@pytest.mark.slow
@pytest.mark.parametrize("conv", ["uniform", "stokes-einstein"])
@pytest.mark.parametrize("point", [(100, 0.0, 0.5, 5), (200, 0.0, 3.0, 30), (100, 0.15, 3.0, 5),
                                   (200, 0.15, 0.5, 30), (100, 0.3, 0.5, 30), (200, 0.3, 3.0, 5),
                                   (100, 0.3, 3.0, 30), (200, 0.3, 0.5, 5)])
def test_full_grid_validation_vs_monte_carlo(conv, point):
    """The table of docs/theory.md: 2e4 configurations on the 100 x 101 grid."""
    from shearcorr.forward.montecarlo import simulate_mc

    p = SystemParams(*point, displacement=conv)
    ds = simulate_mc(p, QGrid(), configs=20000, seed=99)
    _, g, _ = ensemble_arrays(p)
    assert 0.7 <= chi2_per_dof(ds.g.values, g, ds.g_err.values) <= 1.4
    # g(theta) and g(q) errors share the configurations: a common mode (rare large particles move all
    # points together) leaves few effective degrees of freedom (docs/theory.md, section 5). Test the
    # common mode at 3 sigma and the shape about it.
    pairs = ((ds.g_theta.values, ds.g_theta_err.values, g.mean(0)), (ds.g_q.values, ds.g_q_err.values, g.mean(1)))
    for mc, err, an in pairs:
        r = (mc - an) / err
        assert abs(r.mean()) < 3.0
        assert np.mean((r - r.mean()) ** 2) < 2.0


# ----------------------------------------------------------------------------- API
def test_ensemble_dataset_and_dispatch():
    p = SystemParams(120, 0.1, 1.0, 12, displacement="stokes-einstein")
    grid = QGrid.log(0.5, 5, 6, 7)
    ds = ensemble(p, grid)
    assert ds.attrs["engine"] == "analytic" and ds.attrs["configs"] == 0
    assert ds.attrs["displacement"] == "stokes-einstein"
    assert ds["g"].shape == (6, 7) and np.all(ds["g_err"].values > 0)
    ds2 = simulate(p, grid, engine="analytic")
    np.testing.assert_array_equal(ds2["g"].values, ds["g"].values)
    I, g, e = ensemble_arrays(p, grid)
    np.testing.assert_array_equal(g, ds["g"].values)
    assert I.dtype == g.dtype == e.dtype == np.float64


def test_arbitrary_grid():
    p = SystemParams(150, 0.2, 1.0, 10)
    theta = np.array([-1.0, 0.0, 0.7, np.pi / 2, 2.5, np.pi + 0.7])
    _, g, _ = ensemble_arrays(p, QGrid(np.array([0.2, 0.3, 7.0]), theta))
    assert np.all(np.isfinite(g))
    np.testing.assert_allclose(g[:, 2], g[:, 5], atol=1e-12)  # I(q, theta + pi) = I(q, theta)
    assert np.all(g >= 1.0)


def test_bad_input():
    with pytest.raises(ShearcorrError):
        ensemble_arrays("not params")
    with pytest.raises(ShearcorrError):
        ensemble_arrays(SystemParams(100, 0.1, 1, 10), error="nope")
    with pytest.raises(ShearcorrError):
        ensemble_arrays(SystemParams(100, 0.1, 1, 10), QGrid.log(0.5, 5, 3, 3), resolution=(3, 40))


def test_cached_pieces_give_the_same_numbers_and_follow_every_input():
    """The engine keeps its pieces by their exact inputs (analytic._Recent): a revisited point gives the same
    bits as a fresh computation, a neighbour in one parameter (or another grid) never gets a stale piece, and
    the Stokes-Einstein nodes passed back (se_phase_nodes) reproduce the default bit for bit."""
    from dataclasses import replace

    from shearcorr.forward.analytic import clear_caches, se_phase_nodes

    grid, other = QGrid(np.linspace(0.5, 5, 14), np.linspace(0, np.pi, 9)), QGrid(np.linspace(0.6, 5, 14), np.linspace(0, np.pi, 9))
    for conv in ("uniform", "stokes-einstein"):
        p = SystemParams(150, 0.2, 1.3, 12.0, displacement=conv)
        clear_caches()
        fresh = {}
        for k, q in enumerate([p, replace(p, n_l2=152.5), replace(p, rs=0.21), replace(p, d2=1.4), replace(p, gamma_l=12.5)]):
            clear_caches()
            fresh[k] = (q, ensemble_arrays(q, grid)[1], ensemble_arrays(q, other)[1])
        clear_caches()
        for _ in range(2):  # warm caches, in an order that revisits every piece
            for q, g, g_other in fresh.values():
                assert np.array_equal(ensemble_arrays(q, grid)[1], g)
                assert np.array_equal(ensemble_arrays(q, other)[1], g_other)
        assert not np.array_equal(fresh[0][1], fresh[1][1]) and not np.array_equal(fresh[0][1], fresh[4][1])
        nodes = se_phase_nodes(p, grid)
        assert (nodes is None) == (conv == "uniform")
        if nodes is not None:
            assert np.array_equal(ensemble_arrays(p, grid, phase_nodes=nodes)[1], fresh[0][1])
            # a Jacobian's step in D2 with the base point's nodes: the interpolation's difference only (the
            # engine's error bound is 2e-6), far below what the step itself changes
            step = replace(p, d2=1.002 * p.d2)
            own, moved = ensemble_arrays(step, grid)[1], ensemble_arrays(step, grid, phase_nodes=nodes)[1]
            assert np.max(np.abs(moved - own)) < 1e-4 * np.max(np.abs(own - fresh[0][1]))
            assert np.max(np.abs(moved - own)) < 2e-8


@pytest.mark.parametrize("conv, point", [("uniform", (150, 0.2, 1.3, 12.0)), ("uniform", (60, 0.0, 2.0, 40.0)),
                                         ("uniform", (190, 0.45, 0.1, 55.0)), ("stokes-einstein", (120, 0.3, 0.0, 8.0))])
def test_uniform_factored_sums_match_the_general_ones(conv, point):
    """One displacement std for every radius (uniform convention, R_s = 0 or D2 = 0): the radius sums with p11
    factored out and cached (analytic._uniform_products) equal the general per-node sums to round-off."""
    from shearcorr.forward.analytic import _moments, clear_caches, default_resolution

    p = SystemParams(*point, displacement=conv)
    grid = QGrid(np.geomspace(0.5, 5, 12), np.linspace(0, np.pi, 11))
    nr, nl = default_resolution(p, 5.0)
    clear_caches()
    fast = _moments(p, grid.q, grid.theta, nr, nl, True, True)
    ref = _moments(p, grid.q, grid.theta, nr, nl, True, True, factored=False)
    for a, b in zip(fast, ref):
        assert np.allclose(a, b, rtol=1e-12, atol=0.0)

def test_recent_cache_keeps_few_entries_and_bytes():
    """analytic._Recent: the oldest entries go past ``size`` or ``max_bytes``; a value larger than the budget is
    returned but not kept; kept arrays are read-only (a caller cannot change a cached piece)."""
    from shearcorr.forward.analytic import _Recent

    c = _Recent(2, max_bytes=3000)
    calls = []

    def make(n):
        calls.append(n)
        return np.full(n, 1.0)

    for n in (100, 120, 100, 140):  # 100 revisited: no new call; 140 pushes out 120 (size 2)
        c.get(n, lambda n=n: make(n))
    assert calls == [100, 120, 140] and list(c._data) == [100, 140]
    with pytest.raises(ValueError):
        c.get(100, lambda: make(100))[0] = 2.0
    big = c.get(500, lambda: make(500))  # 4000 bytes > 3000: returned, not kept
    assert big.size == 500 and 500 not in c._data and c._bytes <= 3000


@pytest.mark.parametrize("gl", [0.0, 0.004, 6.0, 40.0])
def test_mirrored_pair_phase_matches_the_full_evaluation(gl):
    """On a theta grid symmetric about pi/2 (q_x odd, q_y even under its reversal) the pair phase and the edge
    correction computed on half of the grid for their even factors (window._mirrored) equal the full evaluation
    to round-off (absolute: at gamma L -> 0 the y-edge term is a difference quotient over eps = q_x gamma,
    which turns the last bit of the mirrored q_y into ~1e-14 of K): per-axis std s a number (uniform) and a vector of nodes (Stokes-Einstein), over the tail
    (a/s < 10), bulk and small-eps branches."""
    from shearcorr.forward.window import edge_correction

    q, th = np.geomspace(0.5, 5, 9), np.linspace(0, np.pi, 13)
    qx, qy = q[:, None] * np.cos(th)[None], q[:, None] * np.sin(th)[None]
    for s in (0.3, 2.5):
        full, half = pair_phase(qx, qy, s, gl, 800.0), pair_phase(qx, qy, s, gl, 800.0, mirror_axis=1)
        assert np.max(np.abs(half - full)) < 1e-13 * np.max(np.abs(full))  # q_y mirrored to its last bit
    nodes = np.geomspace(0.05, 8.0, 7)
    full = edge_correction(qx[..., None], qy[..., None], nodes, gl, 800.0)
    half = edge_correction(qx[..., None], qy[..., None], nodes, gl, 800.0, mirror_axis=1)
    assert np.max(np.abs(half - full)) < 1e-11 * np.max(np.abs(full))  # the correction itself is ~1e-3 of K
