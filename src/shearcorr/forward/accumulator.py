"""Streamed ensemble sums of the Monte Carlo engine: g = <I I'>/(<I><I'>) per grid point with its errors.

An :class:`EnsembleAccumulator` takes configurations in fixed-size chunks (intensity maps from
:func:`shearcorr.forward.kernels.chunk_intensities`, or precomputed maps) and keeps the eight moment sums
per grid point (:data:`shearcorr.forward.kernels.N_MOMENTS`) and per-block sums of a = I I', b = I, c = I'
for the delete-one-block jackknife errors of g(q) and g(theta) (docs/montecarlo.md). Sums are added in
configuration order, so a seeded result does not depend on the number of threads or workers.
"""

from __future__ import annotations

import numpy as np

from ..errors import ShearcorrError
from ..params import QGrid, SystemParams
from ..physics import sphere_volume
from . import kernels

__all__ = ["N_BLOCKS", "EnsembleAccumulator"]

#: Contiguous blocks of configurations for the jackknife errors of g(q) and g(theta).
N_BLOCKS = 32


def _in_window(x: np.ndarray, y: np.ndarray, beam_size: float) -> np.ndarray:
    """True where a particle lies inside the square beam window of side ``beam_size`` (r0)."""
    half = 0.5 * beam_size
    return (np.abs(x) < half) & (np.abs(y) < half)


def _grid_trig(grid: QGrid) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """q (float64, contiguous), cos(theta), sin(theta) of a polar grid for the kernels."""
    return (np.ascontiguousarray(grid.q, dtype=np.float64), np.cos(grid.theta), np.sin(grid.theta))


class EnsembleAccumulator:
    """Streamed sums of a = I I', b = I, c = I' per grid point, and their finalisation.

    Parameters
    ----------
    grid : QGrid
    configs : int
        Total configurations that will be added (fixes the jackknife blocks).
    n_blocks : int, default N_BLOCKS
        Contiguous blocks for the jackknife errors of g(q), g(theta) (capped at ``configs``).
    """

    def __init__(self, grid: QGrid, configs: int, n_blocks: int = N_BLOCKS):
        self.grid = grid
        self.configs = int(configs)
        self.n_blocks = max(1, min(int(n_blocks), self.configs))
        nq, nt = grid.shape
        self.sums = np.zeros((kernels.N_MOMENTS, nq, nt))
        self.block_sums = np.zeros((self.n_blocks, 3, nq, nt))
        self.added = 0
        self._q, self._ct, self._st = _grid_trig(grid)

    def add_chunk(self, params: SystemParams, x, y, radius, xa, ya) -> None:
        """Add configurations given as (m, N) arrays (before positions, radii, after positions)."""
        m = x.shape[0]
        if self.added + m > self.configs:
            raise ShearcorrError(f"more configurations than announced ({self.configs}); create a new accumulator")
        v2 = sphere_volume(radius) ** 2
        mono = params.rs == 0
        # maps 0..m-1: before the move (original positions); maps m..2m-1: after (moved positions)
        mask = np.concatenate([_in_window(x, y, params.beam_size), _in_window(xa, ya, params.beam_size)])
        xs, ys, rs = np.concatenate([x, xa]), np.concatenate([y, ya]), np.concatenate([radius, radius])
        off = np.zeros(2 * m + 1, dtype=np.int64)
        np.cumsum(mask.sum(axis=1), out=off[1:])
        s = np.where(mask, np.concatenate([v2, v2]), 0.0).sum(axis=1)
        inv_s = np.divide(1.0, s, out=np.zeros_like(s), where=s > 0)
        maps = kernels.chunk_intensities(self._q, self._ct, self._st, xs[mask], ys[mask], rs[mask], off, inv_s, mono)
        kernels.accumulate_chunk(maps[:m], maps[m:], self.added, self.configs, self.n_blocks, self.sums,
                                 self.block_sums)
        self.added += m

    def add_maps(self, maps_before: np.ndarray, maps_after: np.ndarray) -> None:
        """Add precomputed intensity maps (m, n_q, n_theta) before / after the move, in order."""
        m = maps_before.shape[0]
        if self.added + m > self.configs:
            raise ShearcorrError(f"more configurations than announced ({self.configs}); create a new accumulator")
        kernels.accumulate_chunk(np.ascontiguousarray(maps_before), np.ascontiguousarray(maps_after), self.added,
                                 self.configs, self.n_blocks, self.sums, self.block_sums)
        self.added += m

    def estimates(self) -> dict[str, np.ndarray]:
        """I, I_err, g, g_err, g_q_err, g_theta_err from the sums (NaN errors if fewer than 2 configs)."""
        n = self.added
        if n < 1:
            raise ShearcorrError("no configuration added yet; call add_chunk first")
        sa, sb, sc, saa, sbb, scc, sab, sac = self.sums
        with np.errstate(divide="ignore", invalid="ignore"):
            ma, mb, mc = sa / n, sb / n, sc / n
            g = ma / (mb * mc)
            if n > 1:
                d = n - 1.0
                var_a, var_b, var_c = (saa - n * ma * ma) / d, (sbb - n * mb * mb) / d, (scc - n * mc * mc) / d
                cov_ab, cov_ac = (sab - n * ma * mb) / d, (sac - n * ma * mc) / d
                cov_bc = (sa - n * mb * mc) / d  # sum of b c is sum of a
                rel2 = (var_a / ma**2 + var_b / mb**2 + var_c / mc**2
                        - 2 * cov_ab / (ma * mb) - 2 * cov_ac / (ma * mc) + 2 * cov_bc / (mb * mc))
                g_err = np.abs(g) * np.sqrt(np.maximum(rel2, 0.0) / n)
                i_err = np.sqrt(np.maximum(var_b, 0.0) / n)
            else:
                g_err = np.full_like(g, np.nan)
                i_err = np.full_like(g, np.nan)
            g_q_err, g_theta_err = self._jackknife(n)
        return {"I": mb, "I_err": i_err, "g": g, "g_err": g_err, "g_q_err": g_q_err, "g_theta_err": g_theta_err}

    def _jackknife(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Delete-one-block jackknife errors of the unweighted means g(q) and g(theta)."""
        nb = self.n_blocks
        nq, nt = self.grid.shape
        if nb < 2 or n < self.configs:
            return np.full(nq, np.nan), np.full(nt, np.nan)
        edges = (np.arange(nb + 1) * self.configs + nb - 1) // nb  # first index of each block
        counts = np.diff(edges).astype(np.float64)
        tot = self.sums[:3]
        gq, gt = np.empty((nb, nq)), np.empty((nb, nt))
        for j in range(nb):
            rest = n - counts[j]
            ma, mb, mc = ((tot[k] - self.block_sums[j, k]) / rest for k in range(3))
            gj = ma / (mb * mc)
            gq[j], gt[j] = gj.mean(axis=1), gj.mean(axis=0)
        fac = (nb - 1.0) / nb
        return (np.sqrt(fac * np.sum((gq - gq.mean(0)) ** 2, axis=0)),
                np.sqrt(fac * np.sum((gt - gt.mean(0)) ** 2, axis=0)))
