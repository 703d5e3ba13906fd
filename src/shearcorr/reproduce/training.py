"""Stage 4 of ``reproduce``: every model row, and the noise-aware model of the Monte Carlo test, trained
on the analytic store in parallel worker processes and evaluated on the held-out split.

One task per model, except the ARD rows: their targets have independent, alike-seeded regressors, so each
target is a task of its own and the parts are joined (:meth:`InversionModel.join
<shearcorr.inverse.model.InversionModel.join>`; the same model as training all targets at once). The
paper rows share one LML grid between their targets and stay whole.
"""

from __future__ import annotations

import time
from pathlib import Path

from ..params import PARAM_NAMES
from .render import ARD_ROWS, NOISY_ROW, PAPER_ROWS, POLISHED_ROW, ROW_LABELS, ReportData

__all__ = ["TRAIN_ORDER", "task_order", "train_rows", "train_task"]

#: Principal components of the ARD model on g(theta) alone (measured best; "both" keeps the default 8 + 8).
ARD_G_THETA_COMPONENTS = 12

#: The order in which the training tasks start in the full run: longest first, so that the last tasks to finish
#: are short ones (full run, 2026-11-30, one thread each: the noise-aware GPR 782-849 s, the paper GPRs
#: 463-493 s, ARD on both 790 s for its 4 targets, ARD on g(theta) 387 s for its 4). The quick run's sizes turn
#: the middle around (paper GPRs 5-8 s on a 12 x 12 grid, each ARD target 58-71 s): ``cfg.ard_first`` moves the
#: ARD rows before the paper GPRs (:func:`task_order`).
TRAIN_ORDER = (NOISY_ROW, "both", "g_theta", "g_q", "svd", "ard_both", "ard_g_theta")


def _strategy(row: str, cfg):
    from ..inverse.training import ARDTraining, PaperTraining

    if row in PAPER_ROWS:
        return PaperTraining(feature=row, n_grid=cfg.n_grid)
    extra = {} if row == "ard_both" else {"n_components": ARD_G_THETA_COMPONENTS}
    return ARDTraining(feature=row[4:], max_opt_samples=cfg.ard_opt_samples, restarts=cfg.ard_restarts, **extra)


def _pca_label(features) -> str:
    k = int(features.n_components)
    return f"PCA-{k} + PCA-{k}" if features.pca_blocks else f"PCA-{k}"


def _err_line(ev) -> str:
    return ("Err " + ", ".join(f"{t} {100 * ev.err[t]:.2f}%" for t in PARAM_NAMES)
            + " | cov95 " + ", ".join(f"{t} {100 * ev.coverage95[t]:.0f}%" for t in PARAM_NAMES))


def train_task(store: Path, row: str, cfg, seed: int, targets: tuple = PARAM_NAMES):
    """Train one model row (or the noise-aware model, :data:`NOISY_ROW`) for ``targets`` on the analytic
    store; runs in a worker process. A whole row (all of :data:`PARAM_NAMES`) is also evaluated on the
    held-out split. Returns (model, info, evaluation or None, log lines, wall seconds). Training uses one
    BLAS thread (:func:`shearcorr.inverse.training.blas_threads`), so the model does not depend on the
    process it ran in."""
    from ..data import open_dataset
    from ..inverse.evaluation import evaluate
    from ..inverse.training import PaperTraining, train

    lines, t = [], time.perf_counter()
    with open_dataset(store) as full:
        if row == NOISY_ROW:  # inputs drawn as averages over the Monte Carlo test set's N (needs the full map g)
            model, info = train(full, PaperTraining(feature="both", n_grid=cfg.n_grid), targets=targets,
                                seed=seed, noise_configs=cfg.mc_configs, log=lines.append)
            ev = None
        else:
            ds = full.drop_vars("g").load()
            model, info = train(ds, _strategy(row, cfg), targets=targets, seed=seed, log=lines.append)
            ev = evaluate(model, ds, index=model.test_index) if tuple(targets) == PARAM_NAMES else None
            if ev is not None:
                lines.append(_err_line(ev))
    return model, info, ev, lines, time.perf_counter() - t


def task_order(cfg) -> list:
    """(row, targets) of every training task of ``cfg``, longest first: :data:`TRAIN_ORDER`, with the ARD rows
    (one task per target) moved right after the noise-aware model when ``cfg.ard_first``."""
    order = [r for r in TRAIN_ORDER if r in cfg.rows or r == NOISY_ROW]
    if cfg.ard_first:
        order = sorted(order, key=lambda r: (r != NOISY_ROW, r not in ARD_ROWS))  # stable: keeps the rest in order
    return [(row, (t,)) if row in ARD_ROWS else (row, PARAM_NAMES)
            for row in order for t in (PARAM_NAMES if row in ARD_ROWS else (None,))]


def train_rows(R: ReportData, L, store: Path, ds, executor, meanwhile=None) -> dict:
    """Train every model row and the noise-aware model in parallel on ``executor`` (module docstring),
    evaluate each row on the held-out split of ``ds`` (the store's profiles, loaded), and fill ``R``'s
    infos, evaluations and labels. Returns the models by row: the noise-aware model, then ``cfg.rows``.

    ``meanwhile`` (no arguments) is called once every training task is submitted, before their results
    are collected: work it submits to the same executor queues behind the training tasks and fills the
    workers that the longest tasks leave idle at the end of the stage.

    Each task's own wall time is logged and listed in the report next to the stage's wall time; the
    models are the ones a serial run gives (one BLAS thread each, same data, same seed)."""
    from concurrent.futures import as_completed

    from ..inverse.evaluation import evaluate
    from ..inverse.model import InversionModel
    from ..inverse.training import TrainingInfo
    from ..parallel import executor_workers

    cfg, models, parts = R.config, {}, {}
    tasks = task_order(cfg)
    with L.stage(f"4/9 {len(tasks)} training tasks ({len(cfg.rows) + 1} models), "
                 f"{min(len(tasks), executor_workers(executor))} at a time"):
        futures = {executor.submit(train_task, store, row, cfg, R.seed, targets): (row, targets)
                   for row, targets in tasks}
        if meanwhile is not None:
            meanwhile()
        for fut in as_completed(futures):
            row, targets = futures[fut]
            model, info, ev, lines, seconds = fut.result()
            what = (f"noise-aware paper GPR on both (N = {cfg.mc_configs})" if row == NOISY_ROW else
                    f"LML grid {cfg.n_grid}x{cfg.n_grid}, paper GPR on {row}" if row in PAPER_ROWS else
                    f"ARD GPR on {row[4:]}, target {targets[0]}")
            L.times[f"4/9 · {what}: training{'' if row in ARD_ROWS else ', evaluation'} (one worker)"] = seconds
            L(f"{what} done in a worker ({seconds:.1f} s)")
            for line in lines:
                L(f"  {row}: {line}")
            if row in ARD_ROWS:
                parts.setdefault(row, {})[targets[0]] = (model, info)
                if len(parts[row]) < len(PARAM_NAMES):
                    continue
                done = [parts[row].pop(t) for t in PARAM_NAMES]
                model = InversionModel.join([m for m, _ in done])
                info = TrainingInfo.join([i for _, i in done])
                ev = evaluate(model, ds, index=model.test_index)
                L(f"  {row}: joined its {len(PARAM_NAMES)} targets; {_err_line(ev)}")
            models[row], R.infos[row] = model, info
            if ev is not None:
                R.evals[row] = ev
    for row in cfg.rows:
        R.labels[row] = ROW_LABELS[row].format(pca=_pca_label(models[row].features))
    R.labels[NOISY_ROW] = ROW_LABELS[NOISY_ROW].format(n=cfg.mc_configs)
    R.labels[POLISHED_ROW] = ROW_LABELS[POLISHED_ROW]
    return {row: models[row] for row in (NOISY_ROW, *cfg.rows)}  # the report's order, not the finishing order
