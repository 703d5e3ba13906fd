"""The direct fit's (and the polish's) CPU cost: this checkout against another, interleaved set by set.

Usage::

    python benchmarks/bench_fitcost.py --against /path/to/other/src --cache lv [--sets 0:30]
                                       [--displacement stokes-einstein uniform] [--polish MODEL MODEL_SE]
                                       [--jsonl out.jsonl]

Two worker processes, one per source tree (``PYTHONPATH``; "old" = ``--against``, "new" = this checkout's
``src``), each with OMP/OpenBLAS/numba threads 1, take the same Monte Carlo sets in turn (the order alternates
from set to set), so both see the same machine load; only one works at a time. Sets: the cached N = 300 test
stores of ``bench_inversion.py levels`` (``CACHE/test_mc300_<displacement>_100.zarr``, samples
``--sets a:b``). Per set: :func:`shearcorr.inverse.fit.fit_dataset` (or, with ``--polish``, the family's
``predict``, polish on: the first model file for uniform, the second for Stokes-Einstein) timed with
``time.process_time`` in the worker. Printed per convention: the CPU medians, the median per-set ratio
new / old, the machine load, and how far the results moved: max over the sets of |new - old| / std(old) per
parameter and max |std(new) / std(old) - 1|.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

NAMES = ("rs", "d2", "gamma_l")


def worker(cache: str, models: list) -> None:
    """Read "displacement index" lines, answer one JSON line each (values, std, CPU seconds, load)."""
    from shearcorr.data import open_dataset
    from shearcorr.inverse.fit import fit_dataset

    stores, loaded = {}, {}
    print(json.dumps({"ready": __import__("shearcorr").__file__}), flush=True)
    for line in sys.stdin:
        disp, i = line.split()
        if disp not in stores:
            stores[disp] = open_dataset(os.path.join(cache, f"test_mc300_{disp}_100.zarr"), load=True)
        one = stores[disp].isel(sample=int(i))
        if models:
            from shearcorr.inverse.modelfile import load_model

            path = models[-1] if disp == "stokes-einstein" else models[0]
            model = loaded.setdefault(path, load_model(path))
            c0 = time.process_time()
            pr = model.predict(one)
            cpu = time.process_time() - c0
            values = {k: float(np.ravel(pr[k].mean)[0]) for k in NAMES}
            std = {k: float(np.ravel(pr[k].std)[0]) for k in NAMES}
        else:
            c0 = time.process_time()
            f = fit_dataset(one)
            cpu = time.process_time() - c0
            values, std = {k: f.values[k] for k in NAMES}, {k: f.std[k] for k in NAMES}
        print(json.dumps({"disp": disp, "i": int(i), "cpu": cpu, "load": os.getloadavg()[0], "values": values,
                          "std": std}), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--against", required=True, help="the other source tree (its src directory)")
    ap.add_argument("--cache", required=True, help="bench_inversion.py's cache with the N = 300 stores")
    ap.add_argument("--sets", default="0:30", help="samples a:b of the stores")
    ap.add_argument("--displacement", nargs="+", default=["stokes-einstein", "uniform"])
    ap.add_argument("--polish", nargs="+", default=None, help="family files (uniform[, Stokes-Einstein]): time the polish")
    ap.add_argument("--jsonl", default=None, help="also append every answer to this file")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args.cache, args.polish or [])
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "src")
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", NUMBA_NUM_THREADS="1")
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--against", args.against, "--cache", args.cache]
    cmd += ["--polish", *args.polish] if args.polish else []
    procs = {tag: subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                   env=dict(env, PYTHONPATH=os.path.abspath(src)))
             for tag, src in (("old", args.against), ("new", here))}
    for tag, p in procs.items():
        print(tag, json.loads(p.stdout.readline())["ready"], flush=True)
    log = open(args.jsonl, "a") if args.jsonl else None

    def ask(tag, disp, i):
        procs[tag].stdin.write(f"{disp} {i}\n")
        procs[tag].stdin.flush()
        r = json.loads(procs[tag].stdout.readline())
        if log:
            log.write(json.dumps(dict(r, code=tag)) + "\n")
        return r

    a, b = (int(v) for v in args.sets.split(":"))
    for tag in procs:  # imports, compilation, first-use caches
        ask(tag, args.displacement[0], b)
    turn = 0
    for disp in args.displacement:
        rows = []
        for i in range(a, b):
            order = ("old", "new") if turn % 2 == 0 else ("new", "old")
            turn += 1
            rows.append({tag: ask(tag, disp, i) for tag in order})
        o, n = (np.array([r[t]["cpu"] for r in rows]) for t in ("old", "new"))
        load = [r[t]["load"] for r in rows for t in ("old", "new")]
        moved = {k: max(abs(r["new"]["values"][k] - r["old"]["values"][k]) / r["old"]["std"][k] for r in rows)
                 for k in NAMES}
        std = {k: max(abs(r["new"]["std"][k] / r["old"]["std"][k] - 1.0) for r in rows) for k in NAMES}
        print(f"{disp}: {len(rows)} sets, CPU median old {np.median(o):.3f} s, new {np.median(n):.3f} s, "
              f"median ratio new/old {np.median(n / o):.3f} ({np.min(n / o):.2f}-{np.max(n / o):.2f}), "
              f"load {min(load):.1f}-{max(load):.1f}; max |new - old|/std " + " / ".join(f"{moved[k]:.1e}" for k in NAMES)
              + "; max |std new/old - 1| " + " / ".join(f"{std[k]:.1e}" for k in NAMES), flush=True)
    for p in procs.values():
        p.stdin.close()
        p.wait()


if __name__ == "__main__":
    main()
