"""Frame-pair analysis: accuracy over synthetic pairs with known truth, and the 1-megapixel timing.

    nice python benchmarks/bench_analyze.py [--pairs 20] [--size 512] [--timing-size 1024] [--series K]

Prints per pair the truth and the estimates, then: flow-angle errors, median relative errors of
gamma_l and d2, z-score spread (std of (estimate - truth)/std; ~1 when the errors are honest), what
R_s does, and the wall time of one analysis of a timing-size pair (model cached, second run).

Flow-angle bounds per pair (``experiment.synth.flow_oracle`` on the very configuration rendered):
"full" = an observer who knows every particle's position and displacement (no method working from
the frames can do better on average), "disp" = one who knows the displacements only (what the
correlation of a pair contains, before speckle noise). ``--series K`` repeats every parameter set
with K independent pairs (same flow) and analyses them with ``analyze_series`` (joint flow angle);
``--series-mode consecutive`` uses the K consecutive pairs of K + 1 frames of one sheared sample.
"""

import argparse
import resource
import tempfile
import time

import numpy as np

from shearcorr.experiment import AnalysisOptions, PairFrames, analyze, analyze_series, render_pair
from shearcorr.experiment.synth import flow_oracle, pair_configuration, render_series
from shearcorr.params import SystemParams


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=20)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--timing-size", type=int, default=1024, help="0 skips the timing")
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--beam-size", type=float, default=800.0, help="L / R0 of the synthetic pairs (recorded in their geometry)")
    ap.add_argument("--n-l2", type=float, default=150.0, help="particles in the beam of the synthetic pairs (model uses the same)")
    ap.add_argument("--counts", type=float, default=10.0, help="photons per pixel at q R0 = 0.5")
    ap.add_argument("--series", type=int, default=0, help="K > 0: K pairs per parameter set, joint flow (analyze_series)")
    ap.add_argument("--series-mode", choices=("independent", "consecutive"), default="independent",
                    help="K independent pairs, or the K consecutive pairs of K + 1 frames of one sample (shared frames)")
    a = ap.parse_args()
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
        timing(a.timing_size)


def summarize(R):
    """Print the accuracy summary of the study rows."""
    for name, t, e, s in (("gamma_l", 0, 5, 6), ("d2", 1, 7, 8)):
        rel = np.abs(R[:, e] - R[:, t]) / R[:, t]
        z = (R[:, e] - R[:, t]) / R[:, s]
        print(f"{name}: median |rel err| {np.median(rel):.3f}, mean rel bias {np.mean((R[:, e] - R[:, t]) / R[:, t]):+.3f}, "
              f"z mean {z.mean():+.2f}, z std {z.std():.2f}")
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


def timing(size):
    """Wall time of one analysis of a size x size pair, model cached (second and later runs)."""
    p = render_pair(SystemParams(150, 0.1, 1.5, 20), flow_angle_deg=30, shape=(size, size), seed=1)
    with tempfile.TemporaryDirectory() as cache:
        for method in ("fit", "both"):
            analyze(p.before, p.after, p.geometry,
                    options=AnalysisOptions(mask=p.mask, plots=False, method=method, cache_dir=cache))  # warm-up / cache
            ts, cpu = [], []
            for _ in range(3):
                t, c = time.perf_counter(), time.process_time()
                analyze(p.before, p.after, p.geometry,
                        options=AnalysisOptions(mask=p.mask, plots=False, method=method, cache_dir=cache))
                ts.append(time.perf_counter() - t)
                cpu.append(time.process_time() - c)
            # CPU time of this process: the wall time on an idle machine when the run is single-threaded
            print(f"{size}x{size} analysis, method {method} (model cached): wall median {np.median(ts):.2f} s "
                  f"of {', '.join(f'{v:.2f}' for v in ts)}; CPU median {np.median(cpu):.2f} s; "
                  f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB", flush=True)


if __name__ == "__main__":
    main()
