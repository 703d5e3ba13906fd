"""The one way randomness enters shearcorr: an explicit ``seed``."""

from __future__ import annotations

import numpy as np

from .errors import ShearcorrError

__all__ = ["as_generator", "seed_sequence", "child_seed"]


def as_generator(seed: int | np.random.Generator | np.random.SeedSequence | None) -> np.random.Generator:
    """Return a ``numpy.random.Generator`` for ``seed``.

    An int or SeedSequence seeds a fresh PCG64 generator (same seed, same numbers); a Generator is
    used as it is; ``None`` draws fresh OS entropy (not reproducible - the CLI always passes a seed).
    """
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None or isinstance(seed, np.random.SeedSequence):
        return np.random.default_rng(seed)
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        if seed < 0:
            raise ShearcorrError(f"seed must be a non-negative integer, got {seed}")
        return np.random.default_rng(int(seed))
    raise ShearcorrError(f"seed must be an integer, a numpy Generator or None, got {seed!r}")


def seed_sequence(seed: int | np.random.SeedSequence | None) -> np.random.SeedSequence:
    """SeedSequence for ``seed``; children via ``.spawn(n)`` give independent, split-invariant streams."""
    if isinstance(seed, np.random.SeedSequence):
        return seed
    if seed is not None and (not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0):
        raise ShearcorrError(f"seed must be a non-negative integer, got {seed!r}")
    return np.random.SeedSequence(None if seed is None else int(seed))


def child_seed(seed: int | np.random.SeedSequence | None, *keys: int) -> np.random.SeedSequence:
    """The child stream of ``seed`` at the spawn-key path ``keys``, in O(1) and without mutating ``seed``.

    ``child_seed(s, i)`` equals ``SeedSequence(s).spawn(n)[i]`` for any ``n > i``, and
    ``child_seed(s, i, j)`` equals ``SeedSequence(s).spawn(n)[i].spawn(m)[j]``: every sample, chunk or
    frame of a run draws from its own stream, so results never depend on how work is split. With
    ``seed=None`` call it on one ``seed_sequence(None)`` root, not repeatedly on None (fresh entropy).
    """
    root = seed_sequence(seed)
    path = tuple(int(k) for k in keys)
    if any(k < 0 for k in path):
        raise ShearcorrError(f"spawn keys must be non-negative integers, got {keys}")
    return np.random.SeedSequence(root.entropy, spawn_key=(*root.spawn_key, *path), pool_size=root.pool_size)
