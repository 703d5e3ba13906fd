"""Echo mode helpers: the period (frames or time stamps) and its refusals, the amplitude sweep."""

import numpy as np
import pytest

from shearcorr.errors import ShearcorrError
from shearcorr.stack.echo import EchoAnalysis, amplitude_sweep, echo_period, ratio_errors


def test_echo_period_from_frames_and_time_stamps():
    assert echo_period(96, 8) == 8
    t = np.arange(96) * 0.01
    assert echo_period(96, times=t, period_s=0.08) == 8
    with pytest.raises(ShearcorrError, match="does not divide the 96 frames"):
        echo_period(96, 7)
    with pytest.raises(ShearcorrError, match="whole number of frames"):
        echo_period(96, times=t, period_s=0.075)
    with pytest.raises(ShearcorrError, match="95 values but the analysis has 96 frames"):
        echo_period(96, times=t[:95], period_s=0.08)
    jitter = t.copy()
    jitter[5] += 0.004
    with pytest.raises(ShearcorrError, match="not evenly spaced"):
        echo_period(96, times=jitter, period_s=0.08)
    with pytest.raises(ShearcorrError, match="fewer than 2 cycles"):
        echo_period(8, 8)


def test_ratio_errors_shrink_with_the_shared_speckle():
    s0 = np.full((1, 2, 2), 0.01)
    c0 = np.full((1, 2, 2), 0.3)
    d2 = np.full((1, 2, 2), 0.4)
    free = ratio_errors(s0, c0, d2, np.zeros((1, 2, 2)))
    np.testing.assert_allclose(free, 0.01 / 0.3)  # rho = 0: the c = 0 law over the lag-0 map
    shared = ratio_errors(s0, c0, d2, np.full((1, 2, 2), 1.0))
    np.testing.assert_allclose(shared, 0.01 * np.sqrt(1 - 0.75**2) / 0.3)  # rho = r c0 / <d^2> = 0.75


def test_amplitude_sweep_sorts_by_amplitude_and_checks_lengths():
    def fake(d, g):
        return EchoAnalysis(period=8, n_cycles=10, per_cycle={}, per_lag={}, d2_irreversible=(d, 0.1 * d),
                            gamma_l_residual=(g, 0.5), flow_angle=0.0, maps=np.zeros((1, 1, 1)), errors=np.zeros((1, 1, 1)))

    sw = amplitude_sweep([fake(1.0, 2.0), fake(0.2, 0.0), fake(0.5, 0.5)], [0.1, 0.01, 0.03])
    np.testing.assert_allclose(sw["strain_amplitude"], [0.01, 0.03, 0.1])
    np.testing.assert_allclose(sw["d2_irreversible"], [0.2, 0.5, 1.0])
    with pytest.raises(ShearcorrError, match="one strain amplitude per file"):
        amplitude_sweep([fake(1.0, 0.0)], [0.1, 0.2])


def _speckle_chain(truth, phi0, n_frames, size=96, counts=400.0, seed=0):
    """Frames of one-pixel speckle whose fields, frame to frame, correlate bin by bin as sqrt(y) of
    the pair model at ``truth`` (gamma L, D2): E_{t+1} = g E_t + sqrt(1 - g^2) xi_t, so every echo of
    consecutive frames (period 1) is the pair model y and every frame keeps most of its bins' speckle
    fingerprint, as the cycles of an echo series do. Photon counts Poisson(counts |E|^2)."""
    from shearcorr.experiment.model import BinnedPairModel
    from shearcorr.stack.plan import make_plan

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    c = (size - 1) / 2
    qr0 = np.hypot(xx - c, yy - c) * (1.2 / (size / 2))
    phi = np.arctan2(-(yy - c), xx - c)
    q_edges = np.geomspace(0.2, 1.2, 5)
    plan = make_plan(np.ones((size, size), bool), qr0, phi, q_edges, 8)
    model = BinnedPairModel(q_edges, plan.phi_edges, n_l2=150)
    y = np.clip(model.y(truth[0], truth[1], 0.15, phi0), 0.0, 1.0)
    iq = np.clip(np.searchsorted(q_edges, qr0, side="right") - 1, 0, plan.n_q - 1)
    ip = np.clip((np.mod(phi, np.pi) / (np.pi / plan.n_phi)).astype(int), 0, plan.n_phi - 1)
    g = np.sqrt(y[iq, ip])
    e = (rng.standard_normal((size, size)) + 1j * rng.standard_normal((size, size))) / np.sqrt(2)
    frames = np.empty((n_frames, size, size), dtype=np.int32)
    for t in range(n_frames):
        frames[t] = rng.poisson(counts * np.abs(e) ** 2)
        xi = (rng.standard_normal((size, size)) + 1j * rng.standard_normal((size, size))) / np.sqrt(2)
        e = g * e + np.sqrt(1.0 - g * g) * xi
    return frames, plan, model


@pytest.mark.slow
def test_echo_errors_scale_with_the_row_contrast(tmp_path):
    """Per-cycle echoes of speckle with a known pair correlation (gamma L 6, D2 0.4; 160 echoes of 96^2
    frames, 36-530 pixels per bin, speckle errors only): gamma L and D2 unbiased and z calibrated
    (measured: gamma L 6.02, z mean +0.07, std 1.10; D2 0.404, z +0.12, std 0.81). The former errors,
    scaled by each bin's own lag-0 contrast (the noisy denominator of the ratio), weighted the bins by
    the noise of the ratio itself: gamma L 5.95 (z mean -0.35) and D2 0.420 (+5.0 %, z mean +0.47) on
    these echoes (about 15 s of CPU: the pair table and the start fit)."""
    from shearcorr.stack.echo import analyze_echo

    truth, phi0 = (6.0, 0.4), 0.5
    frames, plan, model = _speckle_chain(truth, phi0, 161, seed=3)
    e = analyze_echo(frames, plan, model, period=1, start=0, stop=frames.shape[0], max_cycles=1, flow_angle=phi0,
                     configuration=False, cache_dir=tmp_path)
    pc = e.per_cycle
    for k, t in (("gamma_l", truth[0]), ("d2", truth[1])):
        v, s = pc[k], pc[k + "_std"]
        z = (v - t) / s
        assert abs(v.mean() / t - 1) < 0.025 and abs(z.mean()) < 0.3 and 0.7 < z.std() < 1.3, (k, v.mean(), z.mean(), z.std())


def test_dependent_jackknife_covers_overlapping_echoes():
    """Lag-k echoes of consecutive cycles share k - 1 irreversible steps: the mean of 30 overlapping window sums
    (k = 3) has k x the variance the independent-group jackknife reports (measured here over 4000 series:
    ratio ~0.35); the jackknife with the neighbours' covariances up to 4 groups apart (the largest echo lag)
    reports it within 12 % (the former per-file D_irr error was the independent-group one). Its own noise is
    larger (few effective groups): z std 1.32 here for a calibrated variance."""
    from shearcorr.stack.echo import dependent_jackknife_std

    rng = np.random.default_rng(11)
    R, N, k, reach = 4000, 30, 3, 4
    steps = rng.standard_normal((R, N + k - 1))
    a = np.stack([steps[:, n:n + k].sum(axis=1) for n in range(N)], axis=1)  # (R, N) window sums
    theta = a.mean(axis=1)
    deltas = (theta[:, None] - a) / (N - 1)  # delete-one-group changes of the mean
    true_var = theta.var()
    naive = np.array([dependent_jackknife_std(d, 0) for d in deltas])
    dep = np.array([dependent_jackknife_std(d, reach) for d in deltas])
    assert np.mean(naive**2) / true_var < 0.5
    assert abs(np.mean(dep**2) / true_var - 1) < 0.12, np.mean(dep**2) / true_var
    # independent groups: floored at the ordinary jackknife, z stays calibrated (measured z std 0.95)
    b = rng.standard_normal((R, N))
    dep_i = np.array([dependent_jackknife_std((bb.mean() - bb) / (N - 1), reach) for bb in b])
    assert 0.85 < np.std(b.mean(axis=1) / dep_i) < 1.1


def test_configuration_term_follows_the_stack_profile():
    """The configuration term of an echo, conditioned on the profile of the frames' particles: smaller for a
    monodisperse profile, larger for a polydisperse one (R_s = 0.3) than the term marginalised over U(0, 0.3)
    (before: the marginal term whatever the particles; the echo study's files are monodisperse)."""
    from types import SimpleNamespace

    from shearcorr.experiment.model import BinnedPairModel, configuration_profiles, draw_configurations, profile_slope
    from shearcorr.stack.prelim import configuration_term

    model = BinnedPairModel(np.geomspace(0.15, 1.4, 9), np.linspace(0, np.pi, 13), n_l2=150, beam_size=800.0)
    nq, nphi = 8, 12
    gain = np.zeros((1, 3, nq, nphi))
    gain[0, 1] = -1.0 / (nq * nphi)  # D2 read off the mean correlation of the bins
    fits = SimpleNamespace(params=np.array([[0.0, 0.66, 1.0]]), gain=gain)
    qc = np.sqrt(model.q_edges[:-1] * model.q_edges[1:])

    def profile_at(rs):
        d = draw_configurations(model, 0.0, 0.66, np.full(33, rs), 33, seed=7)
        prof = configuration_profiles(model, d)
        s = profile_slope(qc, prof)
        return prof[np.argsort(s)[16]]  # the draw of median slope

    kw = dict(n_configs=48, seed=3)
    marginal = configuration_term(fits, model, 0.5, **kw)[0, 1, 1]
    rep0, rep3 = {}, {}
    mono = configuration_term(fits, model, 0.5, profile=profile_at(0.0), profile_slope_err=0.005, report=rep0, **kw)[0, 1, 1]
    poly = configuration_term(fits, model, 0.5, profile=profile_at(0.3), profile_slope_err=0.005, report=rep3, **kw)[0, 1, 1]
    assert rep0["used"] and rep3["used"] and rep0["rs_kept"][0] < 0.12 < 0.2 < rep3["rs_kept"][0], (rep0, rep3)
    assert np.sqrt(mono / marginal) < 0.85 and np.sqrt(poly / marginal) > 1.15, (mono, marginal, poly)


def test_pairs_of_one_configuration_share_their_relative_gamma_error():
    """Two-time pairs of one stack hold the same particles: the configuration term's relative gamma L error
    (the width of the sinc^2 strip follows the sample spread of the particles' positions) is common to pairs at
    gamma L 10, 20 and 40 R0 -- the shared part reported (``gamma_l_shared_rel_std``) is close to each pair's own
    relative term, not 1/sqrt(3) of it as for independent pairs."""
    from types import SimpleNamespace

    from shearcorr.experiment.model import BinnedPairModel
    from shearcorr.stack.prelim import configuration_term

    model = BinnedPairModel(np.geomspace(0.15, 1.4, 9), np.linspace(0, np.pi, 13), n_l2=150, beam_size=800.0)
    gl = np.array([10.0, 20.0, 40.0])
    # gamma L read off the strip width: the gain of a pair fit, here the linear response of the bins to gamma L
    h = 0.05
    gain = np.zeros((3, 3, 8, 12))
    for m, g in enumerate(gl):
        dy = (model.y(g * (1 + h), 0.3, 0.0, 0.5) - model.y(g * (1 - h), 0.3, 0.0, 0.5)) / (2 * h * g)
        gain[m, 0] = dy / np.sum(dy * dy)
    fits = SimpleNamespace(params=np.column_stack([gl, np.full(3, 0.3), np.ones(3)]), gain=gain)
    rep = {}
    cov = configuration_term(fits, model, 0.5, n_configs=48, seed=2, report=rep)
    own = np.sqrt(cov[:, 0, 0]) / gl
    assert rep["shared_maps"] == 3 and rep["gamma_l_shared_rel_std"] > 0.8 * np.median(own), (rep, own)
