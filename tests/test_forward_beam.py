"""The forward model with a general beam (forward.beamengine, .slits, .profiles, .beammc).

Fast: the paper's beam is the paper's path bit for bit; limits (coherence -> infinity, pixels -> 0, a
rectangle of equal sides) reproduce the exact engine; closed forms in the bulk limit (Gaussian Schell
beam, the 1-3 gap sinc); the pixel transfer against a brute-force pixel average of Monte Carlo
configurations; coarse-grid Monte Carlo (coherent modes) against the engine. Slow: the full-map
chi^2 table of docs/theory.md section 7.
"""

import math

import numpy as np
import pytest
from numpy.polynomial.legendre import leggauss

from shearcorr.beam import FWHM_PER_SIGMA, Beam
from shearcorr.pixels import PixelResponse
from shearcorr.errors import ShearcorrError
from shearcorr.forward import simulate
from shearcorr.forward.analytic import default_resolution, ensemble_arrays
from shearcorr.forward.beamengine import beam_moments
from shearcorr.forward.montecarlo import _draw_chunk, _root_sequence, simulate_mc
from shearcorr.params import QGrid, SystemParams

from conftest import chi2_per_dof

L = 800.0
SMALL = QGrid(np.geomspace(0.5, 5.0, 8), np.linspace(0.0, np.pi, 9))


def _measured_profile():
    """A sampled flat-top (super-Gaussian) footprint of 800 x 600 R0, 10 R0 sampling."""
    x = np.arange(-90, 91) * 10.0
    X, Y = np.meshgrid(x, x)
    return np.exp(-((X / 420.0) ** 6) - (Y / 320.0) ** 6), 10.0


#: The beams of the full-map validation table (docs/theory.md section 7).
BEAM_CASES = {
    "square_pc": (SystemParams(150, 0.0, 1.0, 20), Beam("square", coherence=240.0)),
    "rect_pcx": (SystemParams(150, 0.0, 2.0, 10), Beam("rectangular", (800.0, 500.0), coherence=(240.0, math.inf))),
    "gauss": (SystemParams(150, 0.3, 1.0, 20), Beam("gaussian", 800.0)),
    "gauss_pc": (SystemParams(100, 0.1, 1.0, 25), Beam("gaussian", (800.0, 600.0), coherence=(300.0, math.inf))),
    "gap_square": (SystemParams(150, 0.0, 1.0, 20), Beam("square", plane="1-3", gap=2000.0)),
    "gap_square_pc": (SystemParams(150, 0.2, 1.5, 30), Beam("square", coherence=400.0, plane="1-3", gap=2000.0, zero_velocity=700.0)),
    "gap_gauss": (SystemParams(150, 0.0, 1.0, 20), Beam("gaussian", 800.0, plane="1-3", gap=3000.0, zero_velocity=-1500.0)),
    "se_gauss": (SystemParams(150, 0.3, 2.0, 15, displacement="stokes-einstein"), Beam("gaussian", 800.0)),
    "se_gap": (SystemParams(150, 0.3, 2.0, 15, displacement="stokes-einstein"), Beam("square", plane="1-3", gap=1500.0)),
    "se_rect_pc": (SystemParams(150, 0.3, 2.0, 10, displacement="stokes-einstein"),
                   Beam("rectangular", (800.0, 600.0), coherence=(300.0, 500.0))),
    "measured": (SystemParams(150, 0.15, 1.0, 20), Beam("measured", coherence=(400.0, math.inf), profile_map=_measured_profile()[0],
                                                          profile_step=_measured_profile()[1])),
    "halo": (SystemParams(150, 0.1, 1.0, 20), Beam("square", coherence_mix=[(0.75, math.inf, math.inf), (0.25, 100.0, 100.0)])),
}


def test_paper_beam_takes_the_paper_path_bit_for_bit():
    p = SystemParams(120, 0.1, 1.0, 15, displacement="stokes-einstein")
    assert np.array_equal(ensemble_arrays(p, SMALL)[1], ensemble_arrays(p, SMALL, beam=Beam())[1])
    assert np.array_equal(ensemble_arrays(p, SMALL)[1], ensemble_arrays(p, SMALL, beam=Beam("square", L))[1])
    a = simulate_mc(p, SMALL, configs=8, seed=3)
    b = simulate_mc(p, SMALL, configs=8, seed=3, beam=Beam())
    assert np.array_equal(a.g.values, b.g.values)


@pytest.mark.parametrize("disp", ["uniform", "stokes-einstein"])
@pytest.mark.parametrize("rs", [0.0, 0.3])
def test_general_engine_limits_reproduce_the_exact_engine(disp, rs):
    """A rectangle of (nearly) equal sides, coherence -> infinity and pixels -> 0 take the general engine
    (four-state marks, pair transfers) and must give the paper's engine."""
    p = SystemParams(150, rs, 2.0, 20, displacement=disp)
    g0 = ensemble_arrays(p, SMALL)[1]
    for kw in (dict(beam=Beam("rectangular", (L, L * (1 + 1e-10)))), dict(beam=Beam("square", coherence=1e12)),
               dict(pixel=PixelResponse((1e-12, 0.0), (0.0, -1e-12)), flow_angle=0.3)):
        assert np.max(np.abs(ensemble_arrays(p, SMALL, **kw)[1] - g0)) < 2e-7, kw


def _gsm_factor(k, sigma, xi):
    """int int u(y) u(y') |mu(y - y')|^2 e^{ik(y - y')} / (int u)^2 for a Gaussian intensity (std sigma) and
    |mu|^2 = exp(-d^2 / xi^2): exp(-k^2 / 4a) / (2 sigma sqrt(a)), a = 1/(4 sigma^2) + 1/xi^2."""
    a = 1.0 / (4 * sigma**2) + (0.0 if math.isinf(xi) else 1.0 / xi**2)
    return np.exp(-(k**2) / (4 * a)) / (2 * sigma * np.sqrt(a))


@pytest.mark.parametrize("xi", [(math.inf, math.inf), (300.0, 500.0)])
def test_gaussian_schell_beam_bulk_limit(xi):
    """N -> infinity, rs = 0: g - 1 = e^{-q^2 D2^2} F_x(0) F_y(q_x gamma) (Gaussian integrals; the transit of
    particles through a smooth footprint is O((gamma y / w)^2) and the tolerance covers it)."""
    fw = (800.0, 600.0)
    p = SystemParams(150, 0.0, 0.7, 12.0)
    g = ensemble_arrays(p, SMALL, beam=Beam("gaussian", fw, coherence=xi), finite_n=False)[1]
    q, th = SMALL.q[:, None], SMALL.theta[None, :]
    sx, sy = (f / FWHM_PER_SIGMA for f in fw)
    expect = np.exp(-(q * p.d2) ** 2) * _gsm_factor(0.0, sx, xi[0]) * _gsm_factor(q * np.cos(th) * p.gamma, sy, xi[1])
    assert np.max(np.abs(g - 1 - expect)) < 2e-3


def test_gap_geometry_is_the_sinc_of_gamma_h():
    """1-3, coherent slits, N -> infinity, d2 = 0: g - 1 = (E_t[(Lx - |t|) e^{i q_x t}] / Lx)^2 with t = gamma y_d,
    y_d uniform over the gap: Lx sinc(ka) - a (sinc ka - sinc^2(ka/2)/2), a = gamma h / 2 -- h, not L, sets
    the width; with the zero-velocity plane at a wall the shift is one-sided (more transit)."""
    h, gl = 3000.0, 24.0
    p = SystemParams(150, 0.0, 0.0, gl)
    g = ensemble_arrays(p, SMALL, beam=Beam("square", plane="1-3", gap=h), finite_n=False)[1]
    k, a = SMALL.q[:, None] * np.cos(SMALL.theta)[None, :], 0.5 * gl
    sinc = lambda x: np.sinc(x / np.pi)  # noqa: E731
    X = L * sinc(k * a) - a * (sinc(k * a) - 0.5 * sinc(0.5 * k * a) ** 2)
    assert np.max(np.abs(g - 1 - (X / L) ** 2)) < 1e-8
    g1 = ensemble_arrays(p, SMALL, beam=Beam("square", plane="1-3", gap=h, zero_velocity=h / 2), finite_n=False)[1]
    t = np.linspace(-gl, 0.0, 200001)
    Xw = np.array([[np.trapezoid((L - np.abs(t)) * np.exp(1j * kk * t), t) / gl for kk in row] for row in k])
    assert np.max(np.abs(g1 - 1 - np.abs(Xw / L) ** 2)) < 1e-7


def test_gap_geometry_decorrelation_shape_ignores_coherence_and_pixels():
    """In 1-3 the shear phase does not depend on the in-plane position, so coherence and pixels set the
    contrast only; the normalised decorrelation agrees up to the small transit term (gamma h / Lx)."""
    p = SystemParams(150, 0.0, 0.8, 10.0)
    shapes = []
    for kw in (dict(beam=Beam("square", plane="1-3", gap=2000.0)),
               dict(beam=Beam("square", coherence=240.0, plane="1-3", gap=2000.0),
                    pixel=PixelResponse((0.0036, 0.0), (0.0, -0.0036)), flow_angle=0.4)):
        g = ensemble_arrays(p, SMALL, **kw)[1]
        shapes.append(((g - 1) / (g[:, 4:5] - 1))[SMALL.q < 2.5])  # theta = pi/2: no affine decorrelation
    assert np.max(np.abs(shapes[0] - shapes[1])) < 3e-3


def test_laplace_levels_converge_for_a_smooth_footprint():
    """Polydisperse, Gaussian footprint: the pair term split by illumination level (Chebyshev in u)."""
    p = SystemParams(60, 0.3, 1.0, 20)
    nr, nl = default_resolution(p, 5.0)
    q, th = SMALL.q, SMALL.theta
    ref = beam_moments(p, q, th, Beam("gaussian", 800.0), n_radius=nr, n_laplace=nl, n_pair_levels=12)
    lo = beam_moments(p, q, th, Beam("gaussian", 800.0), n_radius=nr, n_laplace=nl, n_pair_levels=8)
    one = beam_moments(p, q, th, Beam("gaussian", 800.0), n_radius=nr, n_laplace=nl, n_pair_levels=1)
    g = [e[1] / e[0][:, None] ** 2 for e in (ref, lo, one)]
    assert np.max(np.abs(g[1] - g[0])) < 2e-4
    assert np.max(np.abs(g[2] - g[0])) > 10 * np.max(np.abs(g[1] - g[0]))  # the coupling matters


def test_stokes_einstein_equals_uniform_when_monodisperse():
    for beam in (Beam("square", coherence=300.0), Beam("gaussian", 700.0), Beam("square", plane="1-3", gap=1500.0)):
        a = ensemble_arrays(SystemParams(100, 0.0, 1.5, 10), SMALL, beam=beam)[1]
        b = ensemble_arrays(SystemParams(100, 0.0, 1.5, 10, displacement="stokes-einstein"), SMALL, beam=beam)[1]
        assert np.max(np.abs(a - b)) < 1e-12


def test_pixel_transfer_matches_a_brute_force_pixel_average():
    """<I_pix I'_pix> / (<I_pix><I'_pix>) of Monte Carlo configurations whose intensities are averaged over
    each pixel (3 x 3 Gauss-Legendre points, error ~2e-4 at this sampling) agrees with the engine told the
    pixel, and not with the point-pixel engine (1.6 pixels per speckle: the pixel narrows the decorrelation)."""
    p = SystemParams(150, 0.0, 0.5, 20)
    dq = 2 * np.pi / L / 1.6
    flow = 0.35
    pr = PixelResponse((dq, 0.0), (0.0, -dq))
    grid = QGrid(np.array([0.12, 0.2, 0.3]), np.radians([0.0, 20.0, 40.0, 60.0, 90.0]))
    qq, tt = np.meshgrid(grid.q, grid.theta, indexing="ij")
    phi = tt.ravel() + flow  # detector azimuth of each point
    cx, cy = qq.ravel() * np.cos(phi), qq.ravel() * np.sin(phi)  # detector-frame q-vector of each pixel centre
    t, w = leggauss(3)
    c, s = np.cos(flow), np.sin(flow)
    col = dq * np.array([c, -s])  # the detector column step (dq, 0) in the flow frame
    row = dq * np.array([-s, -c])  # the row step (0, -dq)
    fx, fy = c * cx + s * cy, -s * cx + c * cy  # pixel centres in the flow frame
    wts = np.outer(w, w) / 4.0
    ss, _ = _root_sequence(11)
    A, Bf = [], []
    for j in range(16):  # 16 chunks of CHUNK configurations, as simulate_mc draws them
        x, y, _, xa, ya = _draw_chunk(p, ss, j)
        for k in range(x.shape[0]):
            out = []
            for xs, ys in ((x[k], y[k]), (xa[k], ya[k])):
                m = (np.abs(xs) < L / 2) & (np.abs(ys) < L / 2)
                xs, ys = xs[m], ys[m]
                # e^{-i q.r} at q = centre + (a col + b row)/2: one exponential per centre and per sub-step
                ec = np.exp(-1j * (np.outer(fx, xs) + np.outer(fy, ys)))  # (points, n)
                ea = np.exp(-0.5j * np.outer(t, col[0] * xs + col[1] * ys))  # (3, n)
                eb = np.exp(-0.5j * np.outer(t, row[0] * xs + row[1] * ys))
                amp = np.einsum("pi,ai,bi->pab", ec, ea, eb)
                # monodisperse: I = |sum_i e^{-iq.r_i}|^2 F^2 V^2 / (n V^2); F^2 (smooth over a pixel) cancels in g
                out.append(np.einsum("pab,ab->p", np.abs(amp) ** 2, wts) / m.sum())
            A.append(out[0])
            Bf.append(out[1])
    A, Bf = np.array(A), np.array(Bf)
    n_cfg = A.shape[0]
    a, b, cc = A * Bf, A, Bf
    g_mc = a.mean(0) / (b.mean(0) * cc.mean(0))
    # delta-method error per point
    da = a / a.mean(0) - b / b.mean(0) - cc / cc.mean(0)
    g_err = g_mc * da.std(0, ddof=1) / np.sqrt(n_cfg)
    g_pix = ensemble_arrays(p, grid, pixel=pr, flow_angle=flow)[1].ravel()
    g_pt = ensemble_arrays(p, grid)[1].ravel()
    chi_pix = np.mean(((g_mc - g_pix) / g_err) ** 2)
    chi_pt = np.mean(((g_mc - g_pt) / g_err) ** 2)
    print(f"chi2 pixel model {chi_pix:.2f}, point model {chi_pt:.2f}")
    assert chi_pix < 2.0 and chi_pt > 4.0 * max(chi_pix, 1.0)


@pytest.mark.parametrize("beam, params", [
    (Beam("gaussian", 700.0), SystemParams(40, 0.2, 1.0, 20)),
    (Beam("square", coherence=(300.0, math.inf)), SystemParams(150, 0.1, 1.0, 20)),
    (Beam("square", coherence_mix=[(0.75, math.inf, math.inf), (0.25, 150.0, math.inf)]), SystemParams(150, 0.0, 1.0, 20)),
    (Beam("rectangular", (800.0, 500.0), plane="1-3", gap=2000.0, zero_velocity=700.0), SystemParams(150, 0.1, 1.5, 25)),
])
def test_matches_monte_carlo_with_coherent_modes_coarse_grid(beam, params):
    a = simulate(params, SMALL, beam=beam)
    m = simulate(params, SMALL, engine="mc", configs=1500, seed=5, beam=beam)
    chi = chi2_per_dof(m.g.values, a.g.values, m.g_err.values)
    assert 0.5 < chi < 1.6, chi
    assert m.attrs["beam"] == a.attrs["beam"]


def test_bad_input_is_one_line_error():
    with pytest.raises(ShearcorrError, match="simulation box"):  # 1-3: gamma = gamma_l / gap, the engine's own box
        ensemble_arrays(SystemParams(150, 0, 1, 790), SMALL, beam=Beam("square", plane="1-3", gap=500.0))
    with pytest.raises(ShearcorrError, match="validated domain"):  # the paper's beam: gamma_l <= 0.9 L (section 8)
        ensemble_arrays(SystemParams(150, 0, 1, 790), SMALL)
    with pytest.raises(ShearcorrError, match="edges=False"):
        ensemble_arrays(SystemParams(150, 0, 1, 10), SMALL, beam=Beam(coherence=300.0), edges=False)


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(BEAM_CASES))
def test_full_map_validation_vs_monte_carlo(case):
    """The table of docs/theory.md section 7: chi^2/dof of the map in [0.7, 1.4] (24 x 25 grid, 10^4 configurations)."""
    params, beam = BEAM_CASES[case]
    grid = QGrid(np.geomspace(0.5, 5.0, 24), np.linspace(0.0, np.pi, 25))
    a = simulate(params, grid, beam=beam)
    m = simulate(params, grid, engine="mc", configs=10000, seed=2000, beam=beam)
    chi = chi2_per_dof(m.g.values, a.g.values, m.g_err.values)
    assert 0.7 <= chi <= 1.4, chi


def test_a_dataset_with_a_beam_records_it_and_refuses_another(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from shearcorr.data import generate, open_dataset
    from shearcorr.forward import BeamEngine

    grid = QGrid(np.geomspace(0.5, 5.0, 5), np.linspace(0.0, np.pi, 6))
    gap = Beam("square", plane="1-3", gap=2000.0)
    with ThreadPoolExecutor(1) as ex:
        path = generate(tmp_path / "d.zarr", n=3, seed=1, grid=grid, engine=BeamEngine(gap), executor=ex, progress=False)
    ds = open_dataset(path, load=True)
    assert gap.key() in ds.attrs["engine"]
    p = SystemParams(*(float(ds[k].values[1]) for k in ("n_l2", "rs", "d2", "gamma_l")))
    assert np.allclose(ds.g.values[1], ensemble_arrays(p, grid, beam=gap)[1], atol=1e-6)
    with pytest.raises(ShearcorrError, match="engine"):
        generate(path, n=3, seed=1, grid=grid, engine=BeamEngine(Beam("square", plane="1-3", gap=1000.0)), progress=False)


@pytest.mark.parametrize("plane", ["1-2", "1-3"])
def test_measured_profile_of_a_gaussian_is_the_gaussian_beam(plane):
    """A measured map sampled from a Gaussian (20 R0 steps, cubic splines, the map's own grid and the shifted
    evaluation of the transit) gives the analytic Gaussian footprint's g (Taylor transit, sigma/6 grid): 2e-8."""
    fw = (800.0, 600.0)
    sx, sy = (f / FWHM_PER_SIGMA for f in fw)
    x = np.arange(-110, 111) * 20.0
    X, Y = np.meshgrid(x, x)
    prof = np.exp(-0.5 * ((X / sx) ** 2 + (Y / sy) ** 2))
    gap = dict(plane="1-3", gap=2000.0) if plane == "1-3" else {}
    p = SystemParams(150, 0.0, 1.0, 20.0)
    g_gauss = ensemble_arrays(p, SMALL, beam=Beam("gaussian", fw, coherence=(400.0, math.inf), **gap))[1]
    g_meas = ensemble_arrays(p, SMALL, beam=Beam("measured", coherence=(400.0, math.inf), profile_map=prof, profile_step=20.0,
                                                 **gap))[1]
    assert np.max(np.abs(g_meas - g_gauss)) < 1e-5
