"""``shearcorr reproduce [--quick] [-o DIR]``: the paper end to end, report in DIR/report.md."""

from __future__ import annotations

import sys

from ._common import add_overwrite, positive_int, seed_int


def register(sub) -> None:
    p = sub.add_parser("reproduce", help="run the paper's pipeline end to end and write a report",
                       description="Generate the analytic dataset, run SVD, PDDF/ACF, LML landscapes, GPR training "
                                   "and evaluation, the direct fit and Monte Carlo checks; write DIR/report.md with "
                                   "Figs. 1-7. --quick: about 7 minutes on 2 cores; full: paper scale.")
    p.add_argument("--quick", action="store_true", help="1500 samples, 12 x 12 LML grids, small MC checks")
    p.add_argument("-o", "--output", default="reproduce-report", help="output folder (default reproduce-report)")
    p.add_argument("--seed", type=seed_int, default=0, help="seed of datasets and split (default 0)")
    p.add_argument("--workers", type=positive_int, default=None, help="processes for dataset generation (default all cores)")
    add_overwrite(p, "report folder")
    p.set_defaults(func=run)


def run(args) -> None:
    from ..files import check_output_folder
    from ..parallel import executor_from
    from ..reproduce import reproduce

    check_output_folder(args.output, overwrite=args.overwrite)  # the one overwrite rule, before any work
    with executor_from(workers=args.workers) as executor:
        reproduce(args.output, quick=args.quick, seed=args.seed, executor=executor,
                  log=lambda m: print(m, file=sys.stderr, flush=True))
