"""Throughput of the brute-force Monte Carlo engine on the paper's 100 x 101 grid.

Prints configurations/s and ms/configuration for n_l2 = 100, 150, 200 with all cores (median of
``--repeats`` runs after a warm-up that also compiles), the speed-up over the authors' reference
C++ (0.062 / 0.094 / 0.126 s per configuration, single-threaded, same kind of 2-core machine), the
single-thread vs all-thread ratio, and peak memory. Usage::

    nice python benchmarks/bench_montecarlo.py [--configs 640] [--repeats 3]

Timings are of the whole public call ``simulate_mc`` (random draws, window selection, kernels,
accumulation, result assembly). Other load on the machine lowers them; check ``uptime`` first.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time
import tracemalloc

import numba
import numpy as np

from shearcorr.forward.montecarlo import simulate_mc
from shearcorr.params import QGrid, SystemParams

REFERENCE_S = {100: 0.062, 150: 0.094, 200: 0.126}


def _cpu() -> float:
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


def _time(params, grid, configs, repeats, seed=0, cpu_out=None):
    """Median wall time per configuration; appends the median CPU (core) time per config to cpu_out."""
    times, cpus = [], []
    for r in range(repeats):
        c0, t0 = _cpu(), time.perf_counter()
        simulate_mc(params, grid, configs=configs, seed=seed + r)
        times.append(time.perf_counter() - t0)
        cpus.append(_cpu() - c0)
    if cpu_out is not None:
        cpu_out.append(statistics.median(cpus) / configs)
    return statistics.median(times) / configs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", type=int, default=640, help="configurations per timed run (default 640)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per case (median; default 3)")
    args = ap.parse_args()
    grid = QGrid()
    threads = numba.get_num_threads()
    simulate_mc(SystemParams(100, 0, 1, 10), QGrid.log(0.5, 5, 4, 5), configs=2, seed=0)  # compile / load cache
    print(f"grid {grid.shape[0]} x {grid.shape[1]}, {args.configs} configs/run, median of {args.repeats}, "
          f"numba threads {threads} (threading layer {numba.threading_layer()}), "
          f"load average {os.getloadavg()[0]:.2f}")
    print("wall = elapsed time; cpu = core time used by this process (robust to other load on the machine)")
    print(f"{'n_l2':>5} {'rs':>4} {'config/s':>9} {'ms/config':>10} {'vs C++':>8} {'cpu ms/config':>14}")
    for n_l2, rs in ((100, 0.0), (150, 0.0), (200, 0.0), (150, 0.2)):
        p = SystemParams(n_l2, rs, 1.0, 10.0)
        _time(p, grid, 64, 1)  # warm-up
        cpu = []
        per = _time(p, grid, args.configs, args.repeats, cpu_out=cpu)
        print(f"{n_l2:>5} {rs:>4} {1 / per:>9.1f} {per * 1e3:>10.3f} {REFERENCE_S[n_l2] / per:>7.1f}x "
              f"{cpu[0] * 1e3:>14.3f}")
    p = SystemParams(150, 0.0, 1.0, 10.0)
    all_threads = _time(p, grid, args.configs, args.repeats)
    numba.set_num_threads(1)
    try:
        one = _time(p, grid, args.configs, args.repeats)
    finally:
        numba.set_num_threads(threads)
    print(f"n_l2 = 150: 1 thread {one * 1e3:.3f} ms/config, {threads} threads {all_threads * 1e3:.3f} ms/config, "
          f"speed-up {one / all_threads:.2f}x; single-thread vs C++ {REFERENCE_S[150] / one:.1f}x")
    tracemalloc.start()
    simulate_mc(SystemParams(200, 0.2, 1.0, 10.0), grid, configs=256, seed=1)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory: {peak / 2**20:.1f} MiB traced by numpy/Python (n_l2 = 200, rs = 0.2); "
          f"process max RSS {rss:.0f} MiB (includes numba/LLVM)")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
