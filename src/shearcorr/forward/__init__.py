"""The forward model: one entry point to both engines, :func:`simulate`, and their raw arrays.

Sub-modules: ``analytic`` (semi-analytic ensemble engine, with ``window`` and ``quadrature``),
``montecarlo`` (brute-force engine, with the numba ``kernels``).
"""

from __future__ import annotations

import importlib
from typing import Callable

import xarray as xr

from ..choices import check_choice
from ..errors import ShearcorrError
from ..params import QGrid, SystemParams

__all__ = ["simulate", "engine_arrays", "BeamEngine"]


def simulate(
    params: SystemParams,
    grid: QGrid | None = None,
    *,
    engine: str = "analytic",
    configs: int | None = None,
    seed=None,
    progress: bool = False,
    beam=None,
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
        Number of Monte Carlo configurations (``engine="mc"`` only; required there, refused otherwise).
    seed : int or numpy Generator
        Seed of the Monte Carlo draws (``engine="mc"``).
    progress : bool
        Show a progress bar (Monte Carlo).
    beam : shearcorr.beam.Beam, optional
        Beam footprint, coherence and scattering geometry (docs/theory.md section 7); default the
        paper's coherent square of side ``params.beam_size`` in the 1-2 geometry.

    Returns
    -------
    xarray.Dataset, layout in :mod:`shearcorr.result`.

    Raises
    ------
    ShearcorrError
        Bad arguments; for the analytic engine a system or grid outside its validated domain
        (:func:`shearcorr.forward.domain.check_analytic`); for both a grid whose working memory does
        not fit (the estimate and the available memory are named).
    """
    grid = QGrid() if grid is None else grid
    check_choice("engine", engine)
    if engine == "mc":
        if configs is None:
            raise ShearcorrError("engine 'mc' needs a number of configurations; pass configs (CLI: --configs N)")
        from .domain import check_box, check_memory, mc_bytes
        from .montecarlo import simulate_mc

        if beam is None or beam.is_paper(params.beam_size):
            check_box(params)  # the box [-L, L]^2 must hold the sheared window (docs/theory.md section 8)
            check_memory(mc_bytes(params, grid), "the Monte Carlo engine", grid)
        return simulate_mc(params, grid, configs=configs, seed=seed, progress=progress, beam=beam)
    if configs is not None:
        raise ShearcorrError("configs applies to engine 'mc' only (the analytic engine is exact); drop it or use engine='mc'")
    from .analytic import ensemble

    return ensemble(params, grid, beam=beam)  # refuses inputs outside its validated domain (.domain.check_analytic)


def _analytic_arrays(params: SystemParams, grid: QGrid, *, configs: int, seed) -> tuple:
    from .analytic import ensemble_arrays

    return ensemble_arrays(params, grid)


def _mc_arrays(params: SystemParams, grid: QGrid, *, configs: int, seed) -> tuple:
    from .montecarlo import simulate_mc

    ds = simulate_mc(params, grid, configs=configs, seed=seed, progress=False)
    return ds["I"].values, ds["g"].values, ds["g_err"].values


#: engine name -> (module, entry point that must import, arrays function)
_ENGINE_ARRAYS = {"analytic": ("analytic", "ensemble_arrays", _analytic_arrays),
                  "mc": ("montecarlo", "simulate_mc", _mc_arrays)}


def engine_arrays(engine: str | Callable) -> Callable:
    """The function ``f(params, grid, *, configs, seed) -> (I, g, g_err)`` of an engine (arrays (n_q, n_theta)).

    For a name (:data:`shearcorr.choices.CHOICES` ``["engine"]``) the engine's module is imported here,
    so a missing engine is one clear error and numba is loaded before a caller pins thread counts. A
    callable with that signature is returned as it is.
    """
    if callable(engine):
        return engine
    module, name, arrays = _ENGINE_ARRAYS[check_choice("engine", engine)]
    try:
        getattr(importlib.import_module(f"{__name__}.{module}"), name)
    except (ImportError, AttributeError) as exc:
        raise ShearcorrError(f"engine {engine!r} is not available ({type(exc).__name__}: {exc})") from None
    return arrays


class BeamEngine:
    """An engine with a beam, for datasets: ``shearcorr.data.generate(..., engine=BeamEngine(beam))``.

    A picklable callable ``f(params, grid, *, configs, seed) -> (I, g, g_err)`` (the engine interface of
    :func:`engine_arrays`) that runs the analytic or Monte Carlo engine with ``beam``
    (:class:`shearcorr.beam.Beam`). The store records it as its engine, named with the beam's key
    (``shearcorr.forward:BeamEngine[analytic, <key>]``), so a store is never resumed with another beam;
    the trained models of such a store hold g of that beam (docs/theory.md section 7).
    """

    def __init__(self, beam, engine: str = "analytic"):
        from ..beam import Beam

        if not isinstance(beam, Beam):
            raise ShearcorrError(f"beam must be a shearcorr.beam.Beam, got {type(beam).__name__}")
        self.beam, self.engine = beam, check_choice("engine", engine)
        self.__qualname__ = f"BeamEngine[{engine}, {beam.key()}]"
        self.__module__ = __name__

    def __call__(self, params: SystemParams, grid: QGrid, *, configs: int, seed) -> tuple:
        if self.engine == "mc":
            from .montecarlo import simulate_mc

            ds = simulate_mc(params, grid, configs=configs, seed=seed, beam=self.beam)
            return ds["I"].values, ds["g"].values, ds["g_err"].values
        from .analytic import ensemble_arrays

        return ensemble_arrays(params, grid, beam=self.beam)
