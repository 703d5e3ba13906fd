"""Inversion on noisy data: the likelihood fit and an amortized model at every noise level, against the
information limit, and the checks of the noise model (zero-mean bias, chi^2 calibration of the covariance).

Usage (each part prints a table; everything is cached under --cache so a rerun only re-scores)::

    python benchmarks/bench_inversion.py levels  [--sets 30] [--levels 20000 2000 300] [--displacement uniform stokes-einstein]
                                                 [--model family.npz [family_se.npz]] [--no-fit] [--calibrate] [--no-crb]
                                                 [--no-polish] [--gp-std] [--polish-steps 2] [--polish-samples 16]
                                                 [--cache bench_inversion_cache]
    python benchmarks/bench_inversion.py bias    [--replicas 100] [--configs 128 320 960]
    python benchmarks/bench_inversion.py chi2    [--replicas 100] [--configs 320]
    python benchmarks/bench_inversion.py zdist   --model family.npz --store train.zarr [--subset 30] [--calibrate]
    python benchmarks/bench_inversion.py shared  [--point 129.3026 0.2708 0.9501 20.7302] [--samples 64 128 256]
                                                 [--seeds 6] [--reference 1024] [--configs 20000]

``levels``: test sets drawn from the paper's priors (n_l2 ~ U(100, 200) unknown to the fit, R_s ~ U(0, 0.3),
D2 ~ U(0.5, 3), gamma L ~ U(5, 30)), one Monte Carlo estimate each at N configurations (analytic for
the noise-free level), fitted with :func:`shearcorr.inverse.fit.fit_dataset`; per target the paper's Err,
68/95 % coverage of the reported intervals, the z-score spread (latent coordinates: R_s^2, D2, gamma L),
and the efficiency rms(error / CRB) with the Cramér-Rao bound at the truth (1 = at the information limit).
``bias``: MC - E[g_N] over replicas (matched filter of the predicted bias, and the map average) at three
parameter points on the paper's grid; ``chi2``: chi^2/dof of the truth under the full covariance and under a
diagonal one, for the map and the g(theta), g(q) profiles. ``zdist``: the shape of a model's z-score
distribution on the held-out split of its training store, every member on held-out inputs drawn at its N
(as ``shearcorr evaluate``): std, kurtosis, the robust std (1.4826 MAD), the spread of the z std over
random subsets of ``--subset`` samples (what a 30-set test can show) and the z std in thirds of the
target's prior range, of D2's (along which the GP's error changes most) and in gamma L < 12, 12-20, > 20.

``shared``: the shared (configuration) part of the covariance at one parameter set (default: test set 25 of
the N = 20 000 sets, R_s = 0.27): the Cramér-Rao bound sd(R_s^2) on the paper's grid over ``--seeds`` seeds per
K (mean, spread), against one ``--reference`` K, its smoothness over n_l2 = 125-130 (K = 64, seed 0), and the
CPU time of building the covariance (noise model + whitener) per K.

A model is scored polished by the likelihood ("polished", :mod:`shearcorr.inverse.polish`, the default of
``predict``) and as its own answer ("model"); with ``--gp-std`` and per-sample stds
(:mod:`shearcorr.inverse.calibration`) also with its GP's own std ("model_gp",
:meth:`~shearcorr.inverse.model.InversionModel.uncalibrated`): same data. Each row gives the CPU time of
predicting one sample at a time (median; run with OMP/OpenBLAS/numba threads 1 for one core). ``--calibrate`` adds the per-sample stds to a model file written without
them (format version <= 4) before scoring.
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
#: Bins of the true value for the z std: thirds of the paper's prior of each target, and of gamma L.
THIRDS = {"rs": (0.0, 0.1, 0.2, 0.3), "d2": (0.5, 4 / 3, 13 / 6, 3.0), "gamma_l": (5.0, 40 / 3, 65 / 3, 30.0)}
GL_BINS = (0.0, 12.0, 20.0, np.inf)


def _bin_stds(z, value, edges) -> list:
    """z std of the samples whose value lies in each bin [edges[k], edges[k+1]) (NaN when < 3)."""
    z, value = np.asarray(z), np.asarray(value)
    out = []
    for a, b in zip(edges[:-1], edges[1:]):
        sel = (value >= a) & (value < b) if b != edges[-1] else (value >= a) & (value <= b)
        out.append(float(np.std(z[sel])) if sel.sum() >= 3 else float("nan"))
    return out


def _latent_z(member, ev, name) -> np.ndarray:
    """(u(true) - m)/s of target ``name`` in the member's latent u (y, or log y) from an Evaluation."""
    p = ev.predictions[name]
    if member.regressors[name].transform == "log":
        return (np.log(p.true) - np.log(p.mean)) / (p.std / p.mean)
    return (p.true - p.mean) / p.std


_LOADED: dict = {}


def _load(path, calibrate: bool):
    """A model file, with per-sample stds added if ``calibrate`` and it has none (loaded once per run)."""
    from shearcorr.inverse.modelfile import load_model

    key = (str(path), bool(calibrate))
    if key in _LOADED:
        return _LOADED[key]
    model = load_model(path)
    if calibrate and not any(m.calibration is not None for m in getattr(model, "members", (model,))):
        model = model.calibrated()
    _LOADED[key] = model
    return model


def _variants(model, args) -> dict:
    """{"polished": the model polished by the likelihood (the default of predict), "model": its answer
    alone} and, with ``--gp-std`` and per-sample stds, {"model_gp": the answer with the GP's own std}.
    ``--no-polish`` drops the first. Values: (model, polish)."""
    out = {} if args.no_polish else {"polished": (model, True)}
    out["model"] = (model, False)
    members = getattr(model, "members", (model,))
    if args.gp_std and any(m.calibration is not None for m in members):
        out["model_gp"] = (model.uncalibrated(), False)
    return out


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
                crb = (cramer_rao(p, grid, level).std if level is not None and not args.no_crb else None)
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
            if rows and "latent" in rows[0] and level is not None:
                z = np.array([(r["latent"][0] - r["latent_truth"][0]) / r["latent_std"][0] for r in rows])
                big = np.array([r["truth"]["rs"] >= 0.17 for r in rows])
                report[key]["rs_z_std_below_above_0.17"] = [float(np.std(z[~big])), float(np.std(z[big]))]
                print("  R_s z per set: " + " ".join(f"{v:+.2f}" for v in z)
                      + f"; z std {np.std(z[~big]):.2f} ({(~big).sum()} sets R_s < 0.17) / "
                      f"{np.std(z[big]):.2f} ({big.sum()} sets >= 0.17)")
            if args.model:
                options = {k: v for k, v in (("steps", args.polish_steps), ("noise_samples", args.polish_samples))
                           if v is not None}
                for who, (m, polish) in _variants(_model_for(args.model, disp, args.calibrate), args).items():
                    report[key][who] = _model_scores(m, ds, rows, polish, options)
            print(f"{key}: {args.sets} sets in {time.perf_counter() - t0:.0f} s"
                  + (f" (fit CPU median {np.median(cpu):.2f} s)" if cpu else ""))
            for who, sc in report[key].items():
                if not isinstance(sc, dict):
                    continue
                member = (f" (member N = {sc['trained_configs']:g}, {sc['paths']}, CPU "
                          f"{1e3 * sc['cpu_s_per_sample_median']:.1f} ms/sample median)" if "trained_configs" in sc else "")
                print(f"  {who:8s}{member} " + " | ".join(
                    f"{n}: Err {100 * s['err']:.2f} %" + ("" if "z_std" not in s else
                    f", cov68/95 {100 * s['cov68']:.0f}/{100 * s['cov95']:.0f} %, z std {s['z_std']:.2f}, "
                    f"rms/CRB {s.get('rms_over_crb', float('nan')):.2f}") for n, s in sc.items() if n in NAMES))
                if "trained_configs" in sc:
                    print(f"  {'':8s} z std in thirds of the prior: " + " | ".join(
                        f"{n} " + " / ".join(f"{v:.2f}" for v in sc[n]["z_std_thirds"]) for n in NAMES if n in sc)
                          + "; in gamma L < 12, 12-20, > 20: " + " | ".join(
                        f"{n} " + " / ".join(f"{v:.2f}" for v in sc[n]["z_std_gl_bins"]) for n in NAMES if n in sc)
                          + "; in thirds of D2: " + " | ".join(
                        f"{n} " + " / ".join(f"{v:.2f}" for v in sc[n]["z_std_d2_thirds"]) for n in NAMES if n in sc))
    return report


def _model_for(paths: list, displacement: str, calibrate: bool = False):
    """The model (or family) of ``paths`` trained on ``displacement`` (else the first one); ``calibrate``:
    per-sample stds added to a file without them (:func:`_load`)."""
    models = [_load(p, calibrate) for p in paths]
    for m in models:
        if m.provenance.get("dataset_attrs", {}).get("displacement", "uniform") == displacement:
            return m
    return models[0]


def _model_scores(model, ds, rows, polish: bool, options: dict) -> dict:
    """The amortized model's Err, coverage, z spread and rms(error / CRB) (rms/CRB in latent R_s^2, D2,
    gamma L, as the fit's; z in the model's latent u, or R_s^2, D2, gamma L when polished) on a test
    store, with the member of a family chosen for the store's N, and the CPU time of predicting one
    sample at a time (:meth:`predict` on ``ds.isel(sample=i)``; median over the samples)."""
    from shearcorr.inverse.evaluation import evaluate

    ev = evaluate(model, ds, polish=polish, polish_options=options)
    cpu = []
    for i in range(ds.sizes["sample"]):
        one = ds.isel(sample=i)
        c0 = time.process_time()
        model.predict(one, polish=polish, **(options if polish else {}))
        cpu.append(time.process_time() - c0)
    out = {"trained_configs": ev.trained_configs, "seconds_per_sample": ev.seconds_per_sample, "paths": ev.paths,
           "cpu_s_per_sample_median": float(np.median(cpu))}
    gl = ev.predictions["gamma_l"].true if "gamma_l" in ev.predictions else None
    d2 = ev.predictions["d2"].true if "d2" in ev.predictions else None
    for k, n in enumerate(NAMES):
        if n not in ev.err:
            continue
        est = np.clip(ev.predictions[n].mean, 0, None)
        eff = np.array([((e**2 if n == "rs" else e) - r["latent_truth"][k]) / r["crb"][k] for e, r in zip(est, rows)])
        z = ev.z_scores[n]
        out[n] = {"err": ev.err[n], "cov68": ev.coverage68[n], "cov95": ev.coverage95[n], "z_std": ev.z_std[n],
                  "rms_over_crb": float(np.sqrt(np.mean(eff**2))),
                  "z_std_thirds": _bin_stds(z, ev.predictions[n].true, THIRDS[n]),
                  "z_std_gl_bins": _bin_stds(z, gl, GL_BINS) if gl is not None else [],
                  "z_std_d2_thirds": _bin_stds(z, d2, THIRDS["d2"]) if d2 is not None else []}
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
    """z-score distribution of every member on held-out draws at its N, with and without per-sample stds
    (module docstring)."""
    from shearcorr.data import open_dataset
    from shearcorr.inverse.augment import NoiseDraws
    from shearcorr.inverse.evaluation import evaluate

    model = _load(args.model, args.calibrate)
    rng, out = np.random.default_rng(0), {}
    with open_dataset(args.store) as ds:
        ds = ds.load()
        draws = NoiseDraws(ds, model.test_index, estimator=model.provenance.get("estimator", "symmetric"))
        for who, variant in _variants(model).items():
            for member in getattr(variant, "members", (variant,)):
                lv = member.trained_configs()
                ev = evaluate(variant, ds, configs=lv, draws=draws if member.noise_configs is not None else None)
                gl = ev.predictions["gamma_l"].true if "gamma_l" in ev.predictions else None
                d2 = ev.predictions["d2"].true if "d2" in ev.predictions else None
                key = f"{who}/N={lv:g}"
                out[key] = {"cov68": ev.coverage68, "cov95": ev.coverage95, "err": ev.err}
                print(f"{key}: {ev.n_samples} held-out samples, inputs drawn at N = {lv:g}")
                for t in NAMES:
                    if t not in ev.predictions:
                        continue
                    z = _latent_z(member, ev, t)
                    subs = [float(np.std(rng.choice(z, args.subset, replace=False))) for _ in range(2000)]
                    r = {"z_std": float(np.std(z)), "kurtosis": float(np.mean((z - z.mean())**4) / np.var(z) ** 2),
                         "robust_std": float(1.4826 * np.median(np.abs(z - np.median(z)))),
                         "subset_std_10_50_90": [float(v) for v in np.percentile(subs, [10, 50, 90])],
                         "z_std_thirds": _bin_stds(z, ev.predictions[t].true, THIRDS[t]),
                         "z_std_gl_bins": _bin_stds(z, gl, GL_BINS) if gl is not None else [],
                         "z_std_d2_thirds": _bin_stds(z, d2, THIRDS["d2"]) if d2 is not None else [],
                         "cov68": ev.coverage68[t], "cov95": ev.coverage95[t]}
                    out[key][t] = r
                    print(f"  {t}: z std {r['z_std']:.2f}, kurtosis {r['kurtosis']:.1f}, robust std {r['robust_std']:.2f}, "
                          f"cov68/95 {100 * r['cov68']:.0f}/{100 * r['cov95']:.0f} %; z std of {args.subset} samples "
                          "10/50/90 % = " + " / ".join(f"{v:.2f}" for v in r["subset_std_10_50_90"])
                          + "; thirds of its prior " + " / ".join(f"{v:.2f}" for v in r["z_std_thirds"])
                          + "; gamma L < 12, 12-20, > 20 " + " / ".join(f"{v:.2f}" for v in r["z_std_gl_bins"])
                          + "; thirds of D2 " + " / ".join(f"{v:.2f}" for v in r["z_std_d2_thirds"]))
        for who, variant in _variants(model).items():  # one sample at a time, as `shearcorr predict` does
            ms = []
            for i in model.test_index[:50]:
                t0 = time.perf_counter()
                variant.predict(ds, sample=[int(i)])
                ms.append(1e3 * (time.perf_counter() - t0))
            out[f"{who}/predict_ms_median"] = float(np.median(ms))
            print(f"{who}: predict one sample {np.median(ms):.2f} ms (median of {len(ms)})")
    return out


def run_shared(args) -> dict:
    """The bound on R_s^2 from the shared covariance: spread over seeds per K, smoothness in n_l2, cost."""
    from shearcorr.inverse.crb import cramer_rao
    from shearcorr.inverse.noise import ensemble_noise

    grid = QGrid()
    n_l2, rs, d2, gl = args.point
    p = SystemParams(n_l2, rs, d2, gl)
    out = {"point": list(args.point), "configs": args.configs, "K": {}}
    for K in list(args.samples) + [args.reference]:
        seeds = range(1) if K == args.reference else range(args.seeds)
        v = np.array([cramer_rao(p, grid, args.configs, noise_samples=K, seed=s).std["rs2"] for s in seeds])
        cpu = []
        for s in range(3):
            c0 = time.process_time()
            ensemble_noise(p, grid, args.configs, n_samples=K, seed=s).whitener()
            cpu.append(time.process_time() - c0)
        out["K"][str(K)] = {"sd_rs2": v.tolist(), "mean": float(v.mean()), "cv": float(v.std() / v.mean()),
                            "cpu_s_median": float(np.median(cpu))}
        print(f"K = {K:5d}: sd(R_s^2) mean {v.mean():.3e}, spread over {v.size} seeds {100 * v.std() / v.mean():.1f} % "
              f"(min {v.min():.3e}, max {v.max():.3e}); covariance build {np.median(cpu):.2f} s CPU", flush=True)
    ns = np.round(np.arange(125.0, 130.01, 0.5), 2)
    v = np.array([cramer_rao(SystemParams(n, rs, d2, gl), grid, args.configs, seed=0).std["rs2"] for n in ns])
    out["n_l2_scan"] = {"n_l2": ns.tolist(), "sd_rs2": v.tolist(), "max_over_min": float(v.max() / v.min())}
    print("n_l2 scan (K = 64, seed 0): " + " ".join(f"{n:g}:{x:.3e}" for n, x in zip(ns, v))
          + f"; max/min {v.max() / v.min():.3f}")
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
    lv.add_argument("--calibrate", action="store_true", help="add per-sample stds to model files written without them")
    lv.add_argument("--no-crb", action="store_true", help="skip the Cramer-Rao bound (rms/CRB is then NaN)")
    lv.add_argument("--no-polish", action="store_true", help="score the models' answers alone (no polished row)")
    lv.add_argument("--gp-std", action="store_true", help="also the models' answers with the GP's own std (model_gp)")
    lv.add_argument("--polish-steps", type=int, default=None, help="Gauss-Newton steps of the polish (default: the package's)")
    lv.add_argument("--polish-samples", type=int, default=None,
                    help="configurations for the shared covariance of the polish (default: the package's)")
    for name, default in (("bias", [128, 320, 960]), ("chi2", [320])):
        p = sub.add_parser(name)
        p.add_argument("--replicas", type=int, default=100)
        p.add_argument("--configs", type=int, nargs="+", default=default, help="multiples of 64")
    zd = sub.add_parser("zdist")
    zd.add_argument("--model", required=True)
    zd.add_argument("--store", required=True, help="the model's training store (its held-out split is scored)")
    zd.add_argument("--subset", type=int, default=30)
    zd.add_argument("--calibrate", action="store_true", help="add per-sample stds to a model file written without them")
    sh = sub.add_parser("shared")
    sh.add_argument("--point", type=float, nargs=4, default=[129.3026, 0.2708, 0.9501, 20.7302],
                    metavar=("N_L2", "RS", "D2", "GAMMA_L"))
    sh.add_argument("--samples", type=int, nargs="+", default=[64, 128, 256])
    sh.add_argument("--seeds", type=int, default=6)
    sh.add_argument("--reference", type=int, default=1024)
    sh.add_argument("--configs", type=float, default=20000)
    for p in sub.choices.values():
        p.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    args = ap.parse_args()
    out = {"levels": run_levels, "bias": run_bias, "chi2": run_chi2, "zdist": run_zdist,
           "shared": run_shared}[args.what](args)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
