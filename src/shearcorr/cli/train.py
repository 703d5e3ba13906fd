"""``shearcorr train | evaluate | predict``: GPR inversion models (three commands from one module).

``evaluate`` sample choice: a model records the fingerprint of its training dataset and which samples
were held out; evaluating on that same dataset uses the held-out split (default 30 %), on any other
dataset all finished samples.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..choices import CHOICES
from ._common import add_overwrite, finite, noise_level, positive_int, seed_int, whole_int


def register(sub) -> None:
    p = sub.add_parser("train", help="train per-target GPR models on a dataset",
                       description="Train one Gaussian-process regressor per target (paper Sec. II C) on the "
                                   "training split of a dataset store and save a safe model file (.npz). By "
                                   "default a family of noise-aware models, one for inputs averaged over each of "
                                   "300, 2000 and 20000 configurations; predict uses the member nearest the "
                                   "input's N (docs/inversion.md).")
    p.add_argument("dataset", help="dataset store (shearcorr dataset -o STORE)")
    p.add_argument("-o", "--output", required=True, help="model file to write (.npz)")
    p.add_argument("--model", choices=CHOICES["model"], default="paper",
                   help="paper (default): the paper's isotropic RBF on the raw feature; ard: z-scored profile, top "
                        "principal components, ARD kernel, log targets (best on noise-free input, slow to train on "
                        "noisy draws)")
    p.add_argument("--feature", choices=CHOICES["feature"], default="both",
                   help="GPR input: g(theta) (the paper's own), g(q), both (default), or SVD projections")
    p.add_argument("--k", type=positive_int, default=3, help="singular vectors for --feature svd (default 3)")
    p.add_argument("--components", type=positive_int, default=8,
                   help="principal components of the z-scored input (per block with --pca-blocks), --model ard "
                        "(default 8)")
    p.add_argument("--pca-blocks", action=argparse.BooleanOptionalAction, default=True,
                   help="--model ard, --feature both: principal components of g(theta) and g(q) separately, "
                        "--components each (default; --no-pca-blocks: of the concatenation)")
    p.add_argument("--targets", nargs="+", choices=CHOICES["parameter"], default=["rs", "d2", "gamma_l"],
                   help="parameters to learn (default rs d2 gamma_l; n_l2 is not recoverable)")
    p.add_argument("--test-fraction", type=finite, default=0.3, help="held-out fraction (default 0.3)")
    p.add_argument("--seed", type=seed_int, default=0, help="seed of the train/test split and restarts (default 0)")
    p.add_argument("--optimizer", choices=CHOICES["optimizer"], default="grid",
                   help="--model paper: grid: tridiagonal-trick LML grid + refinement (fast, default); sklearn: then "
                        "L-BFGS-B restarts")
    p.add_argument("--grid-size", type=positive_int, default=30, help="LML grid points per axis (default 30)")
    p.add_argument("--restarts", type=whole_int, default=None,
                   help="L-BFGS-B restarts (default 1 for --model ard, 10 for --model paper --optimizer sklearn)")
    p.add_argument("--max-opt-samples", type=positive_int, default=1000,
                   help="--model ard: training rows used to optimise the kernel hyperparameters (default 1000)")
    p.add_argument("--noise-configs", type=noise_level, nargs="+", default=None, metavar="N",
                   help="noise levels of the models: one model per N, for inputs averaged over N configurations "
                        "(Monte Carlo, frame-pair averages), each training profile drawn with the estimator's bias "
                        "and noise; inf: a noise-free model on the exact profiles (docs/inversion.md; default "
                        "300 2000 20000)")
    p.add_argument("--estimator", choices=CHOICES["estimator"], default="symmetric",
                   help="how the noisy inputs will be estimated (default symmetric; docs/theory.md section 9)")
    p.add_argument("--calibrate", action=argparse.BooleanOptionalAction, default=True,
                   help="per-sample stds of the noise-aware models from their leave-one-out z-scores "
                        "(docs/inversion.md; --no-calibrate: the GP's own std)")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="BLAS threads while training (default 1: the same seed gives the same model; other counts change round-off)")
    add_overwrite(p, "model file")
    p.set_defaults(func=run_train)

    for name, help_, description, (data, data_help), json_help, func in (
            ("evaluate", "Err, 68/95 %% coverage, z std (and RMS/CRB) of a model on a dataset",
             "Evaluate a model on a dataset: its held-out split if it is the training dataset, otherwise all "
             "finished samples.", ("dataset", "dataset store"), "print {err, coverage68, coverage95, z_std, rms_over_crb, levels: [one row per model of a family]} as JSON",
             run_evaluate),
            ("predict", "parameters +- std for a measured or simulated g",
             "Predict the parameters of a result NetCDF (shearcorr simulate) or of every sample of a dataset store.",
             ("g_file", "result NetCDF (.nc) or dataset store"), "print JSON", run_predict)):
        c = sub.add_parser(name, help=help_, description=description)
        c.add_argument("model", help="model file (.npz) from shearcorr train")
        c.add_argument(data, help=data_help)
        c.add_argument("--json", action="store_true", help=json_help)
        c.add_argument("--no-polish", dest="polish", action="store_false",
                       help="the amortized model's answer alone: no Gauss-Newton polish by the likelihood of noisy "
                            "inputs (default: polished, ~0.2-0.5 s per input; docs/inversion.md)")
        if name == "evaluate":
            c.add_argument("--crb", action="store_true",
                           help="also the RMS error over the Cramer-Rao bound per target (noisy inputs only: Monte "
                                "Carlo data with configs, or a noise-aware model's held-out draws; 1-3 s per sample)")
        c.set_defaults(func=func)


def _open_store(path):
    from ..data import open_dataset

    return open_dataset(path, load=False)


def _strategy(args):
    """The training strategy of ``--model`` with the options that apply to it."""
    from ..inverse.training import ARDTraining, PaperTraining

    common = {"k": args.k, "feature": args.feature}
    if args.restarts is not None:
        common["restarts"] = args.restarts
    if args.model == "paper":
        return PaperTraining(optimizer=args.optimizer, n_grid=args.grid_size, **common)
    return ARDTraining(n_components=args.components, pca_blocks=args.pca_blocks,
                       max_opt_samples=args.max_opt_samples, **common)


def run_train(args) -> None:
    import time

    from ..files import check_output_file
    from ..inverse.modelfile import save_model
    from ..inverse.training import train_family

    t0 = time.perf_counter()
    check_output_file(args.output, suffixes=(".npz",), overwrite=args.overwrite)
    strategy = _strategy(args)
    ds = _open_store(args.dataset)
    family, _ = train_family(ds, strategy, levels=args.noise_configs, targets=args.targets,
                             test_fraction=args.test_fraction, seed=args.seed, threads=args.threads,
                             estimator=args.estimator, calibrate=args.calibrate,
                             log=lambda m: print(m, file=sys.stderr))
    for m in family.members:
        m.provenance["dataset_path"] = str(Path(args.dataset).resolve())
    save_model(family, args.output)
    levels = ", ".join(_level(v) for v in family.levels)
    print(f"wrote {args.output}: {args.model} GPR ({strategy.feature}) for {', '.join(family.targets)} on "
          f"{len(family.train_index)} samples, inputs {levels} "
          f"({time.perf_counter() - t0:.1f} s)")


def _warnings(model, ds) -> str | None:
    """The model's warnings about this input (noise level, displacement convention, the flow axis), printed to stderr."""
    from ..result import flow_axis_warning

    axis = flow_axis_warning(ds) if "sample" not in ds.dims else None
    found = [w for w in (model.noise_warning(ds), model.displacement_warning(ds), axis) if w]
    for w in found:
        print(f"warning: {w}", file=sys.stderr)
    return "; ".join(found) or None


def _paths(counts: dict | None) -> str:
    """Which path gave the numbers, in words."""
    counts = counts or {}
    words = {"polished": "polished by the likelihood", "gp": "the model's answer"}
    return ", ".join(f"{n} {words.get(p, p)}" for p, n in counts.items()) or "the model's answer"


def _level(n: float) -> str:
    return "noise-free" if n == float("inf") else f"N = {n:g}"


def run_evaluate(args) -> None:
    from ..files import json_text
    from ..inverse.evaluation import evaluate_levels
    from ..inverse.modelfile import load_model

    model = load_model(args.model)
    ds = _open_store(args.dataset)
    warning = _warnings(model, ds)
    results = evaluate_levels(model, ds, crb=args.crb, polish=args.polish)
    if args.json:
        rows = [{"trained_configs": r.trained_configs, "err": r.err, "coverage68": r.coverage68,
                 "coverage95": r.coverage95, "z_std": r.z_std, "rms_over_crb": r.rms_over_crb, "paths": r.paths}
                for r in results]
        print(json_text({**rows[-1], "levels": rows, "n_samples": results[0].n_samples,
                         "selection": results[0].selection, "warning": warning}))
        return
    for res in results:
        member = model.member(res.trained_configs)
        if member.noise_configs is not None:
            noise = (f"model for N = {member.noise_configs:g}: held-out inputs drawn as averages over that N"
                     if member.is_training_dataset(ds) else
                     f"model for N = {member.noise_configs:g}: its GP carries the input noise")
        else:
            noise = ("noise-free model: input noise propagated from g_err" if res.input_noise
                     else "noise-free model, no g_err: noise-free input assumed")
        print(f"{res.n_samples} samples ({res.selection}; {noise}; {_paths(res.paths)})")
        crb = res.rms_over_crb or {}
        print(f"{'target':<8} {'Err':>8} {'cov68':>7} {'cov95':>7} {'z std':>6}" + (f" {'RMS/CRB':>8}" if crb else ""))
        for t in model.targets:
            print(f"{t:<8} {100 * res.err[t]:7.2f}% {100 * res.coverage68[t]:6.1f}% {100 * res.coverage95[t]:6.1f}% "
                  f"{res.z_std[t]:6.2f}" + (f" {crb[t]:8.2f}" if t in crb else ""))


def run_predict(args) -> None:
    import numpy as np

    from ..files import json_text
    from ..inverse.modelfile import load_model
    from ..result import load_result

    model = load_model(args.model)
    path = Path(args.g_file)
    ds = _open_store(path) if path.is_dir() else load_result(path)
    if "sample" in ds.dims:  # a store, or a file of several maps
        from ..inverse.features import finished_samples

        index = finished_samples(ds)
        pred = model.predict(ds, sample=index, polish=args.polish)
        ids = [int(i) for i in index]
    else:
        pred = model.predict(ds, polish=args.polish)
        ids = None
    _warnings(model, ds)  # printed to stderr
    if len(model.levels) > 1:
        print(f"model for {_level(model.member_for(ds).trained_configs())} (the input's N: "
              f"{model.input_configs(ds):.0f})", file=sys.stderr)
    out = {t: {"mean": [float(v) for v in np.clip(m, 0, None)], "std": [float(v) for v in s]}
           for t, (m, s) in pred.items()}
    paths = pred.paths
    for w in sorted({w for r in (pred.polished or []) for w in r.warnings}):
        print(f"polish: {w}", file=sys.stderr)
    print(f"numbers from: {_paths({p: paths.count(p) for p in sorted(set(paths))})}", file=sys.stderr)
    for v in out.values():
        v["path"] = paths  # which path gave the numbers: "polished" (by the likelihood) or "gp"
    if ids is None:
        out = {t: {"mean": v["mean"][0], "std": v["std"][0], "path": v["path"][0]} for t, v in out.items()}
    if args.json:
        print(json_text(out if ids is None else {"sample": ids, "predictions": out}))
        return
    if ids is None:
        for t, v in out.items():
            print(f"{t:<8} = {v['mean']:.4g} +- {v['std']:.2g}")
        return
    print("sample " + " ".join(f"{t:>20}" for t in out))
    for j, i in enumerate(ids):
        print(f"{i:6d} " + " ".join(f"{out[t]['mean'][j]:>10.4g} +- {out[t]['std'][j]:<6.2g}" for t in out))
