"""Benchmark and validation of the semi-analytic engine (issue 3). Prints numbers; asserts nothing.

Usage::

    python benchmarks/bench_analytic.py speed            # one set on the 100 x 101 grid, both conventions
    python benchmarks/bench_analytic.py dataset [--sets 6000] [--sets-se 600] [--workers 2]   # paper design -> 6000
    python benchmarks/bench_analytic.py speedup [--configs 400]   # vs brute force at equal g(theta) error
    python benchmarks/bench_analytic.py validate [--configs 20000] [--mc-dir DIR] [--out table.json]  # chi^2 vs MC
    python benchmarks/bench_analytic.py table [--mc-dir DIR] [--out table.json]  # chi^2 of the current engine
    python benchmarks/bench_analytic.py validate-beams [--configs 10000] [--mc-dir DIR] [--out beams.json]
    python benchmarks/bench_analytic.py speed-beams      # one set per beam model on the 100 x 101 grid

``validate`` runs the 16 comparisons of docs/theory.md (8 parameter points x 2 conventions, full
grid; rs = 0 is one model for both conventions, simulated once); it is the long validation (about
30 CPU-minutes at 2e4 configurations). The Monte Carlo results are kept in ``--mc-dir`` (one .npz per
point, resumable), so ``table`` can re-score a changed engine without re-simulating.

``validate-beams`` is the table of docs/theory.md section 7: every beam model and the gap geometry
(the cases ``BEAM_CASES`` of tests/test_forward_beam.py) against the brute-force Monte Carlo with
coherent modes, on a 24 x 25 grid; the Monte Carlo results are kept in ``--mc-dir`` as well.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from shearcorr.forward.analytic import ensemble_arrays
from shearcorr.params import QGrid, SystemParams

VALIDATION_POINTS = [  # (n_l2, rs, d2, gamma_l): corners of the paper's box
    (100, 0.0, 0.5, 5), (200, 0.0, 3.0, 30), (100, 0.15, 3.0, 5), (200, 0.15, 0.5, 30),
    (100, 0.3, 0.5, 30), (200, 0.3, 3.0, 5), (100, 0.3, 3.0, 30), (200, 0.3, 0.5, 5),
]


def _time(fn, repeat=7):
    """(median wall s, median CPU s) over ``repeat`` calls after one warm-up call."""
    fn()
    wall, cpu = [], []
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return float(np.median(wall)), float(np.median(cpu))


def speed():
    from threadpoolctl import threadpool_limits

    grid = QGrid()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores "
          "(wall time suffers from other jobs; CPU time less)")
    # One set per core is how the engine is used (datasets, fits): BLAS pinned to one thread, as the
    # dataset workers do; threaded BLAS on these small matrices only adds contention.
    for conv in ("uniform", "stokes-einstein"):
        for rs in (0.0, 0.15, 0.3):
            p = SystemParams(150, rs, 1.0, 10, displacement=conv)
            with threadpool_limits(1):
                wall, cpu = _time(lambda: ensemble_arrays(p, grid))
            print(f"{conv:16s} rs={rs:4.2f}: {wall * 1e3:7.1f} ms wall, {cpu * 1e3:7.1f} ms CPU per set "
                  f"(one thread, median of 7 after warm-up, 100 x 101 grid)")


def _paper_design(n, seed=0):
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.uniform(100, 200, n), rng.uniform(0, 0.3, n), rng.uniform(0.5, 3, n),
                            rng.uniform(5, 30, n)])


def _one(args):
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)  # one set per core, as the dataset workers run
    row, conv = args
    p = SystemParams(*row, displacement=conv)
    return ensemble_arrays(p)[1].mean(axis=0)


def dataset(n_sets, workers, n_sets_se=None):
    """Paper design (all four parameters drawn), process pool of ``workers``; SE may use fewer sets."""
    for conv, n in (("uniform", n_sets), ("stokes-einstein", n_sets_se or n_sets)):
        design = _paper_design(n)
        t = time.perf_counter()
        with ProcessPoolExecutor(workers) as ex:
            list(ex.map(_one, [(row, conv) for row in design], chunksize=16))
        dt = time.perf_counter() - t
        print(f"{conv:16s}: {n} sets in {dt:.1f} s on {workers} workers ({dt / n * workers * 1e3:.1f} ms per set "
              f"per worker) -> 6000 sets in {dt * 6000 / n / 60:.2f} min"
              + ("" if n == 6000 else " (extrapolated)"), flush=True)


def speedup(configs):
    from shearcorr.forward.montecarlo import simulate_mc

    grid = QGrid()
    for conv in ("uniform", "stokes-einstein"):
        p = SystemParams(150, 0.15, 1.0, 10, displacement=conv)
        t = time.perf_counter()
        ds = simulate_mc(p, grid, configs=configs, seed=1)
        t_mc = time.perf_counter() - t
        err_mc = float(np.median(ds.g_theta_err.values))
        t_an = _time(lambda: ensemble_arrays(p, grid), repeat=5)[1]  # CPU time
        err_an = float(ensemble_arrays(p, grid)[2].max())  # numerical error bound of g (all points)
        # MC time to reach the analytic error: t_mc * (err_mc / err_an)^2
        t_equal = t_mc * (err_mc / err_an) ** 2
        print(f"{conv:16s}: MC {configs} configs {t_mc:.1f} s, g_theta_err {err_mc:.2e}; analytic {t_an * 1e3:.1f} ms, "
              f"error <= {err_an:.1e}; MC time at equal error {t_equal:.3g} s -> speed-up {t_equal / t_an:.2g}")


def _validate_one(args):
    (n_l2, rs, d2, gl), conv, configs, seed, outdir = args
    from shearcorr.forward.montecarlo import simulate_mc

    path = os.path.join(outdir, f"mc_{n_l2}_{rs}_{d2}_{gl}_{conv}_{configs}_{seed}.npz")
    if not os.path.exists(path):
        p = SystemParams(n_l2, rs, d2, gl, displacement=conv)
        t = time.perf_counter()
        ds = simulate_mc(p, QGrid(), configs=configs, seed=seed)
        arrays = {k: ds[k].values for k in ("I", "g", "g_err", "g_theta", "g_theta_err", "g_q", "g_q_err")}
        np.savez(path + ".tmp.npz", mc_seconds=time.perf_counter() - t, **arrays)
        os.replace(path + ".tmp.npz", path)
    return path


def _validate_jobs(configs, outdir):
    # rs = 0: both conventions are the same model and (same seed) the same MC run -> run it once
    jobs = [(pt, conv, configs, 1000 + i, outdir) for i, pt in enumerate(VALIDATION_POINTS)
            for conv in ("uniform", "stokes-einstein") if not (pt[1] == 0 and conv != "uniform")]
    return sorted(jobs, key=lambda j: j[0][1] == 0)  # polydisperse points first


def _chi2_row(path, pt, conv, configs, seed):
    n_l2, rs, d2, gl = pt
    mc = np.load(path)
    I, g, _ = ensemble_arrays(SystemParams(n_l2, rs, d2, gl, displacement=conv))
    r = (mc["g"] - g) / mc["g_err"]
    rt = (mc["g_theta"] - g.mean(axis=0)) / mc["g_theta_err"]
    rq = (mc["g_q"] - g.mean(axis=1)) / mc["g_q_err"]
    nt = r.shape[1]
    axes = np.zeros(nt, bool)
    axes[[0, 1, nt // 2 - 1, nt // 2, nt // 2 + 1, nt - 2, nt - 1]] = True  # theta ~ 0, pi/2, pi
    row_mean = r.mean(axis=0) * np.sqrt(r.shape[0])  # per-theta-row mean residual, in units of its sigma
    col_mean = r.mean(axis=1) * np.sqrt(nt)
    return {
        "n_l2": n_l2, "rs": rs, "d2": d2, "gamma_l": gl, "displacement": conv, "configs": configs, "seed": seed,
        "chi2_map": float(np.mean(r**2)), "chi2_theta": float(np.mean(rt**2)), "chi2_q": float(np.mean(rq**2)),
        "chi2_axes": float(np.mean(r[:, axes] ** 2)), "chi2_off_axes": float(np.mean(r[:, ~axes] ** 2)),
        "chi2_row_means": float(np.mean(row_mean**2)), "chi2_col_means": float(np.mean(col_mean**2)),
        "mean_res_map": float(r.mean()), "I_ratio": float(np.mean(mc["I"] / I)), "mc_seconds": float(mc["mc_seconds"]),
    }


def validate(configs, out, workers, outdir):
    """Run the MC side (resumable: one .npz per point in ``outdir``), then the chi^2 table."""
    os.makedirs(outdir, exist_ok=True)
    jobs = _validate_jobs(configs, outdir)
    with ProcessPoolExecutor(workers) as ex:
        for path in ex.map(_validate_one, jobs):
            print("done", path, flush=True)
    table(configs, out, outdir)


def table(configs, out, outdir):
    """chi^2/dof of the current engine against every finished MC run in ``outdir``."""
    rows = []
    for pt, conv, c, seed, _ in _validate_jobs(configs, outdir):
        path = os.path.join(outdir, f"mc_{pt[0]}_{pt[1]}_{pt[2]}_{pt[3]}_{conv}_{c}_{seed}.npz")
        convs = (conv,) if pt[1] > 0 else ("uniform", "stokes-einstein")
        for cv in convs:
            if os.path.exists(path):
                rows.append(_chi2_row(path, pt, cv, c, seed))
                print(json.dumps(rows[-1]), flush=True)
            else:
                print(f"missing: {pt} {cv}", flush=True)
    if out:
        with open(out, "w") as fh:
            json.dump(rows, fh, indent=1)


def _beam_cases():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from test_forward_beam import BEAM_CASES

    return BEAM_CASES


def _validate_beam_one(args):
    name, configs, outdir, seed = args
    from shearcorr.forward import simulate

    params, beam = _beam_cases()[name]
    grid = QGrid(np.geomspace(0.5, 5.0, 24), np.linspace(0.0, np.pi, 25))
    path = os.path.join(outdir, f"beam_{name}_{configs}_{seed}.npz")
    t0 = time.process_time()
    if not os.path.exists(path):
        m = simulate(params, grid, engine="mc", configs=configs, seed=seed, beam=beam)
        np.savez(path, g=m.g.values, g_err=m.g_err.values, I=m.I.values, g_q=m.g_q.values, g_q_err=m.g_q_err.values,
                 g_theta=m.g_theta.values, g_theta_err=m.g_theta_err.values, modes=m.attrs.get("beam_modes", 1))
    t_mc = time.process_time() - t0
    z = np.load(path)
    t0 = time.process_time()
    a = simulate(params, grid, beam=beam)
    t_a = time.process_time() - t0
    r = (z["g"] - a.g.values) / z["g_err"]
    rq = (z["g_q"] - a.g_q.values) / z["g_q_err"]
    rt = (z["g_theta"] - a.g_theta.values) / z["g_theta_err"]
    return {"case": name, "beam": beam.to_dict(), "params": params.to_dict(), "configs": configs, "seed": seed,
            "modes": int(z["modes"]), "chi2_map": float(np.mean(r**2)), "chi2_g_q": float(np.mean(rq**2)),
            "chi2_g_theta": float(np.mean(rt**2)), "mean_r": float(r.mean()),
            "common_mode_q": float(rq.mean()), "I_ratio": float(np.mean(z["I"][:, 0] / a.I.values[:, 0])),
            "cpu_mc_s": round(t_mc, 1), "cpu_analytic_s": round(t_a, 3)}


def validate_beams(configs, out, workers, outdir):
    os.makedirs(outdir, exist_ok=True)
    jobs = [(name, configs, outdir, 2000 + k) for k, name in enumerate(_beam_cases())]
    rows = []
    with ProcessPoolExecutor(workers) as ex:
        for row in ex.map(_validate_beam_one, jobs):
            print(json.dumps(row), flush=True)
            rows.append(row)
    if out:
        with open(out, "w") as fh:
            json.dump(rows, fh, indent=1)


def speed_beams():
    """CPU time of one parameter set per beam model (100 x 101 grid, second call: cached transfers)."""
    from threadpoolctl import threadpool_limits

    grid = QGrid()
    for name, (params, beam) in _beam_cases().items():
        with threadpool_limits(1):
            wall, cpu = _time(lambda: ensemble_arrays(params, grid, beam=beam), repeat=3)
        print(f"{name:14s} rs={params.rs:.2f} {params.displacement:16s}: {1e3 * cpu:7.1f} ms CPU ({1e3 * wall:7.1f} ms wall)",
              flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["speed", "dataset", "speedup", "validate", "table", "validate-beams", "speed-beams"])
    ap.add_argument("--sets", type=int, default=200)
    ap.add_argument("--sets-se", type=int, default=None, help="sets for the Stokes-Einstein run (default --sets)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--configs", type=int, default=None)
    ap.add_argument("--out", default=None)
    ap.add_argument("--mc-dir", default="validate_mc", help="where validate keeps one MC result per point")
    a = ap.parse_args()
    if a.what == "speed":
        speed()
    elif a.what == "dataset":
        dataset(a.sets, a.workers, a.sets_se)
    elif a.what == "speedup":
        speedup(a.configs or 400)
    elif a.what == "validate":
        validate(a.configs or 20000, a.out, a.workers, a.mc_dir)
    elif a.what == "validate-beams":
        validate_beams(a.configs or 10000, a.out, a.workers, a.mc_dir)
    elif a.what == "speed-beams":
        speed_beams()
    else:
        table(a.configs or 20000, a.out, a.mc_dir)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
