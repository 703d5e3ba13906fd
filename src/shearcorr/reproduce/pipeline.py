"""``shearcorr reproduce``: the paper end to end (datasets -> SVD -> PDDF/ACF -> LML -> GPR -> report).

Stages (each logged with the elapsed time, each a function below filling :class:`~.render.ReportData`):
analytic dataset, Figs. 1-3 (:mod:`shearcorr.plots.forward`), SVD (Figs. 4-5), LML landscapes +
training + evaluation for each model row (Table I) and the noise-aware model of the Monte Carlo test
(:mod:`.training`: one task per model, one per target of the ARD models, in parallel on the executor), PDDF/ACF and parity plots (Figs. 6-7), R_s
identifiability (:mod:`.diagnostics`), the direct physics fit on test samples, a brute-force Monte Carlo
spot check against the analytic engine, and a Monte Carlo ("noisy") test set for models trained on
analytic data. Everything is computed in ``DIR/.staging``; figures are moved into ``DIR/figures`` and
``DIR/report.md`` is written (atomically) only when every stage has succeeded (the trained models go
to ``DIR/models/ROW.model`` for ``shearcorr predict``), so a failed run never
leaves a report that looks complete.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..files import atomic_file, check_output_folder
from ..params import PARAM_NAMES, QGrid
from .render import (NOISY_ROW, PAPER_ERR, POLISHED_ROW, ROWS, DirectFit, NoisyFit, NoisyTest, ReportData,
                     SVDSummary, render)
from .training import train_rows

__all__ = ["ReproduceConfig", "QUICK", "FULL", "reproduce"]

#: Singular values listed in the report.
N_SINGULAR_SHOWN = 6
#: Bins of the PDDF/ACF of Fig. 6a.
PDDF_BINS = 80
#: Resolution of the PNG figures of the report.
DPI = 110


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
    rows: tuple = ROWS  # model rows trained and shown (render.ROWS order)
    ard_first: bool = False  # start the ARD targets' training tasks before the paper GPRs (training.task_order)


QUICK = ReproduceConfig(n_samples=1500, n_grid=12, n_fit=20, spot_sets=3, spot_configs=2000, mc_sets=30,
                        mc_configs=300, forward_configs=2000, ard_opt_samples=600, ard_restarts=1,
                        rows=tuple(r for r in ROWS if r != "ard_g_theta"),  # ARD on g(theta) alone: full run only
                        ard_first=True)
FULL = ReproduceConfig(n_samples=6000, n_grid=30, n_fit=100, spot_sets=3, spot_configs=20000, mc_sets=30,
                       mc_configs=2000, forward_configs=20000)


class _Log:
    """Timestamped log lines and per-stage wall times (``with log.stage(name): ...``)."""

    def __init__(self, log):
        self.t0, self.log, self.times = time.perf_counter(), log, {}

    def __call__(self, msg):
        self.log(f"[{time.perf_counter() - self.t0:7.1f} s] {msg}")

    @contextlib.contextmanager
    def stage(self, name):
        t = time.perf_counter()
        self(f"{name} ...")
        yield
        self.times[name] = time.perf_counter() - t
        self(f"{name} done ({self.times[name]:.1f} s)")


def _save(fig_or_ax, path: Path) -> str:
    from ..plots import require_matplotlib

    fig = getattr(fig_or_ax, "figure", fig_or_ax)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    require_matplotlib().close(fig)
    return path.name


def _forward_figures(R: ReportData, figs: Path, grid: QGrid) -> None:
    from ..plots import forward as pf

    cfg = R.config
    R.figures["forward"] = [
        pf.save_fig1(figs / "fig1_configuration.png", seed=R.seed, grid=grid).name,
        pf.save_fig2(figs / "fig2_mc_average.png", engine="mc", configs=cfg.forward_configs, seed=R.seed, grid=grid).name,
        pf.save_fig3(figs / "fig3_g_q_g_theta.png", engine="analytic", grid=grid).name,
    ]


def _svd_figures(R: ReportData, figs: Path, ds, grid: QGrid) -> None:
    from ..inverse.diagnostics import svd_analysis
    from ..inverse.features import profiles
    from ..plots import learning as pl
    from ..plots import require_matplotlib

    svd = svd_analysis(profiles(ds)[:, :grid.theta.size], k=3)
    fig, ax = require_matplotlib().subplots(1, 2, figsize=(9, 3.6))
    pl.plot_singular_values(svd.singular_values, ax=ax[0])
    pl.plot_singular_vectors(svd.vectors, grid.theta, ax=ax[1])
    R.figures["fig4"] = _save(fig, figs / "fig4_svd.png")
    R.figures["fig5"] = _save(pl.figure_svd_space(svd.projections, {n: ds[n].values for n in PARAM_NAMES}),
                              figs / "fig5_svd_space.png")
    R.svd = SVDSummary(svd.singular_values[:N_SINGULAR_SHOWN].tolist(), float(svd.explained[:3].sum()))


def _learning_figures(R: ReportData, figs: Path, ds, model) -> None:
    """Fig. 6 (PDDF/ACF of the paper model's training inputs, LML landscapes) and the parity plots (Fig. 7)."""
    from ..inverse.diagnostics import pddf_acf
    from ..inverse.features import profiles
    from ..plots import learning as pl
    from ..plots import require_matplotlib

    plt = require_matplotlib()
    shown = ("rs", "d2", "gamma_l")
    X = model.features.transform(profiles(ds, sample=model.train_index))
    t0 = time.perf_counter()
    stats = pddf_acf(X, {t: ds[t].values[model.train_index] for t in shown}, bins=PDDF_BINS)
    R.pddf_seconds = time.perf_counter() - t0
    fig, ax = plt.subplots(1, 4, figsize=(19, 3.8))
    pl.plot_pddf_acf(stats, ax=ax[0])
    info = R.infos["g_theta"]
    for k, t in enumerate(shown):
        i = list(info.targets).index(t)
        pl.plot_lml(info.search.l_values, info.search.sigma_values, info.search.lml[:, :, i],
                    optimum=(info.search.l[i], info.search.sigma[i]), title=pl.LABELS[t], ax=ax[k + 1])
    R.figures["fig6"] = _save(fig, figs / "fig6_pddf_lml.png")
    R.best_row = min(R.rows, key=lambda f: sum(R.evals[f].err[t] / PAPER_ERR[t] for t in PAPER_ERR))
    for row in dict.fromkeys(("g_theta", R.best_row)):
        fig, ax = plt.subplots(1, 3, figsize=(13, 3.8))
        for k, t in enumerate(shown):
            tr, mu, sd = R.evals[row].predictions[t]
            pl.plot_parity(tr, np.clip(mu, 0, None), sd, name=t, err=R.evals[row].err[t], ax=ax[k])
        fig.suptitle(f"input: {row}")
        R.figures[f"fig7_{row}"] = _save(fig, figs / f"fig7_parity_{row}.png")


def _direct_fit(R: ReportData, L: _Log, store: Path, ds, test_index, grid: QGrid) -> None:
    """The direct physics fit on the first ``n_fit`` held-out samples, with the GPRs' Err on the same ones."""
    from ..data import open_dataset
    from ..inverse.evaluation import relative_error
    from ..inverse.fit import fit_g

    idx = test_index[: R.config.n_fit]
    with open_dataset(store) as full:
        fits = [fit_g(np.asarray(full["g"].values[i], dtype=np.float64), grid, observable="g", n_l2=150.0) for i in idx]
    truth = {t: ds[t].values[idx] for t in ("rs", "d2", "gamma_l")}
    R.fit = DirectFit(
        n=len(idx), seconds_per_sample=float(np.mean([f.seconds for f in fits])),
        err={t: relative_error(truth[t], [f.values[t] for f in fits]) for t in truth},
        gpr_err_same={f: {t: relative_error(truth[t], R.evals[f].predictions[t].mean[: len(idx)]) for t in truth}
                      for f in R.rows},
        gpr_seconds_per_sample={f: R.evals[f].seconds_per_sample for f in R.rows})
    L("  fit Err " + ", ".join(f"{t} {100 * v:.2f}%" for t, v in R.fit.err.items()))


def _monte_carlo_sets(staging: Path, name: str, n: int, configs: int, seed: int, grid: QGrid, executor):
    from ..data import generate, open_dataset

    generate(staging / name, n=n, seed=seed, grid=grid, engine="mc", configs=configs, executor=executor,
             progress=True, chunk_size=1)
    return open_dataset(staging / name, load=True)


def _noisy_test(R: ReportData, models: dict, mc, crb: dict) -> None:
    """Models trained on analytic data on the Monte Carlo test set, with and without the input noise,
    and their RMS error over the Cramer-Rao bound of each set (``crb``: {target: std per set}). The
    models' own answers (``polish=False``), and the noise-aware model's polished by the likelihood (what
    `predict` returns by default, :data:`POLISHED_ROW`)."""
    from ..inverse.evaluation import evaluate, rms_over_crb
    from .diagnostics import mc_vs_analytic

    def ratio(e):
        return {t: rms_over_crb(e.predictions[t].true, np.clip(e.predictions[t].mean, 0, None), crb[t])
                for t in ("rs", "d2", "gamma_l")}

    for f in models:
        e = evaluate(models[f], mc, polish=False)
        R.noisy[f] = NoisyTest(e, evaluate(models[f], mc, input_noise=False, polish=False).coverage95, ratio(e))
        if f == NOISY_ROW:
            e = evaluate(models[f], mc)
            R.noisy[POLISHED_ROW] = NoisyTest(e, e.coverage95, ratio(e))
    R.mc_chi2 = [s.chi2 for s in mc_vs_analytic(mc)]


def _noisy_fit(R: ReportData, mc) -> dict:
    """The direct fit with the noise model on every Monte Carlo test set (n_l2 with its prior), and the
    Cramer-Rao bound of each set at its truth (same noise model, same prior). Coverage counts the fit's
    intervals (exact in R_s^2, one-sided at R_s = 0), not mean +- k std. Returns the bounds
    ({target: std per set})."""
    from ..inverse.evaluation import crb_stds, interval_coverage, relative_error, rms_over_crb, z_scores
    from ..inverse.fit import fit_dataset

    configs = int(mc.attrs["configs"])
    truth = {t: mc[t].values for t in ("rs", "d2", "gamma_l", "n_l2")}
    fits = [fit_dataset(mc.isel(sample=i)) for i in range(mc.sizes["sample"])]
    crb = crb_stds(mc, np.arange(mc.sizes["sample"]), configs)
    shown = ("rs", "d2", "gamma_l")
    val = {t: np.array([f.values[t] for f in fits]) for t in shown}
    std = {t: np.array([f.std[t] for f in fits]) for t in shown}
    iv = {(t, k): np.array([f.intervals[t][k] for f in fits]) for t in shown for k in ("68", "95")}
    R.noisy_fit = NoisyFit(
        n=len(fits), configs=configs,
        err={t: relative_error(truth[t], val[t]) for t in shown},
        coverage68={t: interval_coverage(truth[t], *iv[t, "68"].T) for t in shown},
        coverage95={t: interval_coverage(truth[t], *iv[t, "95"].T) for t in shown},
        z_std={t: float(np.std(z_scores(truth[t], val[t], std[t]))) for t in shown},
        rms_over_crb={t: rms_over_crb(truth[t], val[t], crb[t]) for t in shown},
        chi2_red_median=float(np.median([f.chi2_red for f in fits])),
        seconds_per_sample=float(np.mean([f.seconds for f in fits])))
    return crb


def reproduce(out_dir, *, quick: bool = False, seed: int = 0, executor=None, log=print,
              config: ReproduceConfig | None = None) -> Path:
    """Run the whole pipeline and write ``out_dir/report.md`` with Figs. 1-7 (PNG), the tables and the
    trained models (``out_dir/models/ROW.model``).

    Parameters
    ----------
    out_dir : path
        Output folder (created if missing; its parent must exist; report.md and figures/ in it are replaced).
    quick : bool
        :data:`QUICK` sizes (about 7 minutes on 2 cores) instead of :data:`FULL`.
    seed : int
        Seed of the datasets and of the split.
    executor : concurrent.futures.Executor, optional
        Runs the dataset generation and the model training, one task per model (per target for the ARD
        models) (:func:`shearcorr.parallel.executor_from`); default a local pool over all cores.
    log : callable(str)
        Progress lines.
    config : ReproduceConfig, optional
        Explicit sizes (overrides ``quick``; used by tests).
    """
    from ..data import generate, open_dataset
    from ..inverse.modelfile import save_model
    from ..parallel import executor_from
    from ..plots import require_matplotlib
    from .diagnostics import mc_vs_analytic, rs_degeneracy, rs_identifiability

    require_matplotlib()  # fail before any work when plotting is not installed
    cfg = config or (QUICK if quick else FULL)
    out = check_output_folder(out_dir, overwrite=True)
    out.mkdir(exist_ok=True)
    staging = out / ".staging"
    shutil.rmtree(staging, ignore_errors=True)
    figs = staging / "figures"
    figs.mkdir(parents=True)
    L = _Log(log)
    grid = QGrid.log(*cfg.grid)
    R = ReportData(config=cfg, seed=seed)
    L(f"reproduce ({'quick' if cfg is QUICK else 'full' if cfg is FULL else 'custom'}): {cfg}")
    with contextlib.ExitStack() as stack:
        executor = executor if executor is not None else stack.enter_context(executor_from())
        with L.stage(f"1/9 analytic dataset, {cfg.n_samples} samples"):
            generate(staging / "dataset.zarr", n=cfg.n_samples, seed=seed, grid=grid, engine="analytic",
                     executor=executor, progress=True)
            ds = open_dataset(staging / "dataset.zarr", load=True).drop_vars("g")  # g(theta), g(q) suffice (memory)
        with L.stage("2/9 Figs. 1-3 (forward model)"):
            _forward_figures(R, figs, grid)
        with L.stage("3/9 SVD of g(theta) (Figs. 4-5)"):
            _svd_figures(R, figs, ds, grid)
        mc_sets = {}

        def monte_carlo():  # the Monte Carlo sets of stages 8-9, their chunks queued behind the training tasks
            mc_sets["spot"] = _monte_carlo_sets(staging, "spot.zarr", cfg.spot_sets, cfg.spot_configs, seed + 1, grid,
                                                executor)
            mc_sets["test"] = _monte_carlo_sets(staging, "mc_test.zarr", cfg.mc_sets, cfg.mc_configs, seed + 2, grid,
                                                executor)

        models = train_rows(R, L, staging / "dataset.zarr", ds, executor, meanwhile=monte_carlo)
        with L.stage("5/9 PDDF/ACF, LML landscapes, parity plots (Figs. 6-7)"):
            _learning_figures(R, figs, ds, models["g_theta"])
        with L.stage("6/9 R_s identifiability"):
            R.rs_ident = rs_identifiability(*R.evals[R.best_row].predictions["rs"], grid)
            R.rs_degeneracy = rs_degeneracy(grid)
        with L.stage(f"7/9 direct physics fit on {cfg.n_fit} test samples"):
            _direct_fit(R, L, staging / "dataset.zarr", ds, models["g_theta"].test_index, grid)
        with L.stage(f"8/9 Monte Carlo spot check: {cfg.spot_sets} sets x {cfg.spot_configs} configurations "
                     "(simulated during 4/9)"):
            R.spot = mc_vs_analytic(mc_sets["spot"])
        with L.stage(f"9/9 Monte Carlo test set: {cfg.mc_sets} sets x {cfg.mc_configs} configurations "
                     "(simulated during 4/9)"):
            _noisy_test(R, models, mc_sets["test"], _noisy_fit(R, mc_sets["test"]))
        with L.stage("trained models -> models/"):
            (staging / "models").mkdir()
            for row, model in models.items():
                save_model(model, staging / "models" / f"{row}.model")
    R.n_train, R.n_test = len(models["g_theta"].train_index), len(models["g_theta"].test_index)
    R.times, R.total_seconds = L.times, time.perf_counter() - L.t0
    for sub in ("figures", "models"):
        (out / sub).mkdir(exist_ok=True)
        for f in (staging / sub).iterdir():
            os.replace(f, out / sub / f.name)
    with atomic_file(out / "report.md") as tmp:
        tmp.write_text(render(R), encoding="utf-8")
    shutil.rmtree(staging, ignore_errors=True)
    L(f"wrote {out / 'report.md'} (total {R.total_seconds:.0f} s)")
    return out / "report.md"
