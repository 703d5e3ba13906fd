"""``shearcorr analyze-stack`` (a stack of frames -> steady shear, two-time maps or echoes) and
``shearcorr synth-stack`` (a synthetic stack with known truth), a few lines over :mod:`shearcorr.stack`."""

from __future__ import annotations

from ..choices import CHOICES
from ._beam import add_beam_args, beam_from_args
from ._common import add_system_args, finite, positive_int, seed_int


def register(sub) -> None:
    p = sub.add_parser("analyze-stack", help="a stack of frames + geometry -> steady shear, two-time maps or echoes",
                       description="Analyse a frame stack (HDF5/NeXus incl. compressed Eiger, Zarr, .npy, TIFF): steady shear "
                                   "(shear rate, diffusion, MSD exponent, Peclet, R_s), two-time gamma L(t1, t2) and D2(t1, t2), "
                                   "or oscillatory echoes; writes result.json, result.h5 and PNGs into a new folder.")
    p.add_argument("stack", nargs="+", help="stack file, or a folder of single-frame files (echo mode: several, with "
                   "--strain-amplitude)")
    p.add_argument("--geometry", required=True, help="geometry JSON (docs/experiment.md; 'aps_qmap' for APS 8-ID-I files)")
    p.add_argument("--mode", required=True, choices=CHOICES["stack_mode"], help="steady, twotime or echo")
    p.add_argument("-o", "--output", required=True, help="output folder (created; must not exist or be empty)")
    p.add_argument("--dataset", default=None, help="HDF5 dataset (or Eiger data group) / Zarr array of the frames")
    p.add_argument("--frames", default=None, metavar="A:B", help="frames A..B-1 of the stack (default all)")
    p.add_argument("--mask", default=None, help="mask file (.npy, .h5, .tif, .edf); detector flags are masked anyway")
    p.add_argument("--mask-dataset", default=None, help="HDF5 dataset path of the mask")
    p.add_argument("--mask-convention", choices=CHOICES["mask_convention"], default="valid",
                   help="1 = valid pixel (APS, default) or 1 = masked pixel (pyFAI)")
    p.add_argument("--n-q", type=positive_int, default=16, help="log-spaced q bins (default 16)")
    p.add_argument("--n-phi", type=positive_int, default=36, help="azimuth bins over 180 deg (default 36)")
    p.add_argument("--q-min", type=finite, default=None, help="smallest q R0 used (default: frame)")
    p.add_argument("--q-max", type=finite, default=None, help="largest q R0 used (default: frame)")
    p.add_argument("--n-l2", type=finite, default=150.0, help="particles in the beam for the model (default 150)")
    p.add_argument("--displacement", choices=CHOICES["displacement"], default="uniform")
    p.add_argument("--flow-angle", type=finite, default=None, help="fix the flow direction (deg, detector azimuth)")
    p.add_argument("--gain", type=finite, default=1.0,
                   help="detector counts per photon (default 1: a photon-counting detector)")
    p.add_argument("--frame-time", type=finite, default=None, help="seconds per frame (default: from --timestamps)")
    p.add_argument("--timestamps", default=None, help="HDF5 dataset of the frame times (s) in the stack file")
    g = p.add_argument_group("steady")
    g.add_argument("--max-lag", type=positive_int, default=20, help="largest lag in frames (default 20)")
    g.add_argument("--groups", type=positive_int, default=20, help="groups of time origins for the errors (default 20)")
    g.add_argument("--normalization", choices=CHOICES["normalization"], default=None,
                   help="frame: each frame by its ring means (default for --intensity detector); time: by the ring "
                        "means over all frames (ensemble baseline in the maps; default for --intensity volume)")
    g.add_argument("--intensity", choices=CHOICES["intensity"], default="detector",
                   help="frames as a detector records them (default) or divided by their scattering volume (the "
                        "paper's eq. 1, synth-stack --intensity volume): sets the baseline that carries R_s")
    g.add_argument("--flux", default=None, help="HDF5 dataset of a per-frame flux monitor (divides the frames)")
    g.add_argument("--fixed-exponent", action="store_true", help="MSD exponent fixed at 1 (diffusive)")
    g.add_argument("--no-transit", action="store_true", help="no mean flow through the beam (transit speed 0)")
    t = p.add_argument_group("twotime")
    t.add_argument("--time-bins", type=positive_int, default=200, help="time bins (default 200)")
    t.add_argument("--c2-bins", type=positive_int, nargs="+", default=None,
                   help="bin labels (1-based, iq * n_phi + iphi + 1) with full-resolution C(t1, t2)")
    e = p.add_argument_group("echo")
    e.add_argument("--period", type=positive_int, default=None, help="frames per cycle")
    e.add_argument("--period-s", type=finite, default=None, help="period in seconds (with --timestamps)")
    e.add_argument("--max-cycles", type=positive_int, default=4, help="largest echo lag in cycles (default 4)")
    e.add_argument("--strain-amplitude", type=finite, nargs="+", default=None, help="strain amplitude of each file (sweep)")
    p.add_argument("--workers", type=positive_int, default=None, help="local worker processes (default: 1, in this process)")
    p.add_argument("--scheduler", default=None, help="address of an existing Dask scheduler, e.g. tcp://host:8786")
    p.add_argument("--cache", default=None, help="cache folder of pair tables (default ~/.cache/shearcorr)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNGs")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.add_argument("--seed", type=seed_int, default=0, help="seed (default 0)")
    p.set_defaults(func=run_analyze_stack)

    s = sub.add_parser("synth-stack", help="write a synthetic frame stack with known truth",
                       description="Render a stack from one evolving configuration (steady shear, start-up, oscillatory "
                                   "shear) as an Eiger-like NeXus file with geometry.json and truth.json.")
    s.add_argument("--protocol", required=True, choices=CHOICES["protocol"])
    add_system_args(s, defaults=(150.0, 0.0, 1.0, 10.0))
    s.add_argument("--frames", type=positive_int, default=200, help="frames (steady, startup; default 200)")
    s.add_argument("--shear-rate", type=finite, default=0.005, help="strain per frame (default 0.005)")
    s.add_argument("--diffusion", type=finite, default=0.1, help="non-affine D, R0^2 per frame (default 0.1)")
    s.add_argument("--transit", type=finite, default=20.0, help="mean velocity at the beam centre, R0 per frame (default 20)")
    s.add_argument("--start-frame", type=int, default=20, help="startup: first sheared frame (default 20)")
    s.add_argument("--diffusion-rest", type=finite, default=0.01, help="startup: D at rest (default 0.01)")
    s.add_argument("--ramp-frames", type=finite, default=0.0, help="startup: frames of the exponential rise (default 0)")
    s.add_argument("--cycles", type=positive_int, default=20, help="oscillatory: cycles (default 20)")
    s.add_argument("--period", type=positive_int, default=8, help="oscillatory: frames per cycle (default 8)")
    s.add_argument("--strain-amplitude", type=finite, default=0.03, help="oscillatory: strain amplitude (default 0.03)")
    s.add_argument("--d2-cycle", type=finite, default=1.0, help="oscillatory: non-affine excursion per cycle, R0 (default 1)")
    s.add_argument("--irreversible", type=finite, default=0.3, help="oscillatory: irreversible fraction (default 0.3)")
    s.add_argument("--frame-time", type=finite, default=0.01, help="seconds per frame (default 0.01)")
    s.add_argument("--flow-angle", type=finite, default=30.0, help="flow direction, deg detector azimuth (default 30)")
    s.add_argument("--contrast", type=finite, default=0.3, help="speckle contrast (default 0.3)")
    s.add_argument("--counts", type=finite, default=10.0, help="photons per pixel at q R0 = 0.5 (default 10)")
    s.add_argument("--size", type=positive_int, default=128, help="frame size in pixels, square (default 128)")
    s.add_argument("--compression", choices=CHOICES["compression"], default="lz4", help="HDF5 compression (default lz4)")
    s.add_argument("--intensity", choices=CHOICES["intensity"], default="detector",
                   help="frames as a detector records them (default: more particles in the beam, more photons) or "
                        "divided by their configuration's scattering volume (the paper's eq. 1)")
    s.add_argument("--seed", type=seed_int, default=0, help="random seed (default 0)")
    s.add_argument("-o", "--output", required=True, help="output folder (created)")
    add_beam_args(s)  # steady and startup: any beam of the 1-2 plane, written to geometry.json
    s.set_defaults(func=run_synth_stack)


def _kwargs(args) -> dict:
    return dict(dataset=args.dataset, frames=args.frames, mask=args.mask, mask_dataset=args.mask_dataset,
                mask_convention=args.mask_convention, n_q=args.n_q, n_phi=args.n_phi, q_min=args.q_min, q_max=args.q_max,
                n_l2=args.n_l2, displacement=args.displacement, max_lag=args.max_lag, normalization=args.normalization,
                groups=args.groups, time_bins=args.time_bins, c2_bins=args.c2_bins, period=args.period,
                period_s=args.period_s, timestamps=args.timestamps, max_cycles=args.max_cycles,
                flow_angle_deg=args.flow_angle, frame_time=args.frame_time, flux=args.flux,
                fit_exponent=not args.fixed_exponent, fit_transit=not args.no_transit, cache_dir=args.cache,
                plots=not args.no_plots, overwrite=args.overwrite, seed=args.seed, gain=args.gain,
                intensity=args.intensity)


def _pv(d) -> str:
    return f"{d['value']:.4g} +- {d['std']:.2g} {d.get('unit', '')}".rstrip()


def run_analyze_stack(args) -> None:
    import contextlib

    from ..errors import ShearcorrError
    from ..parallel import executor_from
    from ..stack import analyze_stack, analyze_sweep
    from .analyze import _warn

    if len(args.stack) > 1 and args.mode != "echo":
        raise ShearcorrError(f"{args.mode} analyses one stack; several files are for the echo amplitude sweep (a "
                             "series of single-frame files: give their folder, or a quoted pattern such as 'img_*.cbf')")
    if args.workers is None and args.scheduler is None:
        ctx = contextlib.nullcontext(None)
    else:
        ctx = executor_from(workers=args.workers, scheduler=args.scheduler)
    with ctx as executor:
        if len(args.stack) > 1 or args.strain_amplitude is not None:
            sweep = analyze_sweep(args.stack, args.strain_amplitude, args.geometry, args.output, executor=executor,
                                  **_kwargs(args))
            for a, d, s in zip(sweep["strain_amplitude"], sweep["d2_irreversible"], sweep["d2_irreversible_std"]):
                print(f"strain amplitude {a:.4g}: D2 irreversible {d:.4g} +- {s:.2g} R0 per cycle")
            print(f"wrote {args.output}")
            return
        r = analyze_stack(args.stack[0], args.geometry, args.output, mode=args.mode, executor=executor, **_kwargs(args))
    s = r.summary
    _warn(s["warnings"])
    if args.mode == "steady":
        print(f"shear rate {_pv(s['shear_rate'])}, D {_pv(s['diffusion'])}, MSD exponent {_pv(s['msd_exponent'])} "
              f"({s['msd_exponent']['regime']}), Pe {_pv(s['peclet'])}, R_s {_pv(s['rs'])}, "
              f"flow {_pv(s['flow_angle_deg'])} deg, chi2_red {s['chi2']['reduced']:.2f}")
    elif args.mode == "twotime":
        print(f"{s['fitted_pairs']} of {s['pairs']} pairs of {s['n_time_bins']} time bins fitted; flow {s['flow_angle_deg']['value']:.1f} deg")
    else:
        print(f"period {s['period_frames']} frames, {s['n_cycles']} cycles: D2 irreversible {_pv(s['d2_irreversible'])}, "
              f"gamma L residual {_pv(s['gamma_l_residual'])}")
    print(f"wrote {args.output}")


def run_synth_stack(args) -> None:
    from ._common import params_from_args
    from ..stack import synth

    params = params_from_args(args)
    beam = beam_from_args(args, params.beam_size)
    common = dict(frame_time=args.frame_time, flow_angle_deg=args.flow_angle, contrast=args.contrast, counts=args.counts,
                  shape=(args.size, args.size), seed=args.seed, out=args.output, compression=args.compression,
                  intensity=args.intensity)
    if args.protocol == "steady":
        synth.steady_stack(params, args.frames, shear_rate=args.shear_rate, diffusion=args.diffusion, transit=args.transit,
                           beam=beam, **common)
    elif args.protocol == "startup":
        synth.startup_stack(params, args.frames, start_frame=args.start_frame, shear_rate=args.shear_rate,
                            diffusion_rest=args.diffusion_rest, diffusion_flow=args.diffusion, ramp_frames=args.ramp_frames,
                            transit=args.transit, beam=beam, **common)
    else:
        if beam is not None:
            from ..errors import ShearcorrError

            raise ShearcorrError("oscillatory stacks are rendered in the paper's square beam only; drop the beam options")
        synth.oscillatory_stack(params, args.cycles, args.period, strain_amplitude=args.strain_amplitude,
                                d2_cycle=args.d2_cycle, irreversible_fraction=args.irreversible, **common)
    print(f"wrote {args.output}: stack.h5 (/entry/data/data, /entry/data/time), geometry.json, truth.json")
