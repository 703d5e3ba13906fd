"""Frame stacks: engine speed against this machine's sgemm, the 1-megapixel steady and two-time targets,
Dask, a stack larger than the memory given to the process, and the synthetic-truth studies.

Every part prints what it measured (medians, ratios measured in the same run, peak memory); nothing
is asserted. Parts (``python benchmarks/bench_stack.py PART [options]``):

* ``make``     render the 1-megapixel, 1000-frame steady stack once (cached under ``--data``);
* ``gemm``     the float32 GEMM rate of this machine (1 and default threads) and the engine's rate on
               in-memory normalised frames, in the same run;
* ``steady``   the 1-Mpx stack, lags 0..100, correlated and fitted (subprocess: wall time, peak RSS)
               for 250 / 500 / 1000 frames;
* ``twotime``  the same stack on 200 x 200 time bins, fitted and written with plots (``--maps-only``: the
               correlation step alone);
* ``dask``     the same numbers through a Dask LocalCluster (2 workers) and locally;
* ``bigger``   a stack larger than the memory the process may use (RLIMIT_AS) completes;
* ``study-steady``, ``study-twotime``, ``study-echo``, ``study-configs``, ``study-echoconfigs``  synthetic-truth
  studies (z-scores).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DATA = Path(os.environ.get("SHEARCORR_BENCH_DATA", "/tmp/shearcorr-bench"))
BIG = dict(n_frames=1000, size=1024, shear_rate=0.5 / 800, diffusion=0.01, transit=2.0, seed=11)


def _params(rs=0.0):
    from shearcorr.params import SystemParams

    return SystemParams(n_l2=150, rs=rs, d2=1.0, gamma_l=10.0)


def part_make(args):
    """Render the 1-Mpx steady stack into DATA/big (frame by frame into bitshuffle/LZ4 HDF5)."""
    from shearcorr.stack.synth import steady_stack

    out = Path(args.data) / "big"
    if (out / "stack.h5").is_file():
        print(f"{out} exists")
        return
    t0 = time.perf_counter()
    steady_stack(_params(), BIG["n_frames"], shear_rate=BIG["shear_rate"], diffusion=BIG["diffusion"],
                 transit=BIG["transit"], shape=(BIG["size"], BIG["size"]), dq=(2 * np.pi / 800) / 2.2, seed=BIG["seed"],
                 frame_time=0.01, out=out)
    size = (out / "stack.h5").stat().st_size
    print(f"rendered {BIG['n_frames']} frames of {BIG['size']}^2 in {time.perf_counter() - t0:.0f} s; "
          f"stack.h5 {size / 1e9:.2f} GB (uint32 {BIG['n_frames'] * BIG['size'] ** 2 * 4 / 1e9:.1f} GB uncompressed)")


def _sgemm_rate(n=2048, reps=5, clock=time.perf_counter):
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    b = np.random.default_rng(1).random((n, n), dtype=np.float32)
    a @ b
    ts = []
    for _ in range(reps):
        t = clock()
        a @ b
        ts.append(clock() - t)
    return 2 * n**3 / statistics.median(ts) / 1e9


def part_gemm(args):
    """sgemm GFLOP/s (1 thread, default threads) and the engine on in-memory frames (same run).

    The engine runs one BLAS thread per task (tasks run in parallel on an executor), so its rates are
    compared with the 1-thread sgemm rate. Executed flops: every sgemm of the band tiles,
    2 nb (nb + W) pixels per tile of nb origins; useful flops: the frame pairs wanted,
    2 pixels sum_tau (T - tau) for tau = 0..W."""
    from threadpoolctl import threadpool_limits

    from shearcorr.stack import engine as eng
    from shearcorr.stack.engine import lag_sums
    from shearcorr.stack.normalize import band_sums
    from shearcorr.stack.plan import make_plan

    with threadpool_limits(1, "blas"):
        g1 = _sgemm_rate()
        g1c = _sgemm_rate(clock=time.process_time)
    gd = _sgemm_rate()
    rng = np.random.default_rng(0)
    n, T, W = args.size, args.frames, args.max_lag
    yy, xx = np.mgrid[0:n, 0:n]
    r = np.hypot(xx - n / 2, yy - n / 2)
    qr0 = r * (1.5 / (n / 2))
    phi = np.arctan2(-(yy - n / 2), xx - n / 2)
    stack = rng.poisson(10.0, (T, n, n)).astype(np.uint16)
    # the default binning of analyze-stack: 16 log-spaced q bins x 36 azimuth bins (x 4 thin rings)
    plan = make_plan(np.ones((n, n), bool), qr0, phi, np.geomspace(0.05, 1.5, 17), 36)
    b = args.tile or eng.DEFAULT_TILE
    useful = 2.0 * plan.n_pix * sum(T - lag for lag in range(W + 1))
    task_tiles = [min(b, o1 - i) for o0 in range(0, T, eng.DEFAULT_TASK_FRAMES)
                  for o1 in [min(o0 + eng.DEFAULT_TASK_FRAMES, T)] for i in range(o0, o1, b)]
    executed = 2.0 * plan.n_pix * sum(nb * (nb + W) for nb in task_tiles)
    # the whole lag_sums (uint16 frames -> read, flag, normalise -> products -> band sums): wall and CPU time
    # (the machine is shared: CPU time is the fairer measure of a 1-thread rate; both are printed)
    ts, cs = [], []
    for _ in range(3):
        t, c = time.perf_counter(), time.process_time()
        lag_sums(stack, plan, np.arange(W + 1), normalization="frame", groups=10, tile=b)
        ts.append(time.perf_counter() - t)
        cs.append(time.process_time() - c)
    t_all, c_all = statistics.median(ts), statistics.median(cs)
    # the loader alone (frames -> normalised float32 in segment order), per pixel and frame
    from shearcorr.stack.normalize import Normalization, load_into
    from shearcorr.stack.plan import as_source
    xb = np.empty((min(T, 64), plan.n_pix), dtype=np.float32)
    lt = []
    for _ in range(3):
        c = time.process_time()
        load_into(as_source(stack), plan, Normalization("frame"), 0, xb.shape[0], xb, np.zeros(plan.n_pix))
        lt.append(time.process_time() - c)
    load_ns = statistics.median(lt) / xb.shape[0] / plan.n_pix * 1e9
    del xb
    with threadpool_limits(1, "blas"):
        g1b = _sgemm_rate()  # again after the engine: the machine's state may have changed
        g1cb = _sgemm_rate(clock=time.process_time)
    # the correlation kernel alone (frames already normalised in memory): sgemm on band tiles, for each
    # tile size asked (--tiles): executed and useful rates (useful share of a tile b: (W + 1) / (b + W))
    x = rng.standard_normal((T, plan.n_pix)).astype(np.float32)
    lags = np.arange(W + 1)
    offs = plan.seg_offsets
    kernel = {}
    for bt in args.tiles or [b]:
        gram = np.zeros((plan.n_seg, bt, bt + W), dtype=np.float32)
        gid = np.zeros(bt, dtype=np.int64)
        acc = np.zeros((plan.n_seg, 1, W + 1))
        ts = []
        with threadpool_limits(1, "blas"):
            for _ in range(3):
                t = time.perf_counter()
                for i in range(0, T - W - bt + 1, bt):
                    A, B = x[i:i + bt], x[i:i + bt + W]
                    for s in range(plan.n_seg):
                        np.matmul(A[:, offs[s]:offs[s + 1]], B[:, offs[s]:offs[s + 1]].T, out=gram[s])
                    band_sums(gram, bt, lags, gid, acc)
                ts.append(time.perf_counter() - t)
        n_tiles = len(range(0, T - W - bt + 1, bt))
        tk = statistics.median(ts)
        k_exec = 2.0 * plan.n_pix * n_tiles * bt * (bt + W) / tk / 1e9
        k_useful = 2.0 * plan.n_pix * n_tiles * bt * (W + 1) / tk / 1e9
        kernel[f"tile_{bt}"] = {"gflops_executed": round(k_exec, 1), "gflops_useful": round(k_useful, 1),
                                "executed_fraction_of_sgemm_1thread": round(k_exec / g1, 2),
                                "useful_fraction_of_sgemm_1thread": round(k_useful / g1, 2)}
    g1m, g1cm = 0.5 * (g1 + g1b), 0.5 * (g1c + g1cb)
    print(json.dumps({"sgemm_gflops_1thread": round(g1, 1), "sgemm_gflops_1thread_after": round(g1b, 1),
                      "sgemm_gflops_default": round(gd, 1),
                      "frames": T, "pixels": n * n, "used_pixels": plan.n_pix, "segments": plan.n_seg,
                      "pixels_per_segment": round(plan.n_pix / plan.n_seg, 1), "max_lag": W, "tile": b,
                      "useful_share_of_executed": round(useful / executed, 2),
                      "kernel": kernel,
                      "loader_ns_per_pixel_frame_cpu": round(load_ns, 2),
                      "lag_sums_s": round(t_all, 2), "lag_sums_cpu_s": round(c_all, 2),
                      "lag_sums_gflops_executed": round(executed / t_all / 1e9, 1),
                      "lag_sums_gflops_useful": round(useful / t_all / 1e9, 1),
                      "lag_sums_executed_fraction_of_sgemm_1thread": round(executed / t_all / 1e9 / g1m, 2),
                      "lag_sums_useful_fraction_of_sgemm_1thread": round(useful / t_all / 1e9 / g1m, 2),
                      "sgemm_gflops_1thread_cpu_time": [round(g1c, 1), round(g1cb, 1)],
                      "lag_sums_executed_fraction_cpu_time": round(executed / c_all / 1e9 / g1cm, 2),
                      "lag_sums_useful_fraction_cpu_time": round(useful / c_all / 1e9 / g1cm, 2),
                      "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2),
                      "load_average_1min": round(os.getloadavg()[0], 2)}, indent=1))


def _run_child(code, limit_as=None, timeout=3600):
    """Run python code in a subprocess (optionally under RLIMIT_AS); wall time, peak RSS, output."""
    def limit():
        if limit_as:
            resource.setrlimit(resource.RLIMIT_AS, (limit_as, limit_as))

    t0 = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, preexec_fn=limit,
                       env=dict(os.environ, PYTHONPATH=str(HERE.parent / "src")))
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    peak = after.ru_maxrss / 1e6
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    print(json.dumps({"cpu_s": round(cpu, 1), "load_average_1min": os.getloadavg()[0]}), flush=True)
    return p.returncode, wall, peak, p.stdout.strip(), p.stderr.strip()[-2000:]


def _steady_code(data, frames, max_lag, extra=""):
    return f"""
import json, time
from shearcorr.stack import analyze_stack
t = time.perf_counter()
r = analyze_stack({str(data / 'big/stack.h5')!r}, {str(data / 'big/geometry.json')!r}, mode="steady", frames={frames!r},
                  max_lag={max_lag}, plots=False, cache_dir={str(data / 'cache')!r}{extra})
s = r.summary
print(json.dumps({{"seconds": time.perf_counter() - t, "timing": s["provenance"]["timing"], "shear_rate": s["shear_rate"],
                   "diffusion": s["diffusion"], "msd_exponent": s["msd_exponent"], "rs": s["rs"],
                   "chi2_red": s["chi2"]["reduced"]}}))
"""


def part_steady(args):
    """Steady mode on the 1-Mpx stack for 250/500/1000 frames (one subprocess each: wall, peak RSS)."""
    data = Path(args.data)
    rows = []
    for n in args.frame_counts:
        rc, wall, peak, out, err = _run_child(_steady_code(data, f"0:{n}", args.max_lag))
        rows.append({"frames": n, "rc": rc, "wall_s": round(wall, 1), "peak_rss_gb_children": round(peak, 2),
                     "result": json.loads(out.splitlines()[-1]) if rc == 0 else err})
        print(json.dumps(rows[-1]))
    if len(rows) > 1 and all(r["rc"] == 0 for r in rows):
        t = [r["wall_s"] for r in rows]
        print("time per frame (s):", [round(w / r["frames"], 3) for w, r in zip(t, rows)])


_MAPS_ONLY = """
import json, time
from shearcorr.experiment.correlation import q_bin_edges
from shearcorr.experiment.frames import open_stack
from shearcorr.experiment.geometryfile import load_geometry
from shearcorr.stack.analysis import DEFAULTS
from shearcorr.stack.plan import make_plan
from shearcorr.stack.twotime import twotime_maps
src = open_stack({stack!r})
geo = load_geometry({geometry!r}, src.frame_shape)
valid = src.detector_mask()
plan = make_plan(valid, geo.qr0, geo.phi, q_bin_edges(geo.qr0, valid, DEFAULTS["n_q"]), DEFAULTS["n_phi"])
t = time.perf_counter()
tt = twotime_maps(src, plan, n_bins={bins})
print(json.dumps({{"twotime_maps_s": time.perf_counter() - t, "n_bins": tt.n_bins}}))
"""


def part_twotime(args):
    """200 x 200 time bins of the 1-Mpx stack, analysed and written (result.json, result.h5, PNGs) into
    a temporary folder (subprocess: wall, peak RSS); ``--maps-only``: the correlation step (two-time
    maps) alone, without the fits."""
    data = Path(args.data)
    if args.maps_only:
        code = _MAPS_ONLY.format(stack=str(data / "big/stack.h5"), geometry=str(data / "big/geometry.json"),
                                 bins=args.time_bins)
        rc, wall, peak, out, err = _run_child(code)
        print(json.dumps({"rc": rc, "wall_s": round(wall, 1), "peak_rss_gb_children": round(peak, 2),
                          "result": json.loads(out.splitlines()[-1]) if rc == 0 else err}))
        return
    code = f"""
import json, shutil, tempfile, time
from pathlib import Path
from shearcorr.stack import analyze_stack
tmp = Path(tempfile.mkdtemp(dir={str(data)!r}))
try:
    t = time.perf_counter()
    r = analyze_stack({str(data / 'big/stack.h5')!r}, {str(data / 'big/geometry.json')!r}, tmp / "out", mode="twotime",
                      time_bins={args.time_bins}, plots=True, cache_dir={str(data / 'cache')!r})
    total = time.perf_counter() - t
    size = sum(f.stat().st_size for f in (tmp / "out").iterdir())
finally:
    shutil.rmtree(tmp)
p = r.summary["provenance"]
print(json.dumps({{"seconds": total, "timing": p["timing"], "analysis_s": p["time_s"], "write_s": total - p["time_s"],
                   "output_mb": size / 1e6, "fitted": r.summary["fitted_pairs"], "pairs": r.summary["pairs"]}}))
"""
    rc, wall, peak, out, err = _run_child(code)
    print(json.dumps({"rc": rc, "wall_s": round(wall, 1), "peak_rss_gb_children": round(peak, 2),
                      "result": json.loads(out.splitlines()[-1]) if rc == 0 else err}))


def part_dask(args):
    """The same lag sums through a Dask LocalCluster and locally: identical numbers?"""
    from distributed import Client, LocalCluster

    from shearcorr.experiment.frames import open_stack
    from shearcorr.experiment.geometryfile import load_geometry
    from shearcorr.stack.engine import lag_sums
    from shearcorr.stack.plan import make_plan
    from shearcorr.experiment.correlation import q_bin_edges

    data = Path(args.data)
    src = open_stack(data / "big/stack.h5")
    geo = load_geometry(data / "big/geometry.json", src.frame_shape)
    valid = src.detector_mask()
    plan = make_plan(valid, geo.qr0, geo.phi, q_bin_edges(geo.qr0, valid, 16), 36)
    lags = np.arange(args.max_lag + 1)
    stop = args.frames
    t = time.perf_counter()
    local = lag_sums(src, plan, lags, stop=stop, groups=10)
    t_local = time.perf_counter() - t
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cl, Client(cl) as client:
        t = time.perf_counter()
        dist = lag_sums(src, plan, lags, stop=stop, groups=10, executor=client.get_executor(pure=False))
        t_dask = time.perf_counter() - t
    same = bool(np.array_equal(local.sums, dist.sums) and np.array_equal(local.poisson, dist.poisson))
    diff = float(np.nanmax(np.abs(local.correlation() - dist.correlation())))
    print(json.dumps({"frames": stop, "max_lag": args.max_lag, "identical": same, "max_abs_difference": diff,
                      "local_s": round(t_local, 1), "dask_localcluster_2_workers_s": round(t_dask, 1)}))


def part_bigger(args):
    """A stack larger than the memory the process may use: RLIMIT_AS below the uncompressed stack size."""
    data = Path(args.data)
    nbytes = BIG["n_frames"] * BIG["size"] ** 2 * 4
    limit = int(args.limit_gb * 1e9)
    rc, wall, peak, out, err = _run_child(_steady_code(data, "0:1000", args.max_lag), limit_as=limit)
    print(json.dumps({"stack_uncompressed_gb": round(nbytes / 1e9, 2), "rlimit_as_gb": args.limit_gb, "rc": rc,
                      "wall_s": round(wall, 1), "result": json.loads(out.splitlines()[-1]) if rc == 0 else err}))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("part", choices=["make", "gemm", "steady", "twotime", "dask", "bigger", "study-steady", "study-twotime",
                                     "study-echo", "study-configs", "study-echoconfigs"])
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--max-lag", type=int, default=100)
    ap.add_argument("--tile", type=int, default=None, help="gemm: the tile of the whole lag_sums (default the engine's)")
    ap.add_argument("--tiles", type=int, nargs="+", help="gemm: tile sizes of the kernel measurement (default the engine's)")
    ap.add_argument("--frame-counts", type=int, nargs="+", default=[250, 500, 1000])
    ap.add_argument("--time-bins", type=int, default=200)
    ap.add_argument("--maps-only", action="store_true", help="twotime: the correlation step alone")
    ap.add_argument("--limit-gb", type=float, default=3.0)
    ap.add_argument("--n", type=int, default=10, help="stacks per study")
    ap.add_argument("--first-seed", type=int, default=None,
                    help="study-steady: seed of the first stack (default 1000; R_s cycles 0.10/0.15/0.20/0.25 with the seed)")
    ap.add_argument("--stack-cache", default=None,
                    help="study-steady/-echo/-echoconfigs/-twotime: keep the rendered stacks in this folder (.npy + geometry.json) and read "
                         "them from there on later runs (rendering is deterministic in the seed)")
    ap.add_argument("--refit", action="store_true",
                    help="study-steady: fit the lag sums kept in --stack-cache again with the current code (no rendering, "
                         "no correlation)")
    ap.add_argument("--rows", nargs="+", default=None,
                    help="study-steady: pool the per-stack rows printed by earlier runs (files; the last row of each seed) "
                         "and print the summary, without fitting")
    ap.add_argument("--intensity", choices=("detector", "volume"), default="detector",
                    help="study-steady: render the frames as a detector records them (default) or divided by their "
                         "scattering volume (the paper's eq. 1; the studies before 2026-12-01), and analyse them so")
    ap.add_argument("--condition", action="store_true",
                    help="study-twotime/-configs: condition the configuration term on the stack's static profile")
    args = ap.parse_args(argv)
    Path(args.data).mkdir(parents=True, exist_ok=True)
    if args.part.startswith("study"):
        from bench_stack_studies import run_study  # noqa: E402  (same folder)

        run_study(args.part.split("-")[1], args)
        return
    globals()[f"part_{args.part}"](args)


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    main()
