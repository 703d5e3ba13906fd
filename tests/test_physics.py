"""Single-particle physics: form factor, radii, PDI, the rearrangement Gamma, eq. 5."""

import numpy as np
import pytest
from scipy.optimize import brentq

from shearcorr.params import SystemParams
from shearcorr.physics import (displacement_std, form_factor, g_theory, pdi, rearrange, sample_radii,
                               sphere_volume)


def test_form_factor_small_qr_limit():
    # F(x) = 1 - x^2/10 + x^4/280 - x^6/15120 + O(x^8): exact to rounding at tiny x, no 0/0 at x = 0
    x = np.array([0.0, 1e-12, 1e-6, 1e-3, 0.05])
    np.testing.assert_allclose(form_factor(x), 1 - x**2 / 10 + x**4 / 280 - x**6 / 15120, rtol=0, atol=1e-15)


def test_form_factor_continuous_across_series_switch():
    x = np.array([0.1 - 1e-12, 0.1 + 1e-12])
    f = form_factor(x)
    assert abs(f[0] - f[1]) < 1e-12


def test_form_factor_first_zero():
    root = brentq(form_factor, 4.0, 5.0, xtol=1e-14)
    assert root == pytest.approx(4.493409457909064, abs=1e-9)  # first root of tan x = x


def test_form_factor_is_even_and_bounded():
    x = np.linspace(0.01, 50, 1001)
    np.testing.assert_allclose(form_factor(-x), form_factor(x), rtol=1e-14)
    assert np.all(np.abs(form_factor(x)) <= 1.0)


def test_sphere_volume():
    assert sphere_volume(1.0) == pytest.approx(4.18879020478639, rel=1e-14)
    assert sphere_volume(2.0) == pytest.approx(8 * sphere_volume(1.0), rel=1e-14)


@pytest.mark.parametrize("rs", [0.1, 0.2])
def test_pdi_of_large_sample_matches_exp_9rs2(rs):
    r = sample_radii(2_000_000, rs, seed=3)
    measured = np.mean(r**6) / np.mean(r**3) ** 2
    # sampling error of <R^6> over 2e6 draws is < 0.2 % (rs = 0.2); allow 1.5 %
    assert measured == pytest.approx(pdi(rs), rel=0.015)
    assert np.std(np.log(r)) == pytest.approx(rs, rel=0.005)
    assert abs(np.mean(np.log(r))) < 5 * rs / np.sqrt(r.size)


def test_monodisperse_radii_are_exactly_r0():
    np.testing.assert_array_equal(sample_radii(7, 0.0, r0=2.5, seed=0), np.full(7, 2.5))
    assert pdi(0.0) == 1.0


def test_displacement_conventions():
    r = np.array([0.25, 1.0, 4.0])
    np.testing.assert_allclose(displacement_std(r, 2.0, "uniform"), [2.0, 2.0, 2.0])
    np.testing.assert_allclose(displacement_std(r, 2.0, "stokes-einstein"), [4.0, 2.0, 1.0])


def test_rearrange_is_pure_shear_without_noise():
    p = SystemParams(n_l2=100, rs=0, d2=0, gamma_l=40)
    rng = np.random.default_rng(1)
    x, y = rng.uniform(-800, 800, (2, 1000))
    x2, y2 = rearrange(x, y, np.ones(1000), p, seed=2)
    np.testing.assert_allclose(x2 - x, p.gamma * y, atol=1e-12)
    np.testing.assert_array_equal(y2, y)


@pytest.mark.parametrize("convention", ["uniform", "stokes-einstein"])
def test_rearrange_nonaffine_step_statistics(convention):
    p = SystemParams(n_l2=100, rs=0.3, d2=1.5, gamma_l=0, displacement=convention)
    n = 400_000
    radius = sample_radii(n, p.rs, seed=5)
    x = np.zeros(n)
    x2, y2 = rearrange(x, x, radius, p, seed=6)
    scale = np.sqrt(radius) if convention == "stokes-einstein" else 1.0
    # standardised steps are N(0, d2^2): std within 1 % (sampling error 0.1 %)
    assert np.std(x2 * scale) == pytest.approx(1.5, rel=0.01)
    assert np.std(y2 * scale) == pytest.approx(1.5, rel=0.01)


def test_rearrange_same_seed_same_numbers():
    p = SystemParams(n_l2=100, rs=0, d2=1, gamma_l=10)
    x = np.linspace(-5, 5, 11)
    a = rearrange(x, x, np.ones(11), p, seed=9)
    b = rearrange(x, x, np.ones(11), p, seed=9)
    c = rearrange(x, x, np.ones(11), p, seed=10)
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0], c[0])


def test_eq5_limits():
    q = np.array([0.5, 1.0, 2.0])
    theta = np.array([0.0, np.pi / 2, np.pi])
    g = g_theory(q, theta, d2=1.0, gamma_l=10.0)
    # along the shear gradient (theta = pi/2) the affine shear does not decorrelate
    np.testing.assert_allclose(g[:, 1], 1 + np.exp(-q**2), rtol=1e-14)
    # symmetric in theta -> pi - theta
    np.testing.assert_allclose(g[:, 0], g[:, 2], rtol=1e-14)
    # no rearrangement: g = 2 (full speckle contrast)
    np.testing.assert_allclose(g_theory(q, theta, 0.0, 0.0), 2.0)
    # a zero of the sinc: q gamma_l cos(theta) / 2 = pi
    assert g_theory([2 * np.pi / 10], [0.0], 0.3, 10.0)[0, 0] == pytest.approx(1.0, abs=1e-15)
