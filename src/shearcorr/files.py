"""The one place for output safety: checks before any work, atomic files and folders, strict JSON.

Rules every writer of shearcorr follows:

* **Refuse before work** (:func:`check_output_file`, :func:`check_output_folder`): a missing parent
  folder, an existing output that may not be replaced, a wrong suffix or a folder that cannot be
  written (tried, not guessed from permission bits: a read-only file system or root's missing rights
  show only when writing) is a one-line :class:`~shearcorr.errors.ShearcorrError` before anything is
  computed.
* **One overwrite rule**: an existing output is replaced only with ``overwrite=True`` (CLI
  ``--overwrite``), and then only once the new one is complete.
* **Never a half-written output** (:func:`atomic_file`, :func:`atomic_folder`): data go to a
  temporary file or folder next to the target, are flushed to disk, and are renamed into place only
  when complete; on any error the temporary is removed and an existing output is left as it was.
* **File-system failures are one line** (:func:`write_error`): a full disk, a quota, a file-size
  limit, a read-only or forbidden folder become a ShearcorrError that names the output and the fix.
* **Leftovers of killed runs are removed** (:func:`clean_stale`): every temporary is named
  ``.<name>.shearcorr-<pid>@<host>.<random>``; writing ``<name>`` again deletes the temporaries of
  ``<name>`` whose process no longer runs on this host - never another program's files, never those
  of a live run or of another host.
* **Normal permissions**: outputs get the permissions the user's umask gives a new file (e.g.
  0644) or folder (0755), not the private 0600/0700 of :mod:`tempfile`.
* **Strict JSON** (:func:`json_text`, :func:`write_json`): no NaN or Infinity (they become ``null``),
  numpy scalars and arrays as plain numbers and lists.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any, Iterator

from .errors import ShearcorrError

__all__ = ["check_parent", "check_output_file", "check_output_folder", "atomic_file", "atomic_folder",
           "write_error", "is_write_error", "clean_stale", "temp_prefix", "json_default", "json_text",
           "write_json", "JSONRecord"]

#: errno -> what it means for an output, and the fix (the "environment" failures of writing).
WRITE_ERRNOS = {
    errno.ENOSPC: "the disk is full (no space left on device); free space or choose another output folder",
    errno.EDQUOT: "the disk quota is exceeded; free space or choose another output folder",
    errno.EFBIG: "the file-size limit is exceeded (ulimit -f, or the file system's limit); raise it or write elsewhere",
    errno.EROFS: "the file system is read-only; choose another output path",
    errno.EACCES: "permission denied; choose an output path you may write to",
    errno.EPERM: "the operation is not permitted there; choose an output path you may write to",
    errno.EIO: "input/output error of the device; check the disk or write elsewhere",
}

_ERRNO_IN_TEXT = re.compile(r"errno\s*=\s*(\d+)")


def _umask() -> int:
    """The process umask (read without changing it where /proc allows)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # no /proc: the only portable way, set and restore at once
    os.umask(mask)
    return mask


def _chmod_default(path: Path, *, folder: bool) -> None:
    os.chmod(path, (0o777 if folder else 0o666) & ~_umask())


def _errno_of(exc: BaseException) -> int | None:
    """The errno of an OSError, also when a C library (HDF5) only writes it into the message."""
    if isinstance(exc, OSError) and exc.errno is not None:
        return exc.errno
    found = _ERRNO_IN_TEXT.search(str(exc))
    return int(found.group(1)) if found else None


def is_write_error(exc: BaseException) -> bool:
    """True for a file-system failure of writing (full disk, size limit, read-only, forbidden, I/O)."""
    return isinstance(exc, OSError) and _errno_of(exc) in WRITE_ERRNOS


def write_error(exc: BaseException, path: str | os.PathLike, *, kept: bool = True) -> ShearcorrError:
    """The one-line ShearcorrError for a failure ``exc`` while writing ``path`` (see :data:`WRITE_ERRNOS`).

    ``kept``: say that an existing output at ``path`` was left unchanged (true for atomic writes).
    """
    code = _errno_of(exc)
    why = WRITE_ERRNOS.get(code)
    if why is None:  # e.g. numpy's "16384 requested and 4968 written": a short write, no errno
        why = f"{' '.join(str(getattr(exc, 'strerror', None) or exc).split())}; check the free space and the file-size limit"
    tail = "; any existing output there is unchanged" if kept else ""
    return ShearcorrError(f"cannot write {path}: {why}{tail}")


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname() or "host")[:40] or "host"


def temp_prefix(name: str) -> str:
    """Prefix of this process's temporaries for an output called ``name`` (see :func:`clean_stale`)."""
    return f".{name}.shearcorr-{os.getpid()}@{_host()}."


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a process of another user has that pid: alive
        return True
    return True


def clean_stale(folder: str | os.PathLike, name: str) -> list[Path]:
    """Remove the temporaries left in ``folder`` by killed shearcorr runs that wrote ``name``.

    Only entries named ``.<name>.shearcorr-<pid>@<host>.*`` (what :func:`atomic_file` and
    :func:`atomic_folder` create) whose host is this one and whose process no longer exists are
    removed. A reused pid keeps a leftover (never a live run's file). Returns what was removed.
    """
    folder = Path(folder)
    pattern = re.compile(rf"^\.{re.escape(name)}\.shearcorr-(\d+)@([A-Za-z0-9-]+)\.")
    host, removed = _host(), []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    for entry in entries:
        m = pattern.match(entry.name)
        if not m or m.group(2) != host or int(m.group(1)) == os.getpid() or _pid_alive(int(m.group(1))):
            continue
        with contextlib.suppress(OSError):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            removed.append(entry)
    return removed


def _probe(folder: Path) -> None:
    """Create and delete a file in ``folder``: the only sure test that it can be written."""
    clean_stale(folder, "probe")  # a probe of a run killed between creating and deleting it
    try:
        fd, name = tempfile.mkstemp(prefix=temp_prefix("probe"), dir=folder)
    except OSError as exc:
        raise ShearcorrError(f"cannot write into folder {folder}: "
                             f"{WRITE_ERRNOS.get(_errno_of(exc)) or exc.strerror or exc}") from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(name)


def check_parent(path: str | os.PathLike) -> Path:
    """``path`` as a Path whose parent folder exists and can be written; else a one-line ShearcorrError."""
    path = Path(path)
    parent = path.parent
    if not parent.is_dir():
        raise ShearcorrError(f"output folder {parent} does not exist; create it first")
    _probe(parent)
    return path


def check_output_file(path: str | os.PathLike, *, suffixes: tuple[str, ...] = (), overwrite: bool = False) -> Path:
    """Refuse an output file before any work: missing or unwritable folder, wrong suffix, a folder at
    ``path``, or an existing file when ``overwrite`` is False. Returns ``path`` as a Path."""
    path = Path(path)
    if suffixes and path.suffix not in suffixes:
        raise ShearcorrError(f"output {path} should end in {' or '.join(suffixes)}")
    if path.is_dir():
        raise ShearcorrError(f"output {path} is a folder; give a file name")
    if path.exists() and not overwrite:
        raise ShearcorrError(f"output {path} exists; choose another name or pass --overwrite")
    return check_parent(path)


def check_output_folder(path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Refuse an output folder before any work: missing or unwritable parent, a file at ``path``, or an
    existing non-empty folder when ``overwrite`` is False. Returns ``path`` as a Path."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ShearcorrError(f"output {path} is a file; give a folder")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise ShearcorrError(f"output {path} exists and is not empty; choose a new folder or pass --overwrite")
    return check_parent(path)


def _fsync(path: Path) -> None:
    with contextlib.suppress(OSError):  # some file systems cannot fsync; the rename is still atomic
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Write a file atomically: yields a temporary path in the same folder (same suffix), renamed onto
    ``path`` on success (after an fsync; permissions from the umask) and removed on error.

    A file-system failure (full disk, size limit, read-only, forbidden) raises :func:`write_error`'s
    one-line ShearcorrError; ``path`` is left as it was. Stale temporaries of killed runs writing the
    same ``path`` are removed first (:func:`clean_stale`).

    Examples
    --------
    >>> with atomic_file("out.nc") as tmp:  # doctest: +SKIP
    ...     ds.to_netcdf(tmp)
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise ShearcorrError(f"output folder {path.parent} does not exist; create it first")
    clean_stale(path.parent, path.name)
    try:
        fd, name = tempfile.mkstemp(prefix=temp_prefix(path.name), suffix=f".tmp{path.suffix}", dir=path.parent)
    except OSError as exc:
        raise write_error(exc, path) from None
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        _chmod_default(tmp, folder=False)
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):  # the block writes the output: any OSError there is a failed write
            raise write_error(exc, path) from None
        raise


def _publish(tmp: Path, out: Path, overwrite: bool) -> None:
    """Rename the finished folder ``tmp`` to ``out``; an existing ``out`` is moved aside first and
    deleted only after the rename, so a failure never leaves ``out`` half-written. Two runs publishing
    the same ``out`` at once: one wins, the other gets a one-line error; ``out`` is always complete."""
    raced = ShearcorrError(f"output {out} was written by another run at the same time; this run's result was not "
                           "published (the other one is complete)")
    if not out.exists():
        try:
            tmp.rename(out)
        except OSError:
            if out.exists():
                raise raced from None
            raise
        return
    if not overwrite and (not out.is_dir() or any(out.iterdir())):
        raise ShearcorrError(f"output {out} appeared while working and is not empty; nothing was replaced")
    old = Path(tempfile.mkdtemp(prefix=temp_prefix(out.name) + "old.", dir=out.parent))
    try:
        with contextlib.suppress(FileNotFoundError):  # another run may have moved it first
            out.rename(old / "x")
        try:
            tmp.rename(out)
        except OSError:
            if out.exists():
                raise raced from None
            with contextlib.suppress(OSError):
                (old / "x").rename(out)  # put the old output back
            raise
    finally:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_folder(out: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Build a folder atomically: yields a temporary folder next to ``out`` (permissions from the umask),
    renamed to ``out`` on success and removed on error. An existing ``out`` (empty, or any with
    ``overwrite``) is replaced only once the new folder is complete. File-system failures and stale
    temporaries are handled as in :func:`atomic_file`."""
    out = Path(out)
    if not out.parent.is_dir():
        raise ShearcorrError(f"output folder {out.parent} does not exist; create it first")
    clean_stale(out.parent, out.name)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(out.name), dir=out.parent))
    except OSError as exc:
        raise write_error(exc, out) from None
    try:
        _chmod_default(tmp, folder=True)
        yield tmp
        _publish(tmp, out, overwrite)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError):  # the block writes the output: any OSError there is a failed write
            raise write_error(exc, out) from None
        raise


def json_default(obj: Any) -> Any:
    """``default=`` of :func:`json.dumps` for numpy scalars and arrays, tuples, paths and records."""
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if hasattr(obj, "tolist"):  # numpy scalars and arrays
        return obj.tolist()
    if isinstance(obj, (tuple, set, frozenset)):
        return list(obj)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")


def _strict(obj: Any) -> Any:
    """Replace non-finite floats by None, recursively (after numpy values became Python ones)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_strict(v) for v in obj]
    return obj


def json_text(obj: Any, *, indent: int | None = None, sort_keys: bool = False) -> str:
    """Strict JSON text of ``obj``: NaN and +-Infinity become ``null`` (they are not JSON)."""
    plain = json.loads(json.dumps(obj, default=json_default))  # numpy, tuples, records -> plain
    return json.dumps(_strict(plain), indent=indent, sort_keys=sort_keys, allow_nan=False)


def write_json(path: str | os.PathLike, obj: Any, *, indent: int | None = 2) -> Path:
    """Write ``obj`` as strict JSON (:func:`json_text`) to ``path`` atomically; returns the path."""
    path = Path(path)
    with atomic_file(path) as tmp:
        tmp.write_text(json_text(obj, indent=indent) + "\n", encoding="utf-8")
    return path


class JSONRecord:
    """Mixin of the typed results: ``to_json()`` is the strict JSON text of ``to_dict()``."""

    def to_dict(self) -> dict:  # pragma: no cover - every record defines it
        raise NotImplementedError

    def to_json(self, *, indent: int | None = None) -> str:
        """Strict JSON text (NaN / Infinity as ``null``) of :meth:`to_dict`."""
        return json_text(self.to_dict(), indent=indent)
