"""Synthetic-truth studies of the three stack modes (used by ``bench_stack.py study-*``).

Each study renders ``--n`` stacks with known truth (seeds 1000 + i), analyses them with the default
options of :func:`shearcorr.stack.analyze_stack` and prints per-stack values, the median relative
errors and the z-score mean and spread z = (fit - truth) / std.

* steady: 160^2 frames (0.5 pixel per speckle, q R0 up to ~1.8), 600 frames, shear rate 4/800 per
  frame, D = 0.125 R0^2 per frame, transit 40 R0 per frame, R_s cycling over 0.10 / 0.15 / 0.20 / 0.25 with
  the seed (``--first-seed``, default 1000); lags 0..10; frames as a detector records them (``--intensity``;
  'volume': divided by their scattering volume, as every study before 2026-12-01), analysed with that convention's
  defaults (R_s from the q-row means);
  with ``--stack-cache`` the lag sums and model of every stack are kept there too (``steady_SEED.lags.pkl``),
  and ``--refit`` fits those kept lag sums again with the current code (no rendering, no correlation);
  ``--rows FILE ...`` pools the per-stack rows that earlier runs printed instead (no fits). Summary per quantity:
  z mean and std (with a bootstrap 68 / 95 % interval of the std), 68 / 95 % coverage, max |rel err|;
* twotime: start-up stacks of 60 frames on 96^2 (0.5 pixel per speckle), rest until frame 15, then
  2 R0 per frame with a 5-frame exponential rise; one frame per time bin; z over every fitted pair;
* configs: independent configurations, 4-frame constant-shear stacks as two-time maps (per-pair z);
* echo: 30 cycles of 8 frames on 128^2 (1 pixel per speckle), strain amplitude 0.03, d2_cycle 1.2,
  irreversible fraction 0.3 (D_irr = 0.657 R0); D_irr per file and per cycle;
* echoconfigs: independent configurations, 2-cycle stacks of the echo study's parameters (per-cycle z).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

SPECKLE = 2 * np.pi / 800


def _z(v, t, s):
    v, t, s = (np.asarray(a, dtype=float) for a in (v, t, s))
    return (v - t) / s


def _summary(name, vals, truths, stds):
    z = _z(vals, truths, stds)
    rel = np.abs(np.asarray(vals) / np.asarray(truths) - 1)
    return {"quantity": name, "n": int(len(z)), "median_abs_rel_err": float(np.median(rel)), "max_abs_rel_err": float(rel.max()),
            "z_mean": float(np.mean(z)), "z_std": float(np.std(z, ddof=1)) if len(z) > 1 else None}


def cached_stack(cache, name, render):
    """(frames, geometry, mask) of a rendered stack: ``render()`` (a SynthStack), or, with a ``cache``
    folder, the files written there by an earlier run (frames .npy, geometry.json, mask .npy; rendering
    is deterministic in the seed, so the numbers are the same)."""
    if cache is None:
        st = render()
        return st.frames, st.geometry, st.mask
    d = Path(cache)
    f, g, m = d / f"{name}.npy", d / f"{name}.geometry.json", d / f"{name}.mask.npy"
    if not (f.is_file() and g.is_file() and m.is_file()):
        st = render()
        d.mkdir(parents=True, exist_ok=True)
        for path, write in ((f, lambda p: np.save(p, st.frames)), (m, lambda p: np.save(p, st.mask)),
                            (g, lambda p: p.write_text(json.dumps(st.geometry_spec)))):
            tmp = path.with_name(".tmp-" + path.name)
            write(tmp)
            tmp.replace(path)
    from shearcorr.experiment.geometryfile import load_geometry

    frames = np.load(f)
    return frames, load_geometry(g, frames.shape[1:]), np.load(m)


def keep_lags(path, result):
    """Pickle the lag sums and the pair model of a steady ``result`` (``extra``) to ``path`` (atomic)."""
    import pickle

    tmp = path.with_name(".tmp-" + path.name)
    with open(tmp, "wb") as f:
        pickle.dump({"lag": result.extra["lag"], "model": result.extra["model"]}, f)
    tmp.replace(path)


def _steady_name(seed, intensity):
    """The cache name of a steady study stack: ``steady_SEED`` (detector frames), ``steady_SEED_volume``. Caches
    written before 2026-12-01 hold volume frames under the bare name: render them again."""
    return f"steady_{seed}" if intensity == "detector" else f"steady_{seed}_{intensity}"


def _refit_steady(cache, seed, data, intensity):
    """The steady analysis of the lag sums kept by an earlier ``--stack-cache`` run (``steady_SEED.lags.pkl``),
    with the current code: the same steps as :func:`shearcorr.stack.analyze_stack` after the correlation (pixel
    weights and speckle size from the cached geometry and first frames); returns (summary, analysis)."""
    import pickle
    from types import SimpleNamespace

    from shearcorr.experiment.geometryfile import load_geometry
    from shearcorr.stack.analysis import _area
    from shearcorr.stack.engine import as_source
    from shearcorr.stack.output import summarize
    from shearcorr.stack.steady import analyze_steady
    from shearcorr.stack.templates import pixel_weights

    d = Path(cache)
    name = _steady_name(seed, intensity)
    with open(d / f"{name}.lags.pkl", "rb") as fh:
        kept = pickle.load(fh)
    lag, model = kept["lag"], kept["model"]
    frames = np.load(d / f"{name}.npy", mmap_mode="r")
    geo = load_geometry(d / f"{name}.geometry.json", frames.shape[1:])
    weights = pixel_weights(lag.plan, geo.qr0, geo.phi, model)
    area, spx, speckle_rows, _ = _area(as_source(np.asarray(frames[lag.start:lag.start + 2])), lag.plan, geo, 0)
    a = analyze_steady(lag, model, cache_dir=f"{data}/cache", weights=weights, speckle_area=speckle_rows,
                       intensity=intensity, speckle_px=spx)
    ctx = dict(plan=lag.plan, model=model, geometry=geo, start=lag.start, stop=lag.stop, area=area, speckle_px=spx,
               frame_time=None, counts={}, lag=lag)
    return summarize("steady", a, ctx, SimpleNamespace(description={"refit": str(d / f"{name}.lags.pkl")}), {}), a


def _bootstrap_std(z, n_boot=4000, seed=0):
    """Bootstrap 68 % and 95 % intervals of the sample std (ddof 1) of z (resampled stacks; seeded)."""
    z = np.asarray(z, dtype=float)
    rng = np.random.default_rng(seed)
    b = np.std(z[rng.integers(0, z.size, size=(n_boot, z.size))], axis=1, ddof=1)
    return [float(x) for x in np.percentile(b, [16, 84])], [float(x) for x in np.percentile(b, [2.5, 97.5])]


def _steady_summary(rows):
    """Per quantity over the stacks: z mean / std (bootstrap 68 / 95 % interval of the std), the share of |z| < 1
    and < 2 (68 / 95 % coverage), max and median |relative error| (R_s: absolute)."""
    spec = (("shear_rate", "shear_rate", lambda r: 0.005), ("diffusion", "diffusion", lambda r: 0.125),
            ("msd_exponent", "msd_exponent", lambda r: 1.0), ("peclet", "peclet", lambda r: 0.04),
            ("flow_deg", "flow", lambda r: 30.0), ("rs", "rs", lambda r: r["rs_true"]))
    out = []
    for name, key, truth in spec:
        v = np.array([r[key]["value"] for r in rows])
        t = np.array([truth(r) for r in rows])
        z = _z(v, t, [r[key]["std"] for r in rows])
        err = np.abs(v - t) if name in ("rs", "flow_deg") else np.abs(v / t - 1)
        ci68, ci95 = _bootstrap_std(z) if len(z) > 2 else (None, None)
        out.append({"quantity": name, "n": int(len(z)), "max_abs_err" if name in ("rs", "flow_deg") else "max_abs_rel_err":
                    float(err.max()), "median_abs_err" if name in ("rs", "flow_deg") else "median_abs_rel_err": float(np.median(err)),
                    "mean_rel_err": None if name in ("rs", "flow_deg") else float(np.mean(v / t - 1)),
                    "z_mean": float(np.mean(z)), "z_std": float(np.std(z, ddof=1)) if len(z) > 1 else None,
                    "z_std_boot68": ci68, "z_std_boot95": ci95, "within_1sigma": float(np.mean(np.abs(z) < 1)),
                    "within_2sigma": float(np.mean(np.abs(z) < 2))})
    return out


def study_steady(args):
    from shearcorr.params import SystemParams
    from shearcorr.stack import analyze_stack
    from shearcorr.stack.synth import steady_stack

    if getattr(args, "rows", None):  # pool the rows printed by earlier runs (the last row of each seed)
        by_seed = {}
        for path in args.rows:
            for line in Path(path).read_text().splitlines():
                if line.startswith('{"seed"'):
                    r = json.loads(line)
                    by_seed[r["seed"]] = r
        print(json.dumps({"seeds": sorted(by_seed), "summary": _steady_summary(list(by_seed.values()))}, indent=1))
        return
    rows = []
    cache = getattr(args, "stack_cache", None)
    refit = bool(getattr(args, "refit", False))
    if refit and cache is None:
        raise SystemExit("--refit needs --stack-cache (the folder with the kept lag sums)")
    first = int(getattr(args, "first_seed", None) or 1000)
    intensity = getattr(args, "intensity", "detector")
    for seed in range(first, first + args.n):
        rs = (0.10, 0.15, 0.20, 0.25)[(seed - 1000) % 4]
        t0 = time.perf_counter()
        if refit:
            t1 = t0
            s, a = _refit_steady(cache, seed, args.data, intensity)
        else:
            frames, geometry, mask = cached_stack(
                cache, _steady_name(seed, intensity),
                lambda: steady_stack(SystemParams(n_l2=150, rs=rs, d2=1.0, gamma_l=10.0), 600, shear_rate=4 / 800,
                                     diffusion=0.125, transit=40.0, shape=(160, 160), dq=2 * SPECKLE, seed=seed,
                                     intensity=intensity))
            t1 = time.perf_counter()
            r = analyze_stack(frames, geometry, None, mode="steady", mask=mask, max_lag=10,
                              cache_dir=f"{args.data}/cache", intensity=intensity)
            if cache is not None:  # the lag sums and the model, for refits of the same stack (pickle)
                keep_lags(Path(cache) / f"{_steady_name(seed, intensity)}.lags.pkl", r)
            s, a = r.summary, r.analysis
        row = {"seed": seed, "rs_true": rs, "refit": refit, "render_s": round(t1 - t0, 1),
               "analysis_s": round(time.perf_counter() - t1, 1),
               "shear_rate": s["shear_rate"], "diffusion": s["diffusion"], "msd_exponent": s["msd_exponent"],
               "rs": s["rs"], "peclet": s["peclet"], "flow": s["flow_angle_deg"], "chi2_red": s["chi2"]["reduced"],
               "flow_std_nominal_deg": float(np.degrees(a.fit.std_nominal["flow_angle"])),
               "configuration_term": a.info["configurations"],  # the part of each std the jackknife misses
               "rs_row_means": a.info.get("rs_row_means"),  # R_s of the row means and of the global fit
               "values": {n: a.fit.values[n] for n in a.fit.free},  # every fitted parameter (frames, R0, rad)
               "jackknife_deltas": a.fit.info.get("jackknife_deltas"),  # per group of origins (linear), for batch checks
               "covariance": {"free": a.fit.free, "cov": a.fit.cov.tolist(),  # all terms (jackknife + added)
                              "rs_gradient": a.fit.info.get("rs_gradient"),  # d theta / d R_s with R_s held
                              "terms": {k: np.asarray(m).tolist() for k, m in a.fit.info.get("cov_terms", {}).items()}}}
        rows.append(row)
        print(json.dumps(row, default=float), flush=True)
    print(json.dumps(_steady_summary(rows), indent=1))


def _condition(args):
    import shearcorr.stack.twotimefit as tf

    tf.CONDITION_PROFILE = bool(getattr(args, "condition", False))


def study_twotime(args):
    """Start-up stacks: z of gamma L and D2 over every fitted pair; per stack the relative gamma L offset common to
    its pairs against the configuration term's shared part (``--condition``: the term conditioned on the profile)."""
    _condition(args)
    from shearcorr.params import SystemParams
    from shearcorr.stack import analyze_stack
    from shearcorr.stack.synth import startup_stack

    zg, zd, rows, ramps = [], [], [], []
    for i in range(args.n):
        st = startup_stack(SystemParams(n_l2=150, rs=0.0, d2=1.0, gamma_l=10.0), 60, start_frame=15, shear_rate=2 / 800,
                           diffusion_rest=0.01, diffusion_flow=0.05, ramp_frames=5, shape=(96, 96), dq=2 * SPECKLE,
                           seed=2000 + i)
        r = analyze_stack(st.frames, st.geometry, None, mode="twotime", mask=st.mask, time_bins=60, n_q=10, n_phi=18,
                          cache_dir=f"{args.data}/cache")
        a = r.analysis
        strain, msd = np.asarray(st.truth["strain"]), np.asarray(st.truth["msd"])
        tg = np.abs(strain[None, :] - strain[:, None]) * 800
        td = np.sqrt(np.abs(msd[None, :] - msd[:, None]))
        iu = np.triu_indices(60, 1)
        ok = np.isfinite(a.gamma_l[iu]) & (a.gamma_l_std[iu] > 0) & (a.d2_std[iu] > 0)
        zg.append(((a.gamma_l - tg) / a.gamma_l_std)[iu][ok])
        zd.append(((a.d2 - td) / a.d2_std)[iu][ok])
        ramp = ((a.gamma_l[0, 16:] - tg[0, 16:]) / a.gamma_l_std[0, 16:])
        ramps.append(ramp[np.isfinite(ramp)])
        # a relative gamma L offset common to the pairs of this stack (its particles): weighted fit of
        # gamma_fit - truth = delta x truth over the pairs with truth >= 5 R0, and the z spread left without it
        g_, t_, s_ = a.gamma_l[iu][ok], tg[iu][ok], a.gamma_l_std[iu][ok]
        big = t_ >= 5.0
        w_ = 1.0 / s_[big] ** 2
        delta = float(np.sum(w_ * (g_[big] - t_[big]) * t_[big]) / np.sum(w_ * t_[big] ** 2))
        z_left = (g_ - (1.0 + delta) * t_) / s_
        shared = a.info.get("configuration_shared", {})
        rows.append({"seed": 2000 + i, "fitted": int(ok.sum()), "z_gamma_std": float(np.std(zg[-1])),
                     "z_gamma_mean": float(np.mean(zg[-1])), "common_rel_offset": delta,
                     "gamma_l_shared_rel_std": shared.get("gamma_l_shared_rel_std"),
                     "z_gamma_std_without_offset": float(np.std(z_left)), "z_gamma_mean_without_offset": float(np.mean(z_left)),
                     "ramp_z_mean": float(np.nanmean(ramp)), "ramp_z_std": float(np.nanstd(ramp)),
                     "ramp_fitted": int(np.isfinite(ramp).sum()),
                     "ramp_within_2sigma": float(np.mean(np.abs(ramp[np.isfinite(ramp)]) < 2))})  # of the fitted
        print(json.dumps(rows[-1]), flush=True)
    zg, zd = np.concatenate(zg), np.concatenate(zd)
    rz = np.concatenate(ramps)
    off = np.array([r["common_rel_offset"] for r in rows])
    sh = np.array([r["gamma_l_shared_rel_std"] or np.nan for r in rows], dtype=float)
    print(json.dumps({"common_rel_offset_rms": float(np.sqrt(np.mean(off**2))), "shared_rel_std_median": float(np.nanmedian(sh)),
                      "offset_z": [float(v) for v in off / sh]}), flush=True)
    print(json.dumps({"pairs": int(zg.size), "z_gamma_mean": float(zg.mean()), "z_gamma_std": float(zg.std()),
                      "ramp_pairs": int(rz.size), "ramp_z_mean": float(rz.mean()), "ramp_z_std": float(rz.std()),
                      "ramp_within_1sigma": float(np.mean(np.abs(rz) < 1)), "ramp_within_2sigma": float(np.mean(np.abs(rz) < 2)),
                      "z_d2_mean": float(zd.mean()), "z_d2_std": float(zd.std()),
                      "gamma_within_1sigma": float(np.mean(np.abs(zg) < 1)), "gamma_within_2sigma": float(np.mean(np.abs(zg) < 2))},
                     indent=1))


def _echo_stack(args, name, n_cycles, seed):
    from shearcorr.params import SystemParams
    from shearcorr.stack.synth import oscillatory_stack

    return cached_stack(getattr(args, "stack_cache", None), name, lambda: oscillatory_stack(
        SystemParams(n_l2=150, rs=0.0, d2=1.0, gamma_l=10.0), n_cycles, 8, strain_amplitude=0.03, d2_cycle=1.2,
        irreversible_fraction=0.3, shape=(128, 128), seed=seed))


def _zstats(z):
    z = np.asarray(z, dtype=float)
    return {"n": int(z.size), "z_mean": float(z.mean()), "z_std": float(z.std(ddof=1)),
            "within_1sigma": float(np.mean(np.abs(z) < 1)), "within_2sigma": float(np.mean(np.abs(z) < 2))}


def study_echo(args):
    """Per file: D_irr with the dependent-cycle jackknife (and the former independent-cycle one); per cycle: z with
    the configuration term conditioned on the file's profile (and the former marginal term)."""
    from shearcorr.stack import analyze_stack

    rows, zc, zc_m = [], [], []
    t = float(np.sqrt(0.3) * 1.2)  # truth: sqrt(irreversible fraction) x d2_cycle
    for i in range(args.n):
        frames, geometry, mask = _echo_stack(args, f"echo_{3000 + i}", 30, 3000 + i)
        t0 = time.perf_counter()
        r = analyze_stack(frames, geometry, None, mode="echo", mask=mask, period=8, n_q=12, n_phi=18,
                          cache_dir=f"{args.data}/cache")
        e = r.analysis
        pc = e.per_cycle
        cond = e.info["configuration_conditioning"]
        zc.append((pc["d2"] - t) / pc["d2_std"])
        zc_m.append((pc["d2"] - t) / cond["d2_std_marginal"])
        rows.append({"seed": 3000 + i, "d_irr": e.d2_irreversible, "truth": t, "rel_err": e.d2_irreversible[0] / t - 1,
                     "d_irr_std_independent_cycles": e.info["d2_irreversible_std_independent_cycles"],
                     "per_cycle_median_rel_err": float(np.median(np.abs(pc["d2"] / t - 1))),
                     "per_cycle_d2_sd": float(np.std(pc["d2"], ddof=1)), "per_cycle_median_std": float(np.median(pc["d2_std"])),
                     "per_cycle_median_std_marginal": float(np.median(cond["d2_std_marginal"])),
                     "per_cycle_z_std": float(np.std(zc[-1])), "per_cycle_z_std_marginal": float(np.std(zc_m[-1])),
                     "profile_slope": cond.get("slope_r0sq"), "profile_slope_err": cond.get("slope_err_r0sq"),
                     "rs_kept": cond.get("rs_kept"), "conditioned": cond.get("used"),
                     "analysis_s": round(time.perf_counter() - t0, 1)})
        print(json.dumps(rows[-1]), flush=True)
    zc, zc_m = np.concatenate(zc), np.concatenate(zc_m)
    z_ind = [(r["d_irr"][0] - r["truth"]) / r["d_irr_std_independent_cycles"] for r in rows]
    print(json.dumps({"files": len(rows), "d_irr": _summary("d_irr", [r["d_irr"][0] for r in rows], [r["truth"] for r in rows],
                                                             [r["d_irr"][1] for r in rows]),
                      "d_irr_independent_cycles": {"z_mean": float(np.mean(z_ind)), "z_std": float(np.std(z_ind, ddof=1))},
                      "per_cycle": _zstats(zc), "per_cycle_marginal_term": _zstats(zc_m),
                      "per_cycle_median_abs_rel_err": float(np.median([r["per_cycle_median_rel_err"] for r in rows]))},
                     indent=1))


def study_echoconfigs(args):
    """Per-cycle calibration over independent configurations: ``--n`` oscillatory stacks of 2 cycles x 8 frames
    (the study-echo parameters otherwise; seeds 7000 + i), one echo each (cycle 0 -> 1), flow angle given (30 deg);
    z of D2 with the conditioned and with the marginal configuration term."""
    from shearcorr.stack import analyze_stack

    t = float(np.sqrt(0.3) * 1.2)
    d, s, sm, rs = [], [], [], []
    for i in range(args.n):
        frames, geometry, mask = _echo_stack(args, f"osc2_{7000 + i}", 2, 7000 + i)
        e = analyze_stack(frames, geometry, None, mode="echo", mask=mask, period=8, n_q=12, n_phi=18, flow_angle_deg=30.0,
                          cache_dir=f"{args.data}/cache").analysis
        cond = e.info["configuration_conditioning"]
        d += list(e.per_cycle["d2"])
        s += list(e.per_cycle["d2_std"])
        sm += list(cond["d2_std_marginal"])
        rs.append((cond.get("rs_kept") or [np.nan])[0])
        print(json.dumps({"seed": 7000 + i, "d2": d[-1], "std": s[-1], "std_marginal": sm[-1], "rs_kept": cond.get("rs_kept")}),
              flush=True)
    d, s, sm = map(np.asarray, (d, s, sm))
    print(json.dumps({"echoes": int(d.size), "truth": t, "d2_mean": float(d.mean()), "d2_sd": float(d.std(ddof=1)),
                      "median_std": float(np.median(s)), "median_std_marginal": float(np.median(sm)),
                      "conditioned": _zstats((d - t) / s), "marginal": _zstats((d - t) / sm),
                      "rs_kept_median": float(np.nanmedian(rs))}, indent=1))


def study_configs(args):
    """Per-pair calibration over independent configurations: ``--n`` 4-frame stacks of constant shear
    (gamma L 3 R0 and D = 0.05 R0^2 per frame, 96^2, seeds 5000 + i), each analysed as a two-time map
    of 4 time bins (flow angle given); z of gamma L and D2 over the 6 pairs of every stack (``--condition``: the
    configuration term conditioned on the stack's profile)."""
    _condition(args)
    from shearcorr.params import SystemParams
    from shearcorr.stack import analyze_stack
    from shearcorr.stack.synth import startup_stack

    rows = []
    for i in range(args.n):
        st = startup_stack(SystemParams(n_l2=150, rs=0.0, d2=1.0, gamma_l=10.0), 4, start_frame=-1, shear_rate=3 / 800,
                           diffusion_rest=0.05, diffusion_flow=0.05, shape=(96, 96), dq=2 * SPECKLE, seed=5000 + i)
        a = analyze_stack(st.frames, st.geometry, None, mode="twotime", mask=st.mask, time_bins=4, n_q=10, n_phi=18,
                          flow_angle_deg=30.0, cache_dir=f"{args.data}/cache").analysis
        strain, msd = np.asarray(st.truth["strain"]), np.asarray(st.truth["msd"])
        for k, l in ((0, 1), (1, 2), (2, 3), (0, 2), (1, 3), (0, 3)):
            rows.append((l - k, (strain[l] - strain[k]) * 800, np.sqrt(msd[l] - msd[k]), a.gamma_l[k, l], a.gamma_l_std[k, l],
                         a.d2[k, l], a.d2_std[k, l]))
        print(json.dumps({"seed": 5000 + i, "gamma_l": [round(float(r[3]), 3) for r in rows[-6:]]}), flush=True)
    lag, tg, td, g, gs, d, ds = np.array(rows, dtype=float).T
    ok = np.isfinite(g) & (gs > 0) & (ds > 0)
    zg, zd = (g - tg) / gs, (d - td) / ds
    out = {"stacks": args.n, "pairs": int(ok.sum())}
    for name, z in (("gamma_l", zg[ok]), ("d2", zd[ok])):
        out[name] = {"z_mean": float(z.mean()), "z_std": float(z.std()), "within_1sigma": float(np.mean(np.abs(z) < 1)),
                     "within_2sigma": float(np.mean(np.abs(z) < 2))}
    out["per_lag"] = []
    for k in (1, 2, 3):
        s = ok & (lag == k)
        out["per_lag"].append({"lag": k, "gamma_l_true": float(tg[s][0]), "gamma_l_mean": float(g[s].mean()),
                               "gamma_l_sd": float(g[s].std()), "gamma_l_median_std": float(np.median(gs[s])),
                               "d2_true": float(td[s][0]), "d2_mean": float(d[s].mean())})
    print(json.dumps(out, indent=1))


def run_study(kind, args):
    {"steady": study_steady, "twotime": study_twotime, "echo": study_echo, "configs": study_configs,
     "echoconfigs": study_echoconfigs}[kind](args)
