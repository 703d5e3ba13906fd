r"""Synthetic frame stacks with known truth: one evolving configuration, rendered frame by frame.

Three protocols, one per analysis mode (lengths in R0, time in frames):

* :func:`steady_stack` -- steady shear: every frame interval the particles move by
  :math:`x \mathrel{+}= v + \dot\gamma y + \delta x,\ y \mathrel{+}= \delta y` (the shear uses the position
  before the random step, as eq. 3), :math:`\delta \sim N(0, 2D)` per axis (``"uniform"``) or
  :math:`N(0, 2D\,R_0/R_i)` (``"stokes-einstein"``); v is the mean velocity of the fluid at the beam
  centre along the flow (*transit*).
* :func:`startup_stack` -- start-up of shear: at rest (diffusion ``diffusion_rest``) until
  ``start_frame``, then the shear rate rises to ``shear_rate`` (exponentially over ``ramp_frames``)
  with diffusion ``diffusion_flow``.
* :func:`oscillatory_stack` -- oscillatory shear, ``period`` frames per cycle, strain
  :math:`\gamma_0 \sin(2\pi j/P)` at phase j. Each particle has a fixed *reversible* non-affine
  excursion (std :math:`\sqrt{1-f}\,d_c` per axis at the strain peak, scaled by
  :math:`\gamma(j)/\gamma_0`), and between cycles an *irreversible* step (std
  :math:`\sqrt{f}\,d_c` per axis) plus an optional residual affine strain per cycle. Frames at the same
  phase one cycle apart differ by the irreversible step only (and the residual strain).

The particles live in a rectangle that contains every particle that is inside the beam window
[-L/2, L/2]^2 at some frame: it extends upstream and downstream by the largest displacement along
the flow over the whole stack (plus 6 standard deviations of the non-affine motion), so particles
enter the beam from outside and leave it without periodic images -- a new configuration flows in,
as in an experiment. The number density is ``n_l2 / L^2`` everywhere.

Each frame is rendered from the positions by :func:`render_frame` (coherent amplitudes of the
particles in the window, partial coherence, Poisson counts; the same model as
:func:`shearcorr.experiment.synth.render_pair`), with the paper's coherent square beam and point
pixels (``pixel_subsamples=1``: a 16x cheaper render), or, for the steady and start-up protocols, any beam of the
1-2 plane (``beam``: its footprint lights the particles and its coherent modes sum their fields; the box then
spans the footprint's extent). Detector, geometry and mask as for pairs; the default
``dq`` samples q with one pixel per speckle, so a 128^2 frame reaches q R0 ~ 1 on the axes.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._version import __version__
from ..errors import ShearcorrError
from ..params import SystemParams
from ..physics import displacement_std, sample_radii
from ..rng import child_seed, seed_sequence

__all__ = ["SynthStack", "steady_stack", "startup_stack", "oscillatory_stack", "write_stack", "PROTOCOLS"]

PROTOCOLS = ("steady", "startup", "oscillatory")
#: Default q per pixel in units of the speckle width 2 pi / L: one pixel per speckle.
PIXELS_PER_SPECKLE = 1.0
#: File names of a written synthetic stack.
STACK_FILE, DATASET, TIME_DATASET, PIXEL_MASK = "stack.h5", "/entry/data/data", "/entry/data/time", \
    "/entry/instrument/detector/pixel_mask"


@dataclass
class SynthStack:
    """A synthetic stack: ``frames`` (n_frames, ny, nx) int32 counts (None when written to a file
    while rendering: then ``path`` is the folder), ``mask`` (True = valid), ``geometry``
    (:class:`~shearcorr.experiment.geometry.DetectorGeometry`), ``geometry_spec`` (geometry.json
    content), ``truth`` (JSON dict) and ``times`` (s, one per frame)."""

    frames: np.ndarray | None
    mask: np.ndarray
    geometry: object
    geometry_spec: dict
    truth: dict
    times: np.ndarray = field(default=None)
    path: Path | None = None


@dataclass
class _Setup:
    """What a protocol renders: detector, positions (a generator of (x, y, radius) per frame), truth."""

    params: SystemParams
    geo: object
    spec: dict
    mask: np.ndarray
    dq: float
    n_frames: int
    positions: object
    truth: dict
    frame_time: float
    look: tuple  # flow_angle_deg, contrast, counts
    rng_phot: np.random.Generator
    beam: object = None  # shearcorr.beam.Beam (1-2 plane), None: the paper's square
    intensity: str = "detector"  # "detector" or "volume" (mean_volume)


def _detector(shape, dq, beam_size, beamstop, beam=None):
    from ..experiment.synth import synth_detector

    dq = (2 * np.pi / float(beam_size)) / PIXELS_PER_SPECKLE if dq is None else float(dq)
    return synth_detector(shape, dq, beam_size, beamstop, beam=beam, min_size=32)


def _stack_beam(beam, beam_size):
    """The beam to render (None: the paper's square) and its half-widths (x, y) where it lights particles."""
    if beam is None or beam.is_paper(beam_size):
        return None, (beam_size / 2, beam_size / 2)
    if beam.plane != "1-2":
        raise ShearcorrError(f"synthetic stacks are rendered in the 1-2 plane only, got the beam plane {beam.plane!r}")
    b = beam.resolved(beam_size)
    return b, b.half_extent()


def _check_common(params, n_frames, contrast, counts, frame_time):
    if not isinstance(params, SystemParams):
        raise ShearcorrError(f"params must be a SystemParams, got {type(params).__name__}")
    if int(n_frames) < 2:
        raise ShearcorrError(f"a stack needs at least 2 frames, got {n_frames}")
    if not 0 < contrast <= 1:
        raise ShearcorrError(f"contrast must be in (0, 1], got {contrast}")
    if not counts > 0:
        raise ShearcorrError(f"counts must be > 0 (photons per pixel at q R0 = 0.5), got {counts}")
    if not frame_time > 0:
        raise ShearcorrError(f"frame_time must be > 0 seconds, got {frame_time}")


def _box(params, x_lo_shift, x_hi_shift, y_margin, rng, half=None):
    """Particles uniform in [-hx + x_lo_shift, hx + x_hi_shift] x [-hy - y_margin, hy + y_margin]
    at density n_l2 / L^2, log-normal radii; (hx, hy) = ``half``, the lit half-widths (default L/2)."""
    L = params.beam_size
    hx, hy = (L / 2, L / 2) if half is None else half
    x0, x1 = -hx + x_lo_shift, hx + x_hi_shift
    y0, y1 = -hy - y_margin, hy + y_margin
    n = int(rng.poisson(params.n_l2 * (x1 - x0) * (y1 - y0) / L**2))
    x = rng.uniform(x0, x1, n)
    y = rng.uniform(y0, y1, n)
    radius = sample_radii(n, params.rs, params.r0, rng)
    return x, y, radius


def _intensity(intensity: str) -> str:
    from ..choices import check_choice

    return check_choice("intensity", intensity)


def _streams(seed):
    """Generators of the configuration, the photons and the non-affine steps (children 0, 1, 2)."""
    root = seed_sequence(seed)
    return [np.random.default_rng(child_seed(root, j)) for j in range(3)]


def _truth(params, kind, look, dq, frame_time, seed, **extra):
    flow_angle_deg, contrast, counts = look
    return {"protocol": kind, "n_l2": params.n_l2, "rs": params.rs, "displacement": params.displacement,
            "beam_size": params.beam_size, "flow_angle_deg": float(flow_angle_deg), "contrast": float(contrast),
            "counts": float(counts), "dq_r0_per_pixel": float(dq), "frame_time_s": float(frame_time),
            "seed": None if seed is None else int(seed), "shearcorr_version": __version__,
            "units": "lengths in R0 (particle radius), time in frames", **extra}


def _flow_setup(params, rates, diffusions, transit, geo_args, frame_time, seed, kind, extra, beam=None,
                intensity="detector"):
    """Particles advected by v + gamma_dot_t y per frame interval with diffusion D_t (arrays of
    length n_frames - 1), in the footprint of ``beam`` (None: the paper's square)."""
    shape, dq, beamstop, look = geo_args
    n_frames = rates.size + 1
    L = params.beam_size
    beam, half = _stack_beam(beam, L)
    geo, spec, mask, dq = _detector(shape, dq, L, beamstop, beam)
    rng_conf, rng_phot, rng_step = _streams(seed)
    sig = 6.0 * math.sqrt(2.0 * float(np.sum(diffusions))) * (1.0 if params.displacement == "uniform" else 2.0) + 1.0
    ymax = half[1] + sig
    strain = float(np.sum(np.abs(rates)))
    down = max(0.0, transit * (n_frames - 1) + strain * ymax) + sig
    up = max(0.0, -transit * (n_frames - 1) + strain * ymax) + sig
    x, y, radius = _box(params, -down, up, sig, rng_conf, half)

    def positions():
        xs, ys = x.copy(), y.copy()
        yield xs, ys, radius
        for t in range(n_frames - 1):
            s = displacement_std(radius, math.sqrt(2.0 * diffusions[t]), params.displacement, params.r0)
            dx, dy = rng_step.standard_normal(xs.size) * s, rng_step.standard_normal(xs.size) * s
            xs = xs + transit + rates[t] * ys + dx
            ys = ys + dy
            yield xs, ys, radius

    truth = _truth(params, kind, look, dq, frame_time, seed, intensity=intensity, **extra)
    if beam is not None:
        truth["beam"] = beam.to_dict()
    return _Setup(params, geo, spec, mask, dq, n_frames, positions(), truth, float(frame_time), look, rng_phot, beam,
                  intensity)


def mean_volume(params: SystemParams, beam) -> float:
    r"""The mean over configurations of :math:`S = \sum_i u_i V_i^2` (R0^6): :math:`(n_{L^2}/L^2)\int u\,dA\;
    E[V^2]` with :math:`E[V^2] = (4\pi/3)^2 R_0^6 e^{18 R_s^2}` (log-normal radii) and the footprint ``beam``'s
    integral on a grid of 801^2 points over its extent."""
    hx, hy = beam.half_extent()
    xs, ys = np.linspace(-hx, hx, 801), np.linspace(-hy, hy, 801)
    u = beam.intensity(xs[None, :], ys[:, None])
    area = float(np.trapezoid(np.trapezoid(u, xs, axis=1), ys)) if not beam.is_slit else 4.0 * hx * hy
    ev2 = (4.0 * math.pi / 3.0) ** 2 * params.r0 ** 6 * math.exp(18.0 * params.rs ** 2)
    return params.n_l2 / params.beam_size ** 2 * area * ev2


def _finish(setup: _Setup, out, compression, sentinel_gaps) -> SynthStack:
    """Render the frames into memory (``out`` None) or straight into ``out``/stack.h5."""
    from ..beam import Beam
    from ..experiment.synth import MODE_EPS, render_frame
    from ..forward.modes import coherent_modes

    times = np.arange(setup.n_frames) * setup.frame_time
    flow, contrast, counts = setup.look
    params, geo = setup.params, setup.geo
    beam = (Beam() if setup.beam is None else setup.beam).resolved(params.beam_size)
    modes = coherent_modes(beam, MODE_EPS)  # point pixels
    volume = None if setup.intensity == "volume" else mean_volume(params, beam)

    def frames_of(sink):
        n_in = []
        for t, (x, y, radius) in enumerate(setup.positions):
            sink(t, render_frame(x, y, radius, geo, flow_angle_deg=flow, contrast=contrast, counts=counts,
                                 rng=setup.rng_phot, pixel_subsamples=1, beam=beam, modes=modes, volume=volume))
            n_in.append(float(beam.intensity(x, y).sum()))  # the count in a slit; intensity-weighted otherwise
        setup.truth["n_in_beam_mean"] = float(np.mean(n_in))

    if out is None:
        frames = np.empty((setup.n_frames,) + geo.shape, dtype=np.int32)

        def keep(t, f):
            frames[t] = f

        frames_of(keep)
        return SynthStack(frames, setup.mask, geo, setup.spec, setup.truth, times)
    stack = SynthStack(None, setup.mask, geo, setup.spec, setup.truth, times)
    path = _write(stack, out, setup.n_frames, frames_of, compression, sentinel_gaps)
    stack.path = path
    return stack


def steady_stack(params: SystemParams, n_frames: int, *, shear_rate: float, diffusion: float, transit: float = 0.0,
                 frame_time: float = 1.0, flow_angle_deg: float = 30.0, contrast: float = 0.3, counts: float = 10.0,
                 shape=(128, 128), dq=None, beamstop: float = 0.15, seed=0, out=None, compression: str = "lz4",
                 sentinel_gaps: bool = True, beam=None, intensity: str = "detector") -> SynthStack:
    r"""A steady-shear stack (module docstring).

    Parameters
    ----------
    params : SystemParams
        ``n_l2``, ``rs``, ``displacement``, ``beam_size`` (``gamma_l``, ``d2`` are not used).
    n_frames : int
    shear_rate : float
        Strain per frame (gamma L per frame = shear_rate * beam_size, in R0).
    diffusion : float
        Non-affine diffusion coefficient D, R0^2 per frame (per-axis variance 2 D per frame).
    transit : float
        Mean velocity at the beam centre along the flow, R0 per frame.
    frame_time : float
        Seconds per frame (recorded; the physics is in frames).
    out : path, optional
        Folder to write (:func:`write_stack` layout) while rendering, frame by frame: for stacks
        larger than memory. The returned stack then has ``frames=None`` and ``path``.
    beam : shearcorr.beam.Beam, optional
        Footprint and coherence (R0, the 1-2 plane; written to the geometry, so the analysis models it);
        default the paper's coherent square of side ``beam_size``. Smooth footprints light a larger area,
        so they cost more particles per frame (a Gaussian of FWHM L: ~20x the square's).
    intensity : {"volume", "detector"}
        What each frame is divided by: ``"volume"``, its configuration's scattering volume :math:`\sum u V^2` (the
        paper's eq. 1: the number of particles in the beam cancels); ``"detector"``, a fixed number, the mean of that
        sum (:func:`mean_volume`), as a detector records the intensity (more particles in the beam, more photons).
    """
    _check_common(params, n_frames, contrast, counts, frame_time)
    if shear_rate < 0 or diffusion < 0:
        raise ShearcorrError("shear_rate and diffusion must be >= 0")
    rates = np.full(int(n_frames) - 1, float(shear_rate))
    diffs = np.full(int(n_frames) - 1, float(diffusion))
    extra = {"shear_rate_per_frame": float(shear_rate), "diffusion_r0sq_per_frame": float(diffusion),
             "transit_r0_per_frame": float(transit), "gamma_l_per_frame": float(shear_rate) * params.beam_size,
             "peclet": float(shear_rate / diffusion) if diffusion > 0 else None, "msd_exponent": 1.0,
             "n_frames": int(n_frames)}
    setup = _flow_setup(params, rates, diffs, float(transit), (shape, dq, beamstop, (flow_angle_deg, contrast, counts)),
                        frame_time, seed, "steady", extra, beam, _intensity(intensity))
    return _finish(setup, out, compression, sentinel_gaps)


def startup_stack(params: SystemParams, n_frames: int, *, start_frame: int, shear_rate: float, diffusion_rest: float,
                  diffusion_flow: float, ramp_frames: float = 0.0, transit: float = 0.0, frame_time: float = 1.0,
                  flow_angle_deg: float = 30.0, contrast: float = 0.3, counts: float = 10.0, shape=(128, 128), dq=None,
                  beamstop: float = 0.15, seed=0, out=None, compression: str = "lz4",
                  sentinel_gaps: bool = True, beam=None, intensity: str = "detector") -> SynthStack:
    """Start-up of shear (module docstring); ``beam`` as in :func:`steady_stack`. ``truth["strain"]`` is the accumulated strain at every
    frame and ``truth["msd"]`` the accumulated per-axis non-affine variance (R0^2): for frames
    t1 < t2, gamma L = L (strain[t2] - strain[t1]) and D2^2 = msd[t2] - msd[t1]."""
    _check_common(params, n_frames, contrast, counts, frame_time)
    n = int(n_frames)
    t = np.arange(n - 1) + 0.5  # interval t -> t + 1
    on = t > start_frame
    if ramp_frames > 0:
        rates = np.where(on, shear_rate * (1.0 - np.exp(-(t - start_frame) / ramp_frames)), 0.0)
    else:
        rates = np.where(on, float(shear_rate), 0.0)
    diffs = np.where(on, float(diffusion_flow), float(diffusion_rest))
    strain = np.concatenate([[0.0], np.cumsum(rates)])
    msd = np.concatenate([[0.0], np.cumsum(2.0 * diffs)])
    extra = {"start_frame": int(start_frame), "shear_rate_per_frame": float(shear_rate), "ramp_frames": float(ramp_frames),
             "diffusion_rest": float(diffusion_rest), "diffusion_flow": float(diffusion_flow),
             "transit_r0_per_frame": float(transit), "strain": strain.tolist(), "msd": msd.tolist(), "n_frames": n}
    setup = _flow_setup(params, rates, diffs, float(transit), (shape, dq, beamstop, (flow_angle_deg, contrast, counts)),
                        frame_time, seed, "startup", extra, beam, _intensity(intensity))
    return _finish(setup, out, compression, sentinel_gaps)


def oscillatory_stack(params: SystemParams, n_cycles: int, period: int, *, strain_amplitude: float, d2_cycle: float,
                      irreversible_fraction: float, residual_strain: float = 0.0, frame_time: float = 1.0,
                      flow_angle_deg: float = 30.0, contrast: float = 0.3, counts: float = 10.0, shape=(128, 128),
                      dq=None, beamstop: float = 0.15, seed=0, out=None, compression: str = "lz4",
                      sentinel_gaps: bool = True, intensity: str = "detector") -> SynthStack:
    """Oscillatory shear, ``period`` frames per cycle (module docstring).

    Truth: the irreversible displacement per cycle (per-axis std) ``sqrt(f) d2_cycle`` and the
    residual affine strain per cycle times L (R0).
    """
    n_cycles, period = int(n_cycles), int(period)
    _check_common(params, n_cycles * period, contrast, counts, frame_time)
    if n_cycles < 2 or period < 1:
        raise ShearcorrError(f"need at least 2 cycles and a period of at least 1 frame, got {n_cycles} x {period}")
    if not 0 <= irreversible_fraction <= 1:
        raise ShearcorrError(f"irreversible_fraction must be in [0, 1], got {irreversible_fraction}")
    L = params.beam_size
    geo, spec, mask, dq = _detector(shape, dq, L, beamstop)
    rng_conf, rng_phot, rng_step = _streams(seed)
    d_irr = math.sqrt(irreversible_fraction) * d2_cycle
    d_rev = math.sqrt(1.0 - irreversible_fraction) * d2_cycle
    sig = 6.0 * (d_irr * math.sqrt(n_cycles) + d_rev) * (1.0 if params.displacement == "uniform" else 2.0) + 1.0
    reach = (abs(strain_amplitude) + abs(residual_strain) * n_cycles) * (L / 2 + sig) + sig
    x, y, radius = _box(params, -reach, reach, sig, rng_conf)
    s_rev = displacement_std(radius, d_rev, params.displacement, params.r0)
    ex, ey = rng_step.standard_normal(x.size) * s_rev, rng_step.standard_normal(x.size) * s_rev
    s_irr = displacement_std(radius, d_irr, params.displacement, params.r0)

    def positions():
        X, Y = x.copy(), y.copy()
        for _ in range(n_cycles):
            for j in range(period):
                g = strain_amplitude * math.sin(2 * math.pi * j / period)
                u = g / strain_amplitude if strain_amplitude else 0.0
                yield X + g * Y + u * ex, Y + u * ey, radius
            X = X + residual_strain * Y + rng_step.standard_normal(X.size) * s_irr
            Y = Y + rng_step.standard_normal(Y.size) * s_irr

    look = (flow_angle_deg, contrast, counts)
    truth = _truth(params, "oscillatory", look, dq, frame_time, seed, intensity=_intensity(intensity),
                   n_cycles=n_cycles, period_frames=period,
                   strain_amplitude=float(strain_amplitude), d2_cycle=float(d2_cycle),
                   irreversible_fraction=float(irreversible_fraction), d2_irreversible=float(d_irr),
                   residual_strain=float(residual_strain), gamma_l_residual=float(residual_strain * L),
                   n_frames=n_cycles * period)
    setup = _Setup(params, geo, spec, mask, dq, n_cycles * period, positions(), truth, float(frame_time), look, rng_phot,
                   None, _intensity(intensity))
    return _finish(setup, out, compression, sentinel_gaps)


def write_stack(stack: SynthStack, out, *, compression: str = "lz4", sentinel_gaps: bool = True) -> Path:
    """Write an in-memory synthetic stack as an Eiger-like NeXus file plus geometry.json and truth.json.

    ``stack.h5``: ``/entry/data/data`` (uint32, one chunk per frame; bitshuffle/LZ4 through
    hdf5plugin with ``compression="lz4"``, else ``"gzip"`` or ``"none"``), ``/entry/data/time`` (s),
    ``/entry/instrument/detector/pixel_mask`` (NeXus: 0 = good) for the beam stop; the module gaps
    hold the detector flag 2^32 - 1 (``sentinel_gaps``) as Eiger files do -- both are masked by the
    reader without a mask file. Written in a temporary folder and renamed.
    """
    if stack.frames is None:
        raise ShearcorrError("this stack was written while rendering; it has no frames in memory")

    def frames_of(sink):
        for t in range(stack.frames.shape[0]):
            sink(t, stack.frames[t])

    return _write(stack, out, stack.frames.shape[0], frames_of, compression, sentinel_gaps)


def _gap_pixels(mask):
    """The straight module gaps of the synthetic detector (rows and columns that are fully masked)."""
    g = np.zeros_like(mask)
    g[~mask.any(axis=1), :] = True
    g[:, ~mask.any(axis=0)] = True
    return g


def _write(stack: SynthStack, out, n_frames: int, frames_of, compression: str, sentinel_gaps: bool) -> Path:
    import h5py

    from ..files import atomic_folder, check_output_folder

    if compression not in ("lz4", "gzip", "none"):
        raise ShearcorrError(f"compression must be lz4, gzip or none, got {compression!r}")
    out = check_output_folder(out, overwrite=False)
    gaps = _gap_pixels(stack.mask) if sentinel_gaps else np.zeros_like(stack.mask)
    flag = np.iinfo(np.uint32).max
    kw = {}
    if compression == "lz4":
        try:
            import hdf5plugin
        except ImportError:
            raise ShearcorrError("bitshuffle/LZ4 compression needs hdf5plugin: pip install 'shearcorr[io]'") from None
        kw = dict(hdf5plugin.Bitshuffle(nelems=0, cname="lz4"))
    elif compression == "gzip":
        kw = {"compression": "gzip"}
    shape = tuple(stack.geometry.shape)
    with atomic_folder(out) as tmp:
        with h5py.File(tmp / STACK_FILE, "w") as fh:
            entry = fh.require_group("entry")
            entry.attrs["NX_class"] = "NXentry"
            d = entry.create_group("data")
            d.attrs["NX_class"] = "NXdata"
            ds = d.create_dataset("data", shape=(n_frames,) + shape, dtype=np.uint32, chunks=(1,) + shape, **kw)

            def sink(t, f):
                a = np.asarray(f).astype(np.uint32)
                a[gaps] = flag
                ds[t] = a

            frames_of(sink)
            d.create_dataset("time", data=stack.times)
            det = entry.create_group("instrument/detector")
            det.attrs["NX_class"] = "NXdetector"
            det.create_dataset("pixel_mask", data=np.where(stack.mask | gaps, 0, 1).astype(np.uint32))
            det.create_dataset("frame_time", data=float(stack.times[1] - stack.times[0]) if n_frames > 1 else 0.0)
        (tmp / "geometry.json").write_text(json.dumps(stack.geometry_spec, indent=2) + "\n")
        truth = dict(stack.truth, files={"stack": STACK_FILE, "dataset": DATASET, "time": TIME_DATASET,
                                         "pixel_mask": PIXEL_MASK, "compression": compression})
        (tmp / "truth.json").write_text(json.dumps(truth, indent=2) + "\n")
    return out
