"""Command-line options of the beam and the instrument (``simulate``, ``synth-frames``), in model units (R0).

``analyze`` reads the instrument from the geometry file instead (physical units, docs/experiment.md).
"""

from __future__ import annotations

from ..choices import CHOICES


from ._common import finite


def add_beam_args(p) -> None:
    """The beam options (docs/theory.md section 7); all lengths in R0."""
    g = p.add_argument_group("beam (lengths in R0; docs/theory.md section 7)")
    g.add_argument("--beam-profile", choices=CHOICES["beam_profile"], default="square",
                   help="beam footprint (default square: the paper's, side = beam size)")
    g.add_argument("--beam-width", type=finite, nargs="+", default=None, metavar="W",
                   help="slit width(s) or Gaussian FWHM, along the flow [and across it] (default: the beam size)")
    g.add_argument("--coherence", type=float, nargs="+", default=None, metavar="XI",
                   help="rms transverse coherence length(s), along the flow [and across it] (default: coherent)")
    g.add_argument("--coherence-mix", type=float, nargs="+", default=None, metavar="W XI_ALONG XI_ACROSS",
                   help="a degree of coherence that is a weighted sum of Gaussian components: triples of weight and "
                        "two rms lengths (inf = coherent), e.g. 0.8 inf inf 0.2 40 40 (a coherent mode with a halo)")
    g.add_argument("--plane", choices=CHOICES["plane"], default="1-2",
                   help="1-2: beam along the vorticity (default, the paper's); 1-3: beam along the velocity gradient")
    g.add_argument("--gap", type=finite, default=None, help="1-3: gap / sample thickness h along the beam")
    g.add_argument("--zero-velocity", type=finite, default=0.0,
                   help="1-3: depth of the zero-velocity plane from mid-gap (default 0)")
    g.add_argument("--beam-profile-file", default=None, help="measured profile (.npy; rows across the flow, columns along it)")
    g.add_argument("--beam-profile-step", type=finite, nargs="+", default=None, metavar="STEP",
                   help="grid step(s) of the measured profile, along the flow [and across]")


def beam_from_args(args, beam_size: float = 800.0):
    """The :class:`shearcorr.beam.Beam` of the options, or None for the paper's beam (of side ``beam_size``)."""
    from ..beam import Beam

    width = None if args.beam_width is None else (tuple(args.beam_width) if len(args.beam_width) > 1 else args.beam_width[0])
    coh = None if args.coherence is None else (tuple(args.coherence) if len(args.coherence) > 1 else args.coherence[0])
    prof_map = None
    if args.beam_profile_file is not None:
        from ..experiment.frames import read_frame

        prof_map = read_frame(args.beam_profile_file)
    step = None if args.beam_profile_step is None else (
        tuple(args.beam_profile_step) if len(args.beam_profile_step) > 1 else args.beam_profile_step[0])
    mix = None
    if args.coherence_mix is not None:
        from ..errors import ShearcorrError

        if len(args.coherence_mix) % 3:
            raise ShearcorrError("--coherence-mix takes triples: weight, xi along the flow, xi across it")
        mix = [tuple(args.coherence_mix[i:i + 3]) for i in range(0, len(args.coherence_mix), 3)]
    beam = Beam(args.beam_profile, width, coh, args.plane, args.gap, args.zero_velocity, prof_map, step, mix)
    return None if beam.is_paper(beam_size) else beam
