"""One driver per dataset store: an exclusive lock that names its holder.

Two ``shearcorr dataset`` runs on one store used to corrupt it silently (issue 14: with ``--overwrite``
the second replaced the store while the first kept writing its chunks into the new one). Every
driver now holds an exclusive ``flock`` on the store's lock file while it creates, resumes or replaces
the store; a second driver is refused with the holder's pid, host, start time and command. The kernel
releases the lock when its process ends in any way (``kill -9`` included), so a leftover lock file
never blocks anybody; NFS file systems support it through their lock manager.

The lock file is a hidden sibling of the store, ``.<store name>.shearcorr-lock``, outside the store
because Zarr warns about foreign files inside one and because a replaced store must keep its lock. It
is deleted when the driver ends (a killed driver leaves it; it blocks nobody and the next driver
deletes it). Deleting a lock file is safe because a driver that locked a file checks that the path
still names that file, and otherwise starts over (the classic lock-then-verify protocol). :meth:`StoreLock.check` (before every chunk write) also stops a driver whose store folder was
replaced behind its back (by hand, or by a shearcorr without this lock) instead of writing into the
new one. Readers (train, predict, info) take no lock: they read finished, checksummed samples only.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from pathlib import Path

from ..errors import ShearcorrError

try:
    import fcntl
except ImportError:  # pragma: no cover - non-POSIX: no locking (documented)
    fcntl = None

__all__ = ["StoreLock", "lock_path", "holder"]

#: Attempts to lock when the lock file is deleted under us by a driver that just finished.
ATTEMPTS = 20


def lock_path(store: str | os.PathLike) -> Path:
    """The lock file of ``store``: ``.<name>.shearcorr-lock`` next to it."""
    store = Path(store)
    return store.parent / f".{store.name}.shearcorr-lock"


def holder(store: str | os.PathLike) -> str:
    """Who holds (or last held) the lock of ``store``, in words."""
    try:
        info = json.loads(lock_path(store).read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return "another shearcorr run"
    if not isinstance(info, dict):
        return "another shearcorr run"
    return (f"pid {info.get('pid', '?')} on host {info.get('host', '?')}, started {info.get('started', '?')}: "
            f"{info.get('command', 'shearcorr')}")


class StoreLock:
    """The exclusive lock of one dataset store, held by this process until :meth:`release`."""

    def __init__(self):
        self._fd: int | None = None
        self._file: Path | None = None
        self._store_inode: int | None = None

    def acquire(self, store: str | os.PathLike) -> None:
        """Lock ``store`` (which need not exist yet); refused, naming the holder, while another run has it."""
        store = Path(store)
        if self._fd is not None:
            return
        for _ in range(ATTEMPTS):
            if self._try(store):
                return
        raise ShearcorrError(f"could not lock {store}: its lock file {lock_path(store)} keeps changing; run again")

    def _try(self, store: Path) -> bool:
        """One attempt; False when the lock file was deleted or replaced between opening and locking."""
        file = lock_path(store)
        try:
            fd = os.open(file, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            raise ShearcorrError(f"cannot create the lock file {file} ({exc.strerror}); choose a folder you may write to") from None
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise ShearcorrError(f"{store} is being written by another shearcorr run ({holder(store)}); wait for it "
                                     "to finish or stop it, then run again") from None
            except OSError:  # pragma: no cover - a file system without locks: proceed unlocked
                pass
        try:
            same = os.stat(file).st_ino == os.fstat(fd).st_ino
        except OSError:
            same = False
        if not same:  # the previous holder deleted the file between our open and our lock: start over
            os.close(fd)
            return False
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
                "command": " ".join(sys.argv)[:300]}
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(info).encode("utf-8"), 0)
        self._fd, self._file = fd, file
        return True

    def bind(self, store: str | os.PathLike) -> None:
        """Remember which store folder this driver writes (after creating or opening it)."""
        self._store_inode = os.stat(store).st_ino

    def check(self, store: str | os.PathLike) -> None:
        """Refuse to go on when the folder at ``store`` is no longer the store this driver bound."""
        if self._store_inode is None:
            return
        try:
            inode = os.stat(store).st_ino
        except OSError:
            inode = None
        if inode != self._store_inode:
            raise ShearcorrError(f"{store} was replaced or removed while this run was writing it; stopped without "
                                 "writing into the new store (run again to resume it)")

    def release(self) -> None:
        """Delete the lock file (still holding it: see the module docstring), then release the lock."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._file)
            with contextlib.suppress(OSError):
                os.close(self._fd)
        self._fd = None
        self._store_inode = None

    def __enter__(self) -> "StoreLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()
