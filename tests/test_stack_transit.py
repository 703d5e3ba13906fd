"""Transit in the steady model: the shared weight of two frames and its coherent term (stack/transit.py)."""

import numpy as np
import pytest

from shearcorr.experiment.model import BinnedPairModel
from shearcorr.forward.window import bulk_factor
from shearcorr.stack.steadyfit import fit_steady
from shearcorr.stack.transit import N_THETA_CELL, overlap_fraction, shared_transform

L = 800.0


def _quadrature(k, nu, gamma, n=4000):
    """The defining integral of the shared weight's transform by the midpoint rule (independent of the
    piecewise closed form)."""
    s = (np.arange(n) + 0.5) / n - 0.5
    w = np.clip(1.0 - np.abs(nu + gamma * s), 0.0, None)
    return (w[None, :] * np.exp(1j * np.asarray(k)[:, None] * s[None, :])).mean(axis=1)


@pytest.mark.parametrize("nu, gamma", [(0.0, 0.05), (0.01, 0.05), (0.3, 0.05), (0.45, 0.2), (0.95, 0.2), (-0.2, 0.1)])
def test_shared_transform_is_the_defining_integral(nu, gamma):
    k = np.linspace(0.0, 60.0, 61)
    K = shared_transform(k, nu, gamma)
    assert np.abs(K - _quadrature(k, nu, gamma)).max() < 2e-6
    # k = 0: the shared fraction itself
    assert K[0].real == pytest.approx(float(overlap_fraction(nu * L, gamma, L)), abs=2e-4)


def test_shared_transform_without_transit_is_the_engines_bulk_term():
    """nu = 0: 4 x the ensemble engine's bulk factor (particles sheared out at both y edges)."""
    gl = 40.0
    qx = np.linspace(-1.5, 1.5, 301)
    K = shared_transform(qx * gl, 0.0, gl / L)
    assert np.abs(K.imag).max() < 1e-12
    assert np.allclose(K.real, 4.0 * bulk_factor(qx, gl, L), atol=1e-12)


def test_transit_samples_the_whole_height():
    """|nu| >= gamma/2: the weight is linear in y, so the strip has the width of a uniform height,
    |K|^2 = (1 - nu)^2 sinc^2(k/2) + (gamma/2)^2 sinc'(k/2)^2 -- narrower than the transit-free strip
    scaled by (f/f0)^2 (the former model), whose curvature at k = 0 is smaller by gamma/8."""
    nu, gamma = 0.4, 0.1
    k = np.linspace(1e-3, 30.0, 300)
    x = k / 2
    sinc = np.sin(x) / x
    dsinc = (x * np.cos(x) - np.sin(x)) / x**2
    assert np.allclose(np.abs(shared_transform(k, nu, gamma)) ** 2, (1 - nu) ** 2 * sinc**2 + (gamma / 2) ** 2 * dsinc**2,
                       atol=1e-12)
    # curvature in x at 0, relative to the amplitude: 1/3 with transit, (1 - gamma/8)/3 in the former model
    h = 1e-3
    for n_, expect in ((nu, 1.0 / 3.0), (0.0, (1.0 - gamma / 8) / 3.0)):
        K2 = np.abs(shared_transform(np.array([0.0, 2 * h]), n_, gamma)) ** 2
        assert -(K2[1] / K2[0] - 1.0) / h**2 == pytest.approx(expect, rel=3e-3)


class _BulkTable:
    """Stand-in for a PairTable: the transit-free bulk term |K(q cos(theta) gamma L; 0, gamma)|^2 e^{-q^2 D2^2}
    averaged over the model's cells like the transit correction (no engine call)."""

    rs = 0.0

    def __init__(self, model):
        self.model = model

    def y(self, gamma_l, d2, phi0):
        return _cell_maps(self.model, phi0, gamma_l, d2, 0.0 * np.asarray(gamma_l), closed_form=True)


def _cell_maps(model, phi0, gamma_l, d2, transit_l, closed_form=False):
    """Bin averages of |K|^2 e^{-q^2 D2^2} per lag; ``closed_form`` False: |K| by quadrature."""
    width = np.pi / (model.n_phi * model.sp)
    off = ((np.arange(N_THETA_CELL) + 0.5) / N_THETA_CELL - 0.5) * width
    theta = (model.phi_sub - phi0)[:, None] + off[None, :]
    qx = np.abs(model.q_sub[:, None, None] * np.cos(theta)[None])
    out = []
    for gl, d, tr in zip(np.atleast_1d(gamma_l), np.broadcast_to(d2, np.shape(np.atleast_1d(gamma_l))), np.atleast_1d(transit_l)):
        kk = np.arange(0.0, qx.max() * gl + 0.05, 0.01)
        K = shared_transform(kk, tr / L, gl / L) if closed_form else _quadrature(kk, tr / L, gl / L)
        v = np.interp(qx * gl, kk, np.abs(K) ** 2).mean(-1) * np.exp(-(model.q_sub * d) ** 2)[:, None]
        out.append(v.reshape(model.n_q, model.sq, model.n_phi, model.sp).mean(axis=(1, 3)))
    return np.array(out)


def test_steady_fit_recovers_the_shear_rate_under_transit():
    """Lag maps of the exact coherent term of particles carried through the beam (v = 60 R0 per frame,
    shear 0.02 per frame: gamma up to 0.12 over the lags) are fitted back to their shear rate and transit.
    The former model (the transit-free term scaled by (f/f0)^2) read the shear rate ~0.4 % high here."""
    model = BinnedPairModel(np.geomspace(0.04, 0.4, 9), np.linspace(0.0, np.pi, 19), n_l2=150.0, beam_size=L)
    sr, D, v, beta, phi0 = 0.02, 0.05, 60.0, 0.3, 0.4
    lags = np.arange(7)
    pos = lags[1:].astype(float)
    coh = _cell_maps(model, phi0, sr * L * pos, np.sqrt(2 * D * pos), v * pos)
    rng = np.random.default_rng(7)
    c = np.concatenate([beta * (1.0 + 1e-3 * rng.standard_normal((1, model.n_q, model.n_phi))), beta * coh])
    e = 1e-3 * rng.standard_normal((10,) + c.shape)
    jack = c[None] * (1.0 + e - e.mean(axis=0))  # delete-one maps scatter about the full estimate
    fit = fit_steady(c, jack, lags, _BulkTable(model), model, n_pix=np.full((model.n_q, model.n_phi), 100.0),
                     normalization="frame", phi0=phi0 + 0.01, beta0=beta, fit_exponent=False, fit_rs=False,
                     start={"shear_rate": 0.0195, "diffusion": 0.055, "transit": 55.0})
    assert fit.values["shear_rate"] == pytest.approx(sr, rel=5e-4)
    assert fit.values["transit"] == pytest.approx(v, rel=2e-3)
    assert fit.values["diffusion"] == pytest.approx(D, rel=5e-3)


def test_footprint_of_slits_is_the_window_overlap():
    """The paper's square: Footprint gives overlap_fraction and shared_transform exactly (coherent and baseline
    fractions alike). A rectangular slit (width 600 along the flow, height 1000 across) against the defining
    double integral by the midpoint rule."""
    from shearcorr.beam import Beam
    from shearcorr.stack.transit import Footprint

    sq = Footprint(None, L)
    shift, gamma = np.array([0.0, 120.0, 400.0, -200.0]), np.array([0.0, 0.03, 0.05, 0.2])
    fc, fb = sq.fractions(shift, gamma)
    assert np.array_equal(fc, overlap_fraction(shift, gamma, L)) and np.array_equal(fc, fb)
    k = np.linspace(0.0, 30.0, 31)
    assert np.array_equal(sq.transform(k, 400.0, 0.05), shared_transform(k, 0.5, 0.05))
    rect = Footprint(Beam("rectangular", (600.0, 1000.0)), L)
    y = ((np.arange(2000) + 0.5) / 2000 - 0.5) * 1000.0
    for s, g in ((150.0, 0.04), (-90.0, 0.3)):
        w = np.clip(1.0 - np.abs(s + g * y) / 600.0, 0.0, None)  # x-overlap of the slit at height y
        K = (w[None, :] * np.exp(1j * k[:, None] * y[None, :] / L)).mean(axis=1)
        assert np.abs(rect.transform(k, s, g) - K).max() < 1e-5
        assert rect.fractions(s, g)[0] == pytest.approx(K[0].real, abs=2e-4)


@pytest.mark.parametrize("shift, gamma", [(0.0, 0.0), (400.0, 0.0), (400.0, 0.05), (100.0, 0.2), (-700.0, 0.1)])
def test_gaussian_footprint_fractions_are_the_closed_forms(shift, gamma):
    r"""A Gaussian footprint of FWHM L (sigma = L/2.355) moved by s + gamma y: the amplitudes' overlap is
    :math:`E_y[e^{-(s+\gamma y)^2/8\sigma^2}]` over y ~ N(0, sigma^2) (coherent), the intensities'
    :math:`E_y[e^{-(s+\gamma y)^2/4\sigma^2}]` over y ~ N(0, sigma^2/2) (baseline): for a Gaussian variable,
    :math:`E[e^{-a(s+\gamma Y)^2}] = (1 + 2a\gamma^2 v)^{-1/2} e^{-a s^2/(1 + 2a\gamma^2 v)}`. Grid to 1e-5."""
    from shearcorr.beam import Beam
    from shearcorr.stack.transit import Footprint

    fp = Footprint(Beam("gaussian", (L, L)), L)
    sig = L / (2.0 * np.sqrt(2.0 * np.log(2.0)))

    def closed(a, v):
        den = 1.0 + 2.0 * a * gamma**2 * v
        return den**-0.5 * np.exp(-a * shift**2 / den)

    fc, fb = fp.fractions(shift, gamma)
    assert float(fc) == pytest.approx(closed(1.0 / (8 * sig**2), sig**2), abs=1e-5)
    assert float(fb) == pytest.approx(closed(1.0 / (4 * sig**2), sig**2 / 2), abs=1e-5)
    # the square of side L reads this transit as a much larger loss: at s = L/2, 0.5 against 0.84
    if shift == 400.0 and gamma == 0.0:
        assert float(fc) > 0.83 and float(overlap_fraction(shift, gamma, L)) == pytest.approx(0.5)
        # renewal length 2 int f_c du: 2 sqrt(2 pi) sigma (the square's: L)
        assert fp.renewal_length == pytest.approx(2.0 * np.sqrt(2.0 * np.pi) * sig, rel=1e-3)
        assert Footprint(None, L).renewal_length == L


def test_gaussian_footprint_transform_is_the_particles_coherent_sum():
    """K(k) of a Gaussian footprint against the coherent sum over random particle positions (independent of the
    grid): sum_j A(r_j) A(r_j + Delta_j) e^{i q_x gamma y_j} / sum_j A(r_j)^2, Delta_j = s + gamma y_j, 400 000
    positions (sampling error ~1e-3), at three q_x."""
    from shearcorr.beam import Beam
    from shearcorr.stack.transit import Footprint

    beam = Beam("gaussian", (L, L)).resolved(L)
    fp = Footprint(beam, L)
    hx, hy = beam.half_extent()
    rng = np.random.default_rng(1)
    x, y = rng.uniform(-hx - 600.0, hx + 100.0, 400_000), rng.uniform(-hy, hy, 400_000)
    s, g = 400.0, 0.05
    a, a2 = beam.amplitude(x, y), beam.amplitude(x + s + g * y, y)
    for qx in (0.0, 0.01, 0.03):
        mc = abs(np.sum(a * a2 * np.exp(1j * qx * g * y))) / np.sum(a**2)
        assert abs(fp.transform(qx * g * L, s, g)) == pytest.approx(mc, abs=4e-3)
