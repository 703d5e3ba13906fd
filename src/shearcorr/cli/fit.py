"""``shearcorr fit``: the likelihood fit of the ensemble model to a measured or simulated g."""

from __future__ import annotations

from ..choices import CHOICES
from ._common import finite, positive_int, seed_int


def register(sub) -> None:
    p = sub.add_parser("fit", help="generalised least-squares fit of a g file -> rs, d2, gamma_l, n_l2 with intervals",
                       description="Fit the analytic ensemble model, with the estimator's finite-N bias and the "
                                   "correlated noise covariance, to g(q, theta) of a result file (shearcorr simulate, "
                                   "or another code's NetCDF/HDF5 with g, g_err, configs) or of every sample of a "
                                   "dataset store (docs/inversion.md, 'Direct fit with the noise model').")
    p.add_argument("g_file", help="result NetCDF (.nc/.h5) or dataset store")
    p.add_argument("--configs", type=finite, default=None,
                   help="configurations (or frame pairs) averaged in g (default: the file's 'configs' attribute; "
                        "inferred from g_err when absent)")
    p.add_argument("--estimator", choices=CHOICES["estimator"], default=None,
                   help="how g was estimated: symmetric <II'>/(<I><I'>) (shearcorr), before <II'>/<I>^2, "
                        "pooled (<I> over both); default: the file's 'estimator' attribute, else symmetric")
    p.add_argument("--observable", choices=CHOICES["observable"], default="g",
                   help="fit the full map g (default) or its profiles g_theta / g_q")
    p.add_argument("--n-l2", type=finite, default=None,
                   help="fix n_l2 (default: fitted with the prior N(150, 28.9), the paper's U(100, 200))")
    p.add_argument("--noise-samples", type=positive_int, default=64,
                   help="configurations sampled for the shared noise covariance (default 64)")
    p.add_argument("--seed", type=seed_int, default=0, help="seed of those configurations (default 0)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def _line(r) -> str:
    iv = r.intervals
    kind = {"rs": "95 %, profile likelihood" if r.profile else "95 %"}
    parts = [f"{t} = {r.values[t]:.4g} +- {r.std[t]:.2g} ({kind.get(t, '95 %')}: {iv[t]['95'][0]:.4g}..{iv[t]['95'][1]:.4g})"
             for t in ("rs", "d2", "gamma_l", "n_l2")]
    return "; ".join(parts) + f"; chi2/dof {r.chi2_red:.3f}"


def run(args) -> None:
    import json
    import sys
    from pathlib import Path

    from ..errors import ShearcorrError
    from ..inverse.fit import fit_dataset

    path = Path(args.g_file)
    opts = dict(observable=args.observable, estimator=args.estimator, n_l2=args.n_l2,
                noise_samples=args.noise_samples, seed=args.seed, configs=args.configs)
    if path.is_dir():
        from ..data import open_dataset

        ds = open_dataset(path, load=False)
    else:
        from ..result import load_result

        ds = load_result(path)
    if "sample" in ds.dims:  # a store, or a file of several maps
        from ..inverse.features import finished_samples

        index = finished_samples(ds)
        if index.size == 0:
            raise ShearcorrError(f"{path} has no finished sample to fit")
        results = {int(i): fit_dataset(ds.isel(sample=int(i)), **opts) for i in index}
    else:
        results = {None: fit_dataset(ds, **opts)}
    for r in results.values():
        for w in r.warnings:
            print(f"shearcorr: warning: {w}", file=sys.stderr)
    if args.json:
        if None in results:
            print(results[None].to_json())
        else:
            print(json.dumps({"sample": list(results), "fits": [json.loads(r.to_json()) for r in results.values()]}))
        return
    for i, r in results.items():
        print(("" if i is None else f"sample {i}: ") + _line(r))
