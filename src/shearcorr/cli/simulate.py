"""``shearcorr simulate``: one parameter set -> result NetCDF."""

from __future__ import annotations

from ..choices import CHOICES
from ._beam import add_beam_args
from ._common import (add_grid_args, add_overwrite, add_system_args, grid_from_args, params_from_args, positive_int,
                      seed_int, show_progress)


def register(sub) -> None:
    p = sub.add_parser("simulate", help="ensemble-average I and g(q, theta) for one parameter set",
                       description="Compute <I>, g(q, theta), g(q), g(theta) for one parameter set and save NetCDF.")
    add_system_args(p)
    add_grid_args(p)
    add_beam_args(p)
    p.add_argument("--engine", choices=CHOICES["engine"], default="analytic",
                   help="analytic ensemble engine (default) or brute-force Monte Carlo")
    p.add_argument("--configs", type=positive_int, default=None, help="Monte Carlo configurations (engine mc)")
    p.add_argument("--seed", type=seed_int, default=0, help="random seed (default 0)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("-o", "--output", required=True, help="output NetCDF file (.nc)")
    add_overwrite(p, "output file")
    p.set_defaults(func=run)


def run(args) -> None:
    from ..files import check_output_file
    from ..forward import simulate
    from ..result import save_result
    from ._beam import beam_from_args

    params, grid = params_from_args(args), grid_from_args(args)
    beam = beam_from_args(args, params.beam_size)
    check_output_file(args.output, suffixes=(".nc", ".h5", ".nc4"), overwrite=args.overwrite)
    ds = simulate(params, grid, engine=args.engine, configs=args.configs, seed=args.seed, progress=show_progress(args),
                  beam=beam)
    save_result(ds, args.output)
    extra = "" if beam is None else f", {beam.profile} beam, {beam.plane} geometry"
    print(f"wrote {args.output}: g(q, theta) on {grid.shape[0]} x {grid.shape[1]} ({args.engine} engine{extra})")
