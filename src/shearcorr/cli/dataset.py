"""``shearcorr dataset``: generate a dataset store (``dataset [generate] ...``) or describe one (``dataset info``)."""

from __future__ import annotations

import argparse

from ..choices import CHOICES
from ..errors import ShearcorrError
from ._common import add_grid_args, grid_from_args, positive_int, seed_int

_PARAM_FLAGS = (("n_l2", "--n-l2"), ("rs", "--rs"), ("d2", "--d2"), ("gamma_l", "--gamma-l"))


def _add_generation_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--n", type=positive_int, default=None, help="number of parameter sets (samples)")
    p.add_argument("--seed", type=seed_int, default=0, help="random seed of the design and MC streams (default 0)")
    p.add_argument("-o", "--output", default=None, help="output Zarr store (a folder, e.g. paper.zarr)")
    g = p.add_argument_group("design (default: the paper's uniform ranges)")
    g.add_argument("--design", choices=CHOICES["design"], default="uniform",
                   help="independent uniform draws (paper), Latin hypercube, or scrambled Sobol'")
    for name, flag in _PARAM_FLAGS:
        g.add_argument(flag, type=float, nargs="+", metavar="V", default=None, dest=name,
                       help=f"range LOW HIGH, or one fixed VALUE, for {name}")
    e = p.add_argument_group("engine")
    e.add_argument("--engine", choices=CHOICES["engine"], default="analytic",
                   help="semi-analytic ensemble engine (default) or brute-force Monte Carlo")
    e.add_argument("--configs", type=positive_int, default=None, help="Monte Carlo configurations per sample (mc)")
    e.add_argument("--displacement", choices=CHOICES["displacement"], default="uniform",
                   help="non-affine step: uniform std d2 (paper text) or d2*sqrt(r0/R) (default uniform)")
    add_grid_args(p)
    r = p.add_argument_group("execution and storage")
    r.add_argument("--workers", type=positive_int, default=None, help="local worker processes (default: all cores)")
    r.add_argument("--scheduler", default=None, help="address of an existing Dask scheduler, e.g. tcp://host:8786")
    r.add_argument("--chunk-size", type=positive_int, default=None, help="samples per task and Zarr chunk (default: auto)")
    r.add_argument("--include-I", dest="include_I", action="store_true", help="also store <I(q, theta)>")
    r.add_argument("--include-err", dest="include_err", action="store_true", default=None,
                   help="also store g_err (default: yes for mc, no for analytic)")
    r.add_argument("--overwrite", action="store_true",
                   help="replace an existing store (or --netcdf file); without it a store made with the same "
                        "settings is resumed and one made with other settings is refused")
    r.add_argument("--netcdf", default=None, metavar="OUT.nc", help="also export the finished set to NetCDF (small sets)")
    r.add_argument("--no-progress", action="store_true", help="no progress bar or summary line")


def register(sub) -> None:
    p = sub.add_parser(
        "dataset", help="generate a dataset of g(q, theta) for many parameter sets, or describe one",
        description="Generate a resumable Zarr dataset (shearcorr dataset [generate] --n N -o STORE ...) "
                    "or describe one (shearcorr dataset info STORE).",
    )
    _add_generation_args(p)
    p.set_defaults(func=run_generate)
    actions = p.add_subparsers(dest="dataset_action", metavar="{generate,info}")
    gen = actions.add_parser("generate", help="generate or resume a dataset (the default action)",
                             description="Generate or resume a dataset store.")
    _add_generation_args(gen)
    for action in gen._actions:  # options given after 'generate' override; absent ones keep the parent's
        if action.dest != "help":
            action.default = argparse.SUPPRESS
    gen.set_defaults(func=run_generate)
    info = actions.add_parser("info", help="describe a dataset store", description="Describe a dataset store.")
    info.add_argument("store", help="a Zarr store made by shearcorr dataset")
    info.set_defaults(func=run_info)


def _range_or_fixed(args) -> tuple[dict, dict]:
    ranges, fixed = {}, {}
    for name, flag in _PARAM_FLAGS:
        values = getattr(args, name)
        if values is None:
            continue
        if len(values) == 1:
            fixed[name] = values[0]
        elif len(values) == 2:
            ranges[name] = tuple(values)
        else:
            raise ShearcorrError(f"{flag} takes LOW HIGH or one fixed VALUE, got {len(values)} numbers")
    return ranges, fixed


def run_generate(args) -> None:
    from ..data import export_netcdf, generate
    from ..files import check_output_file
    from ..parallel import executor_from

    if args.n is None or args.output is None:
        raise ShearcorrError("dataset needs --n N and -o STORE (e.g. shearcorr dataset --n 6000 -o paper.zarr)")
    if args.netcdf is not None:
        check_output_file(args.netcdf, suffixes=(".nc", ".nc4", ".h5"), overwrite=args.overwrite)  # before any work
    ranges, fixed = _range_or_fixed(args)
    grid = grid_from_args(args)
    with executor_from(workers=args.workers, scheduler=args.scheduler) as executor:
        path = generate(
            args.output, n=args.n, seed=args.seed, design=args.design, ranges=ranges, fixed=fixed, grid=grid,
            engine=args.engine, configs=args.configs, displacement=args.displacement, executor=executor,
            chunk_size=args.chunk_size, include_I=args.include_I, include_err=args.include_err,
            overwrite=args.overwrite, progress=not args.no_progress,  # the bar itself only on a terminal
        )
    if args.netcdf is not None:
        export_netcdf(path, args.netcdf)
        print(f"wrote {args.netcdf}")


def run_info(args) -> None:
    from ..data import dataset_info, format_info

    print(format_info(dataset_info(args.store)))
