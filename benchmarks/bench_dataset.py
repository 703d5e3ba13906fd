"""Dataset generation throughput: engine time per sample, samples/s with 1 and 2 workers, the paper's
6000-set dataset on the full grid written to Zarr, and the driver's peak memory.

Targets (issue 4): >= 1.7x with 2 workers; the 6000-set dataset in <= 3 min; driver peak <= 1 GiB.
Run: ``nice python benchmarks/bench_dataset.py [--n-scaling 400] [--n-paper 6000] [--workers 2]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# The paper-dataset run happens in a child process that reports its own peak memory (the driver only:
# local pool workers are children of the forkserver, not of the driver).
_DRIVER = """
import json, resource, sys, time
from shearcorr.cli import main
t = time.perf_counter()
status = main(sys.argv[1:])
ru = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"status": status, "seconds": time.perf_counter() - t, "peak_rss_mib": ru.ru_maxrss / 1024,
                  "driver_cpu_s": ru.ru_utime + ru.ru_stime}))
"""


def engine_time(n: int = 40) -> float:
    """Median seconds per sample of the analytic engine, single-threaded, paper grid and ranges."""
    from threadpoolctl import threadpool_limits

    from shearcorr.forward.analytic import ensemble_arrays
    from shearcorr.data.design import make_design
    from shearcorr.params import PARAM_NAMES, QGrid, SystemParams

    grid = QGrid()
    rows = make_design(n, 123).sample()
    times = []
    with threadpool_limits(1):
        ensemble_arrays(SystemParams(150, 0.1, 1, 10), grid)  # compile / warm up
        for i in range(n):
            p = SystemParams(*(float(rows[k][i]) for k in PARAM_NAMES))
            t = time.perf_counter()
            ensemble_arrays(p, grid)
            times.append(time.perf_counter() - t)
    return float(np.median(times))


def _engine_block(seed: int, n: int) -> None:
    from threadpoolctl import threadpool_limits

    from shearcorr.forward.analytic import ensemble_arrays
    from shearcorr.data.design import make_design
    from shearcorr.params import PARAM_NAMES, QGrid, SystemParams

    rows, grid = make_design(n, seed).sample(), QGrid()
    with threadpool_limits(1):
        for i in range(n):
            ensemble_arrays(SystemParams(*(float(rows[k][i]) for k in PARAM_NAMES)), grid)


def raw_engine(n: int, workers: int) -> float:
    """Samples/s of the bare engine in ``workers`` processes (no dataset machinery): what the machine
    gives right now, to tell the machinery's overhead from other load on the cores."""
    import concurrent.futures as cf
    import multiprocessing

    ctx = multiprocessing.get_context("forkserver")
    with cf.ProcessPoolExecutor(workers, mp_context=ctx) as pool:
        list(pool.map(_engine_block, range(workers), [1] * workers))  # start-up and warm-up
        t = time.perf_counter()
        list(pool.map(_engine_block, range(workers), [n // workers] * workers))
        return (n // workers * workers) / (time.perf_counter() - t)


def scaling(n: int, workers: int, folder: Path) -> float:
    """Samples/s of a full generate() call (pool start-up included) on the paper grid."""
    from shearcorr.data import generate
    from shearcorr.parallel import executor_from

    t = time.perf_counter()
    with executor_from(workers=workers) as executor:
        generate(folder / f"scaling-{workers}.zarr", n=n, seed=1, executor=executor,
                 chunk_size=max(1, n // (8 * workers)), progress=False)
    return n / (time.perf_counter() - t)


def paper(n: int, workers: int, folder: Path) -> dict:
    out = folder / "paper.zarr"
    cmd = [sys.executable, "-c", _DRIVER, "dataset", "--n", str(n), "--seed", "0", "-o", str(out),
           "--workers", str(workers)]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    report["store_mib"] = sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 1024**2
    return report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-scaling", type=int, default=400, help="samples for the 1- vs 2-worker runs")
    ap.add_argument("--n-paper", type=int, default=6000, help="samples of the paper dataset run")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="workers of the paper run")
    ap.add_argument("--skip-paper", action="store_true")
    args = ap.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    t_engine = engine_time()
    print(f"analytic engine: {1e3 * t_engine:.1f} ms per sample (median, 1 thread, 100 x 101 grid)"
          f" -> ideal {1 / t_engine:.1f} samples/s per core")
    with tempfile.TemporaryDirectory(prefix="bench-dataset-") as tmp:
        folder, rates = Path(tmp), {}
        for k in (1, 2):
            raw, gen = raw_engine(args.n_scaling, k), scaling(args.n_scaling, k, folder)
            rates[k] = gen
            print(f"{k} worker(s), {args.n_scaling} samples: generate {gen:.1f} samples/s; bare engine in {k}"
                  f" process(es) {raw:.1f} samples/s; machinery efficiency {gen / raw:.0%}")
        print(f"speed-up of generate with 2 workers: {rates[2] / rates[1]:.2f}x (target >= 1.7x)")
        if not args.skip_paper:
            rep = paper(args.n_paper, args.workers, folder)
            rate = args.n_paper / rep["seconds"]
            print(f"paper dataset: {args.n_paper} samples on 100 x 101 in {rep['seconds']:.1f} s ({rate:.1f} samples/s,"
                  f" {args.workers} workers; target <= 180 s), store {rep['store_mib']:.0f} MiB,"
                  f" driver peak RSS {rep['peak_rss_mib']:.0f} MiB (target <= 1024),"
                  f" driver CPU {rep['driver_cpu_s']:.1f} s")
        print(f"load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
