"""The pair model on a table (control variate + Catmull-Rom) against the engine's exact bin averages,
and the amortized map fits: exact recovery without noise, calibrated errors with noise."""

import numpy as np
import pytest

from shearcorr.experiment.model import BinnedPairModel, ensemble_g
from shearcorr.stack.fitting import fit_maps
from shearcorr.stack.templates import PairTable, bulk_y


@pytest.fixture(scope="module")
def table():
    model = BinnedPairModel(np.geomspace(0.2, 1.2, 5), np.linspace(0, np.pi, 9), n_l2=150)
    return PairTable(model, 0.15, gamma_max=30.0, d2_max=1.5)


def _exact(model, gl, d2, phi0, n_phi_fine=64):
    """Bin average of the engine's y at the model's q sub-points and a fine azimuth grid (the table
    integrates the sinc^2 over azimuth exactly and samples q like the model)."""
    p = model.params(gl, d2, 0.15)
    a = ensemble_g(model.params(0, 0, 0.15), model.q_sub, [0.0])[:, 0]
    b = ensemble_g(model.params(0, 25.0, 0.15), model.q_sub, [0.0])[:, 0]
    dphi = np.diff(model.phi_edges)[0]
    phis = (model.phi_edges[:-1, None] + dphi * (np.arange(n_phi_fine) + 0.5)[None, :] / n_phi_fine).ravel()
    g = ensemble_g(p, model.q_sub, np.mod(phis - phi0, np.pi))
    y = (g - b[:, None]) / (a - b)[:, None]
    return y.reshape(model.n_q, model.sq, model.n_phi, n_phi_fine).mean(axis=(1, 3))


def test_table_matches_engine_bin_averages(table):
    rng = np.random.default_rng(3)
    pts = np.c_[rng.uniform(0, 28, 6), rng.uniform(0, 1.45, 6)]
    y = table.y(pts[:, 0], pts[:, 1], 0.4)
    err = max(np.abs(y[k] - _exact(table.model, *pts[k], 0.4)).max() for k in range(len(pts)))
    assert err < 1e-3  # measured 6.5e-4 on these coarse 22.5-degree bins (docs/stacks.md)


def test_derivatives_match_finite_differences(table):
    g, d = np.array([3.0, 17.0]), np.array([0.3, 1.1])
    y, yg, yd = table.y(g, d, 0.2, derivatives=True)
    h = 1e-2  # the control variate is float32: central differences need a step well above its rounding
    np.testing.assert_allclose(yg, (table.y(g + h, d, 0.2) - table.y(g - h, d, 0.2)) / (2 * h), rtol=2e-3, atol=2e-5)
    np.testing.assert_allclose(yd, (table.y(g, d + h, 0.2) - table.y(g, d - h, 0.2)) / (2 * h), rtol=2e-3, atol=2e-5)
    q, th = np.array([0.5, 1.0]), np.array([0.3, 1.2])
    b, bg, bd = bulk_y(q, th, 7.0, 0.8, derivatives=True)
    np.testing.assert_allclose(bg, (bulk_y(q, th, 7.0 + h, 0.8) - bulk_y(q, th, 7.0 - h, 0.8)) / (2 * h), rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(bd, (bulk_y(q, th, 7.0, 0.8 + h) - bulk_y(q, th, 7.0, 0.8 - h)) / (2 * h), rtol=1e-3, atol=1e-6)


def test_fit_maps_recovers_parameters_and_calibrates_errors(table):
    rng = np.random.default_rng(7)
    M = 300
    truth = np.c_[rng.uniform(4, 25, M), rng.uniform(0.2, 1.3, M), rng.uniform(0.2, 0.4, M)]
    clean = truth[:, 2, None, None] * table.y(truth[:, 0], truth[:, 1], 0.5)
    sigma = np.full(clean.shape, 0.01)
    exact = fit_maps(table, 0.5, clean, sigma)
    np.testing.assert_allclose(exact.params, truth, rtol=1e-4, atol=1e-4)
    noisy = fit_maps(table, 0.5, clean + sigma * rng.standard_normal(clean.shape), sigma)
    z = (noisy.params - truth) / noisy.std
    assert np.all(np.abs(z.mean(axis=0)) < 0.2)
    assert np.all((0.85 < z.std(axis=0)) & (z.std(axis=0) < 1.15))
    assert abs(np.median(noisy.chi2_red) - 1.0) < 0.1


def test_compiled_bulk_equals_numpy_reference_and_sici():
    """tablekernels: F (Hermite table + asymptotic Si) against scipy's sici, and the compiled bin sums
    against templates.bulk_cells + the weighted bin average (cells crossing theta = pi included)."""
    from shearcorr.stack.tablekernels import F_TABLE_END, bin_bulk, f_compiled, sinc2_antiderivative
    from shearcorr.stack.templates import bulk_cells

    model = BinnedPairModel(np.geomspace(0.2, 1.2, 4), np.linspace(0, np.pi, 7), n_l2=150)
    rng = np.random.default_rng(5)
    w = rng.uniform(0.2, 1.0, (model.n_q, model.sq, model.n_phi, model.sp))
    w /= w.sum(axis=(1, 3), keepdims=True)
    # gamma L from 0 (midpoint branch) through the table into the asymptotic series (x up to ~700)
    g = np.r_[0.0, 1e-4, rng.uniform(0, 30, 8), rng.uniform(60, 1200, 8)]
    d = rng.uniform(0, 2, g.size)
    for phi0 in (0.0, 0.37, 2.9):  # phi0 = 0: cell edges on theta = 0, pi; 2.9: cells crossing pi
        half = 0.5 * np.diff(model.phi_edges)[0] / model.sp
        ref = bulk_cells(model.q_sub, model.phi_sub - phi0 - half, model.phi_sub - phi0 + half, g, d, True)
        ref = [np.einsum("...qipj,qipj->...qp", v.reshape(v.shape[:-2] + w.shape), w) for v in ref]
        new = bin_bulk(model.q_sub, model.sq, model.phi_edges, model.sp, w, phi0, g, d, derivatives=True)
        for r, n in zip(ref, new):
            np.testing.assert_allclose(n, r, rtol=0, atol=1e-11)
        np.testing.assert_allclose(bin_bulk(model.q_sub, model.sq, model.phi_edges, model.sp, w, phi0, g, d), ref[0],
                                   rtol=0, atol=1e-11)
        one = bin_bulk(model.q_sub, model.sq, model.phi_edges, model.sp, w, phi0, g[3], d[3])  # scalar point
        assert one.shape == (model.n_q, model.n_phi)
        np.testing.assert_allclose(one, ref[0][3], rtol=0, atol=1e-11)
    # F itself: Hermite table below x = F_TABLE_END, asymptotic series beyond, odd, exact near 0
    x = np.r_[0.0, 1e-12, -3e-9, np.linspace(-2 * F_TABLE_END, 2 * F_TABLE_END, 4001), rng.uniform(-900, 900, 2000)]
    F, S2 = sinc2_antiderivative(x)[:2]
    Fc, S2c = f_compiled(x)
    np.testing.assert_allclose(Fc, F, rtol=0, atol=1e-13)
    np.testing.assert_allclose(S2c, S2, rtol=0, atol=1e-10)  # the interpolant's slope


def test_one_sided_error_raises_chi2_by_one_at_the_bound(table):
    """gamma L at its bound 0 (no shear): the reported error is the step that raises chi^2 (amplitude
    profiled) by 1, re-measured here with the model itself, for precise maps whose error lies below
    the first step of the former grid search (0.005 gamma_max = 0.15 R0 here; it interpolated chi^2
    linearly from 0, while at the bound chi^2 grows as delta^4: errors came out up to 2x too small, and
    smaller the larger the table)."""
    from shearcorr.stack.fitting import _profile_dchi

    rng = np.random.default_rng(11)
    M, noise = 40, 4e-4
    d2 = rng.uniform(0.3, 1.0, M)
    data = 0.3 * table.y(np.zeros(M), d2, 0.5)
    data = data + noise * rng.standard_normal(data.shape)
    sigma = np.full(data.shape, noise)
    fits = fit_maps(table, 0.5, data, sigma)
    g, s = fits.params[:, 0], fits.std[:, 0]
    at0 = g <= 1e-6 * (1 + table.gamma_max)
    assert at0.sum() >= 10 and np.median(s[at0]) < 0.15  # the regime below the old first step
    x = fits.params[at0]
    flat = data.reshape(M, -1)[at0]
    dchi = _profile_dchi(table, 0.5, flat, np.full(flat.shape, noise**-2.0), np.ones(flat.shape[1]), x, fits.chi2[at0],
                         None, 0, x[:, 0] + s[at0])
    np.testing.assert_allclose(dchi, 1.0, atol=0.02)


def _speckle_ratio_maps(table, truth, phi0, n_maps, n_pix, seed):
    """Two-time quantities of ``n_maps`` pairs of fully developed speckle patterns (circular Gaussian
    fields, intensity correlation y of the table at ``truth`` in every bin, ``n_pix`` independent
    speckles per bin, ensemble-normalised, no shot noise), as :class:`TwoTimeMaps` fields."""
    from types import SimpleNamespace

    rng = np.random.default_rng(seed)
    y = table.y(np.array([truth[0]]), np.array([truth[1]]), phi0)[0]
    nq, nphi = y.shape
    shape = (2 * n_maps, nq, nphi, n_pix)
    e1 = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)) / np.sqrt(2)
    e2 = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)) / np.sqrt(2)
    g = np.sqrt(np.clip(y, 0, 1))[None, :, :, None]
    ek, el = e1[:n_maps], g * e1[:n_maps] + np.sqrt(1 - g**2) * e2[:n_maps]
    d = np.concatenate([np.abs(ek) ** 2 - 1, np.abs(el) ** 2 - 1])  # time bins 0..M-1 and M..2M-1
    K = 2 * n_maps
    ks, ls = np.arange(n_maps), np.arange(n_maps) + n_maps
    C = np.full((K, K, nq, nphi), np.nan)
    var_u = np.full((K, K, nq, nphi), np.nan)
    C[ks, ls] = (d[ks] * d[ls]).mean(-1)
    var_u[ks, ls] = (d[ks] * d[ls]).var(-1)
    c0 = (d * d).mean(-1)
    tt = SimpleNamespace(C=C, var_u=var_u, contrast_bin=c0, bin_var=c0, contrast=c0.mean(-1), row_var=c0.mean(-1),
                         n_pix=np.full((nq, nphi), float(n_pix)), plan=SimpleNamespace(n_q=nq))
    return tt, ks, ls


def test_ratio_map_errors_do_not_bias_gamma_l(table):
    """The ratio maps r = C / sqrt(c0_k c0_l) of speckle patterns, fitted with their errors: gamma L
    within 2.5 % of the truth over 300 maps and z calibrated. The former errors, scaled by each
    bin's own lag-0 contrast, weighted the bins by the noise of the ratio itself: gamma L 5.78 for 6.0
    on these maps (-3.6 %, about 9 standard errors)."""
    from shearcorr.stack.echo import ratio_errors
    from shearcorr.stack.twotimefit import ratio_maps

    truth = (6.0, 0.4)
    tt, ks, ls = _speckle_ratio_maps(table, truth, 0.5, 300, 40, seed=5)
    c, e_c0, den_row, d2_row = ratio_maps(tt, ks, ls, np.ones(tt.plan.n_q))
    first = fit_maps(table, 0.5, c, e_c0 / den_row, min_signal=np.inf)
    fits = fit_maps(table, 0.5, c, ratio_errors(e_c0, den_row, d2_row, first.prediction), start=first.params)
    g = fits.params[:, 0]
    assert abs(g.mean() / truth[0] - 1) < 0.025  # measured +1.1 % (3 standard errors: the ratio's own O(1/n) bias)
    z = (g - truth[0]) / fits.std[:, 0]
    assert abs(z.mean()) < 0.3 and 0.8 < z.std() < 1.25  # measured +0.14 / 0.95


@pytest.mark.slow
def test_twotime_table_grows_to_the_ramp(table):
    """A ramp whose large gamma L the diagonal averages do not see: 6 time bins at strains
    (0, 0, 0, 0, 0, 40) R0, the longest offset decorrelated (D2 = 8) -- the offset averages mix rest
    pairs with one ramp pair and suggest a table up to ~25 R0, as on the start-up study (27 R0 for a
    ramp to 80). Pairs (k, 5) must be fitted near 40, not clipped at the first table's end (the former
    analysis reported them there: z ~ -3.5 at gamma L 40-60 on the study; without the growth all four
    read 14.8, the first table's end)."""
    from types import SimpleNamespace

    from shearcorr.stack.twotimefit import analyze_twotime

    model = table.model
    strain = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 40.0])
    K, n_pix = strain.size, 400
    nq, nphi = model.n_q, model.n_phi
    rng = np.random.default_rng(2)
    C = np.full((K, K, nq, nphi), np.nan)
    var_u = np.full((K, K, nq, nphi), np.nan)
    c0 = np.ones((K, nq, nphi))
    for k in range(K):
        for l in range(k + 1, K):
            d2 = 8.0 if (k, l) == (0, K - 1) else 0.3 + 0.05 * (l - k)
            pair, ks, ls = _speckle_ratio_maps(table, (abs(strain[l] - strain[k]), d2), 0.5, 1, n_pix,
                                               seed=int(rng.integers(1 << 30)))
            C[k, l] = C[l, k] = pair.C[ks[0], ls[0]]
            var_u[k, l] = var_u[l, k] = pair.var_u[ks[0], ls[0]]
    plan = SimpleNamespace(n_q=nq, n_phi=nphi, q=np.sqrt(model.q_edges[:-1] * model.q_edges[1:]), q_edges=model.q_edges,
                           phi_edges=model.phi_edges, n_pix_bin=np.full((nq, nphi), float(n_pix)))
    tt = SimpleNamespace(C=C, var_u=var_u, contrast_bin=c0, bin_var=c0, contrast=c0.mean(-1), row_var=c0.mean(-1),
                         n_pix=plan.n_pix_bin, plan=plan, n_bins=K, centers=np.arange(K, dtype=float))
    a = analyze_twotime(tt, model, flow_angle=0.5, configuration=False)
    g, s = a.gamma_l[1:5, 5], a.gamma_l_std[1:5, 5]
    assert np.all(np.isfinite(g)) and np.all(np.abs(g - 40.0) < 3 * s + 2.0), (g, s)  # measured 33-49 +- 2.7-4.5
    assert a.info["table"]["grown"] >= 1


@pytest.mark.parametrize("w", [20, 150, 600])
def test_configuration_share_completes_the_block_jackknife(w):
    """A per-frame effect shared over w frames (a moving sum of white noise: correlation max(0, 1 - s/w),
    the overlap fraction of a transit of L/w per frame) plus independent noise, averaged over T = 600
    frames in G = 20 groups: the delete-one-group jackknife plus the blind share of the effect's
    variance gives z std 1 within 5 % (3000 series), from fast renewal (w = 20, the steady study's
    stacks) to none (w = T). The previous rule (the effect's variance / K, K = 1 + (T - 1)/w, added
    in full) overstated the error where the groups already see the renewal: z std 0.76 at w = 20."""
    from shearcorr.stack.steady import independent_configurations, jackknife_blind_share
    from shearcorr.stack.transit import overlap_fraction

    T, G, L, reps = 600, 20, 800.0, 3000
    rng = np.random.default_rng(11)
    cs = np.cumsum(rng.standard_normal((reps, T + w)), axis=1)
    x = (cs[:, w:] - cs[:, :-w]) / np.sqrt(w) + rng.standard_normal((reps, T))  # effect var 1 + noise var 1
    mean = x.mean(axis=1)
    blocks = x.reshape(reps, G, T // G).sum(axis=2)
    loo = (blocks.sum(axis=1, keepdims=True) - blocks) / (T - T // G)  # mean without group g
    jk = (G - 1.0) / G * ((loo - loo.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
    share = jackknife_blind_share(lambda s: overlap_fraction(L / w * s, 0.0 * s, L), T, G)
    z = mean / np.sqrt(jk + share)
    assert 0.95 < z.std() < 1.05, (w, z.std(), share)
    if w == 20:
        K = independent_configurations({"transit": L / w, "shear_rate": 0.0}, T, L)
        z_old = mean / np.sqrt(jk + 1.0 / K)
        assert z_old.std() < 0.8, z_old.std()
    assert jackknife_blind_share(lambda s: np.ones_like(s), T, G) == pytest.approx(1.0)
    assert jackknife_blind_share(lambda s: (s == 0).astype(float), T, G) == pytest.approx(0.0, abs=1e-12)
