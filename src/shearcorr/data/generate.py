"""Datasets at scale: many parameter sets -> g(q, theta), g(q), g(theta) in a resumable Zarr store.

:func:`generate` draws a :class:`~shearcorr.data.design.Design`, creates the store with its full shape up
front (:mod:`shearcorr.data.store`), cuts the samples into chunks (one task = one Zarr chunk along
``sample``), runs the tasks on an executor - a local process pool by default, or anything with
``submit`` such as a Dask cluster's (:mod:`shearcorr.parallel`) - and writes each finished chunk from the
driver as it arrives, then flags it done. Running the same call again resumes: only chunks not
flagged done are computed.

Determinism: sample ``i``'s parameters come from ``SeedSequence(seed).spawn(n)[i]``
(:func:`shearcorr.data.design.sample_seed`) and its Monte Carlo stream from that stream's first child
(:func:`shearcorr.rng.child_seed` ``(seed, i, 0)``); each sample is computed on its own, so values never
depend on workers or chunking.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import os
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from .._version import __version__
from ..choices import check_choice
from ..errors import ShearcorrError
from ..files import check_parent, write_error
from ..forward import engine_arrays
from ..memory import FLOAT, format_bytes, require
from ..parallel import executor_from, executor_workers
from ..params import PARAM_NAMES, QGrid, SystemParams
from ..rng import child_seed
from . import store as _store
from .design import make_design
from .lock import StoreLock

__all__ = ["generate"]

#: Cost (seconds, one core) of one Monte Carlo configuration on the reference grid of
#: ``_REFERENCE_GRID_POINTS`` (the paper's 100 x 101) at n_l2 = ``_REFERENCE_N_L2``; used only to size
#: chunks (it scales with grid points and particles). Deterministic engines are timed on one sample instead.
_SECONDS_PER_CONFIG = 0.004
_REFERENCE_GRID_POINTS = 100 * 101
_REFERENCE_N_L2 = 150.0
#: Work per task the automatic chunk size aims at (seconds): long enough to hide the scheduling cost.
_TARGET_TASK_SECONDS = 4.0
#: Largest g array of one task (bytes), so a task's result never strains the driver's memory.
_MAX_CHUNK_BYTES = 64 * 1024**2
#: Tasks per worker at least (load balance when some samples cost more than others).
_TASKS_PER_WORKER = 4
#: Tasks in flight per worker (keeps every worker busy without holding many results on the driver).
_INFLIGHT_PER_WORKER = 2


def _whole(what: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ShearcorrError(f"{what} must be a whole number >= 1, got {value!r}")


def _engine_label(engine: str | Callable) -> str:
    if callable(engine):
        named = engine if hasattr(engine, "__qualname__") else type(engine)  # function or callable object
        return f"{named.__module__}:{named.__qualname__}"
    return engine


@dataclass(frozen=True)
class _Task:
    """One chunk of samples ``start:stop``, with everything a worker needs (small and picklable)."""

    engine: Any
    q: np.ndarray
    theta: np.ndarray
    start: int
    stop: int
    rows: np.ndarray  # (stop - start, 4) in PARAM_NAMES order
    displacement: str
    configs: int
    seed: int
    include_I: bool
    include_err: bool


def _one_thread() -> contextlib.ExitStack:
    """Run engine kernels single-threaded inside a task: one task per core is the parallelism, and
    a fixed thread count keeps floating-point reductions (numba, BLAS) the same on every executor."""
    stack = contextlib.ExitStack()
    try:
        from threadpoolctl import threadpool_limits

        stack.enter_context(threadpool_limits(1))
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        pass
    numba = sys.modules.get("numba")
    if numba is not None:
        previous = numba.get_num_threads()
        numba.set_num_threads(1)
        stack.callback(numba.set_num_threads, previous)
    return stack


def _run_task(task: _Task) -> dict[str, np.ndarray]:
    """Compute one chunk (runs on a worker); each sample independently, in its own stream."""
    compute = engine_arrays(task.engine)  # imports the engine (and numba) before pinning thread counts
    with _one_thread():
        return _compute_chunk(task, compute)


def _compute_chunk(task: _Task, compute: Callable) -> dict[str, np.ndarray]:
    grid = QGrid(task.q, task.theta)
    k, shape = task.stop - task.start, grid.shape
    out = {"g": np.empty((k, *shape), np.float32), "g_q": np.empty((k, shape[0])), "g_theta": np.empty((k, shape[1]))}
    if task.include_I:
        out["I"] = np.empty((k, *shape), np.float32)
    if task.include_err:
        out["g_err"] = np.empty((k, *shape), np.float32)
    for j in range(k):
        params = SystemParams(*task.rows[j], displacement=task.displacement)
        mc_seed = child_seed(task.seed, task.start + j, 0)  # first child of the sample's stream
        I, g, g_err = compute(params, grid, configs=task.configs, seed=mc_seed)
        g = np.asarray(g, dtype=np.float64)
        out["g"][j] = g
        out["g_q"][j] = g.mean(axis=1)  # unweighted means, as in the paper and shearcorr.result
        out["g_theta"][j] = g.mean(axis=0)
        if task.include_I:
            out["I"][j] = I
        if task.include_err:
            out["g_err"][j] = g_err
    return out


def _seconds_per_sample(task: _Task, grid: QGrid) -> float:
    """Cost of one sample: a formula for Monte Carlo, else one timed sample on the driver (after a warm-up)."""
    if task.configs:
        mean_n_l2 = float(task.rows[:, 0].mean())
        return (task.configs * _SECONDS_PER_CONFIG * grid.shape[0] * grid.shape[1] / _REFERENCE_GRID_POINTS
                * mean_n_l2 / _REFERENCE_N_L2)
    one = _Task(**{**task.__dict__, "stop": task.start + 1, "rows": task.rows[:1]})
    _run_task(one)
    t = time.perf_counter()
    _run_task(one)
    return time.perf_counter() - t


def _auto_chunk_size(n: int, grid: QGrid, per_sample: float, workers: int) -> int:
    """Samples per task: about 4 s of work, at least ~4 tasks per worker, at most 64 MiB of g."""
    by_time = int(_TARGET_TASK_SECONDS / max(per_sample, 1e-6))
    by_balance = -(-n // (_TASKS_PER_WORKER * max(workers, 1)))
    by_memory = _MAX_CHUNK_BYTES // (4 * grid.shape[0] * grid.shape[1])
    return int(max(1, min(by_time, by_balance, by_memory)))


def generate(
    store: str | os.PathLike,
    *,
    n: int,
    seed: int = 0,
    design: str = "uniform",
    ranges: Mapping[str, Any] | None = None,
    fixed: Mapping[str, Any] | None = None,
    grid: QGrid | None = None,
    engine: str | Callable = "analytic",
    configs: int | None = None,
    displacement: str = "uniform",
    executor: cf.Executor | None = None,
    chunk_size: int | None = None,
    include_I: bool = False,
    include_err: bool | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Compute g(q, theta), g(q), g(theta) for ``n`` parameter sets into a Zarr store; resumable.

    Parameters
    ----------
    store : path
        Output Zarr store (a folder). If it exists and was made with the same grid, engine, configs,
        displacement and design, only its unfinished samples are computed (resume).
    n : int
        Number of parameter sets (samples).
    seed : int, default 0
        Seed of the design and of the Monte Carlo streams (:func:`shearcorr.data.design.sample_seed`).
    design : {"uniform", "lhs", "sobol"}, default "uniform"
        See :mod:`shearcorr.data.design`.
    ranges : mapping of str to (low, high), optional
        Parameter ranges; default the paper's (:data:`shearcorr.data.design.PAPER_RANGES`).
    fixed : mapping of str to float, optional
        Parameters held at one value.
    grid : QGrid, default the paper's 100 x 101 grid
    engine : {"analytic", "mc"} or callable, default "analytic"
        ``"analytic"``: the semi-analytic engine (deterministic); ``"mc"``: brute-force Monte Carlo with
        ``configs`` configurations per sample. A callable ``f(params, grid, *, configs, seed) ->
        (I, g, g_err)`` (importable by the workers) is accepted too.
    configs : int, optional
        Monte Carlo configurations per sample (required for ``"mc"``, not allowed for ``"analytic"``).
    displacement : {"uniform", "stokes-einstein"}, default "uniform"
    executor : concurrent.futures.Executor, optional
        Runs the tasks (anything with ``submit``: a process pool, a Dask ``client.get_executor()``,
        see :func:`shearcorr.parallel.executor_from`); it is not shut down. Default: a local process
        pool over all cores, closed at the end.
    chunk_size : int, optional
        Samples per task and per Zarr chunk (default: about 4 s of work per task). A resumed store
        keeps the chunk size it was made with.
    include_I : bool, default False
        Also store <I(q, theta)> (float32).
    include_err : bool, optional
        Also store g_err (float32); default True for ``"mc"``, False for ``"analytic"``.
    overwrite : bool, default False
        Replace an existing store (only after all arguments are validated and the new store is made).
    progress : bool, default True
        Progress bar (samples/s, ETA) and a final summary line on stderr.

    Returns
    -------
    pathlib.Path
        The store; read it with :func:`shearcorr.data.open_dataset`.

    Raises
    ------
    ShearcorrError
        Bad arguments, a store made with other settings (names the difference), a missing engine, a
        worker pool that broke (finished chunks are kept: run again to resume).
    """
    # --- validate everything before touching the disk --------------------------------------------
    path = check_parent(store)
    dsg = make_design(n, seed, kind=design, ranges=ranges, fixed=fixed)
    grid = QGrid() if grid is None else grid
    if not isinstance(grid, QGrid):
        raise ShearcorrError(f"grid must be a shearcorr.QGrid, got {type(grid).__name__}")
    check_choice("displacement", displacement)
    if engine == "mc":
        _whole("configs of engine 'mc' (CLI: --configs N)", configs)
    elif engine == "analytic" and configs is not None:
        raise ShearcorrError("configs applies to engine 'mc' only; drop it or use engine='mc'")
    configs = int(configs or 0)
    engine_arrays(engine)  # a missing engine is an error now, not in every task
    _check_domain(dsg, grid, engine, displacement)
    if chunk_size is not None:
        _whole("chunk_size", chunk_size)
        chunk_size = min(int(chunk_size), int(n))  # a chunk never holds more than the whole dataset
    include_err = (engine == "mc") if include_err is None else bool(include_err)
    _check_memory(n, grid, chunk_size, include_I, include_err)
    attrs = {
        "engine": _engine_label(engine), "configs": configs, "displacement": displacement, "r0": 1.0,
        "beam_size": 800.0, "seed": int(seed), "design": dsg.to_json(), "include_I": int(bool(include_I)),
        "include_err": int(include_err), "shearcorr_version": __version__, **grid.to_attrs(),
    }
    params = dsg.sample()
    rows = np.column_stack([params[p] for p in PARAM_NAMES])

    def task(a: int, b: int) -> _Task:
        return _Task(engine, grid.q, grid.theta, a, b, rows[a:b], displacement, configs, int(seed),
                     bool(include_I), include_err)

    # --- lock, executor, store, tasks ------------------------------------------------------------
    with StoreLock() as lock, contextlib.ExitStack() as stack:
        lock.acquire(path)  # one driver per store: refused (naming the holder) while another writes it
        create = _claim(path, attrs, grid, overwrite)
        if executor is None:
            executor = stack.enter_context(executor_from())
        if create:
            if chunk_size is None:
                per_sample = _seconds_per_sample(task(0, 1), grid)
                chunk_size = _auto_chunk_size(n, grid, per_sample, executor_workers(executor))
            attrs["chunk_size"] = int(chunk_size)
            _store.create_store(path, _store.template(params, grid, attrs, include_I, include_err),
                                chunk_size=attrs["chunk_size"], overwrite=overwrite)
        lock.bind(path)
        _, done, cs, _ = _store.read_state(path)
        if not create:
            _store.remove_partials(path)  # half-written chunk files of a killed driver (we hold the lock)
            done = _drop_damaged(path, done, progress)
            if not _store.has_checksums(path):  # a store written before checksums: its intact samples get them
                _store.add_checksums(path, done, cs)
        tasks = deque(task(a, min(a + cs, n)) for a in range(0, n, cs) if not done[a:min(a + cs, n)].all())
        return _drive(path, tasks, executor, n=n, n_done=int(done.sum()), progress=progress, lock=lock)


def _check_domain(dsg, grid: QGrid, engine, displacement: str) -> None:
    """Refuse a design that reaches outside the engine's domain before the store is made: its extreme
    corners (largest rs, d2, gamma_l with the smallest and the largest n_l2) for the analytic engine,
    the simulated box for Monte Carlo (:mod:`shearcorr.forward.domain`)."""
    if callable(engine):
        return
    from ..forward.domain import check_analytic, check_box

    lo = {p: dsg.fixed[p] if p in dsg.fixed else dsg.ranges[p][0] for p in PARAM_NAMES}
    hi = {p: dsg.fixed[p] if p in dsg.fixed else dsg.ranges[p][1] for p in PARAM_NAMES}
    for n_l2 in (lo["n_l2"], hi["n_l2"]):
        corner = SystemParams(n_l2, hi["rs"], hi["d2"], hi["gamma_l"], displacement=displacement)
        if engine == "analytic":
            check_analytic(corner, grid)
        else:
            check_box(corner)


def _check_memory(n: int, grid: QGrid, chunk_size: int | None, include_I: bool, include_err: bool) -> None:
    """Refuse, before anything is allocated, a design or a chunk that does not fit in memory: the
    driver holds the design (~15 float64 per sample) and up to a few chunks of results in flight."""
    require(15 * FLOAT * n, f"a design of {n} samples", "use a smaller --n (or several stores)")
    if chunk_size is not None:
        per_sample = 4 * grid.shape[0] * grid.shape[1] * (1 + include_I + include_err) * 3  # float32, ~3 copies
        require(per_sample * chunk_size * (_INFLIGHT_PER_WORKER + 1),
                f"chunks of {chunk_size} samples ({format_bytes(per_sample * chunk_size / 3)} of results each)",
                "use a smaller --chunk-size (or leave it to the default)")


def _drop_damaged(path: Path, done: np.ndarray, progress: bool) -> np.ndarray:
    """Resume: chunks whose finished samples fail verification (:mod:`.integrity`) are recomputed."""
    done = done.copy()
    for a, b, why in _store.damaged_chunks(path):
        if done[a:b].any():
            print(f"shearcorr dataset: samples {a}..{b - 1} of {path} are damaged ({why}); recomputing them",
                  file=sys.stderr)
        done[a:b] = False
    return done


def _claim(path: Path, attrs: dict, grid: QGrid, overwrite: bool) -> bool:
    """Whether the store must be created: refuses a foreign folder or (without ``overwrite``) a store
    made with other settings; an empty folder is taken over."""
    exists = path.exists()
    if exists and not _store.is_store(path):
        if not (path.is_dir() and not any(path.iterdir())):
            raise ShearcorrError(f"{path} exists and is not a shearcorr dataset store; choose another output path")
        path.rmdir()  # an empty folder: take it
        exists = False
    if exists and not overwrite:
        _store.check_compatible(path, attrs, grid)
    return not exists or overwrite


def _drive(path: Path, tasks: deque, executor, *, n: int, n_done: int, progress: bool, lock: StoreLock) -> Path:
    """Submit tasks (a bounded window, so the driver never holds many results) and write each as it lands.

    The window is about two tasks per worker; it is re-read as tasks finish, so a Dask cluster that
    gains workers while running (``cluster.scale``, ``adapt``) gets more work.
    """
    from tqdm.auto import tqdm

    inflight: dict[cf.Future, _Task] = {}
    computed, t0 = 0, time.perf_counter()
    bar = tqdm(total=n, initial=n_done, unit="sample", disable=not progress or not sys.stderr.isatty(),
               desc="dataset", smoothing=0.05, dynamic_ncols=True, file=sys.stderr)  # no bar into a file
    try:
        while tasks or inflight:
            window = _INFLIGHT_PER_WORKER * executor_workers(executor) + 1
            while tasks and len(inflight) < window:
                task = tasks.popleft()
                inflight[executor.submit(_run_task, task)] = task
            finished, _ = cf.wait(inflight, return_when=cf.FIRST_COMPLETED)
            for fut in finished:
                task = inflight.pop(fut)
                result = fut.result()
                lock.check(path)  # never write into a store that replaced ours
                try:
                    _store.write_chunk(path, task.start, task.stop, result, task.rows)
                except OSError as exc:  # a full disk, a size limit: finished chunks stay, the run resumes
                    raise ShearcorrError(f"{write_error(exc, path, kept=False)}; the finished chunks are kept - run "
                                         "the same command again to resume") from None
                del result
                computed += task.stop - task.start
                bar.update(task.stop - task.start)
    except Exception as exc:
        for fut in inflight:
            fut.cancel()
        if isinstance(exc, cf.process.BrokenProcessPool) or type(exc).__name__ == "KilledWorker":  # Dask's
            raise ShearcorrError(
                "a worker process died; finished chunks are saved - run the same command again to resume"
            ) from None
        raise
    except BaseException:
        for fut in inflight:
            fut.cancel()
        raise
    finally:
        bar.close()
    if progress:
        dt = time.perf_counter() - t0
        rate = computed / dt if dt > 0 else float("nan")
        print(f"shearcorr dataset: {n_done + computed}/{n} samples done ({computed} computed now) in {dt:.1f} s, "
              f"{rate:.1f} samples/s -> {path}", file=sys.stderr)
    return path
