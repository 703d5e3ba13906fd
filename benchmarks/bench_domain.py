"""Where the semi-analytic engine is right: brute-force Monte Carlo at the edges of its assumptions.

Prints one row per point (JSON lines) and a Markdown table for docs/theory.md section 8. Each point
moves ONE assumption of the engine away from the paper's box, from inside to outside:

* ``window``: the neglected window-transform pairings, relative size n_l2 / (q_min L / 2)^2 (section 1):
  q_min L/2 from 200 (the paper's grid) down to 2.5 (a 10 R0 beam);
* ``shear``: gamma = gamma_l / L (the box [-L, L]^2 holds the window's pre-image only for gamma < 1);
* ``d2``: the non-affine step against the box margin (L/2)(1 - gamma);
* ``rs``: polydispersity beyond the paper's 0.3 (heavy V^2 ~ R^6 tails);
* ``n_l2``: particle numbers from 1 to 3000;
* ``q_max``: q R0 beyond the paper's 5.

Usage::

    nice python benchmarks/bench_domain.py run [--configs 20000] [--mc-dir domain_mc] [--only AXIS]
    python benchmarks/bench_domain.py table [--mc-dir domain_mc]

The Monte Carlo results are kept in ``--mc-dir`` (one .npz per point; resumable), so ``table``
re-scores a changed engine without re-simulating. Coarse grids (16 q x 17 theta) keep each point
under a minute at 2e4 configurations. Scores: chi^2/dof of r = (g_MC - g_analytic)/g_err over the
map, the common-mode mean residual of the map in units of its own standard error, max |g_MC - g_an|,
and the analytic engine's verdict (``shearcorr.forward.domain.check_analytic``: inside or the limit
it names).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from shearcorr.errors import ShearcorrError
from shearcorr.params import QGrid, SystemParams

N_Q, N_THETA = 16, 17
BASE = dict(n_l2=150.0, rs=0.1, d2=1.0, gamma_l=10.0, beam_size=800.0, displacement="uniform")

#: (axis, changes to BASE, q_min, q_max)
POINTS = [
    ("paper", {}, 0.5, 5.0),
    *[("window", {}, qm, 10 * qm) for qm in (0.25, 0.125, 0.0625, 0.03125)],
    ("window", {"beam_size": 100.0, "gamma_l": 1.25, "d2": 0.5}, 0.5, 5.0),
    ("window", {"beam_size": 10.0, "gamma_l": 0.125, "d2": 0.1}, 0.5, 5.0),
    *[("shear", {"gamma_l": g}, 0.5, 5.0) for g in (80.0, 240.0, 400.0, 560.0, 720.0, 1e4)],
    *[("d2", {"d2": d}, 0.5, 5.0) for d in (10.0, 30.0, 60.0, 100.0)],
    *[("rs", {"rs": r}, 0.5, 5.0) for r in (0.3, 0.4, 0.5, 0.7, 1.0)],
    *[("n_l2", {"n_l2": n}, 0.5, 5.0) for n in (1.0, 5.0, 20.0, 1000.0, 3000.0)],
    *[("q_max", {}, lo, hi) for lo, hi in ((5.0, 20.0), (20.0, 60.0))],
    # added after the first pass (appended: a point's seed is 5000 + its index)
    ("window", {}, 0.0433, 0.433),
    ("window", {"beam_size": 50.0, "gamma_l": 0.625, "d2": 0.3}, 0.5, 5.0),
    ("rs", {"rs": 0.6}, 0.5, 5.0),
    ("n_l2", {"n_l2": 10.0}, 0.5, 5.0),
    ("box", {"gamma_l": 560.0, "d2": 19.9}, 0.5, 5.0),
    ("rs", {"rs": 0.5, "displacement": "stokes-einstein"}, 0.5, 5.0),
    ("rs", {"rs": 0.6, "displacement": "stokes-einstein"}, 0.5, 5.0),
]


def _key(axis, changes, q_min, q_max, configs, seed):
    p = {**BASE, **changes}
    conv = "" if p["displacement"] == "uniform" else "_se"
    return (f"{axis}_{p['n_l2']:g}_{p['rs']:g}_{p['d2']:g}_{p['gamma_l']:g}_{p['beam_size']:g}_{q_min:g}_{q_max:g}"
            f"_{configs}_{seed}{conv}")


def _params(changes):
    p = {**BASE, **changes}
    return SystemParams(p["n_l2"], p["rs"], p["d2"], p["gamma_l"], beam_size=p["beam_size"], displacement=p["displacement"])


def run(configs, outdir, only):
    from shearcorr.forward.montecarlo import simulate_mc

    os.makedirs(outdir, exist_ok=True)
    for i, (axis, changes, q_min, q_max) in enumerate(POINTS):
        if only and axis not in only:
            continue
        seed = 5000 + i
        path = os.path.join(outdir, _key(axis, changes, q_min, q_max, configs, seed) + ".npz")
        if os.path.exists(path):
            continue
        t = time.perf_counter()
        ds = simulate_mc(_params(changes), QGrid.log(q_min, q_max, N_Q, N_THETA), configs=configs, seed=seed)
        arrays = {k: ds[k].values for k in ("I", "g", "g_err")}
        np.savez(path + ".tmp.npz", mc_seconds=time.perf_counter() - t, **arrays)
        os.replace(path + ".tmp.npz", path)
        print(f"done {path} ({time.perf_counter() - t:.0f} s)", flush=True)


def score(axis, changes, q_min, q_max, mc) -> dict:
    from shearcorr.forward.analytic import _moments, default_resolution
    from shearcorr.forward.domain import check_analytic

    params, grid = _params(changes), QGrid.log(q_min, q_max, N_Q, N_THETA)
    try:
        check_analytic(params, grid)
        verdict = "inside"
    except ShearcorrError as exc:
        text = str(exc)
        verdict = next((short for key, short in (("window terms", "refused: window terms"), ("gamma_l <=", "refused: gamma"),
                                                 ("simulated box", "refused: box"), ("rs <=", "refused: rs"),
                                                 ("<= n_l2 <=", "refused: n_l2"), ("q R0 <=", "refused: q_max"))
                        if key in text), text.split(";")[0])
    # the engine's arithmetic without its domain check (to show what it would answer outside)
    nr, nl = default_resolution(params, grid.q[-1])
    with np.errstate(all="ignore"):
        EI, EII = _moments(params, np.asarray(grid.q), np.asarray(grid.theta), min(nr, 4000), nl, True, True)
        g = EII / EI[:, None] ** 2
    r = (mc["g"] - g) / mc["g_err"]
    ok = np.isfinite(r)
    rr = r[ok]
    axes = np.zeros(r.shape[1], bool)
    axes[[0, r.shape[1] // 2, r.shape[1] - 1]] = True  # theta = 0, pi/2, pi: where the window pairings live
    ra = r[:, axes][np.isfinite(r[:, axes])]
    return {"axis": axis, **{k: v for k, v in {**BASE, **changes}.items()}, "q_min": q_min, "q_max": q_max,
            "qL2_min": q_min * params.beam_size / 2, "window_eps": params.n_l2 / (q_min * params.beam_size / 2) ** 2,
            "chi2_map": float(np.mean(rr**2)) if rr.size else float("nan"),
            "chi2_axes": float(np.mean(ra**2)) if ra.size else float("nan"),
            "common_mode_sigma": float(rr.mean() * np.sqrt(rr.size)) if rr.size else float("nan"),
            "max_abs_dg": float(np.nanmax(np.abs(mc["g"] - g))), "g_mc_max": float(np.nanmax(mc["g"])),
            "g_an_max": float(np.nanmax(g)), "finite_points": f"{int(ok.sum())}/{ok.size}",
            "I_ratio": float(np.nanmean(mc["I"] / np.broadcast_to(EI[:, None], mc["I"].shape))),
            "mc_seconds": float(mc["mc_seconds"]), "verdict": verdict}


def table(configs, outdir):
    rows = []
    for i, (axis, changes, q_min, q_max) in enumerate(POINTS):
        path = os.path.join(outdir, _key(axis, changes, q_min, q_max, configs, 5000 + i) + ".npz")
        if not os.path.exists(path):
            print(f"missing {path}")
            continue
        rows.append(score(axis, changes, q_min, q_max, np.load(path)))
        print(json.dumps(rows[-1]), flush=True)
    print()
    print("| axis | n_l2 | rs | d2 | γL | L | displacement | q R0 | n_l2/(q_min L/2)² | χ²/dof map | χ²/dof axes | common mode (σ) | max abs Δg | max g MC / analytic | engine |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['axis']} | {r['n_l2']:g} | {r['rs']:g} | {r['d2']:g} | {r['gamma_l']:g} | {r['beam_size']:g} | {r['displacement']} | "
              f"{r['q_min']:g}–{r['q_max']:g} | {r['window_eps']:.2g} | {r['chi2_map']:.3g} | {r['chi2_axes']:.3g} | {r['common_mode_sigma']:+.2f} | "
              f"{r['max_abs_dg']:.2g} | {r['g_mc_max']:.3g} / {r['g_an_max']:.3g} | {r['verdict']} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["run", "table"])
    ap.add_argument("--configs", type=int, default=20000)
    ap.add_argument("--mc-dir", default="domain_mc")
    ap.add_argument("--only", nargs="*", default=None, help="axes to run (default all)")
    a = ap.parse_args()
    if a.what == "run":
        run(a.configs, a.mc_dir, a.only)
    table(a.configs, a.mc_dir)


if __name__ == "__main__":
    main()
