"""Accuracy of the numba kernels of the Monte Carlo engine against float64 numpy references."""

import numpy as np
import pytest
from numba import njit

from shearcorr.forward import kernels
from shearcorr import physics
from shearcorr.forward.montecarlo import amplitude_at, intensity_pair, sample_configuration, simulate_mc
from shearcorr.params import QGrid, SystemParams


@njit
def _eval32(s):
    c = np.empty(s.size)
    sn = np.empty(s.size)
    for i in range(s.size):
        a, b = kernels.cis_turn32(s[i])
        c[i] = a
        sn[i] = b
    return c, sn


@njit
def _eval_ff(x):
    out = np.empty(x.size)
    for i in range(x.size):
        out[i] = kernels.form_factor64(x[i])
    return out


def test_cis_turn32_accuracy():
    """float32 cos/sin of 2 pi s on [-1/2, 1/2]: max error < 3e-7 (documented 2e-7), mean error < 1e-8."""
    s = np.linspace(-0.5, 0.5, 200_001).astype(np.float32)
    c, sn = _eval32(s)
    ref = 2 * np.pi * s.astype(np.float64)
    assert np.max(np.abs(c - np.cos(ref))) < 3e-7
    assert np.max(np.abs(sn - np.sin(ref))) < 3e-7
    assert abs(np.mean(c - np.cos(ref))) < 1e-8  # no bias: errors do not add up coherently over particles


def test_form_factor64_matches_physics():
    """Numba form factor equals physics.form_factor (eq. 2) to 1e-12 absolute on qR in [0, 60]."""
    x = np.concatenate([np.linspace(0, 0.2, 2001), np.linspace(0.2, 60, 20001)])
    assert np.max(np.abs(_eval_ff(x) - physics.form_factor(x))) < 1e-12


def _direct_intensity(x, y, r, grid):
    """float64 reference of eq. 1 with numpy exp."""
    q, th = grid.q, grid.theta
    qx, qy = q[:, None] * np.cos(th), q[:, None] * np.sin(th)
    v = physics.sphere_volume(r)
    w = v[None, None, :] * physics.form_factor(q[:, None, None] * r)
    amp = np.sum(w * np.exp(-1j * (qx[..., None] * x + qy[..., None] * y)), axis=-1)
    return np.abs(amp) ** 2 / np.sum(v**2)


@pytest.mark.parametrize("rs", [0.0, 0.25])
def test_fast_kernel_matches_float64_direct_sum(rs):
    """Fast kernel vs a float64 numpy sum of the same configuration on the paper's 100 x 101 grid.

    Criterion (relative 1e-5): |I_fast - I_ref| <= 1e-5 * mean_theta I_ref(q) at every grid point,
    before and after the move. (Pointwise relative error is meaningless at speckle zeros.)
    """
    grid = QGrid()
    cfg = sample_configuration(SystemParams(150, rs, 1.0, 10.0), seed=3)
    fast = intensity_pair(cfg, grid)
    for k, (xs, ys, mask) in enumerate([(cfg.x, cfg.y, cfg.in_beam_before),
                                       (cfg.x_after, cfg.y_after, cfg.in_beam_after)]):
        ref = _direct_intensity(xs[mask], ys[mask], cfg.radius[mask], grid)
        scale = ref.mean(axis=1, keepdims=True)
        assert np.max(np.abs(fast[k] - ref) / scale) < 1e-5


def test_chunk_kernel_equals_single_map():
    """simulate_mc with one configuration reproduces intensity_pair of configuration 0 exactly
    (same seed stream, same per-point arithmetic), so the accuracy test above covers the engine."""
    p, grid = SystemParams(150, 0.2, 1.0, 10.0), QGrid.log(0.5, 5, 30, 31)
    i_b, i_a = intensity_pair(sample_configuration(p, seed=5), grid)
    ds = simulate_mc(p, grid, configs=1, seed=5)
    np.testing.assert_allclose(ds["I"].values, i_b, rtol=1e-13, atol=0)
    np.testing.assert_allclose(ds["g"].values, 1.0, rtol=1e-12)  # g = I I' / (I I') for one configuration


@pytest.mark.parametrize("rs", [0.0, 0.2])
def test_amplitude_at_matches_direct_sum(rs):
    """A(q) = sum V F(|q|R) exp(-i q.r) at random q-vectors: |A - A_ref| <= 5e-6 * rms|A_ref|."""
    rng = np.random.default_rng(0)
    n = 150
    x, y = rng.uniform(-400, 400, n), rng.uniform(-400, 400, n)
    r = physics.sample_radii(n, rs, seed=1)
    qx, qy = rng.uniform(-5, 5, (40, 50)), rng.uniform(-5, 5, (40, 50))
    a = amplitude_at(qx, qy, x, y, r)
    qm = np.hypot(qx, qy)
    ref = np.sum(physics.sphere_volume(r) * physics.form_factor(qm[..., None] * r)
                 * np.exp(-1j * (qx[..., None] * x + qy[..., None] * y)), axis=-1)
    assert a.shape == qx.shape and a.dtype == np.complex128
    assert np.max(np.abs(a - ref)) <= 5e-6 * np.sqrt(np.mean(np.abs(ref) ** 2))


@pytest.mark.parametrize("rs", [0.0, 0.2])
def test_mode_intensity_equals_the_sum_over_modes_of_amplitude_at(rs):
    """modes.intensity_at (phases shared by the modes) = sum_k nu_k |amplitude_at(weights=E_k)|^2 to 5e-5 of the
    mean intensity (both sum float32 phases; amplitude_at is good to ~1e-6 of the rms amplitude)."""
    from shearcorr.beam import Beam
    from shearcorr.forward.modes import coherent_modes, intensity_at

    rng = np.random.default_rng(3)
    n = 150
    x, y = rng.uniform(-400, 400, n), rng.uniform(-400, 400, n)
    r = physics.sample_radii(n, rs, seed=2)
    nu, evaluate = coherent_modes(Beam("square", 800.0, coherence=(300.0, 450.0)).resolved(800.0), 1e-4)
    amps = evaluate(x, y)
    assert nu.size > 5
    qx, qy = rng.uniform(-2, 2, (30, 41)), rng.uniform(-2, 2, (30, 41))
    ref = sum(nu[k] * np.abs(amplitude_at(qx, qy, x, y, r, weights=amps[k])) ** 2 for k in range(nu.size))
    got = intensity_at(qx, qy, x, y, r, amps, nu)
    assert got.shape == qx.shape
    assert np.max(np.abs(got - ref)) <= 5e-5 * np.mean(ref)
