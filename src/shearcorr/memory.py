"""Memory before allocation: estimate what an input needs and refuse, with the numbers, what cannot fit.

A size taken from an argument or a file header (``--n-q 1000000000``, ``--size 100000``, a ``.npy``
header claiming 10^12 elements) must never reach the allocator unchecked: the OOM killer ends the
process without a message, or the machine swaps for minutes. Every such site calls :func:`require`
with its estimate *before* allocating; the refusal names the need, what is available and the option
to change. Only the standard library is used (no numpy), so the CLI can check before importing.

Available memory is the smallest of: the kernel's ``MemAvailable`` (free plus reclaimable), the
cgroup limit left (containers, batch jobs: ``memory.max - memory.current``, v2, or v1's
``memory.limit_in_bytes - memory.usage_in_bytes``) and the address-space limit left
(``ulimit -v``, RLIMIT_AS, minus the current virtual size).
"""

from __future__ import annotations

import os

from .errors import ShearcorrError

__all__ = ["available_bytes", "require", "format_bytes", "FLOAT"]

#: Bytes of one float64.
FLOAT = 8


def format_bytes(n: float) -> str:
    """``n`` bytes as a short human-readable size (1.5 GiB, 320 MiB, ...)."""
    n = float(n)
    for unit, size in (("PiB", 1024**5), ("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if abs(n) >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n:.0f} B"


def _read_int(path: str) -> int | None:
    try:
        with open(path, encoding="ascii") as fh:
            text = fh.read().split()[0]
    except (OSError, IndexError):
        return None
    return int(text) if text.isdigit() else None


def _meminfo(key: str) -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_left() -> int | None:
    for limit, used in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        lim, cur = _read_int(limit), _read_int(used)
        if lim is not None and cur is not None and lim < 2**60:
            return max(lim - cur, 0)
    return None


def _address_space_left() -> int | None:
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    except (ImportError, ValueError, OSError):  # pragma: no cover - non-POSIX
        return None
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            vsize = int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        vsize = 0
    return max(soft - vsize, 0)


def available_bytes() -> int | None:
    """Memory this process can still allocate (bytes; see the module docstring), None if unknown."""
    found = [v for v in (_meminfo("MemAvailable"), _cgroup_left(), _address_space_left()) if v is not None]
    if not found:
        try:
            found = [os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")]
        except (ValueError, OSError, AttributeError):  # pragma: no cover
            return None
    return min(found)


def require(nbytes: float, what: str, fix: str) -> None:
    """Refuse (one-line ShearcorrError) when ``what`` needs more than the available memory.

    Parameters
    ----------
    nbytes : float
        Estimated peak bytes of the allocation(s) about to happen.
    what : str
        What needs it, e.g. ``"simulate on a 1000000000 x 101 grid"``.
    fix : str
        The option to change, e.g. ``"use a smaller --n-q"``.
    """
    avail = available_bytes()
    if avail is not None and nbytes > avail:
        raise ShearcorrError(f"{what} needs about {format_bytes(nbytes)} of memory, {format_bytes(avail)} are "
                             f"available; {fix}")
