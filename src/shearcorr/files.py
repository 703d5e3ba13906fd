"""The one place for output safety: checks before any work, atomic files and folders, strict JSON.

Rules every writer of shearcorr follows:

* **Refuse before work** (:func:`check_output_file`, :func:`check_output_folder`): a missing parent
  folder, an existing output that may not be replaced, a wrong suffix or an unwritable folder is a
  one-line :class:`~shearcorr.errors.ShearcorrError` before anything is computed.
* **Never a half-written output** (:func:`atomic_file`, :func:`atomic_folder`): data go to a
  temporary file or folder next to the target, are flushed to disk, and are renamed into place only
  when complete; on any error the temporary is removed and an existing output is left as it was.
* **Normal permissions**: outputs get the permissions the user's umask gives a new file (e.g.
  0644) or folder (0755), not the private 0600/0700 of :mod:`tempfile`.
* **Strict JSON** (:func:`json_text`, :func:`write_json`): no NaN or Infinity (they become ``null``),
  numpy scalars and arrays as plain numbers and lists.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from .errors import ShearcorrError

__all__ = ["check_parent", "check_output_file", "check_output_folder", "atomic_file", "atomic_folder",
           "json_default", "json_text", "write_json", "JSONRecord"]


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


def check_parent(path: str | os.PathLike) -> Path:
    """``path`` as a Path whose parent folder exists and is writable; else a one-line ShearcorrError."""
    path = Path(path)
    parent = path.parent
    if not parent.is_dir():
        raise ShearcorrError(f"output folder {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ShearcorrError(f"cannot write into folder {parent}; choose another output path")
    return path


def check_output_file(path: str | os.PathLike, *, suffixes: tuple[str, ...] = (), overwrite: bool = False) -> Path:
    """Refuse an output file before any work: missing or unwritable folder, wrong suffix, a folder at
    ``path``, or an existing file when ``overwrite`` is False. Returns ``path`` as a Path."""
    path = check_parent(path)
    if suffixes and path.suffix not in suffixes:
        raise ShearcorrError(f"output {path} should end in {' or '.join(suffixes)}")
    if path.is_dir():
        raise ShearcorrError(f"output {path} is a folder; give a file name")
    if path.exists() and not overwrite:
        raise ShearcorrError(f"output {path} exists; choose another name or pass --overwrite")
    return path


def check_output_folder(path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Refuse an output folder before any work: missing or unwritable parent, a file at ``path``, or an
    existing non-empty folder when ``overwrite`` is False. Returns ``path`` as a Path."""
    path = check_parent(path)
    if path.exists() and not path.is_dir():
        raise ShearcorrError(f"output {path} is a file; give a folder")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise ShearcorrError(f"output {path} exists and is not empty; choose a new folder or pass --overwrite")
    return path


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

    Examples
    --------
    >>> with atomic_file("out.nc") as tmp:  # doctest: +SKIP
    ...     ds.to_netcdf(tmp)
    """
    path = check_parent(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        _chmod_default(tmp, folder=False)
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _publish(tmp: Path, out: Path, overwrite: bool) -> None:
    """Rename the finished folder ``tmp`` to ``out``; an existing ``out`` is moved aside first and
    deleted only after the rename, so a failure never leaves ``out`` half-written."""
    if out.exists():
        if not overwrite and (not out.is_dir() or any(out.iterdir())):
            raise ShearcorrError(f"output {out} appeared while working and is not empty; nothing was replaced")
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
        out.rename(old / "x")
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(out)


@contextlib.contextmanager
def atomic_folder(out: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Build a folder atomically: yields a temporary folder next to ``out`` (permissions from the umask),
    renamed to ``out`` on success and removed on error. An existing ``out`` (empty, or any with
    ``overwrite``) is replaced only once the new folder is complete."""
    out = check_parent(out)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        _chmod_default(tmp, folder=True)
        yield tmp
        _publish(tmp, out, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
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
