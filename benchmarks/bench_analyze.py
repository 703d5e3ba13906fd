"""Frame-pair analysis: accuracy over synthetic pairs with known truth, and the 1-megapixel timing.

    nice python benchmarks/bench_analyze.py [--pairs 20] [--size 512] [--timing-size 1024]

Prints per pair the truth and the estimates, then: flow-angle errors, median relative errors of
gamma_l and d2, z-score spread (std of (estimate - truth)/std; ~1 when the errors are honest), what
R_s does, and the wall time of one analysis of a timing-size pair (model cached, second run).
"""

import argparse
import resource
import tempfile
import time

import numpy as np

from shearcorr.experiment import analyze, render_pair
from shearcorr.params import SystemParams


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=20)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--timing-size", type=int, default=1024, help="0 skips the timing")
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--counts", type=float, default=10.0, help="photons per pixel at q R0 = 0.5")
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    rows = []
    for i in range(a.pairs):
        gl, d2, rs, fl = rng.uniform(5, 30), rng.uniform(0.5, 3), rng.uniform(0, 0.3), rng.uniform(-90, 90)
        beta = rng.uniform(0.2, 0.5)
        p = render_pair(SystemParams(150, rs, d2, gl), flow_angle_deg=fl, contrast=beta, counts=a.counts,
                        shape=(a.size, a.size), seed=a.seed + i)
        r = analyze(p.before, p.after, p.geometry, mask=p.mask, plots=False)
        dfl = (r["flow_angle_deg"]["value"] - fl + 90) % 180 - 90
        rows.append((gl, d2, rs, fl, beta, r["gamma_l"]["value"], r["gamma_l"]["std"], r["d2"]["value"], r["d2"]["std"],
                     r["rs"]["value"], r["rs"]["std"], dfl, r["flow_angle_deg"]["std"], r["contrast"]["value"], r["chi2"]["reduced"]))
        print(f"{i:2d} gl {gl:5.1f} -> {rows[-1][5]:5.1f}+-{rows[-1][6]:4.1f} | d2 {d2:4.2f} -> {rows[-1][7]:4.2f}+-{rows[-1][8]:4.2f}"
              f" | rs {rs:4.2f} -> {rows[-1][9]:4.2f}+-{rows[-1][10]:4.2f} | dflow {dfl:+5.2f}+-{rows[-1][12]:4.2f}"
              f" | beta {beta:4.2f} -> {rows[-1][13]:4.2f} | chi2r {rows[-1][14]:4.2f}", flush=True)
    R = np.array(rows)
    for name, t, e, s in (("gamma_l", 0, 5, 6), ("d2", 1, 7, 8)):
        rel = np.abs(R[:, e] - R[:, t]) / R[:, t]
        z = (R[:, e] - R[:, t]) / R[:, s]
        print(f"{name}: median |rel err| {np.median(rel):.3f}, mean rel bias {np.mean((R[:, e] - R[:, t]) / R[:, t]):+.3f}, "
              f"z mean {z.mean():+.2f}, z std {z.std():.2f}")
    zf = R[:, 11] / np.maximum(R[:, 12], 1e-9)
    print(f"flow |err| median {np.median(np.abs(R[:, 11])):.2f} deg; chi2_red range {R[:, 14].min():.2f}-{R[:, 14].max():.2f}")
    print(f"flow: max |err| {np.abs(R[:, 11]).max():.2f} deg, within 3 deg {np.mean(np.abs(R[:, 11]) <= 3):.2f}, z std {zf.std():.2f}")
    print(f"rs: corr(truth, estimate) {np.corrcoef(R[:, 2], R[:, 9])[0, 1]:+.2f}, median |err| {np.median(np.abs(R[:, 9] - R[:, 2])):.3f} "
          f"(prior-only guess 0.15 would give {np.median(np.abs(0.15 - R[:, 2])):.3f})")
    print(f"contrast: median |rel err| {np.median(np.abs(R[:, 13] - R[:, 4]) / R[:, 4]):.3f}")
    if a.timing_size <= 0:
        return
    p = render_pair(SystemParams(150, 0.1, 1.5, 20), flow_angle_deg=30, shape=(a.timing_size, a.timing_size), seed=1)
    with tempfile.TemporaryDirectory() as cache:
        for method in ("fit", "both"):
            analyze(p.before, p.after, p.geometry, mask=p.mask, plots=False, method=method, cache_dir=cache)  # warm-up / cache
            ts = []
            for _ in range(3):
                t = time.perf_counter()
                analyze(p.before, p.after, p.geometry, mask=p.mask, plots=False, method=method, cache_dir=cache)
                ts.append(time.perf_counter() - t)
            print(f"{a.timing_size}x{a.timing_size} analysis, method {method} (model cached): median {np.median(ts):.2f} s "
                  f"of {', '.join(f'{v:.2f}' for v in ts)}; peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
