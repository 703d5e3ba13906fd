"""``shearcorr plot``: the paper's Figs. 1-3 of the forward model as PNG files."""

from __future__ import annotations

from ..choices import CHOICES
from ._common import add_overwrite, positive_int, seed_int, show_progress


def register(sub) -> None:
    p = sub.add_parser("plot", help="draw the paper's Figs. 1-3 (forward model) as PNG files",
                       description="Fig. 1: one configuration before/after and its I, I', I I'; Fig. 2: averaged "
                                   "I, g and eq. 5 as polar maps; Fig. 3: g(q), g(theta) for sweeps of rs, d2, "
                                   "gamma_l around (150, 0, 1, 10). Writes DIR/figN.png.")
    p.add_argument("figure", choices=CHOICES["figure"], help="which figure (all: the three)")
    p.add_argument("-o", "--output", required=True, help="output folder (created if missing)")
    p.add_argument("--engine", choices=CHOICES["engine"], default="analytic",
                   help="engine of the averaged figures 2 and 3 (default analytic)")
    p.add_argument("--configs", type=positive_int, default=None,
                   help="Monte Carlo configurations per parameter set (engine mc; default 20000)")
    p.add_argument("--seed", type=seed_int, default=0, help="random seed (default 0)")
    p.add_argument("--result", default=None, help="draw Fig. 2 from this saved `shearcorr simulate` result (.nc)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_overwrite(p, "figN.png in the folder")
    p.set_defaults(func=run)


def run(args) -> None:
    from ..files import check_output_file, check_parent
    from ..plots import forward as figs
    from ..result import load_result

    out = check_parent(args.output)
    if out.exists() and not out.is_dir():
        from ..errors import ShearcorrError

        raise ShearcorrError(f"output {out} is a file; give a folder")
    wanted = ("fig1", "fig2", "fig3") if args.figure == "all" else (args.figure,)
    result = load_result(args.result) if args.result else None  # fail before any long computation
    if result is not None:
        from ..result import params_from_attrs

        params_from_attrs(result.attrs)  # the parameters Fig. 2 prints and compares with eq. 5
    if out.is_dir():  # the folder may hold other files; each figure is an output of its own
        for name in wanted:
            check_output_file(out / f"{name}.png", overwrite=args.overwrite)
    out.mkdir(exist_ok=True)
    progress = show_progress(args)
    for name in wanted:
        path = out / f"{name}.png"
        if name == "fig1":
            figs.save_fig1(path, seed=args.seed)
        elif name == "fig2":
            figs.save_fig2(path, engine=args.engine, configs=args.configs, seed=args.seed, result=result,
                           progress=progress)
        else:
            figs.save_fig3(path, engine=args.engine, configs=args.configs, seed=args.seed, progress=progress)
        print(f"wrote {path}")
