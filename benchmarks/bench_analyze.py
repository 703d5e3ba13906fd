"""Frame-pair analysis: accuracy over synthetic pairs with known truth, and the 1-megapixel timing.

    nice python benchmarks/bench_analyze.py [--pairs 20] [--size 512] [--timing-size 1024] [--series K]

Prints per pair the truth and the estimates, then: flow-angle errors, median relative errors of
gamma_l and d2, z-score spread (std of (estimate - truth)/std; ~1 when the errors are honest), what
R_s does, and the wall and CPU time of one analysis of a timing-size pair (model cached, after a warm-up;
``--timing-repeats`` analyses per model, the point-pixel and the pixel-integrated model interleaved).

Flow-angle bounds per pair (``experiment.synth.flow_oracle`` on the very configuration rendered):
"full" = an observer who knows every particle's position and displacement (no method working from
the frames can do better on average), "disp" = one who knows the displacements only (what the
correlation of a pair contains, before speckle noise). ``--series K`` repeats every parameter set
with K independent pairs (same flow) and analyses them with ``analyze_series`` (joint flow angle);
``--series-mode consecutive`` uses the K consecutive pairs of K + 1 frames of one sheared sample.

The instrument (issue 12, docs/experiment.md "Describe your beamline"): ``--instrument`` renders every
pair with the beam and detector given by ``--beam-profile``, ``--beam-width``, ``--coherence-range``
(rms coherence lengths drawn per pair and axis, in units of the beam size), ``--plane``/``--gap``,
``--speckle-px-range`` (pixels per speckle drawn per pair), ``--pixel-subsamples`` and
``--psf-sigma-px``, and analyses each pair with the model told the instrument ("right") and told it
wrong (``--told``: "point" = point pixels, "paper" = the paper's coherent square beam with point
pixels, "paper-pixels" = the paper's beam with pixels; "right-coherent-term" = told right, but the configuration
term of the pair's error with the coherent formula, as before the coherence and the pixels entered it). The
timing compares the default analysis (pixel integration) with ``pixel_integration=False`` (the model of the previous
versions) in one run.
"""

import argparse
import contextlib
import os
import resource
import tempfile
import time

import numpy as np

from shearcorr.beam import Beam
from shearcorr.experiment import AnalysisOptions, PairFrames, analyze, analyze_series, render_pair
from shearcorr.experiment.synth import flow_oracle, pair_configuration, render_series
from shearcorr.params import SystemParams

#: How a pair is analysed in the instrument study: told the instrument, or told it wrong.
TOLD = {"right": {}, "point": {"pixel_integration": False}, "paper": {"pixel_integration": False, "beam": Beam()},
        "paper-pixels": {"beam": Beam()}, "right-coherent-term": {}, "right-flow": {}}
#: Told right and the flow direction (fixed at the truth instead of fitted): paired with "right" on the same frames,
#: what fitting the flow adds to gamma L and D2.
FLOW_KNOWN = "right-flow"
#: Told right, but with the configuration term of the coherent formula (``experiment.pairtransfer`` switched off: the
#: term before partial coherence and the pixel response entered it): that change, before / after, on the same frames.
OLD_TERM = "right-coherent-term"


@contextlib.contextmanager
def coherent_term(on):
    """Within the block (when ``on``), single configurations are mapped with the coherent formula."""
    from shearcorr.experiment import model

    saved = model.amplitude_transfer
    if on:
        model.amplitude_transfer = lambda *args, **kwargs: None
    try:
        yield
    finally:
        model.amplitude_transfer = saved


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=20)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--timing-size", type=int, default=1024, help="0 skips the timing")
    ap.add_argument("--timing-repeats", type=int, default=5, help="timed analyses per model and method (interleaved)")
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--beam-size", type=float, default=800.0, help="L / R0 of the synthetic pairs (recorded in their geometry)")
    ap.add_argument("--n-l2", type=float, default=150.0, help="particles in the beam of the synthetic pairs (model uses the same)")
    ap.add_argument("--counts", type=float, default=10.0, help="photons per pixel at q R0 = 0.5")
    ap.add_argument("--series", type=int, default=0, help="K > 0: K pairs per parameter set, joint flow (analyze_series)")
    ap.add_argument("--series-mode", choices=("independent", "consecutive"), default="independent",
                    help="K independent pairs, or the K consecutive pairs of K + 1 frames of one sample (shared frames)")
    g = ap.add_argument_group("instrument study (module docstring)")
    g.add_argument("--instrument", action="store_true", help="run the instrument study instead of the default study")
    g.add_argument("--beam-profile", default="square", choices=("square", "rectangular", "gaussian"))
    g.add_argument("--beam-width", type=float, nargs="+", default=[1.0], help="footprint width(s) / beam size (slit or FWHM)")
    g.add_argument("--coherence-range", type=float, nargs=2, default=(0.0, 0.0), metavar=("LO", "HI"),
                   help="rms coherence lengths / beam size, drawn per pair and axis (0 0: coherent)")
    g.add_argument("--coherence-axes", default="both", choices=("both", "along", "across"),
                   help="partially coherent along the flow, across it, or both (the other axis coherent)")
    g.add_argument("--plane", default="1-2", choices=("1-2", "1-3"))
    g.add_argument("--gap", type=float, default=2000.0, help="1-3: gap h (R0)")
    g.add_argument("--speckle-px-range", type=float, nargs=2, default=(2.2, 3.2), metavar=("LO", "HI"))
    g.add_argument("--pixel-subsamples", type=int, default=4)
    g.add_argument("--psf-sigma-px", type=float, default=0.0)
    g.add_argument("--told", nargs="+", default=["right", "point", "paper"], choices=tuple(TOLD))
    g.add_argument("--reference", action="store_true",
                   help="also render each configuration with an ideal instrument (the same footprint and geometry, "
                        "coherent, point pixels) and analyse it told so: paired ratios give the instrument-induced bias")
    g.add_argument("--contrast-range", type=float, nargs=2, default=(0.2, 0.5), metavar=("LO", "HI"),
                   help="extra coherent fraction of the renderer (its point-sampled contrast), drawn per pair")
    g.add_argument("--condition", action=argparse.BooleanOptionalAction, default=True,
                   help="analyse with the configuration term conditioned on the pair's profile (condition_profile); "
                        "the z of the marginal term is printed from the same fits")
    g.add_argument("--first", type=int, default=0, help="skip the first pairs (their parameters are still drawn): split "
                   "a study over processes, then summarise the joined logs with --from-log")
    g.add_argument("--from-log", metavar="LOG[@SEED]", nargs="+",
                   help="no rendering: re-draw the parameter sets of the options (the seed after '@', else --seed) and "
                        "summarise the per-pair lines of instrument-study logs, pooled (with bootstrap intervals)")
    ap.add_argument("--timing-condition", type=int, default=0, metavar="SIZE",
                    help="only time the profile-conditioned analysis against the default and point pixels (timing_condition)")
    a = ap.parse_args()
    if a.timing_condition:
        timing_condition(a.timing_condition, a.timing_repeats)
        return
    if a.from_log:
        summarize_log(a)
        return
    if a.instrument:
        instrument_study(a)
        if a.timing_size > 0:
            timing(a.timing_size, a.timing_repeats)
        return
    rng = np.random.default_rng(a.seed)
    rows, series = [], []
    for i in range(a.pairs):
        gl, d2, rs, fl = rng.uniform(5, 30), rng.uniform(0.5, 3), rng.uniform(0, 0.3), rng.uniform(-90, 90)
        beta = rng.uniform(0.2, 0.5)
        params = SystemParams(a.n_l2, rs, d2, gl, beam_size=a.beam_size)
        p = render_pair(params, flow_angle_deg=fl, contrast=beta, counts=a.counts, shape=(a.size, a.size), seed=a.seed + i)
        r = analyze(p.before, p.after, p.geometry, options=AnalysisOptions(mask=p.mask, plots=False, n_l2=a.n_l2))
        o = flow_oracle(pair_configuration(params, a.seed + i), params)
        dfl = (r.flow_angle_deg.value - fl + 90) % 180 - 90
        rows.append((gl, d2, rs, fl, beta, r.gamma_l.value, r.gamma_l.std, r.d2.value, r.d2.std,
                     r.rs.value, r.rs.std, dfl, r.flow_angle_deg.std, r.contrast.value, r.chi2.reduced,
                     *np.degrees([o["full"], o["sigma_full"], o["displacements"], o["sigma_displacements"]])))
        print(f"{i:2d} gl {gl:5.1f} -> {rows[-1][5]:5.1f}+-{rows[-1][6]:4.1f} | d2 {d2:4.2f} -> {rows[-1][7]:4.2f}+-{rows[-1][8]:4.2f}"
              f" | rs {rs:4.2f} -> {rows[-1][9]:4.2f}+-{rows[-1][10]:4.2f} | dflow {dfl:+5.2f}+-{rows[-1][12]:4.2f}"
              f" (full {rows[-1][15]:+5.2f}+-{rows[-1][16]:4.2f}, disp {rows[-1][17]:+5.2f}+-{rows[-1][18]:4.2f})"
              f" | beta {beta:4.2f} -> {rows[-1][13]:4.2f} | chi2r {rows[-1][14]:4.2f}", flush=True)
        if a.series > 0:
            series.append(run_series(a, params, fl, beta, i))
    if rows:
        summarize(np.array(rows))
    if series:
        summarize_series(np.array(series), a.series)
    if a.timing_size > 0:
        timing(a.timing_size, a.timing_repeats)


def summarize(R):
    """Print the accuracy summary of the study rows."""
    for name, t, e, s in (("gamma_l", 0, 5, 6), ("d2", 1, 7, 8)):
        rel = np.abs(R[:, e] - R[:, t]) / R[:, t]
        z = (R[:, e] - R[:, t]) / R[:, s]
        print(f"{name}: median |rel err| {np.median(rel):.3f}, mean rel bias {np.mean((R[:, e] - R[:, t]) / R[:, t]):+.3f}, "
              f"z mean {z.mean():+.2f}, z std {z.std():.2f}, {coverage(z)}")
    zf = R[:, 11] / np.maximum(R[:, 12], 1e-9)
    print(f"flow |err| median {np.median(np.abs(R[:, 11])):.2f} deg; chi2_red range {R[:, 14].min():.2f}-{R[:, 14].max():.2f}")
    print(f"flow: max |err| {np.abs(R[:, 11]).max():.2f} deg, within 3 deg {np.mean(np.abs(R[:, 11]) <= 3):.2f}, z std {zf.std():.2f}")
    if np.ptp(R[:, 9]) > 0:
        print(f"rs: corr(truth, estimate) {np.corrcoef(R[:, 2], R[:, 9])[0, 1]:+.2f}, median |err| {np.median(np.abs(R[:, 9] - R[:, 2])):.3f} "
              f"(prior-only guess 0.15 would give {np.median(np.abs(0.15 - R[:, 2])):.3f})")
    else:
        print(f"rs: not fitted (prior {R[0, 9]:.3f} +- {R[0, 10]:.3f}); median |truth - prior centre| {np.median(np.abs(R[:, 9] - R[:, 2])):.3f}")
    gs = np.abs(R[:, 11]) > 3
    if gs.any():
        print("flow > 3 deg at (gamma_l, d2): " + ", ".join(f"({g:.1f}, {d:.2f})" for g, d in R[gs][:, :2]))
    print(f"contrast: median |rel err| {np.median(np.abs(R[:, 13] - R[:, 4]) / R[:, 4]):.3f}")
    for name, e, s in (("this analysis", 11, 12), ("observer knowing all particles", 15, 16), ("observer knowing the displacements", 17, 18)):
        print(f"flow within 3 deg, {name}: {int(np.sum(np.abs(R[:, e]) <= 3))} of {len(R)} (median std {np.median(R[:, s]):.2f} deg)")
    print(f"flow std of this analysis / displacement-observer std: median {np.median(R[:, 12] / R[:, 18]):.2f}, "
          f"range {np.min(R[:, 12] / R[:, 18]):.2f}-{np.max(R[:, 12] / R[:, 18]):.2f}")


def run_series(a, params, fl, beta, i):
    """K independent pairs of one parameter set and flow, analysed jointly; returns a summary row."""
    if a.series_mode == "consecutive":
        frames, mask, geo, _ = render_series(params, a.series + 1, flow_angle_deg=fl, contrast=beta, counts=a.counts,
                                             shape=(a.size, a.size), seed=a.seed + 10_000 + i)
        pairs = [PairFrames(frames[k], frames[k + 1]) for k in range(a.series)]
    else:
        rendered = [render_pair(params, flow_angle_deg=fl, contrast=beta, counts=a.counts, shape=(a.size, a.size),
                                seed=a.seed + 10_000 * (k + 1) + i) for k in range(a.series)]
        pairs = [PairFrames(p.before, p.after) for p in rendered]
        mask, geo = rendered[0].mask, rendered[0].geometry
    r = analyze_series(pairs, geo, options=AnalysisOptions(mask=mask, n_l2=a.n_l2))
    f = r.flow
    dfl = (f.value - fl + 90) % 180 - 90
    gls = [p.gamma_l.value for p in r.pairs]
    d2s = [p.d2.value for p in r.pairs]
    print(f"   series of {a.series}: dflow {dfl:+5.2f}+-{f.std:4.2f} (chi2_red {f.chi2_red:.2f}); "
          f"gl {np.median(gls):5.1f}, d2 {np.median(d2s):4.2f} (medians over the pairs)", flush=True)
    return (params.gamma_l, params.d2, dfl, f.std, np.median(np.abs(np.array(gls) / params.gamma_l - 1)),
            np.median(np.abs(np.array(d2s) / params.d2 - 1)))


def summarize_series(S, k):
    """Print the accuracy summary of the series study."""
    print(f"series of {k} pairs: joint flow within 3 deg {int(np.sum(np.abs(S[:, 2]) <= 3))} of {len(S)}, "
          f"median |err| {np.median(np.abs(S[:, 2])):.2f} deg, max {np.abs(S[:, 2]).max():.2f} deg, "
          f"z std {np.std(S[:, 2] / S[:, 3]):.2f}; per-pair gamma_l / d2 median |rel err| at the joint flow "
          f"{np.median(S[:, 4]):.3f} / {np.median(S[:, 5]):.3f}")


def instrument_study(a):
    """Pairs rendered with the instrument of the options; each analysed told right and told wrong."""
    res = {k: [] for k in a.told}
    ref = []
    for i, (gl, d2, rs, fl, beta, spx, coh, beam) in enumerate(instrument_draws(a)):
        if i < a.first:
            continue
        params = SystemParams(a.n_l2, rs, d2, gl, beam_size=a.beam_size)
        t0 = time.perf_counter()
        p = render_pair(params, flow_angle_deg=fl, contrast=beta, counts=a.counts, shape=(a.size, a.size), seed=a.seed + i,
                        dq=2 * np.pi / a.beam_size / spx, beam=beam, pixel_subsamples=a.pixel_subsamples,
                        psf_sigma_px=a.psf_sigma_px)
        t_render = time.perf_counter() - t0
        line = f"{i:2d} gl {gl:5.1f} d2 {d2:4.2f} {spx:.2f} px/speckle coh {'-' if coh is None else '%.2f,%.2f' % (coh[0] / a.beam_size, coh[1] / a.beam_size)} |"
        for told in a.told:
            t0 = time.perf_counter()
            with coherent_term(told == OLD_TERM):
                r = analyze(p.before, p.after, p.geometry, options=AnalysisOptions(
                    mask=p.mask, plots=False, n_l2=a.n_l2, condition_profile=a.condition,
                    flow_angle_deg=fl if told == FLOW_KNOWN else None, **TOLD[told]))
            dfl = (r.flow_angle_deg.value - fl + 90) % 180 - 90
            f = r.methods["fit"]
            # the total std with the marginal configuration term instead of the reported (conditioned) one
            marg = [np.sqrt(max(e.std**2 - f.std_configuration[j] ** 2 + f.std_configuration_marginal[j] ** 2, 0.0))
                    for j, e in enumerate((r.gamma_l, r.d2))]
            c = f.conditioning or {}
            if c and "truth_slope" not in c:  # the configuration's own profile slope on the same q rows
                from bench_pair_errors import config_profile

                from shearcorr.experiment.model import profile_slope

                qc = r.correlation_map.ring_q
                c["truth_slope"] = float(profile_slope(qc, config_profile(pair_configuration(params, a.seed + i, beam), qc)))
            res[told].append((gl, d2, r.gamma_l.value, r.gamma_l.std, r.d2.value, r.d2.std, dfl, r.flow_angle_deg.std,
                              r.chi2.reduced, r.contrast.value, rs, *marg, c.get("slope_r0sq", np.nan),
                              (c.get("rs_kept") or [np.nan])[0], c.get("truth_slope", np.nan), c.get("slope_err_r0sq", np.nan)))
            line += (f" {told}: {r.gamma_l.value:5.2f}+-{r.gamma_l.std:4.2f} {r.d2.value:4.3f}+-{r.d2.std:5.3f}"
                     + (f" (marginal +-{marg[0]:4.2f} +-{marg[1]:5.3f}; profile slope {c['slope_r0sq']:.4f}"
                        f"+-{c['slope_err_r0sq']:.4f} (own {c['truth_slope']:.4f}) "
                        f"q{c['quantile']:.2f}, R_s of kept {res[told][-1][14]:.2f}, used {c['used']})" if c else "")
                     + bias_field(f) + f" ({time.perf_counter() - t0:.0f}s) |")
        if a.reference:
            ideal = Beam(beam.profile, beam.size, None, beam.plane, beam.gap)
            pr = render_pair(params, flow_angle_deg=fl, contrast=beta, counts=a.counts, shape=(a.size, a.size), seed=a.seed + i,
                             dq=2 * np.pi / a.beam_size / spx, beam=ideal, pixel_subsamples=1)
            r = analyze(pr.before, pr.after, pr.geometry, options=AnalysisOptions(mask=pr.mask, plots=False, n_l2=a.n_l2,
                                                                                   beam=ideal, pixel_integration=False))
            ref.append((r.gamma_l.value, r.d2.value))
            line += f" ideal: {r.gamma_l.value:5.1f} {r.d2.value:4.2f} |"
        print(line + f" render {t_render:.0f}s | R_s {rs:.3f}", flush=True)
    print(f"instrument: {a.beam_profile} {a.beam_width} x L, coherence {a.coherence_range} x L, plane {a.plane}"
          f"{' gap %g' % a.gap if a.plane == '1-3' else ''}, {a.speckle_px_range} px/speckle, "
          f"{a.pixel_subsamples}^2 sub-pixels, psf {a.psf_sigma_px} px, contrast {a.contrast_range}, {a.pairs} pairs of "
          f"{a.size}^2, seed {a.seed}")
    summarize_paired(res)
    for told, rows in res.items():
        R = np.array(rows)
        summarize_told(told, R)
        if a.condition:
            summarize_z(R[:, 11], R[:, 12], R, "marginal configuration term (the same fits)")
            ok = np.isfinite(R[:, 13])
            if ok.sum() > 2:
                from scipy.stats import spearmanr

                zs = (R[ok, 13] - R[ok, 15]) / R[ok, 16]
                print(f"    profile slope - the configuration's own: median |diff| {np.median(np.abs(R[ok, 13] - R[ok, 15])):.4f}, "
                      f"z std {zs.std():.2f} with the stated noise (median {np.median(R[ok, 16]):.4f})", flush=True)
                print(f"    profile slope vs true R_s: Spearman {spearmanr(R[ok, 13], R[ok, 10])[0]:+.2f}; R_s of the kept "
                      f"draws vs true R_s: Spearman {spearmanr(R[ok, 14], R[ok, 10])[0]:+.2f}, median |diff| "
                      f"{np.median(np.abs(R[ok, 14] - R[ok, 10])):.3f}", flush=True)
        if ref:
            F = np.array(ref)
            for name, e, k in (("gamma_l", 2, 0), ("d2", 4, 1)):
                lr = np.log(R[:, e] / F[:, k])
                print(f"    paired with the ideal instrument (same configurations): {name} ratio {np.exp(lr.mean()) - 1:+.3f} "
                      f"(+- {lr.std(ddof=1) / np.sqrt(len(lr)):.3f})", flush=True)


def summarize_paired(res):
    """Paired differences between told settings on the same frames: mean of (x - first setting) / truth for gamma L
    and D2 with its standard error over the pairs (the configuration's and the speckles' scatter cancel)."""
    names = list(res)
    if len(names) < 2:
        return
    R0 = np.array(res[names[0]])
    for told in names[1:]:
        R = np.array(res[told])
        n = min(len(R), len(R0))
        parts = []
        for name, t, e in (("gamma_l", 0, 2), ("d2", 1, 4)):
            d = (R[:n, e] - R0[:n, e]) / R0[:n, t]
            parts.append(f"{name} {100 * d.mean():+.2f} +- {100 * d.std(ddof=1) / np.sqrt(n):.2f} % (median {100 * np.median(d):+.2f} %)")
        print(f"paired, {told} - {names[0]} over {n} pairs: " + "; ".join(parts), flush=True)


def instrument_draws(a):
    """The parameter sets of the instrument study, in order: (gamma L, D2, R_s, flow (deg), contrast, pixels per
    speckle, coherence lengths (R0) or None, Beam) per pair, from ``--seed`` and the instrument options."""
    rng = np.random.default_rng(a.seed)
    width = a.beam_width if len(a.beam_width) > 1 else a.beam_width * 2
    for _ in range(a.pairs):
        gl, d2, rs, fl = rng.uniform(5, 30), rng.uniform(0.5, 3), rng.uniform(0, 0.3), rng.uniform(-90, 90)
        beta = rng.uniform(*a.contrast_range)
        spx = rng.uniform(*a.speckle_px_range)
        lo, hi = a.coherence_range
        coh = None if hi <= 0 else tuple(rng.uniform(lo, hi, 2) * a.beam_size)
        if coh is not None and a.coherence_axes != "both":
            coh = (coh[0], np.inf) if a.coherence_axes == "along" else (np.inf, coh[1])
        beam = Beam(a.beam_profile, tuple(w * a.beam_size for w in width) if a.beam_profile != "square" else width[0] * a.beam_size,
                    coh, a.plane, a.gap if a.plane == "1-3" else None)
        yield gl, d2, rs, fl, beta, spx, coh, beam


def summarize_told(told, R):
    """Bias, median |rel err|, z spread (with bootstrap 68 % intervals), coverage, by R_s, of one told-setting's rows
    (columns: truth gamma L, D2, estimate and std of each, ..., true R_s at column 10)."""
    out = []
    for name, t, e, s in (("gamma_l", 0, 2, 3), ("d2", 1, 4, 5)):
        rel = (R[:, e] - R[:, t]) / R[:, t]
        z = (R[:, e] - R[:, t]) / R[:, s]
        out.append(f"{name} bias {rel.mean():+.3f} (+- {rel.std() / np.sqrt(len(rel)):.3f}), median |rel| {np.median(np.abs(rel)):.3f}, "
                   f"z mean {z.mean():+.2f} std {z.std():.2f}, {coverage(z)}")
    zg = (R[:, 2] - R[:, 0]) / R[:, 3]
    robust = 1.4826 * np.median(np.abs(zg - np.median(zg)))
    flow = f"; flow median |err| {np.median(np.abs(R[:, 6])):.2f} deg; chi2_red {R[:, 8].min():.2f}-{R[:, 8].max():.2f}" \
        if np.isfinite(R[:, 6]).all() else ""
    print(f"told {told:12s}: " + "; ".join(out) + f"; z(gamma_l) robust spread {robust:.2f}{flow}", flush=True)
    summarize_z(R[:, 3], R[:, 5], R, "reported std")


def summarize_z(s_gl, s_d2, R, label, n_boot=10000, seed=0):
    """z std of gamma L and D2 with the stds ``s_gl``, ``s_d2``: all pairs (bootstrap 68 % and 95 % intervals over the
    pairs, percentile), without the largest |z|, and split by the true R_s (< 0.15 / >= 0.15)."""
    rng = np.random.default_rng(seed)
    lo = R[:, 10] < 0.15
    parts = []
    for name, t, e, s in (("gamma_l", 0, 2, s_gl), ("d2", 1, 4, s_d2)):
        z = (R[:, e] - R[:, t]) / s
        boot = np.std(z[rng.integers(0, z.size, (n_boot, z.size))], axis=1)
        drop = np.delete(z, np.argmax(np.abs(z)))
        parts.append(f"{name} z std {z.std():.2f} [68 %: {np.percentile(boot, 16):.2f}-{np.percentile(boot, 84):.2f}; "
                     f"95 %: {np.percentile(boot, 2.5):.2f}-{np.percentile(boot, 97.5):.2f}], "
                     f"{coverage(z)}, without the largest |z| ({z[np.argmax(np.abs(z))]:+.1f}) {drop.std():.2f}, "
                     f"R_s < 0.15 ({int(lo.sum())}) {z[lo].std():.2f} / >= 0.15 {z[~lo].std():.2f}")
    print(f"    {label}: " + "; ".join(parts), flush=True)


def bias_field(f):
    """The fit's second-order bias correction for the log: ' [bias gamma_l d2 flow(deg) applied]' (the uncorrected
    estimate is the printed one plus the bias when applied; ``--from-log`` reads it back)."""
    b = f.bias_correction
    if not b:
        return ""
    return f" [bias {b['gamma_l']:+.4f} {b['d2']:+.5f} {np.degrees(b.get('flow', 0.0)):+.3f} {int(b['applied'])}]"


BIAS_RE = r"\[bias ([-+\d.e]+) ([-+\d.e]+) ([-+\d.e]+) ([01])\]"


def summarize_uncorrected(told, R, bias, n_boot=10000, seed=0):
    """Mean relative bias (95 % bootstrap over the pairs) of gamma L and D2 as printed (bias-corrected) and without
    the correction (the same fits: value + predicted bias where it was applied), and the correction's mean."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(R), (n_boot, len(R)))
    parts = []
    for name, e, t, k in (("gamma_l", 2, 0, 0), ("d2", 4, 1, 1)):
        corr = R[:, e] / R[:, t] - 1
        unc = (R[:, e] + bias[:, k] * bias[:, 3]) / R[:, t] - 1
        for lab, v in (("corrected", corr), ("uncorrected", unc), ("correction", corr - unc)):
            lo, hi = np.percentile(v[idx].mean(axis=1), [2.5, 97.5])
            parts.append(f"{name} {lab} {100 * v.mean():+.2f} % [{100 * lo:+.2f}, {100 * hi:+.2f}]")
    print(f"    {told}, second-order bias correction applied in {int(bias[:, 3].sum())} of {len(R)} pairs: " + "; ".join(parts),
          flush=True)
    ratio = R[:, 0] / R[:, 1]
    edges = np.percentile(ratio, [0, 100 / 3, 200 / 3, 100])
    k = np.clip(np.searchsorted(edges, ratio, side="right") - 1, 0, 2)
    gl_c, gl_u = R[:, 2] / R[:, 0] - 1, (R[:, 2] + bias[:, 0] * bias[:, 3]) / R[:, 0] - 1
    print("    by thirds of gamma L / D2 (" + ", ".join(f"{edges[m]:.1f}-{edges[m + 1]:.1f}" for m in range(3)) + "): gamma_l "
          "corrected / uncorrected / correction " + "; ".join(
              f"{100 * gl_c[k == m].mean():+.2f} / {100 * gl_u[k == m].mean():+.2f} / {100 * (gl_c - gl_u)[k == m].mean():+.2f} % "
              f"(se {100 * gl_c[k == m].std(ddof=1) / np.sqrt(max((k == m).sum(), 1)):.2f})" for m in range(3)), flush=True)


def summarize_log(a):
    """Summary of instrument-study logs (``--from-log LOG[@SEED] ...``, pooled): the per-pair 'told: value+-std
    value+-std' fields and the true parameter sets re-drawn from the options with each log's seed (no rendering);
    values as printed in the logs. Adds the z spread by parameter range (:func:`summarize_bins`)."""
    import argparse
    import re

    pat = re.compile(r"(\S+):\s+([-\d.]+)\s*\+-\s*([\d.]+)\s+([-\d.]+)\s*\+-\s*([\d.]+)")
    res, extra, biases = {}, {}, {}
    for item in a.from_log:
        path, _, seed = item.partition("@")
        draws = list(instrument_draws(argparse.Namespace(**{**vars(a), "seed": int(seed) if seed else a.seed})))
        with open(path) as fh:
            for line in fh:
                m0 = re.match(r"\s*(\d+) gl\s+([\d.]+) d2 ([\d.]+) ([\d.]+) px/speckle", line)
                if not m0:
                    continue
                i = int(m0.group(1))
                gl, d2, rs = draws[i][:3]
                if abs(gl - float(m0.group(2))) > 0.051 or abs(d2 - float(m0.group(3))) > 0.0051:
                    raise SystemExit(f"pair {i} of {path} is not the pair the options draw: give the options of the run")
                marg = re.findall(r"\(marginal \+-([\d.]+) \+-([\d.]+)", line)
                prof = re.findall(r"profile slope (-?[\d.]+)\+-([\d.]+) \(own (-?[\d.]+)\)", line)
                bias = re.findall(BIAS_RE, line)
                for k, (told, v, sv, w, sw) in enumerate(pat.findall(line)):
                    # a run without --condition reports the marginal term: its std is the marginal one
                    mg = [float(x) for x in marg[k]] if k < len(marg) else [float(sv), float(sw)]
                    pr = [float(x) for x in prof[k]] if k < len(prof) else [np.nan] * 3
                    res.setdefault(told, []).append((gl, d2, float(v), float(sv), float(w), float(sw), np.nan, np.nan,
                                                     np.nan, np.nan, rs, *mg, pr[0], np.nan, pr[2], pr[1]))
                    extra.setdefault(told, []).append(float(m0.group(4)))
                    if k < len(bias):
                        biases.setdefault(told, []).append([float(x) for x in bias[k]])
    print(f"{' + '.join(a.from_log)}: {', '.join(f'{k} ({len(v)} pairs)' for k, v in res.items())}; values as printed")
    summarize_paired(res)
    for told, rows in res.items():
        R = np.array(rows)
        summarize_told(told, R)
        marginal = R.shape[1] > 11 and np.isfinite(R[:, 11]).all()
        if marginal:
            summarize_z(R[:, 11], R[:, 12], R, "marginal configuration term (the same fits)")
            ok = np.isfinite(R[:, 13])
            if ok.sum() > 2:
                from scipy.stats import spearmanr

                zs = (R[ok, 13] - R[ok, 15]) / R[ok, 16]
                print(f"    profile slope - the configuration's own: median |diff| {np.median(np.abs(R[ok, 13] - R[ok, 15])):.4f}, "
                      f"mean {np.mean(R[ok, 13] - R[ok, 15]):+.4f}, z std {zs.std():.2f} with the stated noise (median "
                      f"{np.median(R[ok, 16]):.4f}); Spearman with the true R_s {spearmanr(R[ok, 13], R[ok, 10])[0]:+.2f}")
        summarize_bins(R, np.array(extra[told]), R[:, 11:13] if marginal else R[:, [3, 5]])
        if len(biases.get(told, [])) == len(R):
            summarize_uncorrected(told, R, np.array(biases[told]))


def summarize_bins(R, spx, s_marg, n_boot=10000, seed=0):
    """Robust spread (1.4826 MAD) of z, mean relative bias with its bootstrap 68 and 95 % intervals, the median |relative
    error| with its bootstrap 95 % interval and the value Gaussian errors of the stated std would give (median and 95 %
    range over as many pairs), and the z std of the
    (marginal) std ``s_marg`` (n, 2) in the thirds of the pairs by true gamma L, D2, R_s and pixels per speckle
    ``spx``: where an off-band z std comes from."""
    rng = np.random.default_rng(seed)
    for name, t, e, j in (("gamma_l", 0, 2, 0), ("d2", 1, 4, 1)):
        z = (R[:, e] - R[:, t]) / s_marg[:, j]
        rel = R[:, e] / R[:, t] - 1
        b = rng.integers(0, z.size, (n_boot, z.size))
        mb = rel[b].mean(axis=1)
        ma = np.median(np.abs(rel)[b], axis=1)
        # the median |rel err| that Gaussian errors of the stated std would give over these pairs (its 95 % range)
        sim = np.median(np.abs(rng.standard_normal((n_boot, z.size)) * s_marg[:, j] / R[:, t]), axis=1)
        line = (f"    {name} (marginal std): robust z spread {1.4826 * np.median(np.abs(z - np.median(z))):.2f}, mean rel bias "
                f"{rel.mean():+.3f} [68 %: {np.percentile(mb, 16):+.3f} to {np.percentile(mb, 84):+.3f}; 95 %: "
                f"{np.percentile(mb, 2.5):+.3f} to {np.percentile(mb, 97.5):+.3f}], median rel err {np.median(rel):+.3f}, "
                f"median |rel err| {np.median(np.abs(rel)):.3f} [95 %: {np.percentile(ma, 2.5):.3f} to {np.percentile(ma, 97.5):.3f}; "
                f"with errors N(0, std): {np.median(sim):.3f}, 95 % {np.percentile(sim, 2.5):.3f} to {np.percentile(sim, 97.5):.3f}]; "
                f"z std by third:")
        for label, v in (("gamma L", R[:, 0]), ("D2", R[:, 1]), ("R_s", R[:, 10]), ("px/speckle", spx)):
            edges = np.percentile(v, [0, 100 / 3, 200 / 3, 100])
            k = np.clip(np.searchsorted(edges, v, side="right") - 1, 0, 2)
            line += f" {label} " + "/".join(f"{z[k == m].std():.2f}" for m in range(3))
            line += " (bias " + "/".join(f"{100 * rel[k == m].mean():+.1f}" for m in range(3)) + " %);"
        print(line, flush=True)


def coverage(z):
    """The fractions of |z| within 1 and 2 (68.3 % and 95.4 % for honest Gaussian errors) as text."""
    z = np.abs(np.asarray(z))
    return f"coverage 68/95 % {100 * np.mean(z <= 1):.0f}/{100 * np.mean(z <= 2):.0f} %"


def timing(size, repeats=5):
    """Wall and CPU time of one analysis of a size x size pair, model cached (runs after a warm-up): the default
    (pixel-integrated) model and the point-pixel model of earlier versions, in the same run and interleaved
    (point, pixel, point, pixel, ...) so that a changing load on the shared machine affects both alike."""
    p = render_pair(SystemParams(150, 0.1, 1.5, 20), flow_angle_deg=30, shape=(size, size), seed=1)
    name = {False: "point-pixel", True: "pixel-integrated"}
    with tempfile.TemporaryDirectory() as cache:
        for method in ("fit", "both"):
            opts = {pix: AnalysisOptions(mask=p.mask, plots=False, method=method, cache_dir=cache, pixel_integration=pix)
                    for pix in (False, True)}
            ts, cpu = {False: [], True: []}, {False: [], True: []}
            for pix in (False, True):
                analyze(p.before, p.after, p.geometry, options=opts[pix])  # warm-up / cache
            for _ in range(repeats):
                for pix in (False, True):
                    t, c = time.perf_counter(), time.process_time()
                    analyze(p.before, p.after, p.geometry, options=opts[pix])
                    ts[pix].append(time.perf_counter() - t)
                    cpu[pix].append(time.process_time() - c)
            for pix in (False, True):
                # CPU time of this process: the wall time on an idle machine when the run is single-threaded
                print(f"{size}x{size} analysis, method {method}, {name[pix]} model (cached): wall median "
                      f"{np.median(ts[pix]):.2f} s of {', '.join(f'{v:.2f}' for v in ts[pix])}; CPU median "
                      f"{np.median(cpu[pix]):.2f} s of {', '.join(f'{v:.2f}' for v in cpu[pix])}", flush=True)
            ratio_w = np.array(ts[True]) / np.array(ts[False])
            ratio_c = np.array(cpu[True]) / np.array(cpu[False])
            print(f"  method {method}: pixel-integrated / point-pixel = {np.median(ts[True]) / np.median(ts[False]):.2f} (wall), "
                  f"{np.median(cpu[True]) / np.median(cpu[False]):.2f} (CPU) [ratios of medians]; median of the {repeats} "
                  f"interleaved per-repeat ratios {np.median(ratio_w):.2f} (wall), {np.median(ratio_c):.2f} (CPU); peak RSS "
                  f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB; load average "
                  f"{' '.join(f'{v:.1f}' for v in os.getloadavg())}", flush=True)



def timing_condition(size, repeats=5):
    """CPU time of one ``--method fit`` analysis of a size x size pair: point-pixel (the versions before issue 12),
    pixel-integrated (the default), pixel-integrated with the configuration term conditioned on the profile
    (``condition_profile``); interleaved, after a warm-up."""
    p = render_pair(SystemParams(150, 0.1, 1.5, 20), flow_angle_deg=30, shape=(size, size), seed=1)
    variants = {"point-pixel": dict(pixel_integration=False, condition_profile=False),
                "pixel-integrated": dict(pixel_integration=True, condition_profile=False),
                "pixel-integrated, profile-conditioned": dict(pixel_integration=True, condition_profile=True)}
    opts = {k: AnalysisOptions(mask=p.mask, plots=False, **v) for k, v in variants.items()}
    cpu = {k: [] for k in variants}
    for k in variants:
        analyze(p.before, p.after, p.geometry, options=opts[k])  # warm-up (numba, tables)
    for _ in range(repeats):
        for k in variants:
            c = time.process_time()
            analyze(p.before, p.after, p.geometry, options=opts[k])
            cpu[k].append(time.process_time() - c)
    base = np.array(cpu["point-pixel"])
    for k, v in cpu.items():
        print(f"{size}x{size} --method fit, {k}: CPU median {np.median(v):.2f} s of {', '.join(f'{t:.2f}' for t in v)}; "
              f"/ point-pixel: median of per-repeat ratios {np.median(np.array(v) / base):.2f}", flush=True)
    print(f"load average {' '.join(f'{v:.1f}' for v in os.getloadavg())}", flush=True)


if __name__ == "__main__":
    main()
