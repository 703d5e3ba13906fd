"""Higher ensemble moments for the estimator statistics: exact limits and agreement with sampling."""

import numpy as np

from shearcorr.forward.analytic import ensemble_arrays
from shearcorr.forward.moments import correlation_limits, static_moments
from shearcorr.params import QGrid, SystemParams
from shearcorr.physics import form_factor, sample_radii, sphere_volume

Q = np.geomspace(0.5, 5.0, 9)


def test_first_moment_is_the_engine_mean_and_monodisperse_moments_are_exact():
    p = SystemParams(120, 0.25, 1.0, 10.0)
    M = static_moments(p, Q)
    I = ensemble_arrays(p, QGrid(Q, np.zeros(1)))[0][:, 0]
    assert np.allclose(M[0], I, rtol=1e-7)
    # rs = 0: U = P/S = F^2 whenever the window holds a particle, so E[U^k] = F^2k (1 - (3/4)^N)
    p0 = SystemParams(40, 0.0, 1.0, 10.0)
    M0 = static_moments(p0, Q)
    occupied = 1.0 - 0.75 ** p0.n_particles
    for k in range(4):
        assert np.allclose(M0[k], form_factor(Q) ** (2 * (k + 1)) * occupied, rtol=1e-9)


def test_moments_match_marks_sampling():
    """E[U^k] against 4000 sampled configurations (only radii and window membership matter)."""
    p = SystemParams(100, 0.3, 0.5, 30.0)
    M = static_moments(p, Q)
    rng = np.random.default_rng(3)
    n, L = p.n_particles, p.beam_size
    x, y = rng.uniform(-L, L, (4000, n)), rng.uniform(-L, L, (4000, n))
    R = sample_radii(4000 * n, p.rs, seed=rng).reshape(4000, n)
    inb = (np.abs(x) < L / 2) & (np.abs(y) < L / 2)
    v2 = sphere_volume(R) ** 2
    S = (v2 * inb).sum(1)
    for iq in (0, 4, 8):
        U = (v2 * form_factor(Q[iq] * R) ** 2 * inb).sum(1) / S
        for k in range(4):
            est, err = np.mean(U ** (k + 1)), np.std(U ** (k + 1)) / np.sqrt(U.size)
            assert abs(est - M[k, iq]) < 4 * err + 1e-12, (iq, k)


def test_correlation_limits_are_the_engine_at_the_limits():
    p = SystemParams(150, 0.1, 2.0, 20.0)
    A, B = correlation_limits(p, Q)
    assert np.all(A > B) and np.all(B >= 1.0 - 1e-12)
    # monodisperse, many particles: A -> 2 - <1/n>, B -> 1
    A0, B0 = correlation_limits(SystemParams(200, 0.0, 1.0, 1.0), Q)
    assert np.allclose(A0, 2.0, atol=0.01) and np.allclose(B0, 1.0, atol=1e-3)
