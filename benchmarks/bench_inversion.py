"""Inversion on noisy data: the likelihood fit and an amortized model at every noise level, against the
information limit, and the checks of the noise model (zero-mean bias, chi^2 calibration of the covariance).

Usage (each part prints a table; everything is cached under --cache so a rerun only re-scores)::

    python benchmarks/bench_inversion.py levels  [--sets 30] [--levels 20000 2000 300] [--displacement uniform stokes-einstein]
                                                 [--model family.npz [family_se.npz]] [--no-fit]
                                                 [--cache bench_inversion_cache]
    python benchmarks/bench_inversion.py bias    [--replicas 100] [--configs 128 320 960]
    python benchmarks/bench_inversion.py chi2    [--replicas 100] [--configs 320]
    python benchmarks/bench_inversion.py zdist   --model family.npz --store train.zarr [--subset 30]

``levels``: test sets drawn from the paper's priors (n_l2 ~ U(100, 200) unknown to the fit, R_s ~ U(0, 0.3),
D2 ~ U(0.5, 3), gamma L ~ U(5, 30)), one Monte Carlo estimate each at N configurations (analytic for
the noise-free level), fitted with :func:`shearcorr.inverse.fit.fit_dataset`; per target the paper's Err,
68/95 % coverage of the reported intervals, the z-score spread (latent coordinates: R_s^2, D2, gamma L),
and the efficiency rms(error / CRB) with the Cramér-Rao bound at the truth (1 = at the information limit).
``bias``: MC - E[g_N] over replicas (matched filter of the predicted bias, and the map average) at three
parameter points on the paper's grid; ``chi2``: chi^2/dof of the truth under the full covariance and under a
diagonal one, for the map and the g(theta), g(q) profiles. ``zdist``: the shape of a model's z-score
distribution on the held-out split of its training store (noise-free inputs, scored by the member trained
for the most configurations): std, kurtosis, the robust std (1.4826 MAD) and the spread of the z std over
random subsets of ``--subset`` samples (what a 30-set test can show).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from shearcorr.params import QGrid, SystemParams

POINTS = (SystemParams(150, 0.1, 1.0, 10.0), SystemParams(200, 0.3, 0.5, 5.0), SystemParams(100, 0.2, 2.5, 28.0))
NAMES = ("rs", "d2", "gamma_l")


def _test_set(cache: Path, level, displacement: str, sets: int):
    """The cached test store of a level (engine mc at N configurations, or analytic for level None)."""
    from shearcorr.data import generate, open_dataset

    tag = "exact" if level is None else f"mc{level}"
    path = cache / f"test_{tag}_{displacement}_{sets}.zarr"
    if not path.exists():
        kw = {} if level is None else {"engine": "mc", "configs": int(level)}
        generate(path, n=sets, seed=2024, displacement=displacement, chunk_size=1, progress=False, **kw)
    return open_dataset(path, load=True)


def _score(rows: list[dict]) -> dict:
    """Err, coverage, z spread and efficiency per target from per-set rows (latent truth, estimate, std, CRB)."""
    from shearcorr.inverse.evaluation import relative_error

    out = {}
    for k, name in enumerate(NAMES):
        truth = np.array([r["truth"][name] for r in rows])
        est = np.array([r["values"][name] for r in rows])
        zt = np.array([(r["latent"][k] - r["latent_truth"][k]) / r["latent_std"][k] for r in rows])
        eff = np.array([(r["latent"][k] - r["latent_truth"][k]) / r["crb"][k] for r in rows])
        inside = {lv: np.mean([r["intervals"][name][lv][0] <= r["truth"][name] <= r["intervals"][name][lv][1]
                               for r in rows]) for lv in ("68", "95")}
        out[name] = {"err": relative_error(truth, est), "cov68": float(inside["68"]), "cov95": float(inside["95"]),
                     "z_std": float(np.std(zt)), "z_mean": float(np.mean(zt)),
                     "rms_over_crb": float(np.sqrt(np.mean(eff**2)))}
    return out


def run_levels(args) -> dict:
    from shearcorr.inverse.crb import cramer_rao
    from shearcorr.inverse.fit import fit_dataset
    from shearcorr.result import grid_from_dataset

    cache = Path(args.cache)
    cache.mkdir(exist_ok=True)
    report = {}
    for disp in args.displacement:
        for level in [None if v == "exact" else int(v) for v in args.levels]:
            t0 = time.perf_counter()
            ds = _test_set(cache, level, disp, args.sets)
            grid = grid_from_dataset(ds)
            rows, cpu = [], []
            for i in range(ds.sizes["sample"]):
                one = ds.isel(sample=i)
                p = SystemParams(*(float(one[k]) for k in ("n_l2", "rs", "d2", "gamma_l")), displacement=disp)
                lat_truth = [p.rs**2, p.d2, p.gamma_l]
                crb = (cramer_rao(p, grid, level).std if level is not None else None)
                row = {"truth": {"rs": p.rs, "d2": p.d2, "gamma_l": p.gamma_l}, "latent_truth": lat_truth,
                       "crb": [crb["rs2"], crb["d2"], crb["gamma_l"]] if crb else [np.nan] * 3}
                if not args.no_fit:
                    c0 = time.process_time()
                    f = fit_dataset(one)
                    cpu.append(time.process_time() - c0)
                    row.update(values=f.values, intervals=f.intervals, latent=list(f.latent["value"][:3]),
                               latent_std=list(np.sqrt(np.diag(f.latent["cov"]))[:3]), chi2_red=f.chi2_red)
                rows.append(row)
            key = f"{disp}/{'noise-free' if level is None else level}"
            report[key] = {}
            if args.no_fit:
                pass
            elif level is None:
                from shearcorr.inverse.evaluation import relative_error

                report[key] = {"fit": {n: {"err": relative_error([r["truth"][n] for r in rows],
                                                                 [r["values"][n] for r in rows])} for n in NAMES}}
            else:
                report[key] = {"fit": _score(rows)}
            if cpu:
                report[key]["fit_cpu_s_median"] = float(np.median(cpu))
            if args.model:
                report[key]["model"] = _model_scores(_model_for(args.model, disp), ds, rows)
            print(f"{key}: {args.sets} sets in {time.perf_counter() - t0:.0f} s"
                  + (f" (fit CPU median {np.median(cpu):.2f} s)" if cpu else ""))
            for who, sc in report[key].items():
                if not isinstance(sc, dict):
                    continue
                member = f" (member N = {sc['trained_configs']:g})" if "trained_configs" in sc else ""
                print(f"  {who:6s}{member} " + " | ".join(
                    f"{n}: Err {100 * s['err']:.2f} %" + ("" if "z_std" not in s else
                    f", cov68/95 {100 * s['cov68']:.0f}/{100 * s['cov95']:.0f} %, z std {s['z_std']:.2f}, "
                    f"rms/CRB {s.get('rms_over_crb', float('nan')):.2f}") for n, s in sc.items() if n in NAMES))
    return report


def _model_for(paths: list, displacement: str):
    """The model (or family) of ``paths`` trained on ``displacement`` (else the first one)."""
    from shearcorr.inverse.modelfile import load_model

    models = [load_model(p) for p in paths]
    for m in models:
        if m.provenance.get("dataset_attrs", {}).get("displacement", "uniform") == displacement:
            return m
    return models[0]


def _model_scores(model, ds, rows) -> dict:
    """The amortized model's Err, coverage, z spread and rms(error / CRB) (latent R_s^2, D2, gamma L, as
    the fit's) on a test store, with the member of a family chosen for the store's N."""
    from shearcorr.inverse.evaluation import evaluate

    ev = evaluate(model, ds)
    out = {"trained_configs": ev.trained_configs, "seconds_per_sample": ev.seconds_per_sample}
    for k, n in enumerate(NAMES):
        if n not in ev.err:
            continue
        est = np.clip(ev.predictions[n].mean, 0, None)
        eff = np.array([((e**2 if n == "rs" else e) - r["latent_truth"][k]) / r["crb"][k] for e, r in zip(est, rows)])
        out[n] = {"err": ev.err[n], "cov68": ev.coverage68[n], "cov95": ev.coverage95[n], "z_std": ev.z_std[n],
                  "rms_over_crb": float(np.sqrt(np.mean(eff**2)))}
    return out


def run_bias(args) -> dict:
    from shearcorr.forward.montecarlo import replicas
    from shearcorr.inverse.noise import ensemble_noise

    grid = QGrid()
    out = {}
    for p in POINTS:
        for n in args.configs:
            t0 = time.perf_counter()
            g, _ = replicas(p, grid, n, args.replicas, seed=7)
            nm = ensemble_noise(p, grid, n, n_samples=0)
            w = (nm.mean - nm.g) / nm.var
            res = {}
            for name, stat in (("matched", lambda x: (w * x).sum(axis=(1, 2))), ("mean", lambda x: x.mean(axis=(1, 2)))):
                t, t0_ = stat(g - nm.mean), stat(g - nm.g)
                se = t.std(ddof=1) / np.sqrt(t.size)
                res[name] = {"mc_minus_model": float(t.mean()), "mc_minus_exact": float(t0_.mean()), "se": float(se),
                             "z_model": float(t.mean() / se), "z_exact": float(t0_.mean() / se)}
            key = f"{p.n_l2:g}/{p.rs:g}/{p.d2:g}/{p.gamma_l:g} N={n}"
            out[key] = res
            m = res["mean"]
            print(f"{key}: map mean MC - E[g_N] {m['mc_minus_model']:+.2e} +- {m['se']:.1e} ({m['z_model']:+.1f} sigma); "
                  f"MC - g {m['mc_minus_exact']:+.2e} ({m['z_exact']:+.1f} sigma); matched filter z "
                  f"{res['matched']['z_model']:+.1f} vs {res['matched']['z_exact']:+.1f} for the exact g "
                  f"[{time.perf_counter() - t0:.0f} s]")
    return out


def run_chi2(args) -> dict:
    from shearcorr.forward.montecarlo import replicas
    from shearcorr.inverse.noise import ensemble_noise

    grid = QGrid()
    nq, nt = grid.shape
    out = {}
    for p in POINTS:
        for n in args.configs:
            g, _ = replicas(p, grid, n, args.replicas, seed=8)
            nm = ensemble_noise(p, grid, n)
            w = nm.whitener()
            full = np.array([np.sum(w(x - nm.mean) ** 2) for x in g]) / nm.var.size
            diag = np.array([np.sum((x - nm.mean) ** 2 / nm.var) for x in g]) / nm.var.size
            mu, C = nm.profile_covariance()
            res = {"map": {"full": float(full.mean()), "diagonal": float(diag.mean()), "full_sd": float(full.std())}}
            for name, sl, ind in (("g_theta", slice(0, nt), nm.var.sum(axis=0) / nq**2),
                                  ("g_q", slice(nt, None), nm.var.sum(axis=1) / nt**2)):
                L = np.linalg.cholesky(C[sl, sl])
                prof = np.concatenate([g.mean(axis=1), g.mean(axis=2)], axis=1)[:, sl] - mu[sl]
                chi_f = np.mean([np.sum(np.linalg.solve(L, r) ** 2) for r in prof]) / ind.size
                chi_d = float(np.mean(prof**2 / ind))
                res[name] = {"full": float(chi_f), "diagonal": chi_d}
            key = f"{p.n_l2:g}/{p.rs:g}/{p.d2:g}/{p.gamma_l:g} N={n}"
            out[key] = res
            print(f"{key}: chi2/dof map {res['map']['full']:.3f} (diagonal {res['map']['diagonal']:.3f}); "
                  f"g(theta) {res['g_theta']['full']:.3f} ({res['g_theta']['diagonal']:.3f}); "
                  f"g(q) {res['g_q']['full']:.3f} ({res['g_q']['diagonal']:.3f})")
    return out


def run_zdist(args) -> dict:
    """z-score distribution of the highest-N member on the held-out split (module docstring)."""
    from shearcorr.data import open_dataset
    from shearcorr.inverse.evaluation import evaluate
    from shearcorr.inverse.modelfile import load_model

    model = load_model(args.model)
    member = max(getattr(model, "members", (model,)), key=lambda m: m.noise_configs or np.inf)
    with open_dataset(args.store) as ds:
        ev = evaluate(member, ds, index=member.test_index, input_noise=False)
    rng, out = np.random.default_rng(0), {}
    print(f"member N = {member.noise_configs}, {member.test_index.size} held-out samples (noise-free inputs)")
    for t in NAMES:
        p = ev.predictions[t]
        z = (p.mean - p.true) / p.std
        subs = [float(np.std(rng.choice(z, args.subset, replace=False))) for _ in range(2000)]
        out[t] = {"z_std": float(np.std(z)), "kurtosis": float(np.mean(z**4) / np.mean(z**2) ** 2),
                  "robust_std": float(1.4826 * np.median(np.abs(z - np.median(z)))),
                  "subset_std_10_50_90": [float(v) for v in np.percentile(subs, [10, 50, 90])]}
        r = out[t]
        print(f"{t}: z std {r['z_std']:.2f}, kurtosis {r['kurtosis']:.1f}, robust std {r['robust_std']:.2f}; "
              f"z std of {args.subset} samples: 10/50/90 % = " + " / ".join(f"{v:.2f}" for v in r["subset_std_10_50_90"]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="what", required=True)
    lv = sub.add_parser("levels")
    lv.add_argument("--sets", type=int, default=30)
    lv.add_argument("--levels", nargs="+", default=["exact", "20000", "2000", "300"])
    lv.add_argument("--displacement", nargs="+", default=["uniform", "stokes-einstein"])
    lv.add_argument("--model", nargs="+", default=None,
                    help="model files of shearcorr train to score next to the fit (each displacement convention is "
                         "scored with the model trained on it)")
    lv.add_argument("--no-fit", action="store_true", help="score the models only")
    lv.add_argument("--cache", default="bench_inversion_cache")
    for name, default in (("bias", [128, 320, 960]), ("chi2", [320])):
        p = sub.add_parser(name)
        p.add_argument("--replicas", type=int, default=100)
        p.add_argument("--configs", type=int, nargs="+", default=default, help="multiples of 64")
    zd = sub.add_parser("zdist")
    zd.add_argument("--model", required=True)
    zd.add_argument("--store", required=True, help="the model's training store (its held-out split is scored)")
    zd.add_argument("--subset", type=int, default=30)
    for p in sub.choices.values():
        p.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    args = ap.parse_args()
    out = {"levels": run_levels, "bias": run_bias, "chi2": run_chi2, "zdist": run_zdist}[args.what](args)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
