"""``shearcorr analyze`` (frame pair -> parameters), ``shearcorr analyze-series`` (several pairs, one
flow direction) and ``shearcorr synth-frames`` (synthetic pair)."""

from __future__ import annotations

import argparse

from ..choices import CHOICES
from ._common import add_overwrite, add_system_args, finite, positive_int, seed_int


def register(sub) -> None:
    p = sub.add_parser("analyze", help="two detector frames + geometry -> gamma_l, d2, rs, flow angle",
                       description="Analyse a before/after frame pair; writes result.json and PNGs into a new folder.")
    p.add_argument("before", help="frame before the rearrangement (.h5/.nxs, .npy, .tif, .edf/.cbf, Rigaku .bin, .imm)")
    p.add_argument("after", help="frame after (may be the same file with --frame-index-after)")
    p.add_argument("--frame-index", type=int, default=None, help="frame index into a 3-D stack (before)")
    p.add_argument("--frame-index-after", type=int, default=None, help="frame index of the after frame")
    _add_analysis_args(p)
    p.set_defaults(func=run_analyze)

    r = sub.add_parser("analyze-series", help="several frame pairs sharing one flow direction -> joint flow angle + each pair",
                       description="Analyse the pairs of a series: the flow angle is estimated jointly from all pairs, then every "
                                   "pair is fitted at that angle; writes series.json, flow.png and one folder per pair.")
    r.add_argument("frames", nargs="+", help="frames in time order, or one stack file with --frames")
    r.add_argument("--frames", dest="frame_range", default=None, metavar="START:STOP[:STEP]",
                   help="frames of one 3-D stack file (Python slice, e.g. 0:10)")
    r.add_argument("--pairing", choices=CHOICES["pairing"], default="consecutive",
                   help="consecutive: 0-1, 1-2, ... (one shear step each, default); disjoint: 0-1, 2-3, ...")
    _add_analysis_args(r)
    r.set_defaults(func=run_series)

    s = sub.add_parser("synth-frames", help="write a synthetic frame pair with known truth",
                       description="Render a before/after pair from one Monte Carlo configuration, with geometry.json and truth.json.")
    add_system_args(s, defaults=(150.0, 0.1, 1.5, 20.0))
    s.add_argument("--flow-angle", type=finite, default=30.0, help="flow direction, deg detector azimuth (default 30)")
    s.add_argument("--contrast", type=finite, default=0.3, help="speckle contrast beta (default 0.3)")
    s.add_argument("--counts", type=finite, default=10.0, help="mean photons per pixel at q R0 = 0.5 (default 10)")
    s.add_argument("--size", type=positive_int, default=1024, help="frame size in pixels, square (default 1024)")
    s.add_argument("--format", choices=CHOICES["frame_format"], default="npy", help="frame files (default npy)")
    s.add_argument("--speckle-px", type=finite, default=2.2, help="pixels per speckle (2 pi / L) at the centre (default 2.2)")
    s.add_argument("--pixel-subsamples", type=positive_int, default=4,
                   help="Gauss-Legendre points per pixel and axis: pixel integration (default 4; 1 = point sampling)")
    s.add_argument("--psf-sigma-px", type=finite, default=0.0, help="detector point-spread rms, pixels (default 0)")
    from ._beam import add_beam_args

    add_beam_args(s)
    s.add_argument("--seed", type=seed_int, default=0, help="random seed (default 0)")
    s.add_argument("-o", "--output", required=True, help="output folder (created)")
    add_overwrite(s, "output folder")
    s.set_defaults(func=run_synth)


def _add_analysis_args(p) -> None:
    """Options shared by ``analyze`` and ``analyze-series``."""
    p.add_argument("--geometry", required=True, help="geometry JSON file (docs/experiment.md)")
    p.add_argument("-o", "--output", required=True, help="output folder (created; must not exist or be empty)")
    p.add_argument("--dataset", default=None, help="HDF5 dataset path of the frames, e.g. /entry/data/data")
    p.add_argument("--mask", default=None, help="mask file (.npy, .h5, .tif, .edf)")
    p.add_argument("--mask-dataset", default=None, help="HDF5 dataset path of the mask")
    p.add_argument("--mask-convention", choices=CHOICES["mask_convention"], default="valid",
                   help="1 = valid pixel (APS, default) or 1 = masked pixel (pyFAI)")
    p.add_argument("--saturation", type=finite, default=None, help="counts at or above this are masked")
    p.add_argument("--contrast", type=finite, default=None, help="speckle contrast beta (default: estimated)")
    p.add_argument("--flow-angle", type=finite, default=None, help="fix the flow direction (deg, detector azimuth)")
    p.add_argument("--method", choices=CHOICES["method"], default="fit",
                   help="direct physics fit (default), geometry-specific GPR, or both")
    p.add_argument("--model", default=None, help="a model file from 'shearcorr train' (applied in addition)")
    p.add_argument("--n-q", type=positive_int, default=16, help="number of log-spaced q bins (default 16)")
    p.add_argument("--n-phi", type=positive_int, default=36, help="azimuth bins over 180 deg (default 36)")
    p.add_argument("--q-min", type=finite, default=None, help="smallest q R0 used (default: frame, within the model's domain)")
    p.add_argument("--q-max", type=finite, default=None, help="largest q R0 used (default: frame, within the model's domain)")
    p.add_argument("--n-l2", type=finite, default=150.0, help="particles in the beam for the model (default 150)")
    p.add_argument("--rs-prior", type=finite, nargs=2, default=None, metavar=("LO", "HI"),
                   help="range of the polydispersity R_s if known (e.g. from SAXS): the pair's configuration error "
                        "is computed over it instead of the whole prior (docs/experiment.md)")
    p.add_argument("--condition-profile", action=argparse.BooleanOptionalAction, default=None,
                   help="condition the pair's configuration error on its own intensity profile (Guinier slope), "
                        "which tells R_s (the default); --no-condition-profile: marginalise it over the R_s prior "
                        "(docs/experiment.md)")
    p.add_argument("--displacement", choices=CHOICES["displacement"], default="uniform")
    p.add_argument("--not-photon-counts", action="store_true", help="frames are not photon counts (no Poisson term)")
    p.add_argument("--gain", type=finite, default=1.0,
                   help="detector counts per photon (default 1: a photon-counting detector; e.g. the ADU per photon of "
                        "an integrating detector); the frames are divided by it")
    p.add_argument("--cache", default=None, help="cache folder of geometry-specific models (default ~/.cache/shearcorr)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNGs")
    add_overwrite(p, "output folder")
    p.add_argument("--seed", type=seed_int, default=0, help="seed of bootstraps (default 0)")
    g = p.add_argument_group("instrument (the beam itself is described in the geometry file)")
    g.add_argument("--point-pixels", action="store_true",
                   help="model point-like pixels (default: each pixel integrates its footprint in q, as a detector does)")
    g.add_argument("--psf-sigma-px", type=finite, default=None,
                   help="detector point-spread rms in pixels (default: the geometry file's psf_sigma_px, else 0)")


def _options(args):
    """The :class:`~shearcorr.experiment.AnalysisOptions` of the options shared by analyze and analyze-series."""
    from ..experiment import AnalysisOptions

    return AnalysisOptions(
        dataset=args.dataset, mask=args.mask, mask_dataset=args.mask_dataset, mask_convention=args.mask_convention,
        saturation=args.saturation, contrast=args.contrast, flow_angle_deg=args.flow_angle, method=args.method,
        model=args.model, n_q=args.n_q, n_phi=args.n_phi, q_min=args.q_min, q_max=args.q_max, n_l2=args.n_l2,
        displacement=args.displacement, photon_counts=not args.not_photon_counts, gain=args.gain, cache_dir=args.cache,
        plots=not args.no_plots, seed=args.seed, pixel_integration=not args.point_pixels, psf_sigma_px=args.psf_sigma_px,
        rs_prior=args.rs_prior, condition_profile=(AnalysisOptions.condition_profile if args.condition_profile is None
                                                   else args.condition_profile))


def _pv(d) -> str:
    return f"{d.value:.3g} +- {d.std:.2g}"


def run_analyze(args) -> None:
    from ..experiment import analyze

    r = analyze(args.before, args.after, args.geometry, args.output, options=_options(args), frame_index=args.frame_index,
                frame_index_after=args.frame_index_after, overwrite=args.overwrite)
    _warn(r.warnings)
    print(f"gamma_l = {_pv(r.gamma_l)} R0, d2 = {_pv(r.d2)} R0, rs = {_pv(r.rs)}, flow = {_pv(r.flow_angle_deg)} deg, "
          f"beta = {r.contrast.value:.3f}, chi2_red = {r.chi2.reduced:.2f}; wrote {args.output}")


def _warn(warnings, prefix: str = "") -> None:
    """The result's warnings (:mod:`shearcorr.experiment.checks`), one line each on stderr."""
    import sys

    for w in warnings:
        print(f"shearcorr: warning: {prefix}{w}", file=sys.stderr)


#: Memory kept per pair of a series until its results are written (maps, fit, model on the bins; bytes).
PAIR_RESULT_BYTES = 4 * 1024**2


def _frame_indices(text: str) -> range:
    """``START:STOP[:STEP]`` (integers, STOP excluded) -> the frame indices."""
    from ..errors import ShearcorrError

    try:
        parts = [int(v) for v in text.split(":")]
        if not 2 <= len(parts) <= 3 or (len(parts) == 3 and parts[2] <= 0):
            raise ValueError
    except ValueError:
        raise ShearcorrError(f"--frames must be START:STOP or START:STOP:STEP (integers, STEP > 0), got {text!r}") from None
    frames = range(*parts)
    if len(frames) < 2:
        raise ShearcorrError(f"--frames {text} selects {len(frames)} frame(s); a series needs at least 2")
    from ..memory import require

    # every pair's result (maps, fits) stays in memory until series.json is written
    require(len(frames) * PAIR_RESULT_BYTES, f"--frames {text} ({len(frames)} frames)", "analyse fewer frames per run")
    return frames


def run_series(args) -> None:
    from ..experiment import analyze_series, series_pairs

    indices = None if args.frame_range is None else _frame_indices(args.frame_range)
    pairs = series_pairs(args.frames, args.pairing, indices)
    r = analyze_series(pairs, args.geometry, args.output, options=_options(args), overwrite=args.overwrite)
    fl = r.flow
    extra = "" if fl.fixed else f" (chi2_red {fl.chi2_red:.2f} over {len(pairs)} pairs)"
    print(f"flow = {_pv(fl)} deg{extra}")
    for k, p in enumerate(r.pairs):
        _warn(p.warnings, f"pair {k}: ")
        print(f"  pair {k}: gamma_l = {_pv(p.gamma_l)} R0, d2 = {_pv(p.d2)} R0, chi2_red = {p.chi2.reduced:.2f}")
    print(f"wrote {args.output}")


def run_synth(args) -> None:
    import math

    from ..errors import ShearcorrError
    from ..experiment import render_pair, write_synth
    from ..files import check_output_folder
    from ._beam import beam_from_args
    from ._common import params_from_args

    params = params_from_args(args)
    if not args.speckle_px > 0 or args.psf_sigma_px < 0:
        raise ShearcorrError(f"--speckle-px must be > 0 and --psf-sigma-px >= 0, got {args.speckle_px:g} and {args.psf_sigma_px:g}")
    beam = beam_from_args(args, params.beam_size)
    check_output_folder(args.output, overwrite=args.overwrite)  # before the rendering
    pair = render_pair(params, flow_angle_deg=args.flow_angle, contrast=args.contrast,
                       counts=args.counts, shape=(args.size, args.size), seed=args.seed,
                       dq=2 * math.pi / params.beam_size / args.speckle_px, beam=beam,
                       pixel_subsamples=args.pixel_subsamples, psf_sigma_px=args.psf_sigma_px)
    write_synth(pair, args.output, args.format, overwrite=args.overwrite)
    print(f"wrote {args.output}: before/after.{args.format}, mask.npy, geometry.json, truth.json")
