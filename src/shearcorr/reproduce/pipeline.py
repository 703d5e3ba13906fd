"""``shearcorr reproduce``: the paper end to end (datasets -> SVD -> PDDF/ACF -> LML -> GPR -> report).

Stages (each logged with the elapsed time): analytic dataset, Figs. 1-3 (:mod:`shearcorr.plots.forward`),
SVD (Figs. 4-5), PDDF/ACF (Fig. 6a), LML landscapes + training + evaluation for each feature choice
(Figs. 6b-d, Table I, Fig. 7), R_s identifiability, the direct physics fit on test samples, a brute-force
Monte Carlo spot check against the analytic engine, and a Monte Carlo ("noisy") test set for models
trained on analytic data. Everything is computed in ``DIR/.staging``; figures are moved into
``DIR/figures`` and ``DIR/report.md`` is written (atomically) only when every stage has succeeded,
so a failed run never leaves a report that looks complete.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .._version import __version__
from ..errors import ShearcorrError
from ..params import QGrid, SystemParams

__all__ = ["ReproduceConfig", "QUICK", "FULL", "reproduce", "PAPER_ERR", "PAPER_TABLE1"]

#: Paper's headline errors (Sec. III C) and Table I (l, sigma).
PAPER_ERR = {"rs": 0.06, "d2": 0.01, "gamma_l": 0.03}
PAPER_TABLE1 = {"rs": (1.338e-1, 2.673e-3), "d2": (2.419e-1, 2.717e-3), "gamma_l": (1.405e-1, 1.927e-2)}
FEATURE_ORDER = ("g_theta", "g_q", "both", "svd")
#: Model rows of the report: the paper's GPR on each input, then the ARD model (``inversion.train(model="ard")``).
ARD_ROWS = ("ard_both", "ard_g_theta")
ROWS = FEATURE_ORDER + ARD_ROWS
ROW_LABELS = {"g_theta": "paper GPR, g(theta) (the paper's configuration)", "g_q": "paper GPR, g(q)",
              "both": "paper GPR, g(theta)+g(q)", "svd": "paper GPR, SVD k=3 of g(theta)",
              "ard_both": "ARD GPR, {pca} of z-scored g(theta), g(q) (default)",
              "ard_g_theta": "ARD GPR, {pca} of z-scored g(theta)"}


def _pca_label(features) -> str:
    k = int(features.n_components)
    return f"PCA-{k} + PCA-{k}" if getattr(features, "pca_blocks", False) else f"PCA-{k}"
TARGETS4 = ("n_l2", "rs", "d2", "gamma_l")


@dataclass(frozen=True)
class ReproduceConfig:
    """Sizes of one ``reproduce`` run (see :data:`QUICK` and :data:`FULL`)."""

    n_samples: int
    n_grid: int
    n_fit: int  # test samples given to the direct physics fit
    spot_sets: int
    spot_configs: int
    mc_sets: int
    mc_configs: int
    forward_configs: int  # configurations of the Monte Carlo Figs. 1-3 (via plots.forward)
    grid: tuple = (0.5, 5.0, 100, 101)
    ard_opt_samples: int = 1000  # training rows used to optimise the ARD kernel hyperparameters
    ard_restarts: int = 1


QUICK = ReproduceConfig(n_samples=1500, n_grid=12, n_fit=20, spot_sets=3, spot_configs=2000, mc_sets=30,
                        mc_configs=300, forward_configs=2000, ard_opt_samples=600, ard_restarts=1)
FULL = ReproduceConfig(n_samples=6000, n_grid=30, n_fit=100, spot_sets=3, spot_configs=20000, mc_sets=30,
                       mc_configs=2000, forward_configs=20000)


class _Log:
    def __init__(self, log):
        self.t0, self.log, self.times = time.perf_counter(), log, {}

    def __call__(self, msg):
        self.log(f"[{time.perf_counter() - self.t0:7.1f} s] {msg}")

    def stage(self, name):
        log = self

        class _S:
            def __enter__(s):
                s.t = time.perf_counter()
                log(f"{name} ...")

            def __exit__(s, *exc):
                if exc[0] is None:
                    log.times[name] = time.perf_counter() - s.t
                    log(f"{name} done ({log.times[name]:.1f} s)")
        return _S()


def _save(fig_or_ax, path: Path) -> str:
    fig = getattr(fig_or_ax, "figure", fig_or_ax)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    from ..plots import require_matplotlib

    require_matplotlib().close(fig)
    return path.name


def _rs_identifiability(preds, grid: QGrid) -> dict:
    """Err(R_s) and mean predicted std in R_s bins, and the size of the R_s signal in g(theta)."""
    from ..forward.analytic import ensemble_arrays
    from ..inverse.training import relative_error

    t, m, s = preds["rs"]
    edges = np.array([0.0, 0.03, 0.06, 0.1, 0.15, 0.2, 0.25, 0.3])
    rows = []
    for a, b in zip(edges[:-1], edges[1:]):
        k = (t >= a) & (t < b)
        if k.any():
            rows.append((a, b, int(k.sum()), relative_error(t[k], m[k]), float(np.mean(np.abs(t[k] - m[k]))),
                         float(np.mean(s[k]))))
    base = ensemble_arrays(SystemParams(150, 0.0, 1.0, 10.0), grid)[1].mean(axis=0)
    signal = []
    for rs in (0.02, 0.05, 0.1, 0.2, 0.3):
        g = ensemble_arrays(SystemParams(150, rs, 1.0, 10.0), grid)[1].mean(axis=0)
        signal.append((rs, float(np.max(np.abs(g - base)))))
    g_n = ensemble_arrays(SystemParams(200, 0.0, 1.0, 10.0), grid)[1].mean(axis=0)
    return {"bins": rows, "signal": signal, "n_l2_signal": float(np.max(np.abs(g_n - base)))}


def _rs_degeneracy(grid: QGrid, *, rs_values=(0.02, 0.05, 0.1, 0.2), base=(150.0, 1.0, 10.0)) -> list:
    r"""How much of the R_s signal the other parameters can absorb: best monodisperse fit to g(R_s).

    For each R_s, :math:`g_0 = g(n_{L^2}, R_s, D_2, \gamma L)` (analytic engine; the full (q, theta) map,
    and g(theta) alone) is
    fitted by least squares with R_s fixed at 0 and (n_L2, D_2, gamma L) free:
    :math:`r = \min_{p} \| g(p, R_s{=}0) - g_0 \|`. The residual (rms and max over the grid) is the part
    of the R_s signal no other parameter can mimic - what an inversion can use to tell R_s from 0 - to be
    compared with the input noise (g_err of a Monte Carlo measurement).

    Returns
    -------
    list of (observable "g" or "g_theta", rs, max |g(R_s) - g(0)| at the same other parameters,
    rms residual, max residual, fitted (n_l2, d2, gamma_l))
    """
    from scipy.optimize import least_squares

    from ..forward.analytic import ensemble_arrays

    n0, d0, gl0 = base
    obs = {"g": lambda g: g.ravel(), "g_theta": lambda g: g.mean(axis=0)}
    g_zero = ensemble_arrays(SystemParams(n0, 0.0, d0, gl0), grid)[1]
    out = []
    for name, f in obs.items():
        for rs in rs_values:
            g0 = f(ensemble_arrays(SystemParams(n0, float(rs), d0, gl0), grid)[1])
            res = least_squares(lambda p: f(ensemble_arrays(SystemParams(p[0], 0.0, p[1], p[2]), grid)[1]) - g0,
                                x0=[n0, d0, gl0], bounds=([50.0, 0.1, 1.0], [400.0, 5.0, 60.0]),
                                x_scale=[50.0, 0.5, 5.0], diff_step=1e-3)
            r = res.fun
            out.append((name, float(rs), float(np.max(np.abs(g0 - f(g_zero)))), float(np.sqrt(np.mean(r**2))),
                        float(np.max(np.abs(r))), tuple(float(v) for v in res.x)))
    return out


def _mc_vs_analytic(ds) -> list:
    """chi^2/dof of each Monte Carlo sample's g(q, theta) against the analytic engine."""
    from ..forward.analytic import ensemble_arrays
    from ..result import grid_from_dataset

    grid = grid_from_dataset(ds)
    out = []
    for i in range(ds.sizes["sample"]):
        p = SystemParams(*(float(ds[n].values[i]) for n in TARGETS4), displacement=str(ds.attrs.get("displacement", "uniform")))
        ga = ensemble_arrays(p, grid)[1]
        gm = np.asarray(ds["g"].values[i], dtype=np.float64)
        err = np.asarray(ds["g_err"].values[i], dtype=np.float64)
        ok = err > 0
        out.append((p, float(np.mean(((gm - ga)[ok] / err[ok]) ** 2)), float(np.max(np.abs(gm - ga)))))
    return out


def reproduce(out_dir, *, quick: bool = False, seed: int = 0, workers: int | None = None, log=print,
              config: ReproduceConfig | None = None) -> Path:
    """Run the whole pipeline and write ``out_dir/report.md`` with Figs. 1-7 (PNG) and the tables.

    Parameters
    ----------
    out_dir : path
        Output folder (created if missing; its parent must exist).
    quick : bool
        :data:`QUICK` sizes (about 10 minutes on 2 cores) instead of :data:`FULL`.
    seed : int
        Seed of the datasets and of the split.
    workers : int, optional
        Processes for dataset generation (default all cores).
    config : ReproduceConfig, optional
        Explicit sizes (overrides ``quick``; used by tests).
    """
    from ..data.generate import generate, open_dataset
    from ..inverse.features import pddf_acf, profiles, svd_analysis
    from ..inverse.fit import fit_g
    from ..inverse.training import evaluate, relative_error, train
    from ..plots import learning as pl
    from ..plots import require_matplotlib

    plt = require_matplotlib()
    cfg = config or (QUICK if quick else FULL)
    out = Path(out_dir)
    if not out.parent.exists():
        raise ShearcorrError(f"folder {out.parent} does not exist; create it first")
    out.mkdir(exist_ok=True)
    stage_dir = out / ".staging"
    shutil.rmtree(stage_dir, ignore_errors=True)
    (stage_dir / "figures").mkdir(parents=True)
    figs = stage_dir / "figures"
    L = _Log(log)
    grid = QGrid.log(*cfg.grid)
    R: dict = {"config": asdict(cfg), "seed": seed, "figures": {}}
    L(f"reproduce ({'quick' if cfg is QUICK else 'full' if cfg is FULL else 'custom'}): {cfg}")

    with L.stage(f"1/9 analytic dataset, {cfg.n_samples} samples"):
        generate(stage_dir / "dataset.zarr", n=cfg.n_samples, seed=seed, grid=grid, engine="analytic",
                 workers=workers, progress=True)
        ds = open_dataset(stage_dir / "dataset.zarr", load=True)
        ds = ds.drop_vars("g")  # only g(theta), g(q) are needed from here on (memory)

    with L.stage("2/9 Figs. 1-3 (forward model)"):
        from ..plots import forward as pf

        R["figures"]["forward"] = [
            pf.save_fig1(figs / "fig1_configuration.png", seed=seed, grid=grid).name,
            pf.save_fig2(figs / "fig2_mc_average.png", engine="mc", configs=cfg.forward_configs, seed=seed,
                         grid=grid).name,
            pf.save_fig3(figs / "fig3_g_q_g_theta.png", engine="analytic", grid=grid).name,
        ]

    with L.stage("3/9 SVD of g(theta) (Figs. 4-5)"):
        nt = grid.theta.size
        P = profiles(ds)
        svd = svd_analysis(P[:, :nt], k=3)
        fig, ax = plt.subplots(1, 2, figsize=(9, 3.6))
        pl.plot_singular_values(svd.singular_values, ax=ax[0])
        pl.plot_singular_vectors(svd.vectors, grid.theta, ax=ax[1])
        R["figures"]["fig4"] = _save(fig, figs / "fig4_svd.png")
        R["figures"]["fig5"] = _save(pl.figure_svd_space(svd.projections, {n: ds[n].values for n in TARGETS4}),
                                     figs / "fig5_svd_space.png")
        R["svd"] = {"s": svd.singular_values[:6].tolist(), "explained3": float(svd.explained[:3].sum())}

    models, infos, evals = {}, {}, {}
    for j, feat in enumerate(ROWS):
        what = (f"LML grid {cfg.n_grid}x{cfg.n_grid}, paper GPR on {feat}" if feat in FEATURE_ORDER
                else f"ARD GPR on {feat[4:]}")
        with L.stage(f"4/9 [{j + 1}/{len(ROWS)}] {what}: training, evaluation"):
            if feat in FEATURE_ORDER:
                m, info = train(ds, model="paper", feature=feat, targets=TARGETS4, seed=seed, n_grid=cfg.n_grid, log=L)
            else:
                extra = {} if feat == "ard_both" else {"n_components": 12}  # measured best for g(theta) alone
                m, info = train(ds, model="ard", feature=feat[4:], targets=TARGETS4, seed=seed, log=L,
                                max_opt_samples=cfg.ard_opt_samples, restarts=cfg.ard_restarts, **extra)
            models[feat], infos[feat] = m, info
            evals[feat] = evaluate(m, ds, index=m.test_index)
            e = evals[feat]
            L("  Err " + ", ".join(f"{t} {100 * e['err'][t]:.2f}%" for t in TARGETS4)
              + " | cov95 " + ", ".join(f"{t} {100 * e['coverage95'][t]:.0f}%" for t in TARGETS4))

    with L.stage("5/9 PDDF/ACF, LML landscapes, parity plots (Figs. 6-7)"):
        m = models["g_theta"]
        X = m.features.transform(profiles(ds, sample=m.train_index))
        t0 = time.perf_counter()
        stats = pddf_acf(X, {t: ds[t].values[m.train_index] for t in ("rs", "d2", "gamma_l")}, bins=80)
        R["pddf_seconds"] = time.perf_counter() - t0
        fig, ax = plt.subplots(1, 4, figsize=(19, 3.8))
        pl.plot_pddf_acf(stats, ax=ax[0])
        info = infos["g_theta"]
        for k, t in enumerate(("rs", "d2", "gamma_l")):
            i = info["targets"].index(t)
            pl.plot_lml(info["l_values"], info["sigma_values"], info["lml"][:, :, i],
                        optimum=(info["l"][i], info["sigma"][i]), title=pl.LABELS[t], ax=ax[k + 1])
        R["figures"]["fig6"] = _save(fig, figs / "fig6_pddf_lml.png")
        best = min(ROWS, key=lambda f: sum(evals[f]["err"][t] / PAPER_ERR[t] for t in PAPER_ERR))
        R["best_feature"] = best
        for feat in dict.fromkeys(("g_theta", best)):
            fig, ax = plt.subplots(1, 3, figsize=(13, 3.8))
            for k, t in enumerate(("rs", "d2", "gamma_l")):
                tr, mu, sd = evals[feat]["predictions"][t]
                pl.plot_parity(tr, np.clip(mu, 0, None), sd, name=t, err=evals[feat]["err"][t], ax=ax[k])
            fig.suptitle(f"input: {feat}")
            R["figures"][f"fig7_{feat}"] = _save(fig, figs / f"fig7_parity_{feat}.png")

    with L.stage("6/9 R_s identifiability"):
        R["rs_ident"] = _rs_identifiability(evals[R["best_feature"]]["predictions"], grid)
        R["rs_degeneracy"] = _rs_degeneracy(grid)

    with L.stage(f"7/9 direct physics fit on {cfg.n_fit} test samples"):
        full = open_dataset(stage_dir / "dataset.zarr")
        idx = models["g_theta"].test_index[: cfg.n_fit]
        fits = []
        for i in idx:
            g = np.asarray(full["g"].values[i], dtype=np.float64)
            fits.append(fit_g(g, grid, observable="g", n_l2=150.0))
        full.close()
        truth = {t: ds[t].values[idx] for t in ("rs", "d2", "gamma_l")}
        R["fit"] = {
            "n": len(idx), "seconds_per_sample": float(np.mean([f.seconds for f in fits])),
            "err": {t: relative_error(truth[t], [f.values[t] for f in fits]) for t in truth},
            "gpr_err_same": {f: {t: relative_error(truth[t], evals[f]["predictions"][t][1][: cfg.n_fit]) for t in truth}
                             for f in ROWS},
            "gpr_seconds_per_sample": {f: evals[f]["seconds_per_sample"] for f in ROWS},
        }
        L("  fit Err " + ", ".join(f"{t} {100 * v:.2f}%" for t, v in R["fit"]["err"].items()))

    with L.stage(f"8/9 Monte Carlo spot check: {cfg.spot_sets} sets x {cfg.spot_configs} configurations"):
        generate(stage_dir / "spot.zarr", n=cfg.spot_sets, seed=seed + 1, grid=grid, engine="mc",
                 configs=cfg.spot_configs, workers=workers, progress=True, chunk_size=1)
        R["spot"] = _mc_vs_analytic(open_dataset(stage_dir / "spot.zarr", load=True))

    with L.stage(f"9/9 Monte Carlo test set: {cfg.mc_sets} sets x {cfg.mc_configs} configurations"):
        generate(stage_dir / "mc_test.zarr", n=cfg.mc_sets, seed=seed + 2, grid=grid, engine="mc",
                 configs=cfg.mc_configs, workers=workers, progress=True, chunk_size=1)
        mc = open_dataset(stage_dir / "mc_test.zarr", load=True)
        R["mc_test"] = {}
        for f in ROWS:
            e = evaluate(models[f], mc)
            R["mc_test"][f] = {k: e[k] for k in ("err", "coverage68", "coverage95", "n_samples", "input_noise")}
            e0 = evaluate(models[f], mc, input_noise=False)
            R["mc_test"][f]["coverage95_noise_free"] = e0["coverage95"]
        R["mc_chi2"] = [c for _, c, _ in _mc_vs_analytic(mc)]

    R["evals"] = {f: {k: evals[f][k] for k in ("err", "coverage68", "coverage95", "n_samples", "seconds_per_sample")}
                  for f in ROWS}
    R["ard_hyper"] = {f: infos[f]["hyper"] for f in ARD_ROWS}
    R["labels"] = {f: ROW_LABELS[f].format(pca=_pca_label(models[f].features)) for f in ROWS}
    R["table1"] = {f: {t: (infos[f]["l"][i], infos[f]["sigma"][i], infos[f]["l_bounds"])
                       for i, t in enumerate(infos[f]["targets"])} for f in FEATURE_ORDER}
    R["train_seconds"] = {f: infos[f]["train_seconds"] for f in ROWS}
    R["n_train"], R["n_test"] = len(models["g_theta"].train_index), len(models["g_theta"].test_index)
    R["times"], R["total_seconds"] = L.times, time.perf_counter() - L.t0

    (out / "figures").mkdir(exist_ok=True)
    for f in figs.iterdir():
        os.replace(f, out / "figures" / f.name)
    tmp = out / ".report.md.tmp"
    tmp.write_text(render(R), encoding="utf-8")
    os.replace(tmp, out / "report.md")
    shutil.rmtree(stage_dir, ignore_errors=True)
    L(f"wrote {out / 'report.md'} (total {R['total_seconds']:.0f} s)")
    return out / "report.md"


def _pct(v) -> str:
    return f"{100 * v:.2f} %"


def render(R: dict) -> str:
    """Markdown of the report from the numbers collected by :func:`reproduce` (nothing hard-coded)."""
    c = R["config"]
    F = R["figures"]
    lines = [
        "# shearcorr reproduce report", "",
        f"shearcorr {__version__}; seed {R['seed']}; analytic dataset of {c['n_samples']} samples on "
        f"{c['grid'][2]} q x {c['grid'][3]} theta, split {R['n_train']} train / {R['n_test']} held-out test "
        f"(30 %); LML grids {c['n_grid']} x {c['n_grid']}; total run time {R['total_seconds']:.0f} s.", "",
        "## Figures", "",
    ]
    lines.append(f"Fig. 2 is a Monte Carlo average over {c['forward_configs']} configurations; Fig. 3 uses the "
                 "analytic engine.")
    lines.append("")
    for name in F["forward"]:
        lines.append(f"![{name}](figures/{name})")
    for key in ("fig4", "fig5", "fig6"):
        lines.append(f"![{key}](figures/{F[key]})")
    for key in sorted(k for k in F if k.startswith("fig7")):
        lines.append(f"![{key}](figures/{F[key]})")
    lines += ["", f"SVD of g(theta): leading singular values {', '.join(f'{v:.4g}' for v in R['svd']['s'])}; the first "
              f"three carry {100 * R['svd']['explained3']:.5f} % of sum Sigma^2.", "",
              "## Table I: optimised hyperparameters (input g(theta))", "",
              "l is the paper's squared length (sklearn length_scale^2), sigma the white-noise variance of the "
              "standardised target.", "",
              "| target | l (ours) | sigma (ours) | l (paper) | sigma (paper) | l bounds searched |",
              "|---|---|---|---|---|---|"]
    for t in ("rs", "d2", "gamma_l", "n_l2"):
        l, s, lb = R["table1"]["g_theta"][t]
        pl_, ps = PAPER_TABLE1.get(t, (float("nan"), float("nan")))
        lines.append(f"| {t} | {l:.4g} | {s:.3g} | {pl_:.4g} | {ps:.4g} | [{lb[0]:.3g}, {lb[1]:.3g}] |")
    lines += ["", "Hyperparameters of the other inputs: " + "; ".join(
        f"{f}: " + ", ".join(f"{t} (l {R['table1'][f][t][0]:.3g}, sigma {R['table1'][f][t][1]:.2g})"
                             for t in ("rs", "d2", "gamma_l")) for f in FEATURE_ORDER if f != "g_theta"), "",
              "ARD models (amplitude x ARD RBF + white noise on the top principal components of the z-scored input; "
              "n_l2, D_2, gamma L modelled as log values; length scales in units of the components): " + "; ".join(
                  f"{f}/{t}: amplitude {h['amplitude']:.3g}, noise {h['noise']:.2g}, length scales "
                  + " ".join(f"{v:.3g}" for v in h["length_scale"])
                  for f in ARD_ROWS for t, h in R["ard_hyper"][f].items() if t != "n_l2") + ".", "",
              "## Err on the held-out 30 % (analytic data)", "",
              "Err = <|mu_true - mu_pred| / max(mu_true, mu_pred)>, predictions clipped at 0, 0/0 counted as 0.", "",
              "| input | Err R_s | Err D_2 | Err gamma L | Err nL^2 (not recoverable) | cov68 R_s/D_2/gammaL | cov95 R_s/D_2/gammaL |",
              "|---|---|---|---|---|---|---|",
              f"| paper (g(theta), MC data) | {_pct(PAPER_ERR['rs'])} | {_pct(PAPER_ERR['d2'])} | {_pct(PAPER_ERR['gamma_l'])} | - | - | - |"]
    for f in ROWS:
        e = R["evals"][f]
        cov = lambda k: " / ".join(f"{100 * e[k][t]:.0f}" for t in ("rs", "d2", "gamma_l")) + " %"  # noqa: E731
        lines.append(f"| {R['labels'][f]} | {_pct(e['err']['rs'])} | {_pct(e['err']['d2'])} | {_pct(e['err']['gamma_l'])} | "
                     f"{_pct(e['err']['n_l2'])} | {cov('coverage68')} | {cov('coverage95')} |")
    fit = R["fit"]
    lines.append(f"| direct fit, full g(q, theta) (first {fit['n']} test samples) | {_pct(fit['err']['rs'])} | "
                 f"{_pct(fit['err']['d2'])} | {_pct(fit['err']['gamma_l'])} | fixed at 150 | - | - |")
    lines += ["", f"Best input (sum of Err / paper's Err): **{R['best_feature']}**.", "",
              f"GPR on the same {fit['n']} samples as the fit: " + "; ".join(
                  f"{f}: " + ", ".join(f"{t} {_pct(v)}" for t, v in fit["gpr_err_same"][f].items()) for f in ROWS) + ".",
              "", "## R_s identifiability", "",
              f"Input {R['best_feature']}, held-out samples binned by the true R_s:", "",
              "| R_s bin | n | Err R_s | mean abs error | mean predicted std |", "|---|---|---|---|---|"]
    for a, b, n, err, mae, sd in R["rs_ident"]["bins"]:
        lines.append(f"| [{a:.2f}, {b:.2f}) | {n} | {_pct(err)} | {mae:.4f} | {sd:.4f} |")
    lines += ["", "Largest change of g(theta) caused by R_s at (nL^2, D_2, gammaL) = (150, 1, 10), analytic engine: "
              + ", ".join(f"R_s = {r:g}: {d:.2e}" for r, d in R["rs_ident"]["signal"])
              + f"; for comparison nL^2 150 -> 200 at R_s = 0 changes it by {R['rs_ident']['n_l2_signal']:.2e}.", "",
              "How much of the R_s signal survives the best monodisperse fit (R_s fixed at 0; nL^2, D_2, gammaL free; "
              "analytic engine, at (150, R_s, 1, 10)): what is left is the part of the observable only R_s explains.", "",
              "| observable | R_s | max abs(g(R_s) - g(0)) | rms residual after fit | max residual | fitted nL^2, D_2, gammaL |",
              "|---|---|---|---|---|---|"]
    for name, rs, dmax, rms, rmax, p in R.get("rs_degeneracy", []):
        lines.append(f"| {name} | {rs:g} | {dmax:.2e} | {rms:.2e} | {rmax:.2e} | {p[0]:.1f}, {p[1]:.4f}, {p[2]:.3f} |")
    lines += ["",
              "## Monte Carlo checks", "",
              f"Spot check, {c['spot_sets']} parameter sets x {c['spot_configs']} configurations, MC vs analytic engine:", "",
              "| nL^2 | R_s | D_2 | gamma L | chi^2/dof | max abs difference |", "|---|---|---|---|---|---|"]
    for p, chi2, dmax in R["spot"]:
        lines.append(f"| {p.n_l2:.1f} | {p.rs:.3f} | {p.d2:.3f} | {p.gamma_l:.2f} | {chi2:.3f} | {dmax:.2e} |")
    chi = np.asarray(R["mc_chi2"])
    lines += ["", f"Noisy test set: models trained on analytic data, tested on {c['mc_sets']} Monte Carlo sets x "
              f"{c['mc_configs']} configurations (chi^2/dof vs analytic: median {np.median(chi):.3f}, "
              f"max {chi.max():.3f}):", "",
              "The predicted std includes the input noise propagated from g_err to first order "
              "(var += J Sigma_x J^T, docs/inversion.md); the last column is the coverage without that term.", "",
              "| model | Err R_s | Err D_2 | Err gamma L | cov68 R_s/D_2/gammaL | cov95 R_s/D_2/gammaL | "
              "cov95 without input noise |", "|---|---|---|---|---|---|---|"]
    for f in ROWS:
        e = R["mc_test"][f]
        cv = lambda d: " / ".join(f"{100 * d[t]:.0f}" for t in ("rs", "d2", "gamma_l")) + " %"  # noqa: E731
        lines.append(f"| {R['labels'][f]} | {_pct(e['err']['rs'])} | {_pct(e['err']['d2'])} | {_pct(e['err']['gamma_l'])} | "
                     f"{cv(e['coverage68'])} | {cv(e['coverage95'])} | {cv(e['coverage95_noise_free'])} |")
    lines += ["", "## Timings", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in R["times"].items()]
    lines += ["", "Training (LML grid + refinement + factorisation, 4 targets): " + ", ".join(
        f"{f} {R['train_seconds'][f]:.1f} s" for f in ROWS)
        + f". PDDF/ACF of {R['n_train']} training vectors: {R['pddf_seconds']:.2f} s. Prediction per sample: "
        + ", ".join(f"{f} {1e3 * R['evals'][f]['seconds_per_sample']:.2f} ms" for f in ROWS)
        + f"; direct fit {fit['seconds_per_sample']:.2f} s per sample.", ""]
    return "\n".join(lines)
