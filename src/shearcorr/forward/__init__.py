"""One entry point to both forward engines: :func:`simulate`."""

from __future__ import annotations

import xarray as xr

from ..errors import ShearcorrError
from ..params import QGrid, SystemParams

__all__ = ["ENGINES", "simulate"]

ENGINES = ("analytic", "mc")


def simulate(
    params: SystemParams,
    grid: QGrid | None = None,
    *,
    engine: str = "analytic",
    configs: int | None = None,
    seed=None,
    progress: bool = False,
) -> xr.Dataset:
    """Ensemble-averaged I, g(q, theta), g(q), g(theta) for one parameter set.

    Parameters
    ----------
    params : SystemParams
    grid : QGrid, default the paper's 100 x 101 grid
    engine : {"analytic", "mc"}
        ``"analytic"``: the semi-analytic ensemble engine (exact averages, milliseconds);
        ``"mc"``: brute-force Monte Carlo over ``configs`` configurations.
    configs : int
        Number of Monte Carlo configurations (``engine="mc"`` only; required there).
    seed : int or numpy Generator
        Seed of the Monte Carlo draws (``engine="mc"``).
    progress : bool
        Show a progress bar (Monte Carlo).

    Returns
    -------
    xarray.Dataset, layout in :mod:`shearcorr.result`.
    """
    grid = QGrid() if grid is None else grid
    if engine == "mc":
        if configs is None:
            raise ShearcorrError("engine 'mc' needs a number of configurations; pass configs (CLI: --configs N)")
        from .montecarlo import simulate_mc

        return simulate_mc(params, grid, configs=configs, seed=seed, progress=progress)
    if engine == "analytic":
        from .analytic import ensemble

        return ensemble(params, grid)
    raise ShearcorrError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
