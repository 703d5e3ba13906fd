"""Single-pair error model: the scatter of gamma L and D2 over configurations of ONE parameter set.

    nice python benchmarks/bench_pair_errors.py [--configs 30] [--n-samples 128] [--size 512] [--gamma-l 10.33 --d2 1.19 --rs 0.24]
    nice python benchmarks/bench_pair_errors.py --term-cost      # CPU of the configuration term per instrument
    nice python benchmarks/bench_pair_errors.py --speckle-bias --configs 40 --save maps.pkl [--variants ABCDEFGO]
    nice python benchmarks/bench_pair_errors.py --speckle-bias --load maps.pkl --variants AE   # refit saved maps
    nice python benchmarks/bench_pair_errors.py --study-pair 8124 13 --pixel-subsamples 3 --draws 12   # one study pair
    nice python benchmarks/bench_pair_errors.py --correction-check --gamma-l 10 --d2 2 --rs 0.15 --configs 40 \
        --pixel-subsamples 3 --speckle-px 2.7 --contrast 0.35 --counts 10 --seed 13000 [--rs-known]  # the bias correction
    nice python benchmarks/bench_pair_errors.py --correction-study --gamma-l 8 --d2 2 --rs 0.15 --configs 48 \
        --pixel-subsamples 3 --speckle-px 2.7 --contrast 0.35 --counts 10 --seed 13100 --rs-draw --save cs.npy
        # the correction with marginal vs profile-conditioned noise, R_s of each map from the prior

By default the ideal instrument (point pixels, coherent square beam, contrast 1, 1e5 photons per pixel, flow
fixed; ``--coherence``, ``--pixel-subsamples``, ``--speckle-px``, ``--contrast``, ``--counts`` change it, the analysis
told the instrument):
K configurations of one (gamma L, D2, R_s) are rendered and analysed with ``analyze``. For each
configuration the *oracle* map -- the exact pair correlation y_1(q) of the very configuration rendered
under the instrument's amplitude transfer (partial coherence, pixel integration:
:func:`shearcorr.experiment.pairtransfer.configuration_y1`; the coherent formula for the ideal instrument),
evaluated at every valid pixel's q-vector and averaged over each bin as the data are -- is fitted with the same weights. That splits the
error of a pair into

* the configuration term, gamma_oracle - truth (the particles' own finite sample), to compare with the
  reported ``std_configuration``;
* the speckle term, gamma_data - gamma_oracle (the finite number of speckles per bin, photons), to
  compare with the reported ``std_speckle``.

Per configuration the configuration std is also propagated (as :func:`fit_pair` does) from
``--n-samples`` fresh configuration samples at the fitted parameters with R_s over its prior ("fit-K"),
at the truth ("truth-K") and at the truth with R_s known ("truth-rs"). Prints per configuration and the
summary: empirical std of each term against the rms reported std, z spreads, and the same for D2.
Results (docs/experiment.md, "The error of one pair"): the speckle term is honest, the configuration
term was too small (32 samples with one seed for every pair; R_s, which one pair cannot tell).
"""

import argparse
import dataclasses
import time

import numpy as np

from shearcorr.experiment import AnalysisOptions, analyze, render_pair
from shearcorr.experiment import analysis as an
from shearcorr.experiment.flow import wrap_half
from shearcorr.experiment.inference import _jacobian, _Problem, fit_pair
from shearcorr.experiment.model import configuration_samples
from shearcorr.experiment.synth import pair_configuration
from shearcorr.params import SystemParams
from shearcorr.physics import form_factor, sphere_volume


def oracle_map(cfg, geo, valid, cm, flow_rad, transfer=None):
    """Bin average over the valid pixels of the configuration's exact y_1(q) (shape of cm.C; NaN where empty).

    y_1 at each pixel's q-vector under the instrument's amplitude transfer ``transfer``
    (:func:`shearcorr.experiment.pairtransfer.amplitude_transfer` of the model's beam, pixel response and flow: partial
    coherence, pixel integration, PSF; :func:`~shearcorr.experiment.pairtransfer.configuration_y1`); None: the
    coherent beam with point pixels (the coherent formula)."""
    from shearcorr.experiment.pairtransfer import configuration_y1

    q = geo.qr0[valid]
    phi = geo.phi[valid]
    th = phi - flow_rad
    y1 = configuration_y1(transfer, q * np.cos(th), q * np.sin(th), cfg.x, cfg.y, cfg.x_after, cfg.y_after, cfg.radius,
                          cfg.illumination_before, cfg.illumination_after)
    iq = np.searchsorted(cm.q_edges, q) - 1
    ip = np.searchsorted(cm.phi_edges, np.mod(phi - cm.phi_offset, np.pi)) - 1
    good = (iq >= 0) & (iq < cm.q_edges.size - 1) & (ip >= 0) & (ip < cm.phi_edges.size - 1)
    nq, nph = cm.C.shape
    idx = iq[good] * nph + ip[good]
    s = np.bincount(idx, y1[good], nq * nph)
    n = np.bincount(idx, None, nq * nph)
    with np.errstate(invalid="ignore"):
        return (s / n).reshape(nq, nph)


def model_transfer(model):
    """The amplitude transfer of the instrument a fitted model was told (beam coherence, pixels, PSF), or None."""
    from shearcorr.beam import Beam
    from shearcorr.experiment.pairtransfer import amplitude_transfer

    beam = (model.beam if model.beam is not None else Beam()).resolved(model.beam_size)
    return amplitude_transfer(beam, model.pixel, model.flow_angle)


def draw_responses(cm, model, fit, phi0, ys):
    """Linearised response of the fitted parameters (gamma L, D2[, beta]) to each configuration sample
    ``ys`` (K, n_q, n_phi) about their mean, at ``fit``'s solution, as :func:`fit_pair` propagates it:
    rows of (dev J) H with H = (J^T J)^-1 (shape (K, n_par))."""
    P = _Problem(cm, model, [0, 1], np.array([0.0, 0.0, 0.15, phi0]))
    beta = fit.beta.value
    full = np.array([fit.gamma_l.value, fit.d2.value] + ([beta] if P.beta_err > 0 else []))
    _, J = _jacobian(P, full, fit.errors, beta)
    H = np.linalg.pinv(J.T @ J)
    ok = cm.ok
    dev = beta * (ys[:, ok] - ys[:, ok].mean(axis=0)) / fit.errors
    return dev @ J[:ok.sum()] @ H


def _options_beam(a, params):
    """The beam of the options: a coherent square (None) or one partially coherent over ``--coherence`` x L."""
    if a.coherence <= 0:
        return None
    from shearcorr.beam import Beam

    return Beam("square", params.beam_size, (a.coherence * params.beam_size,) * 2)


def _reference_pair(a):
    """The rendered and analysed pair of the controlled-map checks at the truth of ``a``: (flow (rad), map, model, fit)."""
    params = SystemParams(150.0, a.rs, a.d2, a.gamma_l, beam_size=800.0)
    t0 = time.perf_counter()
    _, cm, model, f = _analysed_pair(a, params, a.seed)
    print(f"rendered pair: gamma L {f.gamma_l.value:.2f} +- {f.gamma_l.std:.2f}, D2 {f.d2.value:.3f}; {int(cm.ok.sum())} bins "
          f"[{time.perf_counter() - t0:.0f} s]", flush=True)
    return np.radians(a.flow), cm, model, f


def _analysed_pair(a, params, seed, n_configs=None):
    """One pair rendered with the instrument of the options and analysed told it; returns the pair and what
    ``analyze`` gave ``fit_pair``: its map, model and fit (``fit_pair`` is wrapped for the call only;
    ``n_configs`` replaces the analysis' configuration samples, e.g. 0 where only the estimates matter)."""
    captured = {}
    orig = an.fit_pair

    def spy(cm, model, **kw):
        if n_configs is not None:
            kw["n_configs"] = n_configs
        f = orig(cm, model, **kw)
        captured.update(cm=cm, model=model, fit=f)
        return f

    an.fit_pair = spy
    try:
        p = render_pair(params, flow_angle_deg=a.flow, contrast=a.contrast, counts=a.counts, shape=(a.size, a.size),
                        seed=seed, dq=2 * np.pi / params.beam_size / a.speckle_px, beam=_options_beam(a, params),
                        pixel_subsamples=a.pixel_subsamples)
        analyze(p.before, p.after, p.geometry, options=AnalysisOptions(mask=p.mask, plots=False, flow_angle_deg=a.flow,
                                                                        pixel_integration=a.pixel_subsamples > 1))
    finally:
        an.fit_pair = orig
    return p, captured["cm"], captured["model"], captured["fit"]


def conf_sigma(cm, model, fit, phi0, ys):
    """Std of (gamma L, D2) from the configuration samples ``ys`` (K, n_q, n_phi), propagated through the
    linearised fit at ``fit``'s solution exactly as :func:`fit_pair` does (sandwich H G^T G H / (K - 1))."""
    r = draw_responses(cm, model, fit, phi0, ys)
    return np.sqrt((r**2).sum(axis=0) / (len(ys) - 1))[:2]


def config_profile(cfg, q):
    """The configuration's own static profile sqrt(P P') at ``q`` (exact; P = sum u V^2 F^2(q R))."""
    V2 = sphere_volume(cfg.radius) ** 2
    F2 = form_factor(np.asarray(q)[:, None] * cfg.radius[None, :]) ** 2
    return np.sqrt((F2 * V2 * cfg.illumination_before).sum(1) * (F2 * V2 * cfg.illumination_after).sum(1))


def conditioning_study(a):
    """Does the pair's intensity profile predict its configuration error? (docs/experiment.md, "The error of one pair")

    One pair of the parameter set is rendered and fitted (for the weights and the Jacobian); ``--draws``
    configurations over the R_s prior U(0, 0.3) give each one's linearised (gamma L, D2) error delta_k (what
    fit_pair's sandwich propagates) and its profile slope s_k. Printed: the rank correlation of |delta| with s
    and with R_s; the z = delta / sigma spread, overall and by R_s, with sigma the marginal std, the std of the
    nearest 1/CONDITION_DRAWS of the other draws in s (leave-one-out, s with and without the measurement noise of
    the rendered pair's profile) and the std with R_s known (the best an R_s estimate could do)."""
    from scipy.stats import spearmanr

    from shearcorr.experiment.inference import CONDITION_DRAWS, pair_profile
    from shearcorr.experiment.model import (configuration_maps, configuration_profiles, draw_configurations,
                                            profile_slope, rs_levels)

    params = SystemParams(150.0, a.rs, a.d2, a.gamma_l, beam_size=800.0)
    flow = np.radians(a.flow)
    p, cm, model, f = _analysed_pair(a, params, a.seed)
    prof_obs, s_err = pair_profile(p.before, p.after, p.geometry.qr0, p.geometry.phi, p.mask, model.q_edges)
    qc = np.sqrt(model.q_edges[:-1] * model.q_edges[1:])
    s_obs = float(profile_slope(qc, prof_obs))
    s_true = float(profile_slope(qc, config_profile(pair_configuration(params, a.seed), qc)))
    print(f"rendered pair: profile slope {s_obs:.4f} +- {s_err:.4f} (noise estimate), configuration's own {s_true:.4f}")
    t0 = time.perf_counter()
    n = a.draws
    rs_k = rs_levels(n, 0.3)
    draws = draw_configurations(model, f.gamma_l.value, f.d2.value, rs_k, n, a.seed + 1)
    ys, prof = configuration_maps(model, draws, flow), configuration_profiles(model, draws)
    print(f"{n} draws: {time.perf_counter() - t0:.1f} s")
    s_k = profile_slope(qc, prof)
    delta = draw_responses(cm, model, f, flow, ys)[:, :2]  # linearised parameter response per draw
    m = n // CONDITION_DRAWS
    rng = np.random.default_rng(a.seed)
    noisy = s_k + s_err * rng.standard_normal(n)
    bins = [(0.0, 0.1), (0.1, 0.2), (0.2, 0.3)]
    print(f"profile slope over the draws: {np.percentile(s_k, [0, 16, 50, 84, 100]).round(4)}; by R_s (median): "
          + ", ".join(f"{lo:.1f}-{hi:.1f}: {np.median(s_k[(rs_k >= lo) & (rs_k < hi)]):.4f}" for lo, hi in bins))
    for j, name in enumerate(("gamma_l", "d2")):
        d = delta[:, j]
        sig = {"marginal": np.full(n, d.std(ddof=1))}
        for label, s_use in (("profile (exact)", s_k), ("profile (+ noise)", noisy)):
            out = np.empty(n)
            for k in range(n):
                dist = np.abs(s_use - s_use[k])
                dist[k] = np.inf
                out[k] = d[np.argsort(dist, kind="stable")[:m]].std(ddof=1)
            sig[label] = out
        known = np.empty(n)
        for lev in np.unique(rs_k):
            idx = np.flatnonzero(rs_k == lev)
            for k in idx:
                known[k] = d[idx[idx != k]].std(ddof=1)
        sig["R_s known"] = known
        print(f"{name}: marginal std {d.std(ddof=1):.3f}; Spearman |delta| vs profile slope {spearmanr(np.abs(d), s_k)[0]:+.2f}, "
              f"vs R_s {spearmanr(np.abs(d), rs_k)[0]:+.2f}")
        for label, sg in sig.items():
            z = d / sg
            parts = [f"z std {z.std():.2f} (kurtosis {np.mean(z**4) / np.mean(z**2)**2:.1f})"]
            parts += [f"R_s {lo:.1f}-{hi:.1f}: {z[(rs_k >= lo) & (rs_k < hi)].std():.2f}" for lo, hi in bins]
            rho = spearmanr(sg, np.abs(d))[0] if np.ptp(sg) > 0 else float("nan")
            print(f"  sigma {label:18s}: " + "; ".join(parts) + f"; Spearman(sigma, |delta|) {rho:+.2f}", flush=True)
        # what n pairs of this parameter set can tell of the z std: z = (delta + speckle) / sigma_total, the speckle
        # term Gaussian with the rendered pair's std_speckle; the z std of n pairs resampled from the draws
        sp = f.std_speckle[j]
        zt = (d + sp * rng.standard_normal(n)) / np.sqrt(d.var(ddof=1) + sp**2)
        zq = []
        for n_p in (20, 40, 100):
            zs = zt[rng.integers(0, n, (20000, n_p))].std(axis=1)
            zq.append(f"{n_p} pairs: median {np.median(zs):.2f}, 68 % {np.percentile(zs, 16):.2f}-{np.percentile(zs, 84):.2f}, "
                      f"95 % {np.percentile(zs, 2.5):.2f}-{np.percentile(zs, 97.5):.2f}")
        print(f"  total z (speckle std {sp:.3f}, configuration {d.std(ddof=1):.3f}): std {zt.std():.2f}, kurtosis "
              f"{np.mean(zt**4) / np.mean(zt**2)**2:.1f}, robust spread {1.4826 * np.median(np.abs(zt - np.median(zt))):.2f}, "
              f"coverage 68/95 % {100 * np.mean(np.abs(zt) <= 1):.0f}/{100 * np.mean(np.abs(zt) <= 2):.0f} %; z std of "
              + "; ".join(zq), flush=True)


def config_bias_study(a):
    """Bias of one pair's estimate from its own configuration alone (no speckle, no photons, contrast known).

    One pair of the parameter set is rendered with the instrument of the options and analysed told right (for the
    bins, weights and model). For each R_s level of ``--rs-levels``, ``--draws`` configurations at the true
    (gamma L, D2) give their exact binned maps (:func:`shearcorr.experiment.model.configuration_maps`); each map is
    fitted noise-free as the pair's data would be (flow fixed, R_s held at the prior centre, beta = 1). Printed per
    level: the mean relative bias of gamma L and D2 with its standard error, the median (``--draws`` fits), and the
    part that is the mean map's offset (over ``--lin-draws`` maps) from y_model (E[y_1] - y_model; the ensemble model is a ratio of configuration averages,
    E[num]/E[den], a pair measures num/den) propagated linearly; the rest is the fit's nonlinearity."""
    from shearcorr.experiment.model import configuration_maps, draw_configurations

    params = SystemParams(150.0, a.rs, a.d2, a.gamma_l, beam_size=800.0)
    flow = np.radians(a.flow)
    p, cm, model, f = _analysed_pair(a, params, a.seed)
    print(f"rendered pair: gamma L {f.gamma_l.value:.2f} +- {f.gamma_l.std:.2f}, D2 {f.d2.value:.3f} +- {f.d2.std:.3f}; "
          f"{int(cm.ok.sum())} bins; pixels {'integrated' if model.pixel is not None else 'points'}", flush=True)
    truth = np.array([a.gamma_l, a.d2])
    if a.noise_fits:  # the fit's own nonlinearity: the model map at the truth plus Gaussian noise of the stated errors
        rng = np.random.default_rng(a.seed)
        c0 = f.beta.value * model.y(a.gamma_l, a.d2, 0.15, flow)
        sig = cm.errors(c0)
        est = []
        t0 = time.perf_counter()
        for _ in range(a.noise_fits):
            C = 1.0 + np.where(cm.ok, c0 + sig * rng.standard_normal(c0.shape), np.nan)
            fo = fit_pair(dataclasses.replace(cm, C=C), model, phi0=flow, fit_flow=False, n_configs=0,
                          grid_gamma=(a.gamma_l,), grid_d2=(a.d2,))
            row = [fo.gamma_l.value, fo.d2.value]
            if a.fit_flow:  # the same noisy map with the flow fitted (the analysis' start: the scan over [0, pi))
                ff = fit_pair(dataclasses.replace(cm, C=C), model, fit_flow=True, n_configs=0)
                row += [ff.gamma_l.value, ff.d2.value, np.degrees((ff.flow_angle.value - flow + np.pi / 2) % np.pi - np.pi / 2)]
            est.append(row)
        est = np.array(est)
        if a.fit_flow:
            d = (est[:, 2:4] - est[:, :2]) / truth
            sd = d.std(axis=0, ddof=1) / np.sqrt(len(d))
            rf = est[:, 2:4] / truth - 1
            sf = rf.std(axis=0, ddof=1) / np.sqrt(len(rf))
            print(f"  the same maps, flow fitted: gamma L bias {100 * rf[:, 0].mean():+.2f} +- {100 * sf[0]:.2f} %, D2 "
                  f"{100 * rf[:, 1].mean():+.2f} +- {100 * sf[1]:.2f} %; paired (fitted - fixed flow) gamma L "
                  f"{100 * d[:, 0].mean():+.2f} +- {100 * sd[0]:.2f} %, D2 {100 * d[:, 1].mean():+.2f} +- {100 * sd[1]:.2f} %; "
                  f"flow error rms {np.sqrt(np.mean(est[:, 4] ** 2)):.2f} deg", flush=True)
        rel = est[:, :2] / truth - 1
        se = rel.std(axis=0, ddof=1) / np.sqrt(len(rel))
        print(f"model map + Gaussian noise of the stated errors (beta {f.beta.value:.3f} with its prior), {len(rel)} fits: "
              f"gamma L bias {100 * rel[:, 0].mean():+.2f} +- {100 * se[0]:.2f} % (std {100 * rel[:, 0].std():.1f} %), D2 bias "
              f"{100 * rel[:, 1].mean():+.2f} +- {100 * se[1]:.2f} % (std {100 * rel[:, 1].std():.1f} %) "
              f"[{time.perf_counter() - t0:.0f} s]", flush=True)
    for lvl, rs in enumerate(a.rs_levels):
        t0 = time.perf_counter()
        n_maps = max(a.draws, a.lin_draws)
        d = draw_configurations(model, a.gamma_l, a.d2, rs, n_maps, a.seed + 1 + lvl)
        ys = configuration_maps(model, d, flow)
        est, dfl = [], []
        for y in ys[:a.draws]:
            cmo = dataclasses.replace(cm, C=1.0 + np.where(cm.ok, y, np.nan), beta=1.0, beta_err=0.0)
            fo = fit_pair(cmo, model, phi0=flow, fit_flow=a.fit_flow, n_configs=0, grid_gamma=(a.gamma_l,), grid_d2=(a.d2,))
            est.append((fo.gamma_l.value, fo.d2.value))
            dfl.append(np.degrees((fo.flow_angle.value - flow + np.pi / 2) % np.pi - np.pi / 2))
        if a.fit_flow and est:
            print(f"  flow fitted: error rms {np.sqrt(np.mean(np.square(dfl))):.2f} deg, mean {np.mean(dfl):+.2f} deg", flush=True)
        rel = np.array(est).reshape(-1, 2) / truth - 1
        # the pair's own contrast per q row: its frames' speckle variance over P^2 (finite N, pixels), which the
        # analysis replaces by one beta (the speckle-weighted mean over the rows); the map it fits is y_1 c(q) / c_mean
        c = own_contrast(model, d)
        wq = np.where(cm.ok, cm.n_eff, 0.0).sum(axis=1)
        ratio = c / ((c * wq).sum(axis=1, keepdims=True) / wq.sum())
        resp = draw_responses(cm, model, f, flow, np.concatenate([ys * ratio[:, :, None], ys]))[:, :2]
        shift = (resp[:n_maps] - resp[n_maps:]).mean(axis=0) / truth
        slope = np.polyfit(np.sqrt(model.q_edges[:-1] * model.q_edges[1:]) ** 2, np.log(ratio).T, 1)[0]
        print(f"  own contrast over the q rows: ln c slope in (q R0)^2 median {np.median(slope):+.3f} (16-84 % "
              f"{np.percentile(slope, 16):+.3f} to {np.percentile(slope, 84):+.3f}); the fit's linear response to "
              f"y_1 c(q)/c_mean against y_1, mean over the draws: gamma L {100 * shift[0]:+.2f} %, D2 {100 * shift[1]:+.2f} %",
              flush=True)
        # the mean map's offset from the model at the truth (R_s held at the prior centre, as the fit), propagated
        y_mod = model.y(a.gamma_l, a.d2, 0.15, flow)
        at_truth = dataclasses.replace(f, gamma_l=type(f.gamma_l)(a.gamma_l, 0.0), d2=type(f.d2)(a.d2, 0.0),
                                       beta=type(f.beta)(1.0, 0.0))
        lin = draw_responses(dataclasses.replace(cm, beta=1.0, beta_err=0.0), model, at_truth, flow,
                             np.stack([ys.mean(axis=0), y_mod]))  # response to the mean map minus that to the model
        lin_rel = (lin[0, :2] - lin[-1, :2]) / truth
        se = rel.std(axis=0, ddof=1) / np.sqrt(len(rel)) if len(rel) > 1 else np.full(2, np.nan)
        fits = "" if not len(rel) else (
            f"gamma L bias {100 * rel[:, 0].mean():+.2f} +- {100 * se[0]:.2f} % (median {100 * np.median(rel[:, 0]):+.2f} %, "
            f"std {100 * rel[:, 0].std():.1f} %), D2 bias {100 * rel[:, 1].mean():+.2f} +- {100 * se[1]:.2f} % (median "
            f"{100 * np.median(rel[:, 1]):+.2f} %, std {100 * rel[:, 1].std():.1f} %); ")
        print(f"R_s {rs:.2f}: {len(rel)} configurations fitted, {n_maps} mapped, " + fits + f"linear response to E[y_1] - y_model: gamma L {100 * lin_rel[0]:+.2f} %, "
              f"D2 {100 * lin_rel[1]:+.2f} % (max |E[y_1] - y_model| {np.nanmax(np.abs(ys.mean(axis=0) - y_mod)[cm.ok]):.4f}) "
              f"[{time.perf_counter() - t0:.0f} s]", flush=True)


def own_contrast(model, d):
    """Each draw's own speckle contrast per q bin centre relative to the instrument's: sqrt(V V') / (P P') with V the
    speckle variance of a frame (:func:`shearcorr.experiment.pairtransfer.frame_variance`, the model's transfer) and
    P = sum u V^2 F^2; shape (K, n_q). For a coherent beam with point pixels 1 - sum w^4 / (sum w^2)^2 per frame."""
    from shearcorr.experiment.pairtransfer import lag_matrix

    T = model_transfer(model)
    qc = np.sqrt(model.q_edges[:-1] * model.q_edges[1:])
    out = np.empty((d.x.shape[0], qc.size))
    for k in range(d.x.shape[0]):
        vals = []
        for x, y in ((d.x[k], d.y[k]), (d.xa[k], d.ya[k])):
            u = d.beam.intensity(x, y)
            lit = u > 0
            W = (sphere_volume(d.radius[k][lit]) ** 2 * u[lit])[:, None] * form_factor(d.radius[k][lit][:, None] * qc) ** 2
            t = np.ones((lit.sum(),) * 2) if T is None else lag_matrix(T, x[lit], y[lit])
            vals.append((np.einsum("iq,iq->q", W, (t * t) @ W) - np.sum(W * W, axis=0)) / W.sum(axis=0) ** 2)
        out[k] = np.sqrt(vals[0] * vals[1])
    return out


def binning_study(a):
    """Is the configuration term of two points per bin that of the data's bin average? One pair is rendered and
    analysed told the instrument (bins, weights, model); ``--draws`` configurations over the R_s prior at the true
    (gamma L, D2) are mapped twice: as :func:`fit_pair`'s term does (:func:`.model.configuration_maps`, each bin's
    centre q and two azimuths) and as the data are (:func:`oracle_map`: y_1 at every ``--stride``-th valid pixel,
    averaged over each bin). Printed: the rms difference of the maps against their spread, and the std of the
    linearised (gamma L, D2) response (:func:`draw_responses`, what the sandwich propagates) of each."""
    from types import SimpleNamespace

    from shearcorr.experiment.model import configuration_maps, draw_configurations, rs_levels

    params = SystemParams(150.0, a.rs, a.d2, a.gamma_l, beam_size=800.0)
    flow = np.radians(a.flow)
    p, cm, model, f = _analysed_pair(a, params, a.seed)
    t0 = time.perf_counter()
    d = draw_configurations(model, a.gamma_l, a.d2, rs_levels(a.draws, 0.3), a.draws, a.seed + 1)
    two = configuration_maps(model, d, flow)
    sub = np.zeros_like(p.mask)
    sub[::a.stride, ::a.stride] = True
    T = model_transfer(model)
    pix = np.empty_like(two)
    for k in range(a.draws):
        cfg = SimpleNamespace(x=d.x[k], y=d.y[k], x_after=d.xa[k], y_after=d.ya[k], radius=d.radius[k],
                              illumination_before=d.beam.intensity(d.x[k], d.y[k]),
                              illumination_after=d.beam.intensity(d.xa[k], d.ya[k]))
        pix[k] = oracle_map(cfg, p.geometry, p.mask & sub, cm, flow, T)
    ok = cm.ok
    diff = (two - pix)[:, ok]
    dev = pix[:, ok] - pix[:, ok].mean(axis=0)
    print(f"{a.draws} configurations (gamma L {a.gamma_l}, D2 {a.d2}, R_s over U(0, 0.3)), {int(ok.sum())} bins: rms "
          f"(two points - pixel average) {np.sqrt(np.mean(diff**2)):.4f} (mean {diff.mean():+.4f}) against the spread of "
          f"the pixel-averaged maps {np.sqrt(np.mean(dev**2)):.4f}; rms spread of the two-point maps "
          f"{np.sqrt(np.mean((two[:, ok] - two[:, ok].mean(axis=0))**2)):.4f} [{time.perf_counter() - t0:.0f} s]")
    for label, ys in (("two points per bin (fit_pair)", two), ("pixel average (the data)", pix)):
        r = draw_responses(cm, model, f, flow, ys)[:, :2]
        print(f"  {label:30s}: configuration std of gamma L {r[:, 0].std(ddof=1):.3f}, D2 {r[:, 1].std(ddof=1):.4f}",
              flush=True)


def _config_contrast(cfg, model):
    """The configuration's own speckle contrast per q row under the model's transfer (:func:`own_contrast` of one
    rendered configuration), shape (n_q,)."""
    from types import SimpleNamespace

    from shearcorr.beam import Beam

    beam = (model.beam if model.beam is not None else Beam()).resolved(model.beam_size)
    d = SimpleNamespace(x=cfg.x[None], y=cfg.y[None], xa=cfg.x_after[None], ya=cfg.y_after[None],
                        radius=cfg.radius[None], beam=beam)
    return own_contrast(model, d)[0]


def speckle_bias_study(a):
    """Where the speckle part of a pair's bias comes from: the map estimator, the self-calibrated contrast, or the
    data-dependent weights (docs/experiment.md, "The D2 bias of one pair").

    ``--configs`` pairs of one parameter set are rendered with the instrument of the options and mapped as ``analyze``
    does (flow fixed). Per pair the oracle y_1 of its configuration (:func:`oracle_map`) and the configuration's own
    contrast per q row c_r (:func:`own_contrast`) give the map the estimator should average to, contrast * c_r * y_1,
    and the true contrast beta_true = contrast * (sum_r n_r c_r / sum_r n_r) (n_r the row's independent speckles,
    the analysis' weights). Printed: the contrast estimate against beta_true; per q row the mean over the pairs of
    (C - 1) - contrast c_r y_1 (the map estimator's bias) against its signal; and fits (flow fixed, no configuration
    term) of each pair's map (A) as the analysis does, (B) with beta fixed at beta_true, (C) with the weights of the
    ensemble (var_u, var_d and the correlation area averaged over the pairs: weights that do not follow the pair's own
    fluctuations), (D) both; and of the oracle map (O), each as the mean relative bias of gamma L and D2 against the
    truth with its standard error; (E, F, G) the ensemble's var_u, var_d or correlation area alone; for (A) also the
    linear shift of the estimates by the map's deviation from its expectation, with the pair's own weights (what
    weights that follow the data add; zero on average for weights independent of the data and an unbiased map).
    ``--variants`` picks the fits. The raw maps are pickled to ``--save``; ``--load`` refits them
    (:func:`speckle_bias_report`; the fits use the code of the day, the maps that of the run)."""
    import pickle

    params = SystemParams(150.0, a.rs, a.d2, a.gamma_l, beam_size=800.0)
    flow = np.radians(a.flow)
    beam = _options_beam(a, params)
    rows = []
    t0 = time.perf_counter()
    model = None
    for k in range(a.configs):
        seed = a.seed + k
        p, cm, model, f = _analysed_pair(a, params, seed, n_configs=0)
        sub = np.zeros_like(p.mask)
        sub[::a.stride, ::a.stride] = True
        cfg = pair_configuration(params, seed, beam)
        yo = oracle_map(cfg, p.geometry, p.mask & sub, cm, flow, model_transfer(model))
        rows.append({"cm": cm, "yo": yo, "c_row": _config_contrast(cfg, model), "seed": seed})
        print(f"{k:2d} gl {f.gamma_l.value:6.2f} d2 {f.d2.value:.3f} beta {cm.beta:.4f} +- {cm.beta_err:.4f} "
              f"[{time.perf_counter() - t0:.0f}s]", flush=True)
        if a.save:
            with open(a.save, "wb") as fh:
                pickle.dump({"rows": rows, "args": vars(a)}, fh)
    speckle_bias_report(rows, model, a)


class _Pass1Errors:
    """A correlation map whose errors are always those of the fit's pass 1 (the variance law at c = 0, the same for all
    bins of a row): the fit without the variance law's dependence on the predicted correlation."""

    def __init__(self, cm):
        self._cm = cm

    def __getattr__(self, name):
        return getattr(self._cm, name)

    def errors(self, c):
        return self._cm.errors(np.zeros_like(c))


def _rel(est, truth):
    r = np.asarray(est) / truth - 1
    return f"{100 * r.mean():+.2f} +- {100 * r.std(ddof=1) / np.sqrt(len(r)):.2f} %"


def speckle_bias_report(rows, model, a):
    """The printout of :func:`speckle_bias_study` from its rows (maps, oracle maps, own contrasts)."""
    flow = np.radians(a.flow)
    truth = np.array([a.gamma_l, a.d2])
    cms = [r["cm"] for r in rows]
    ok_all = np.all([cm.ok for cm in cms], axis=0)
    # the contrast: estimate against the configuration's own (weights: the rows' independent speckles)
    bt = []
    for r in rows:
        w = np.where(r["cm"].ok, r["cm"].n_eff, 0.0).sum(axis=1)
        bt.append(a.contrast * np.sum(w * r["c_row"]) / w.sum())
    bt = np.array(bt)
    bs = np.array([cm.beta for cm in cms])
    print(f"contrast: estimated / true - 1 = {_rel(bs, bt)} (true {bt.mean():.4f}, rms reported error "
          f"{np.sqrt(np.mean([cm.beta_err**2 for cm in cms])):.4f}, rms actual {np.sqrt(np.mean((bs - bt)**2)):.4f})")
    # the map estimator's bias per q row: (C - 1) - contrast c_r y_1 averaged over the usable bins and the pairs
    resid = np.array([(r["cm"].C - 1) - a.contrast * r["c_row"][:, None] * r["yo"] for r in rows])
    sig = np.array([a.contrast * r["c_row"][:, None] * r["yo"] for r in rows])
    print("q row: q R0, pairs' mean of <(C-1) - beta_r y1>_row (se), mean <beta_r y1>_row, ratio; bins on the strip (y1 > 0.2): same")
    for i in range(resid.shape[1]):
        o = ok_all[i]
        if not o.any():
            continue
        rm = resid[:, i, o].mean(axis=1)
        sm = sig[:, i, o].mean(axis=1)
        strip = np.array([r["yo"][i] > 0.2 for r in rows]) & o[None, :]
        rs_ = np.array([resid[k, i, strip[k]].mean() if strip[k].any() else np.nan for k in range(len(rows))])
        ss_ = np.array([sig[k, i, strip[k]].mean() if strip[k].any() else np.nan for k in range(len(rows))])
        g = np.isfinite(rs_)
        print(f"  {model.q_edges[i] * 0 + np.sqrt(model.q_edges[i] * model.q_edges[i + 1]):.3f}: {rm.mean():+.5f} "
              f"({rm.std(ddof=1) / np.sqrt(len(rm)):.5f}), {sm.mean():.5f}, {rm.mean() / sm.mean():+.3f} | strip "
              f"{rs_[g].mean():+.5f} ({rs_[g].std(ddof=1) / np.sqrt(max(g.sum(), 1)):.5f}), {ss_[g].mean():.5f}, "
              f"{rs_[g].mean() / ss_[g].mean():+.3f}", flush=True)
    # fits
    ens = {name: np.nanmean([getattr(cm, name) for cm in cms], axis=0) for name in ("var_u", "area", "var_d")}
    variants = {"A as analyze": lambda cm, b: cm,
                "B beta true": lambda cm, b: dataclasses.replace(cm, beta=b, beta_err=0.0),
                "C ensemble weights": lambda cm, b: dataclasses.replace(cm, **ens),
                "D beta true + ensemble weights": lambda cm, b: dataclasses.replace(cm, beta=b, beta_err=0.0, **ens),
                "E ensemble var_u (kappa)": lambda cm, b: dataclasses.replace(cm, var_u=ens["var_u"]),
                "F ensemble var_d (V_r)": lambda cm, b: dataclasses.replace(cm, var_d=ens["var_d"]),
                "G ensemble area": lambda cm, b: dataclasses.replace(cm, area=ens["area"])}
    variants["P pass-1 weights (errors at c = 0)"] = lambda cm, b: _Pass1Errors(cm)
    # the oracle maps: (O) y_1 itself with beta = 1; (Q) the map the estimator should average to, contrast c_r y_1,
    # with beta fixed at the true contrast (the same variance law and weights as the data's fit at beta_true: B - Q is
    # the map's noise alone, Q - truth the configuration with the pair's weights)
    variants["O oracle"] = lambda cm, b, r: dataclasses.replace(cm, C=1.0 + np.where(cm.ok, r["yo"], np.nan), beta=1.0,
                                                                 beta_err=0.0)
    variants["Q oracle x contrast, beta true"] = lambda cm, b, r: dataclasses.replace(
        cm, C=1.0 + np.where(cm.ok, a.contrast * r["c_row"][:, None] * r["yo"], np.nan), beta=b, beta_err=0.0)
    ests = {}
    t0 = time.perf_counter()
    # a lower-case letter: the same fit with the flow fitted (start: the analysis' scan over [0, pi)), as the
    # instrument study of bench_analyze.py does; upper case: the flow fixed at the truth
    todo = [(name, make, free) for name, make in variants.items() for free in (False, True)
            if (name[0].lower() if free else name[0]) in a.variants]
    for name, make, free in todo:
        key = name[0].lower() if free else name[0]
        est, lin, dfl = [], [], []
        for r, b in zip(rows, bt):
            cm_v = make(r["cm"], b, r) if name[0] in "OQ" else make(r["cm"], b)
            fo = (fit_pair(cm_v, model, fit_flow=True, n_configs=0) if free
                  else fit_pair(cm_v, model, phi0=flow, fit_flow=False, n_configs=0))
            est.append((fo.gamma_l.value, fo.d2.value))
            dfl.append(np.degrees((fo.flow_angle.value - flow + np.pi / 2) % np.pi - np.pi / 2))
            if name[0] in "OQ":
                continue
            if key == "A":  # the fit's linear response to the map's deviation from its expectation
                expect = a.contrast * r["c_row"][:, None] * r["yo"]
                ys = np.stack([(r["cm"].C - 1) / fo.beta.value, expect / fo.beta.value])
                resp = draw_responses(r["cm"], model, fo, flow, ys)[:, :2]
                lin.append(resp[1] - resp[0])  # draw_responses gives minus the Gauss-Newton shift
        est = ests[key] = np.array(est)
        label = f"{key} {name[2:]}" + (", flow fitted" if free else "")
        print(f"{label:40s}: gamma L {_rel(est[:, 0], truth[0])}, D2 {_rel(est[:, 1], truth[1])}"
              + (f"; flow error rms {np.sqrt(np.mean(np.square(dfl))):.2f} deg" if free else "")
              + f" [{time.perf_counter() - t0:.0f} s]", flush=True)
        if lin:
            lin = np.array(lin) / truth
            se = lin.std(axis=0, ddof=1) / np.sqrt(len(lin))
            print(f"  linear shift by (C - 1) - contrast c_r y_1 (the pair's weights): gamma L {100 * lin[:, 0].mean():+.2f} +- {100 * se[0]:.2f} %, "
                  f"D2 {100 * lin[:, 1].mean():+.2f} +- {100 * se[1]:.2f} %; its correlation with the fit's "
                  f"(A - truth) over the pairs: D2 {np.corrcoef(lin[:, 1], est[:, 1])[0, 1]:+.2f}", flush=True)
    # paired differences on the same maps (the configuration's scatter cancels): relative to the truth
    print("paired differences (mean of (x - y)/truth +- its standard error over the pairs):")
    for x, y in (("A", "Q"), ("B", "Q"), ("A", "B"), ("Q", "O"), ("C", "A"), ("a", "A"), ("o", "O"), ("q", "Q"),
                 ("b", "B"), ("a", "q"), ("A", "P"), ("P", "Q"), ("p", "q")):
        if x in ests and y in ests:
            d = (ests[x] - ests[y]) / truth
            se = d.std(axis=0, ddof=1) / np.sqrt(len(d))
            print(f"  {x} - {y}: gamma L {100 * d[:, 0].mean():+.2f} +- {100 * se[0]:.2f} %, D2 {100 * d[:, 1].mean():+.2f} "
                  f"+- {100 * se[1]:.2f} %", flush=True)


def term_cost(repeats=3):
    """CPU of the configuration term (128 maps of ``configuration_samples`` on the analysis' default 16 x 36 bins) for
    the coherent beam with point pixels (the coherent formula), with the pixels of 2.5 pixels per speckle, and with
    partial coherence (xi = L and 0.3 L) and those pixels (``experiment.pairtransfer``); medians of ``repeats``."""
    from shearcorr.beam import Beam
    from shearcorr.experiment.model import BinnedPairModel, rs_levels
    from shearcorr.pixels import PixelResponse

    L = 800.0
    dq = 2 * np.pi / L / 2.5
    pix = PixelResponse((dq, 0.0), (0.0, -dq))
    cases = {"coherent, point pixels": {}, "coherent, pixels": {"pixel": pix},
             "xi = L, pixels": {"beam": Beam("square", L, (L, L)), "pixel": pix},
             "xi = 0.3 L, pixels": {"beam": Beam("square", L, (0.3 * L, 0.3 * L)), "pixel": pix}}
    for name, kw in cases.items():
        m = BinnedPairModel(np.geomspace(0.06, 1.3, 17), np.linspace(0, np.pi, 37), beam_size=L, flow_angle=0.3, **kw)
        configuration_samples(m, 15.0, 1.2, rs_levels(4, 0.3), 0.3, n_samples=4, seed=0)  # compile / warm up
        ts = []
        for r in range(repeats):
            c0 = time.process_time()
            configuration_samples(m, 15.0, 1.2, rs_levels(128, 0.3), 0.3, n_samples=128, seed=r)
            ts.append(time.process_time() - c0)
        print(f"configuration term, {name:24s}: {np.median(ts):.2f} s CPU per 128 maps", flush=True)


def _study_draws(seed, n):
    """The first ``n`` parameter draws of the coherent instrument study (``bench_analyze.py --instrument --seed SEED``):
    (gamma L, D2, R_s, flow deg, contrast, px per speckle, coherence, beam) each."""
    import argparse as _ap
    import sys

    sys.path.insert(0, __file__.rsplit("/", 1)[0])
    from bench_analyze import instrument_draws

    opts = _ap.Namespace(seed=seed, pairs=n, beam_width=[1.0], contrast_range=(0.2, 0.5), speckle_px_range=(2.2, 3.2),
                         coherence_range=(0.0, 0.0), coherence_axes="both", beam_profile="square", beam_size=800.0,
                         plane="1-2", gap=2000.0)
    return list(instrument_draws(opts))


def _analysed_study_pair(a, seed, idx, draw, **options):
    """Pair ``idx`` of the instrument study of ``seed`` (its ``draw``) rendered and analysed told right, as the study
    does (``--pixel-subsamples``; ``options`` add to its AnalysisOptions); returns the parameters, the pair, the
    analysis and what it gave ``fit_pair``: its map, model and fit (``fit_pair`` wrapped for the call only)."""
    gl, d2, rs, fl, beta, spx, _, beam = draw
    params = SystemParams(150.0, rs, d2, gl, beam_size=800.0)
    captured = {}
    orig = an.fit_pair

    def spy(cm, model, **kw):
        f = orig(cm, model, **kw)
        captured.update(cm=cm, model=model, fit=f)
        return f

    an.fit_pair = spy
    try:
        p = render_pair(params, flow_angle_deg=fl, contrast=beta, counts=10.0, shape=(a.size, a.size), seed=seed + idx,
                        dq=2 * np.pi / 800.0 / spx, beam=beam, pixel_subsamples=a.pixel_subsamples)
        r = analyze(p.before, p.after, p.geometry, options=AnalysisOptions(
            mask=p.mask, plots=False, n_l2=150.0, pixel_integration=a.pixel_subsamples > 1, **options))
    finally:
        an.fit_pair = orig
    return params, p, r, captured["cm"], captured["model"], captured["fit"]


def study_pair(a):
    """One pair of a coherent instrument study (``bench_analyze.py --instrument --seed SEED``, pair INDEX; the study's
    draws, 3^2 sub-pixels by default here via ``--pixel-subsamples``), told right: where its error comes from.

    Printed: the analysis (value, std, its speckle / conditioned / marginal configuration parts); the fit of the oracle
    map (the configuration's exact y_1 under the model's transfer, flow fixed at the truth: the configuration part);
    the data refitted with the flow fixed at the truth; the configuration's realised non-affine steps weighted by
    V^2 F^2(qR) of the particles lit in both frames (rms per axis) and its effective number of scatterers; the
    independent speckles per q row; and ``--draws`` single-configuration maps at the truth with R_s known, fitted
    noise-free as the pair (flow fixed): the spread the configuration term should have at the truth."""
    from shearcorr.experiment.model import configuration_maps, draw_configurations

    seed, idx = a.study_pair
    draw = _study_draws(seed, idx + 1)[idx]
    gl, d2, rs, fl, beta, spx, _, beam = draw
    print(f"pair {idx} of seed {seed}: gamma L {gl:.2f}, D2 {d2:.3f}, R_s {rs:.3f}, flow {fl:.1f} deg, contrast {beta:.2f}, "
          f"{spx:.2f} px/speckle, {a.pixel_subsamples}^2 sub-pixels", flush=True)
    params, p, r, cm, model, f = _analysed_study_pair(a, seed, idx, draw, condition_profile=True)
    flow = np.radians(fl)
    print(f"analysis: gamma L {f.gamma_l.value:.2f} +- {f.gamma_l.std:.2f} (speckle {f.std_speckle[0]:.2f}, configuration "
          f"{f.std_configuration[0]:.2f} conditioned / {f.std_configuration_marginal[0]:.2f} marginal), D2 {f.d2.value:.3f} +- "
          f"{f.d2.std:.3f} (speckle {f.std_speckle[1]:.3f}, configuration {f.std_configuration[1]:.3f} / "
          f"{f.std_configuration_marginal[1]:.3f}); flow error {(r.flow_angle_deg.value - fl + 90) % 180 - 90:+.1f} deg "
          f"(std {r.flow_angle_deg.std:.1f}); chi2_red {f.chi2_red:.2f}", flush=True)
    cfg = pair_configuration(params, seed + idx, beam)
    yo = oracle_map(cfg, p.geometry, p.mask, cm, flow, model_transfer(model))
    cmo = dataclasses.replace(cm, C=1.0 + np.where(cm.ok, yo, np.nan), beta=1.0, beta_err=0.0)
    kw = dict(phi0=flow, fit_flow=False, n_configs=0, grid_gamma=(f.gamma_l.value,), grid_d2=(f.d2.value,))
    fo, fx = fit_pair(cmo, model, **kw), fit_pair(cm, model, **kw)
    print(f"oracle map (the configuration part), flow at the truth: gamma L {fo.gamma_l.value:.2f}, D2 {fo.d2.value:.3f}; "
          f"the data with the flow at the truth: gamma L {fx.gamma_l.value:.2f}, D2 {fx.d2.value:.3f}", flush=True)
    both = (cfg.illumination_before > 0) & (cfg.illumination_after > 0)
    dx = (cfg.x_after - cfg.x - gl / 800.0 * cfg.y)[both]
    dy = (cfg.y_after - cfg.y)[both]
    for q in (0.2, 0.4):
        w = (sphere_volume(cfg.radius) ** 2 * form_factor(q * cfg.radius) ** 2
             * np.sqrt(cfg.illumination_before * cfg.illumination_after))[both]
        print(f"q R0 = {q}: realised non-affine step, rms per axis weighted by V^2 F^2: {np.sqrt((w * (dx**2 + dy**2)).sum() / (2 * w.sum())):.3f} "
              f"(unweighted {np.sqrt(np.mean((dx**2 + dy**2) / 2)):.3f}); effective scatterers {w.sum()**2 / (w**2).sum():.1f} "
              f"of {int(both.sum())}", flush=True)
    print("q R0 of the rows: " + " ".join(f"{v:.2f}" for v in cm.q) + "\nindependent speckles per row: "
          + " ".join(f"{v:.0f}" for v in np.where(cm.ok, cm.n_eff, 0.0).sum(axis=1)), flush=True)
    if a.draws > 0:
        t0 = time.perf_counter()
        ys = configuration_maps(model, draw_configurations(model, gl, d2, rs, a.draws, seed + 1), flow)
        est = np.array([(lambda fo_: (fo_.gamma_l.value, fo_.d2.value))(
            fit_pair(dataclasses.replace(cm, C=1.0 + np.where(cm.ok, y, np.nan), beta=1.0, beta_err=0.0), model, phi0=flow,
                     fit_flow=False, n_configs=0, grid_gamma=(gl,), grid_d2=(d2,))) for y in ys])
        for j, name in enumerate(("gamma L", "D2")):
            x = est[:, j]
            print(f"{a.draws} configurations at the truth, R_s known, fitted noise-free: {name} std {x.std(ddof=1):.3f}, "
                  f"mean {x.mean():.3f}, range {x.min():.3f}-{x.max():.3f}, 2.5/50/97.5 % "
                  f"{' / '.join(f'{v:.3f}' for v in np.percentile(x, [2.5, 50, 97.5]))} [{time.perf_counter() - t0:.0f} s]",
                  flush=True)


def correction_check(a):
    """The second-order bias correction of ``fit_pair`` on the fit of the flow (docs/experiment.md, "The second-order
    bias correction"). One pair of the parameter set is rendered and analysed (its map, weights and model); then
    ``--configs`` single-configuration maps at the truth (:func:`.model.configuration_maps`) x the fitted contrast plus
    Gaussian noise of the stated errors at each map are fitted with the flow fixed at the truth and fitted, each with
    the default configuration term (R_s over its prior, or known with ``--rs-known``). Prints per map and the means
    (standard errors over the maps) of the bias with the flow fixed and fitted, corrected and not, and the paired
    differences fitted - fixed (like with like), against the mean predicted bias."""
    from shearcorr.experiment.model import configuration_maps, draw_configurations

    flow, cm, model, f = _reference_pair(a)
    ys = configuration_maps(model, draw_configurations(model, a.gamma_l, a.d2, a.rs, a.configs, a.seed + 1), flow)
    rng = np.random.default_rng(a.seed + 2)
    kw = dict(rs_min=a.rs, rs_max=a.rs) if a.rs_known else {}
    rows = []
    for k, y in enumerate(ys):
        c0 = f.beta.value * y
        C = 1.0 + np.where(cm.ok, c0 + cm.errors(c0) * rng.standard_normal(c0.shape), np.nan)
        cmk = dataclasses.replace(cm, C=C)
        fx = fit_pair(cmk, model, phi0=flow, fit_flow=False, seed=k, **kw)
        ff = fit_pair(cmk, model, fit_flow=True, seed=k, **kw)
        bx, b = fx.bias_correction, ff.bias_correction
        ferr = np.degrees(wrap_half(ff.flow_angle.value - flow))
        rows.append([fx.gamma_l.value, fx.d2.value, fx.gamma_l.value + bx["gamma_l"] * bx["applied"],
                     fx.d2.value + bx["d2"] * bx["applied"], ff.gamma_l.value, ff.d2.value,
                     ff.gamma_l.value + b["gamma_l"] * b["applied"], ff.d2.value + b["d2"] * b["applied"],
                     b["gamma_l"], b["d2"], float(b["applied"]), ferr, np.degrees(ff.flow_angle.std), bx["gamma_l"]])
        print(f"{k:3d}: flow fixed {fx.gamma_l.value:6.2f} {fx.d2.value:5.3f} | fitted {ff.gamma_l.value:6.2f} "
              f"{ff.d2.value:5.3f}, bias {b['gamma_l']:+.3f} {b['d2']:+.4f} {np.degrees(b['flow']):+.2f} deg, applied "
              f"{b['applied']}; flow error {ferr:+5.1f} deg (std {np.degrees(ff.flow_angle.std):4.1f})", flush=True)
    R = np.array(rows)
    tr = np.array([a.gamma_l, a.d2])

    def ms(x):
        return f"{100 * x.mean():+.2f} +- {100 * x.std(ddof=1) / np.sqrt(len(x)):.2f} %"

    for lab, cols in (("flow fixed, corrected", (0, 1)), ("flow fixed, uncorrected", (2, 3)),
                      ("flow fitted, corrected", (4, 5)), ("flow fitted, uncorrected", (6, 7))):
        print(f"{lab}: gamma L {ms(R[:, cols[0]] / tr[0] - 1)}, D2 {ms(R[:, cols[1]] / tr[1] - 1)}")
    print(f"paired, fitted - fixed flow: uncorrected gamma L {ms((R[:, 6] - R[:, 2]) / tr[0])}, D2 {ms((R[:, 7] - R[:, 3]) / tr[1])}; "
          f"corrected gamma L {ms((R[:, 4] - R[:, 0]) / tr[0])}, D2 {ms((R[:, 5] - R[:, 1]) / tr[1])}")
    app = R[:, 10] > 0
    print(f"predicted bias, flow fitted: gamma L {100 * np.mean(R[:, 8]) / tr[0]:+.2f} %, D2 {100 * np.mean(R[:, 9]) / tr[1]:+.2f} %"
          f" (flow fixed: gamma L {100 * np.median(R[:, 13]) / tr[0]:+.2f} % median); applied {int(app.sum())} of {len(R)}; "
          f"flow error rms {np.sqrt(np.mean(R[:, 11] ** 2)):.1f} deg, median std {np.median(R[:, 12]):.1f} deg", flush=True)


def correction_study(a):
    """Why the bias correction over-shoots on hard pairs (``--correction-study``; docs/experiment.md, "The second-order
    bias correction of the pair fit"). One pair of the parameter set is rendered and analysed (its map, weights and
    model); then ``--configs`` maps, each a single configuration at the truth -- R_s of each drawn from the prior
    U(0, 0.3) with ``--rs-draw`` (as a study's pairs), else ``--rs`` -- x the fitted contrast plus Gaussian noise of the
    stated errors, the deviation from the ensemble map scaled by ``--noise-scale`` (does the expansion hold?), or with
    ``--gauss-config`` the configuration deviation replaced by a Gaussian of the same covariance (``--n-samples`` draws at
    the truth; is it the noise's law? only the marginal columns then mean anything: the maps have no configuration whose
    profile the conditioned fit could use). Each map is fitted with the flow fixed at the truth and fitted, the correction's
    configuration noise marginal over the R_s prior (the default) and conditioned on the configuration's own profile
    (slope noise ``--slope-err``). Printed: per map, then the mean (standard error) of the flow part fitted - fixed and
    of each fit against the truth, uncorrected, predicted and corrected, for both noises."""
    from shearcorr.experiment.model import configuration_maps, configuration_profiles, draw_configurations

    flow, cm, model, f = _reference_pair(a)
    t0 = time.perf_counter()
    rng = np.random.default_rng(a.seed + 2)
    rs_k = rng.uniform(0.0, 0.3, a.configs) if a.rs_draw else np.full(a.configs, a.rs)
    draws = draw_configurations(model, a.gamma_l, a.d2, rs_k, a.configs, a.seed + 1)
    ys, prof = configuration_maps(model, draws, flow), configuration_profiles(model, draws)
    if a.gauss_config:
        ref = configuration_maps(model, draw_configurations(model, a.gamma_l, a.d2, a.rs, a.n_samples, a.seed + 3), flow)
        Lg = (ref - ref.mean(axis=0)) / np.sqrt(len(ref) - 1)
        ys = ref.mean(axis=0) + np.tensordot(rng.standard_normal((a.configs, len(ref))), Lg, axes=1)
    tr = np.array([a.gamma_l, a.d2])
    rows = []
    for k, y in enumerate(ys):
        ymod = model.y(a.gamma_l, a.d2, rs_k[k], flow)
        c0 = f.beta.value * (ymod + a.noise_scale * (y - ymod))
        C = 1.0 + np.where(cm.ok, c0 + a.noise_scale * cm.errors(f.beta.value * y) * rng.standard_normal(c0.shape), np.nan)
        cmk = dataclasses.replace(cm, C=C)
        row = [rs_k[k]]
        for kw in ({}, dict(profile=prof[k], profile_slope_err=a.slope_err)):
            fx = fit_pair(cmk, model, phi0=flow, fit_flow=False, seed=k, **kw)
            ff = fit_pair(cmk, model, fit_flow=True, seed=k, **kw)
            for g in (fx, ff):
                b = g.bias_correction
                u = [g.gamma_l.value + b["gamma_l"] * b["applied"], g.d2.value + b["d2"] * b["applied"]]
                row += [*u, b["gamma_l"], b["d2"], float(b["applied"])]
            row += [np.degrees(wrap_half(ff.flow_angle.value - flow)), np.degrees(ff.flow_angle.std)]
        row += [fx.gamma_l.std, ff.gamma_l.std, fx.d2.std, ff.d2.std]  # columns 25-28
        rows.append(row)
        print(f"{k:3d} R_s {rs_k[k]:.3f}: uncorrected fixed {row[1]:6.2f} {row[2]:.3f} fitted {row[6]:6.2f} {row[7]:.3f} | "
              f"bias marginal fixed {row[3]:+.3f} fitted {row[8]:+.3f}, conditioned fixed {row[15]:+.3f} fitted {row[20]:+.3f}"
              f" | flow err {row[11]:+5.1f} (std {row[12]:4.1f}) [{time.perf_counter() - t0:.0f}s]", flush=True)
        if a.save:
            np.save(a.save, np.array(rows))
        if (k + 1) % 10 == 0 or k == len(ys) - 1:
            correction_study_report(np.array(rows), tr)


def correction_study_report(R, tr):
    """Summary of :func:`correction_study` rows (mean +- standard error over the maps, % of the truth)."""
    def ms(x):
        return f"{100 * x.mean():+.2f} +- {100 * x.std(ddof=1) / np.sqrt(len(x)):.2f} %"

    print(f"{len(R)} maps; flow error rms {np.sqrt(np.mean(R[:, 11] ** 2)):.1f} deg, median std {np.median(R[:, 12]):.1f} deg")
    for name, o in (("marginal", 1), ("conditioned", 13)):
        for j, p in enumerate(("gamma L", "D2")):
            ux, uf = R[:, o + j], R[:, o + 5 + j]
            bx, bf = R[:, o + 2 + j] * R[:, o + 4], R[:, o + 7 + j] * R[:, o + 9]
            print(f"  {name:11s} {p:7s}: flow part uncorrected {ms((uf - ux) / tr[j])}, predicted {ms((bf - bx) / tr[j])}, "
                  f"corrected {ms((uf - bf - ux + bx) / tr[j])} | fixed: uncorrected {ms(ux / tr[j] - 1)}, predicted "
                  f"{ms(bx / tr[j])}, corrected {ms((ux - bx) / tr[j] - 1)} | fitted: uncorrected {ms(uf / tr[j] - 1)}, "
                  f"corrected {ms((uf - bf) / tr[j] - 1)}")


def study_split(a):
    """The error of the instrument study's own pairs split into its parts (``--study-split SEED FIRST COUNT``: pairs
    FIRST..FIRST+COUNT-1 of ``bench_analyze.py --instrument --seed SEED``, coherent square, ``--pixel-subsamples``,
    told right; the analysis with the default marginal term).

    Per pair, besides the analysis (flow fitted, as reported): refits of the pair's map with the analysis' model and
    weights law, (A) the data with the flow fitted and (F) fixed at the truth, and of the map the estimator should
    average to, contrast c_r y_1 of the very configuration rendered (:func:`oracle_map`, :func:`own_contrast`) with
    beta fixed at the true contrast, (Q) flow fitted and (R) fixed. So Q - truth is the configuration's part with the
    pair's weights, A - Q the speckles' (the map's noise), A - F and Q - R what fitting the flow adds. Printed per pair
    and, every 10 pairs and at the end, the mean relative bias of each (standard error; 95 % bootstrap interval over
    the pairs) and the paired differences. Rows are appended to ``--save`` (.npy) when given. The refits carry
    ``fit_pair``'s bias correction; with ``--split-configs K`` they also carry the configuration term (K samples), the
    noise the correction needs for the flow's part (0: the correction knows the speckle noise only);
    ``--split-max-ratio X`` keeps only the pairs with gamma L / D2 < X (the poorly determined flows)."""
    seed, first, count = a.study_split
    draws = _study_draws(seed, first + count)
    rows = []
    t0 = time.perf_counter()
    for idx in range(first, first + count):
        gl, d2, rs, fl, beta, spx, _, beam = draws[idx]
        if a.split_max_ratio and gl / d2 >= a.split_max_ratio:
            continue
        params, p, r, cm, model, _ = _analysed_study_pair(a, seed, idx, draws[idx])
        flow = np.radians(fl)
        sub = np.zeros_like(p.mask)
        sub[::a.stride, ::a.stride] = True
        cfg = pair_configuration(params, seed + idx, beam)
        yo = oracle_map(cfg, p.geometry, p.mask & sub, cm, flow, model_transfer(model))
        c_row = _config_contrast(cfg, model)
        w = np.where(cm.ok, cm.n_eff, 0.0).sum(axis=1)
        b_true = beta * np.sum(w * c_row) / w.sum()
        cq = dataclasses.replace(cm, C=1.0 + np.where(cm.ok, beta * c_row[:, None] * yo, np.nan), beta=b_true, beta_err=0.0)
        kc = dict(n_configs=a.split_configs, seed=idx)  # the configuration term: also the noise of the bias correction
        fits = [fit_pair(cm, model, fit_flow=True, **kc), fit_pair(cm, model, phi0=flow, fit_flow=False, **kc),
                fit_pair(cq, model, fit_flow=True, **kc), fit_pair(cq, model, phi0=flow, fit_flow=False, **kc)]
        dfl = [float(np.degrees((f.flow_angle.value - flow + np.pi / 2) % np.pi - np.pi / 2)) for f in (fits[0], fits[2])]
        row = [idx, gl, d2, rs, spx, r.gamma_l.value, r.d2.value, r.gamma_l.std, r.d2.std]
        for f in fits:
            row += [f.gamma_l.value, f.d2.value]
        row += dfl
        if a.draws:  # the expected configuration part at this parameter set: K configurations at the truth (R_s known)
            from shearcorr.experiment.model import configuration_maps, draw_configurations

            ys = configuration_maps(model, draw_configurations(model, gl, d2, rs, a.draws, seed + 100000 + idx), flow)
            ek = np.array([(lambda f_: (f_.gamma_l.value, f_.d2.value))(fit_pair(
                dataclasses.replace(cm, C=1.0 + np.where(cm.ok, b_true * y, np.nan), beta=b_true, beta_err=0.0), model,
                phi0=flow, fit_flow=False, n_configs=0)) for y in ys]) / [gl, d2] - 1  # started as the analysis: the grid
            # the pair's own oracle map (R) refitted from the truth instead of the grid scan: does the start matter?
            f_t = fit_pair(cq, model, phi0=flow, fit_flow=False, n_configs=0, grid_gamma=(gl,), grid_d2=(d2,))
            row += [*ek.mean(axis=0), *ek.std(axis=0, ddof=1), f_t.gamma_l.value, f_t.d2.value]
        rows.append(row)
        print(f"{idx:3d} gl {gl:5.2f} d2 {d2:4.2f} R_s {rs:.3f} {spx:.2f} px | analysis {r.gamma_l.value:6.2f} {r.d2.value:.3f} | "
              f"A {fits[0].gamma_l.value:6.2f} {fits[0].d2.value:.3f} F {fits[1].gamma_l.value:6.2f} {fits[1].d2.value:.3f} | "
              f"Q {fits[2].gamma_l.value:6.2f} {fits[2].d2.value:.3f} R {fits[3].gamma_l.value:6.2f} {fits[3].d2.value:.3f} | "
              f"flow err data {dfl[0]:+.1f} oracle {dfl[1]:+.1f}"
              + (f" | {a.draws} configurations at the truth: gamma L {100 * row[19]:+.1f} % (std {100 * row[21]:.1f}), D2 "
                 f"{100 * row[20]:+.1f} % (std {100 * row[22]:.1f}); R started at the truth {row[23]:6.2f} {row[24]:.3f}"
                 if a.draws else "")
              + f" [{time.perf_counter() - t0:.0f}s]", flush=True)
        if a.save:
            np.save(a.save, np.array(rows))
        if len(rows) % 10 == 0 or idx == first + count - 1:
            split_report(np.array(rows))


def study_redraw(a):
    """Is a study pair's configuration error the draw or a mismatch of renderer and model? (``--study-redraw SEED INDEX``,
    ``--draws K``.) Pair INDEX of the coherent instrument study is rendered and analysed told right (``--pixel-subsamples``);
    at its truth (R_s known, flow fixed, beta the pair's contrast) K configurations of the model
    (:func:`.model.draw_configurations`, as the configuration term) and K of the renderer (:func:`.synth.pair_configuration`
    with fresh seeds) are fitted noise-free from the analysis' grid start, the renderer's both as the model's term maps them
    (:func:`.model.configuration_maps`) and as the data average them (:func:`oracle_map`); and the pair's own
    configuration both ways. Printed: the mean relative errors (standard errors)."""
    from shearcorr.experiment.model import ConfigurationDraws, configuration_maps, draw_configurations

    seed, idx = a.study_redraw
    K = a.draws
    draw = _study_draws(seed, idx + 1)[idx]
    gl, d2, rs, fl, beta, spx, _, beam = draw
    params, p, _, cm, model, _ = _analysed_study_pair(a, seed, idx, draw)
    flow = np.radians(fl)
    sub = np.zeros_like(p.mask)
    sub[::a.stride, ::a.stride] = True
    T = model_transfer(model)

    def fit(y):
        c = dataclasses.replace(cm, C=1.0 + np.where(cm.ok, beta * y, np.nan), beta=beta, beta_err=0.0)
        f = fit_pair(c, model, phi0=flow, fit_flow=False, n_configs=0)
        return f.gamma_l.value / gl - 1, f.d2.value / d2 - 1

    print(f"pair {idx} of seed {seed}: gamma L {gl:.2f}, D2 {d2:.2f}, R_s {rs:.3f}, flow {fl:.1f} deg", flush=True)
    d = draw_configurations(model, gl, d2, rs, K, 777)
    e1 = np.array([fit(y) for y in configuration_maps(model, d, flow)])
    cfgs = [pair_configuration(params, 900000 + k, beam) for k in range(K)]
    st = lambda name: np.stack([getattr(c, name) for c in cfgs])  # noqa: E731
    dr = ConfigurationDraws(st("x"), st("y"), st("radius"), st("x_after"), st("y_after"), np.full(K, rs), d.beam)
    e3 = np.array([fit(y) for y in configuration_maps(model, dr, flow)])
    e2 = np.array([fit(oracle_map(c, p.geometry, p.mask & sub, cm, flow, T)) for c in cfgs])
    own = pair_configuration(params, seed + idx, beam)
    d_own = ConfigurationDraws(own.x[None], own.y[None], own.radius[None], own.x_after[None], own.y_after[None],
                               np.full(1, rs), d.beam)
    for name, e in (("model draws, configuration_maps", e1), ("renderer configurations, configuration_maps", e3),
                    ("renderer configurations, oracle_map", e2), ("oracle_map - configuration_maps (same)", e2 - e3)):
        se = e.std(axis=0, ddof=1) / np.sqrt(K)
        print(f"{name:44s}: gamma L {100 * e[:, 0].mean():+.2f} +- {100 * se[0]:.2f} %, D2 {100 * e[:, 1].mean():+.2f} +- "
              f"{100 * se[1]:.2f} %", flush=True)
    print(f"the pair's own configuration: gamma L {100 * fit(oracle_map(own, p.geometry, p.mask & sub, cm, flow, T))[0]:+.2f} % "
          f"(oracle_map), {100 * fit(configuration_maps(model, d_own, flow)[0])[0]:+.2f} % (configuration_maps)", flush=True)


def split_report(R, n_boot=10000, seed=0):
    """Summary of :func:`study_split` rows: mean relative bias (standard error, 95 % bootstrap) of each estimate and
    the paired differences (columns: index, truth gamma L, D2, R_s, px/speckle, analysis gamma L, D2, their stds, then
    (gamma L, D2) of A, F, Q, R, then the flow errors of A and Q in degrees; with ``--draws``: the mean and std of the
    relative errors of the K configurations at the truth (gamma L, D2, gamma L, D2) and R started at the truth)."""
    rng = np.random.default_rng(seed)
    b = rng.integers(0, len(R), (n_boot, len(R)))
    truth = R[:, 1:3]
    est = {"analysis": R[:, 5:7], "A data, flow fitted": R[:, 9:11], "F data, flow at the truth": R[:, 11:13],
           "Q oracle, flow fitted": R[:, 13:15], "R oracle, flow at the truth": R[:, 15:17]}

    def line(rel):
        m = rel.mean(axis=0)
        se = rel.std(axis=0, ddof=1) / np.sqrt(len(rel))
        bm = rel[b].mean(axis=1)
        lo, hi = np.percentile(bm, 2.5, axis=0), np.percentile(bm, 97.5, axis=0)
        return "; ".join(f"{n} {100 * m[j]:+.2f} +- {100 * se[j]:.2f} % [95 %: {100 * lo[j]:+.2f}, {100 * hi[j]:+.2f}]"
                         for j, n in enumerate(("gamma L", "D2")))

    print(f"--- {len(R)} pairs; flow error rms: data {np.sqrt(np.mean(R[:, 17]**2)):.2f} deg, oracle "
          f"{np.sqrt(np.mean(R[:, 18]**2)):.2f} deg")
    for name, e in est.items():
        print(f"  {name:28s}: {line(e / truth - 1)}")
    if R.shape[1] > 19:  # the expected configuration part per pair (K configurations at its truth): the box average
        K = R[:, 19:21]
        print(f"  expected configuration part, flow at the truth (mean of the per-pair means of K configurations at the "
              f"truth): {line(K)}")
        print(f"  R - that expectation (the draws' own scatter): {line(est['R oracle, flow at the truth'] / truth - 1 - K)}")
        if R.shape[1] > 23:
            print(f"  R started at the truth instead of the grid scan: {line(R[:, 23:25] / truth - 1)}")
    for x, y in (("analysis", "A data, flow fitted"), ("A data, flow fitted", "Q oracle, flow fitted"),
                 ("F data, flow at the truth", "R oracle, flow at the truth"), ("A data, flow fitted", "F data, flow at the truth"),
                 ("Q oracle, flow fitted", "R oracle, flow at the truth")):
        print(f"  {x[0]} - {y[0]}: {line((est[x] - est[y]) / truth)}")
    print("", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--term-cost", action="store_true", help="CPU of the configuration term per instrument (term_cost)")
    ap.add_argument("--conditioning", action="store_true", help="the profile-conditioning study (conditioning_study)")
    ap.add_argument("--config-bias", action="store_true", help="bias from the configuration alone (config_bias_study)")
    ap.add_argument("--binning", action="store_true", help="two points per bin against the bin average (binning_study)")
    ap.add_argument("--speckle-bias", action="store_true", help="the speckle part of the bias (speckle_bias_study)")
    ap.add_argument("--study-pair", type=int, nargs=2, metavar=("SEED", "INDEX"),
                    help="one pair of the coherent instrument study of bench_analyze.py: where its error comes from "
                         "(study_pair; --draws configurations at the truth, e.g. 12)")
    ap.add_argument("--study-split", type=int, nargs=3, metavar=("SEED", "FIRST", "COUNT"),
                    help="pairs of the coherent instrument study of bench_analyze.py split into configuration, speckle and "
                         "flow parts (study_split; --save: rows as .npy)")
    ap.add_argument("--study-redraw", type=int, nargs=2, metavar=("SEED", "INDEX"),
                    help="a study pair's parameters re-drawn with the model's and the renderer's configurations (study_redraw; "
                         "--draws K, e.g. 16)")
    ap.add_argument("--split-configs", type=int, default=0, help="--study-split: configuration samples of the refits")
    ap.add_argument("--split-max-ratio", type=float, default=0.0, help="--study-split: only pairs with gamma L / D2 below")
    ap.add_argument("--correction-check", action="store_true", help="the bias correction on the flow fit (correction_check)")
    ap.add_argument("--rs-known", action="store_true", help="--correction-check: fits with R_s known")
    ap.add_argument("--correction-study", action="store_true", help="why the correction over-shoots (correction_study)")
    ap.add_argument("--rs-draw", action="store_true", help="--correction-study: each map's R_s from the prior U(0, 0.3)")
    ap.add_argument("--noise-scale", type=float, default=1.0, help="--correction-study: scale of the maps' noise")
    ap.add_argument("--gauss-config", action="store_true",
                    help="--correction-study: Gaussian configuration noise of the same covariance")
    ap.add_argument("--slope-err", type=float, default=0.016, help="--correction-study: noise of the profile slope")
    ap.add_argument("--split-report", default="", help="print the summary of saved --study-split rows (.npy files, comma-separated)")
    ap.add_argument("--save", default="", help="--speckle-bias: pickle the maps to this file")
    ap.add_argument("--variants", default="ABCDO", help="--speckle-bias: the fits to run (letters of the report)")
    ap.add_argument("--load", default="", help="--speckle-bias: report on the maps of this pickle (same options)")
    ap.add_argument("--rs-levels", type=float, nargs="*", default=[0.05, 0.15, 0.25], help="R_s of --config-bias")
    ap.add_argument("--lin-draws", type=int, default=512, help="--config-bias: maps for the mean map (fits: --draws)")
    ap.add_argument("--fit-flow", action="store_true",
                    help="--config-bias: fit the flow angle too (as the instrument study does); default: fixed at the truth")
    ap.add_argument("--noise-fits", type=int, default=0,
                    help="--config-bias: also fit the model map at the truth plus Gaussian noise of the stated errors")
    ap.add_argument("--draws", type=int, default=None,
                    help="configurations of the conditioning study (default 2048) and of --study-pair (default 12)")
    ap.add_argument("--configs", type=int, default=40)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--gamma-l", type=float, default=10.33)
    ap.add_argument("--d2", type=float, default=1.19)
    ap.add_argument("--rs", type=float, default=0.24)
    ap.add_argument("--flow", type=float, default=30.0, help="flow angle (deg), fixed in the analysis")
    ap.add_argument("--contrast", type=float, default=1.0)
    ap.add_argument("--counts", type=float, default=1e5)
    ap.add_argument("--seed", type=int, default=7000)
    ap.add_argument("--n-samples", type=int, default=256, help="configuration samples of the variants")
    ap.add_argument("--stride", type=int, default=2, help="oracle evaluated on every stride-th pixel per axis")
    ap.add_argument("--coherence", type=float, default=0.0, help="rms coherence length / beam size (0: coherent beam)")
    ap.add_argument("--pixel-subsamples", type=int, default=1,
                    help="sub-pixels per axis of the renderer; > 1: the analysis integrates pixels (told right)")
    ap.add_argument("--speckle-px", type=float, default=2.2, help="pixels per speckle")
    a = ap.parse_args()
    if a.draws is None:
        a.draws = 12 if a.study_pair else 0 if a.study_split else 16 if a.study_redraw else 2048
    if a.study_pair:
        study_pair(a)
        return
    if a.study_redraw:
        study_redraw(a)
        return
    if a.split_report:
        parts = [np.load(f) for f in a.split_report.split(",")]
        n_col = min(x.shape[1] for x in parts)  # the columns all files have (runs without --draws have fewer)
        split_report(np.concatenate([x[:, :n_col] for x in parts]))
        return
    if a.study_split:
        study_split(a)
        return
    if a.correction_check:
        correction_check(a)
        return
    if a.correction_study:
        correction_study(a)
        return
    if a.term_cost:
        term_cost()
        return
    if a.conditioning:
        conditioning_study(a)
        return
    if a.config_bias:
        config_bias_study(a)
        return
    if a.binning:
        binning_study(a)
        return
    if a.speckle_bias and a.load:
        import pickle

        with open(a.load, "rb") as fh:
            rows = pickle.load(fh)["rows"]
        params = SystemParams(150.0, a.rs, a.d2, a.gamma_l, beam_size=800.0)
        speckle_bias_report(rows, _analysed_pair(a, params, rows[0]["seed"], n_configs=0)[2], a)  # the model of the maps
        return
    if a.speckle_bias:
        speckle_bias_study(a)
        return
    params = SystemParams(150.0, a.rs, a.d2, a.gamma_l, beam_size=800.0)
    flow = np.radians(a.flow)
    beam = _options_beam(a, params)
    rows = []
    t0 = time.perf_counter()
    ns = a.n_samples
    rs_u = (np.arange(ns) + 0.5) / ns * 0.3
    ys_truth_u = ys_truth_rs = None
    for k in range(a.configs):
        seed = a.seed + k
        p, cm, model, f = _analysed_pair(a, params, seed)
        sub = np.zeros_like(p.mask)
        sub[::a.stride, ::a.stride] = True
        yo = oracle_map(pair_configuration(params, seed, beam), p.geometry, p.mask & sub, cm, flow, model_transfer(model))
        cmo = dataclasses.replace(cm, C=1.0 + np.where(cm.ok, yo, np.nan), beta=1.0, beta_err=0.0)
        fo = fit_pair(cmo, model, phi0=flow, fit_flow=False, n_configs=0, grid_gamma=(f.gamma_l.value,),
                      grid_d2=(f.d2.value,))
        if ys_truth_u is None:
            ys_truth_u = configuration_samples(model, a.gamma_l, a.d2, rs_u, flow, n_samples=ns, seed=1)
            ys_truth_rs = configuration_samples(model, a.gamma_l, a.d2, a.rs, flow, n_samples=ns, seed=1)
        ys_fit = configuration_samples(model, f.gamma_l.value, f.d2.value, rs_u, flow, n_samples=ns, seed=1)
        v = [conf_sigma(cm, model, f, flow, y) for y in (ys_fit, ys_truth_u, ys_truth_rs)]
        row = [f.gamma_l.value, f.gamma_l.std, f.std_speckle[0], f.std_configuration[0],
               f.d2.value, f.d2.std, f.std_speckle[1], f.std_configuration[1], fo.gamma_l.value, fo.d2.value, f.chi2_red,
               *v[0], *v[1], *v[2]]
        rows.append(row)
        print(f"{k:2d} gl {row[0]:6.2f} +- {row[1]:.2f} (sp {row[2]:.2f}, conf {row[3]:.2f}) oracle {row[8]:6.2f} | "
              f"d2 {row[4]:.3f} +- {row[5]:.3f} (sp {row[6]:.3f}, conf {row[7]:.3f}) oracle {row[9]:.3f} | chi2r {row[10]:.2f}"
              f" | conf gl/d2: fit-{ns} {v[0][0]:.2f}/{v[0][1]:.3f} truth-{ns} {v[1][0]:.2f}/{v[1][1]:.3f} "
              f"truth-rs {v[2][0]:.2f}/{v[2][1]:.3f} [{time.perf_counter() - t0:.0f}s]", flush=True)
    R = np.array(rows)
    np.save(f"/tmp/pair_errors_{a.gamma_l}_{a.d2}_{a.rs}_{a.configs}.npy", R)
    rms = lambda x: float(np.sqrt(np.mean(x**2)))  # noqa: E731
    for j, (name, t, v, s, sp, sc, o) in enumerate((("gamma_l", a.gamma_l, 0, 1, 2, 3, 8), ("d2", a.d2, 4, 5, 6, 7, 9))):
        tot, orac, spk = R[:, v] - t, R[:, o] - t, R[:, v] - R[:, o]
        print(f"{name}: K={len(R)} truth {t}")
        print(f"  total:         empirical std {tot.std(ddof=1):.3f} (mean {tot.mean():+.3f}) vs rms reported {rms(R[:, s]):.3f};"
              f" z std {np.std(tot / R[:, s], ddof=1):.2f}")
        print(f"  configuration: empirical std {orac.std(ddof=1):.3f} (mean {orac.mean():+.3f}) vs rms std_configuration "
              f"{rms(R[:, sc]):.3f}; {ns} samples: at the fit {rms(R[:, 11 + j]):.3f}, at the truth {rms(R[:, 13 + j]):.3f}, "
              f"at the truth with R_s known {rms(R[:, 15 + j]):.3f}")
        print(f"  speckle:       empirical std {spk.std(ddof=1):.3f} (mean {spk.mean():+.3f}) vs rms std_speckle {rms(R[:, sp]):.3f}")
        print(f"  corr(configuration, speckle) {np.corrcoef(orac, spk)[0, 1]:+.2f}")


if __name__ == "__main__":
    main()
