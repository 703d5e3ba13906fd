"""Frames as a detector records them (stack/intensity.py): the extra baseline of the particle number in the beam,
against a Monte Carlo of its definition; the effective area of a footprint; the steady baseline's two conventions."""

import numpy as np
import pytest

from shearcorr.beam import Beam
from shearcorr.experiment.model import BinnedPairModel
from shearcorr.physics import form_factor, sample_radii, sphere_volume
from shearcorr.stack.intensity import detector_baseline
from shearcorr.stack.steadyfit import Baseline
from shearcorr.stack.transit import footprint

L = 800.0


def test_detector_baseline_is_the_poisson_number_variance_at_rs_0():
    """Monodisperse: P fluctuates as the number of particles in the beam (Poisson, mean n_l2): B - 1 = 1/n_l2 at every
    q; a Gaussian footprint of FWHM L counts 2.27x more effective particles."""
    np.testing.assert_allclose(detector_baseline([0.1, 1.0, 3.0], 0.0, 150.0, None, L), 1.0 / 150.0, rtol=1e-12)
    sig = L / (2 * np.sqrt(2 * np.log(2)))
    np.testing.assert_allclose(detector_baseline(1.0, 0.0, 150.0, Beam("gaussian", (L, L)), L),
                               L * L / (4 * np.pi * sig**2) / 150.0, rtol=2e-3)


@pytest.mark.parametrize("rs", [0.1, 0.25])
def test_detector_baseline_matches_a_monte_carlo_of_its_definition(rs):
    """Poisson(n_l2) particles in the square window, log-normal radii: Var(P)/E[P]^2 over 40 000 configurations,
    P = sum V^2 F^2(qR), within 4 standard errors (bootstrap over the configurations)."""
    rng = np.random.default_rng(11)
    n_l2, M, q = 150.0, 40000, np.array([0.5, 2.0, 4.0])
    n = rng.poisson(n_l2, M)
    r = sample_radii(int(n.sum()), rs, 1.0, rng)
    v2 = sphere_volume(r) ** 2
    idx = np.repeat(np.arange(M), n)
    P = np.stack([np.bincount(idx, v2 * form_factor(qq * r) ** 2, minlength=M) for qq in q], axis=1)

    def rel_var(k):
        return P[k].var(0) / P[k].mean(0) ** 2

    d = rel_var(np.arange(M))
    boot = np.array([rel_var(rng.integers(0, M, M)) for _ in range(40)])
    want = detector_baseline(q, rs, n_l2, None, L)
    assert np.all(np.abs(d - want) < 4 * boot.std(0)), (d, want, boot.std(0))
    assert np.all(want > 1.0 / n_l2)  # polydisperse: more than the number's variance


def test_effective_area_of_a_gaussian_footprint():
    """(int u)^2 / int u^2 = 4 pi sigma^2 for a Gaussian intensity of std sigma (FWHM 800: 1.45e6 R0^2); a slit: its
    area."""
    sig = 800.0 / (2 * np.sqrt(2 * np.log(2)))
    assert footprint(Beam("gaussian", (800.0, 800.0)), L).effective_area == pytest.approx(4 * np.pi * sig**2, rel=2e-3)
    assert footprint(None, L).effective_area == L * L


def test_steady_baseline_of_detector_frames():
    """Detector frames: B - 1 is the closed form (row-averaged over the sub-grid), the lag-0 amplitude 1; the volume
    convention's amplitude is the engine's A - B, below 1 by about the number's variance."""
    m = BinnedPairModel(np.geomspace(0.9, 1.8, 4), np.linspace(0.0, np.pi, 7), n_l2=150, beam_size=L)
    rs = 0.16  # a node of the baseline's R_s grid: no interpolation
    s_d, b_d = Baseline(m, intensity="detector")(rs)
    s_v, _ = Baseline(m)(rs)
    np.testing.assert_allclose(b_d[:, 0], detector_baseline(m.q_sub, rs, 150, None, L).reshape(m.n_q, m.sq).mean(1),
                               rtol=1e-5)  # the spline over R_s at its node
    np.testing.assert_allclose(s_d, 1.0)
    assert np.all(s_v < 1.0) and np.all(np.abs(s_v - (1.0 - 1.0 / 150)) < 0.01)
