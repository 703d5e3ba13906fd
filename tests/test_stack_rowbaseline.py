"""R_s of a steady stack from its q-row mean intensities (stack/rowbaseline.py) and the pixel-weighted baseline."""

from types import SimpleNamespace

import numpy as np
import pytest

from shearcorr.experiment.model import BinnedPairModel, ensemble_g
from shearcorr.stack.rowbaseline import fit_row_baseline, row_covariances, row_jackknife
from shearcorr.stack.steadyfit import Baseline

L = 800.0


@pytest.fixture(scope="module")
def model():
    return BinnedPairModel(np.geomspace(0.9, 1.8, 4), np.linspace(0.0, np.pi, 7), n_l2=150, displacement="uniform",
                           beam_size=L)


def _fake_stack(model, b1_rows, *, T=6000, v=40.0, n_sub=4, groups=20, seed=3):
    """Ring means whose q-row fluctuation has the baseline's covariance B1 (1 - v tau / L): a moving average over
    L / v frames of white noise (triangular autocovariance), the same in the n_sub rings of a row."""
    rng = np.random.default_rng(seed)
    M = int(round(L / v))
    n_q = model.n_q
    white = rng.standard_normal((T + M - 1, n_q))
    cs = np.vstack([np.zeros((1, n_q)), np.cumsum(white, axis=0)])
    ma = (cs[M:] - cs[:-M]) / np.sqrt(M)  # (T, n_q), unit variance, autocovariance 1 - |tau| / M
    x = ma * np.sqrt(b1_rows)[None]
    ring_mean = np.repeat(50.0 * (1.0 + x), n_sub, axis=1)  # (T, n_q * n_sub)
    plan = SimpleNamespace(n_q=n_q, n_sub=n_sub, n_pix_ring=np.full(n_q * n_sub, 400.0),
                           n_pix_bin=np.full((n_q, model.n_phi), 4 * 400.0 / model.n_phi))
    lags = np.arange(11)
    lag = SimpleNamespace(plan=plan, ring_mean=ring_mean, lags=lags, start=0, stop=T, n_pix_bin=plan.n_pix_bin,
                          group_edges=np.linspace(0, T, groups + 1).round().astype(np.int64))
    fit = SimpleNamespace(values={"transit": v, "shear_rate": 0.0, "rs": 0.0}, info={"beam_size": L},
                          d2=lambda t: np.zeros_like(np.asarray(t, dtype=float)),
                          prediction=np.zeros((lags.size, n_q, model.n_phi)))
    return lag, fit


def test_row_covariances_sum_the_products_per_group(model):
    lag, _ = _fake_stack(model, np.full(model.n_q, 1e-3), T=400, groups=4)
    sums, pairs, n_row = row_covariances(lag)
    x = lag.ring_mean[:, ::4] / lag.ring_mean[:, ::4].mean(0) - 1.0
    for j, tau in enumerate(lag.lags[1:]):
        for g in range(4):
            a, b = lag.group_edges[g], min(lag.group_edges[g + 1], 400 - tau)
            assert pairs[g, j] == b - a
            np.testing.assert_allclose(sums[g, j], (x[a:b] * x[a + tau:b + tau]).sum(0), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(n_row, 1600.0)


def test_row_jackknife_renormalises_the_deleted_sample(model):
    """Each deleted sample divided by its own time mean, against brute force; the group means of these rows
    differ (a slow drift), so the full stack's mean would give different numbers."""
    lag, _ = _fake_stack(model, np.full(model.n_q, 1e-3), T=400, groups=4)
    lag.ring_mean = lag.ring_mean * (1.0 + 0.02 * np.linspace(-1, 1, 400))[:, None]
    jack = row_jackknife(lag)
    row = lag.ring_mean[:, ::4]
    e = lag.group_edges
    for g in range(4):
        out = np.r_[0:e[g], e[g + 1]:400]
        x = row / row[out].mean(0) - 1.0
        for j, tau in enumerate(lag.lags[1:]):
            o = out[out + tau < 400]
            np.testing.assert_allclose(jack[g, j], (x[o] * x[o + tau]).mean(0), rtol=1e-9, atol=1e-15)
    sums, pairs, _ = row_covariances(lag)
    kept_mean = (sums.sum(0) - sums[0]) / (pairs.sum(0) - pairs[0])[:, None]
    assert np.max(np.abs(kept_mean - jack[0])) > 1e-5  # the former jackknife's sample is not this


def test_row_baseline_recovers_rs(model):
    """Ring means with the engine's baseline at R_s = 0.2 (and the triangular decay of transit): R_s within 0.02
    and 3 of its jackknife errors. The global fit of the bin maps read such stacks 0.02-0.03 high at R_s = 0.10."""
    truth = 0.2
    b1 = Baseline(model)(truth)[1][:, 0]
    lag, fit = _fake_stack(model, b1)
    r = fit_row_baseline(lag, model, fit)
    assert abs(r["rs"] - truth) < 0.02
    assert 0 < r["std"] < 0.02
    assert abs(r["rs"] - truth) < 3 * r["std"]
    # and a stack without a baseline reads R_s near 0 (not a positive floor)
    lag0, fit0 = _fake_stack(model, np.full(model.n_q, 1e-12), seed=4)
    assert fit_row_baseline(lag0, model, fit0)["rs"] < 0.08


def test_baseline_rows_follow_the_pixel_weights(model):
    """All pixels of a row in its highest sub-cell in q: the row's B - 1 is the engine's at that q (not the
    sub-grid mean, which the former unweighted Baseline returned)."""
    m = model
    w = np.zeros((m.n_q, m.sq, m.n_phi, m.sp))
    w[:, -1] = 1.0
    rs = 0.24  # a node of the baseline's R_s grid
    _, b1w = Baseline(m, w)(rs)
    _, b1u = Baseline(m)(rs)
    b = ensemble_g(m.params(0.0, Baseline(m).d_dec, rs), m.q_sub, [0.0])[:, 0].reshape(m.n_q, m.sq)
    f_eng = Baseline(m).f_eng
    np.testing.assert_allclose(b1w[:, 0], (b[:, -1] - 1.0) / f_eng, rtol=1e-4)
    assert np.all(b1w[:, 0] > b1u[:, 0])  # B - 1 rises with q


def test_row_baseline_of_detector_frames_and_its_upper_limit(model):
    """Detector frames (the particle number's variance in the baseline, .intensity): R_s = 0.15 recovered within
    3 jackknife errors; at R_s = 0 the estimate sits at the bound, where the groups' jackknife collapses, and the
    std is the one-sigma upper limit instead -- a baseline at 3 times that limit is then detected (R_s > 0). The
    68 / 95 % intervals of the linear excess bracket the estimate and hold the truth."""
    base = Baseline(model, intensity="detector")
    for truth in (0.15,):
        lag, fit = _fake_stack(model, base(truth)[1][:, 0], seed=5)
        r = fit_row_baseline(lag, model, fit, intensity="detector")
        assert abs(r["rs"] - truth) < 3 * r["std"] and r["upper_limit"] is None
        lo, hi = r["interval95"]
        assert lo < r["interval68"][0] < r["rs"] < r["interval68"][1] < hi and lo < truth < hi
    lag0, fit0 = _fake_stack(model, base(0.0)[1][:, 0], seed=8)  # seeds 8-12 put R_s at the bound, 6, 7, 13 off it
    r0 = fit_row_baseline(lag0, model, fit0, intensity="detector")
    assert r0["rs"] == 0.0 and max(r0["jackknife"]) < 0.01  # the collapsed jackknife
    assert 0.0 < r0["upper_limit"] == r0["std"] < 0.2
    assert r0["interval95"][0] == 0.0 and r0["interval95"][1] > r0["upper_limit"]  # the truth, 0, inside
    lag3, fit3 = _fake_stack(model, base(3.0 * r0["upper_limit"])[1][:, 0], seed=7)
    r3 = fit_row_baseline(lag3, model, fit3, intensity="detector")
    assert r3["rs"] > 0.01 and abs(r3["rs"] - 3.0 * r0["upper_limit"]) < 3 * r3["std"]


def test_kept_in_row_against_a_monte_carlo_of_advected_points(model):
    """The share of a row's pixels whose speckle stays in the row under strain gamma (q -> q + gamma q_par e_perp):
    1 at gamma = 0; at gamma = 0.05 the uniform sub-grid's value equals points uniform in ln q and azimuth moved
    exactly, within 0.01 (the sub-grid's cells are uniform in ln q; its azimuths are the model's 6 x sp nodes)."""
    from shearcorr.stack.rowbaseline import _kept_in_row

    npix = np.ones((model.n_q, model.n_phi))
    np.testing.assert_allclose(_kept_in_row(model, None, npix, [0.0], 0.3)[0], 1.0, atol=1e-12)
    g, phi0 = 0.05, 0.3
    kept = _kept_in_row(model, None, npix, [g], phi0)[0]
    rng = np.random.default_rng(2)
    lq = np.log(model.q_edges)
    for i in range(model.n_q):
        lnq = rng.uniform(lq[i], lq[i + 1], 200000)
        psi = rng.uniform(0.0, np.pi, lnq.size) - phi0
        q = np.exp(lnq)
        qx, qy = q * np.cos(psi), q * np.sin(psi)
        moved = np.log(np.hypot(qx, qy + g * qx))
        mc = np.mean((moved >= lq[i]) & (moved < lq[i + 1]))
        assert abs(kept[i] - mc) < 0.01, (i, kept[i], mc)
    assert np.all(kept < 0.95)  # rows a factor 2^(1/3) wide lose ~10 % of their speckles at this strain
