"""The one way to pass parallelism: an executor, anything with ``submit(fn, *args) -> Future``.

Library functions take ``executor=`` (a :class:`concurrent.futures.Executor`, a Dask
``client.get_executor()``, ...); only the edges - the CLI and :func:`executor_from` - turn a number of
workers or a Dask scheduler address into one. Dask stays an optional extra, imported only here and
only when a scheduler is given.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import multiprocessing
import numbers
import os
import threading
import time
from typing import Any, Iterator

from .errors import ShearcorrError

__all__ = ["executor_from", "executor_workers", "local_pool"]

#: Seconds to wait for a Dask scheduler before giving up.
CONNECT_TIMEOUT = "20s"
#: How often (seconds) a pool worker checks that the driver process is still alive.
DRIVER_POLL_SECONDS = 1.0


def _exit_with_driver(driver_pid: int) -> None:
    """Pool-worker initializer: exit when the driver is gone (e.g. kill -9), instead of lingering."""

    def watch() -> None:
        while True:
            time.sleep(DRIVER_POLL_SECONDS)
            try:
                os.kill(driver_pid, 0)
            except ProcessLookupError:
                os._exit(1)
            except PermissionError:  # pragma: no cover - pid reused by another user's process
                os._exit(1)

    threading.Thread(target=watch, name="shearcorr-driver-watch", daemon=True).start()


def local_pool(workers: int) -> cf.ProcessPoolExecutor:
    """A process pool of ``workers`` processes (forkserver where available) whose workers exit with
    the driver. The caller shuts it down."""
    if isinstance(workers, bool) or not isinstance(workers, numbers.Integral) or workers < 1:
        raise ShearcorrError(f"workers must be a whole number >= 1, got {workers!r}")
    workers = int(workers)
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    return cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_exit_with_driver,
                                  initargs=(os.getpid(),))


def _connect(scheduler: Any) -> tuple[Any, bool]:
    """A ``distributed.Client`` for an address or a Client; second item True if we opened it."""
    if hasattr(scheduler, "get_executor"):
        return scheduler, False
    try:
        from distributed import Client
    except ImportError:
        raise ShearcorrError("a Dask scheduler needs dask.distributed; pip install 'shearcorr[dask]'") from None
    try:
        return Client(str(scheduler), timeout=CONNECT_TIMEOUT), True
    except (OSError, TimeoutError, ValueError) as exc:
        raise ShearcorrError(f"cannot connect to the Dask scheduler at {scheduler} ({type(exc).__name__}: {exc})") from None


@contextlib.contextmanager
def executor_from(workers: int | None = None, scheduler: Any = None) -> Iterator[Any]:
    """An executor for ``workers`` local processes or a Dask ``scheduler``; closed on exit.

    Parameters
    ----------
    workers : int, optional
        Processes of a local pool (default: all cores) - when no scheduler is given.
    scheduler : str or distributed.Client, optional
        A Dask scheduler address (``"tcp://host:8786"``) or a Client; yields
        ``client.get_executor(pure=False)``. A client opened here is closed on exit, one passed in is not.

    Yields
    ------
    An executor with ``submit``.
    """
    if workers is not None and scheduler is not None:
        raise ShearcorrError("give either a number of workers or a Dask scheduler, not both")
    if scheduler is not None:
        client, own = _connect(scheduler)
        try:
            yield client.get_executor(pure=False)
        finally:
            if own:
                client.close()
        return
    pool = local_pool((os.cpu_count() or 1) if workers is None else workers)
    try:
        yield pool
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def executor_workers(executor: Any) -> int:
    """How many tasks ``executor`` runs at once (pool size, Dask worker threads now; else the cores)."""
    for attr in ("_max_workers", "max_workers"):
        if isinstance(getattr(executor, attr, None), int):
            return getattr(executor, attr)
    client = getattr(executor, "_client", None)
    if client is not None:  # distributed's ClientExecutor: threads of the workers connected now
        return max(1, sum(client.nthreads().values()))
    return os.cpu_count() or 1
