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
:func:`shearcorr.experiment.synth.render_pair`). Detector, geometry and mask as for pairs; the default
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
from ..physics import displacement_std, form_factor, sample_radii, sphere_volume
from ..rng import seed_sequence

__all__ = ["SynthStack", "steady_stack", "startup_stack", "oscillatory_stack", "write_stack", "render_frame",
           "PROTOCOLS"]

PROTOCOLS = ("steady", "startup", "oscillatory")
R0_NM, LAMBDA_A, PIXEL_M = 10.0, 1.0, 55e-6
#: Default q per pixel in units of the speckle width 2 pi / L: one pixel per speckle.
PIXELS_PER_SPECKLE = 1.0


@dataclass
class SynthStack:
    """A synthetic stack: ``frames`` (n_frames, ny, nx) int32 counts, ``mask`` (True = valid),
    ``geometry`` (:class:`~shearcorr.experiment.geometry.DetectorGeometry`), ``geometry_spec``
    (geometry.json content), ``truth`` (JSON dict) and ``times`` (s, one per frame)."""

    frames: np.ndarray
    mask: np.ndarray
    geometry: object
    geometry_spec: dict
    truth: dict
    times: np.ndarray = field(default=None)


def render_frame(x, y, radius, qr0, phi, *, beam_size, flow_angle_deg=0.0, contrast=0.3, counts=10.0, rng=None):
    """One detector frame of the particles at (x, y) (see :func:`shearcorr.experiment.synth.render_pair`)."""
    from ..forward import montecarlo as conf

    half = 0.5 * beam_size
    inb = (np.abs(x) < half) & (np.abs(y) < half)
    r = radius[inb]
    ang = phi - np.radians(flow_angle_deg)
    A = conf.amplitude_at(qr0 * np.cos(ang), qr0 * np.sin(ang), x[inb], y[inb], r)
    v2 = sphere_volume(r) ** 2
    S = v2.sum()
    if S <= 0:
        inc = np.zeros_like(qr0)
        coh = np.zeros_like(qr0)
    else:
        qs = np.linspace(0, float(np.nanmax(qr0)) * 1.001, 2048)
        if np.all(r == r[0]):  # one radius: the form factor once
            P = form_factor(qs * r[0]) ** 2
        else:
            P = (v2[None, :] * form_factor(qs[:, None] * r[None, :]) ** 2).sum(axis=1) / S
        inc = np.interp(qr0, qs, P)
        coh = np.abs(A) ** 2 / S
    s = math.sqrt(contrast)
    lam = (s * coh + (1 - s) * inc) * (counts / float(form_factor(0.5) ** 2))
    return lam if rng is None else rng.poisson(lam)


def _detector(shape, dq, beam_size, beamstop):
    from ..experiment.geometry import flat_detector

    ny, nx = (int(v) for v in shape)
    if ny < 32 or nx < 32:
        raise ShearcorrError(f"frame shape must be at least 32 x 32, got {shape}")
    L = float(beam_size)
    dq = (2 * np.pi / L) / PIXELS_PER_SPECKLE if dq is None else float(dq)
    k_nm = 2 * np.pi / (LAMBDA_A / 10.0)
    distance = PIXEL_M * k_nm / (dq / R0_NM)
    spec = {"shape": [ny, nx], "beam_center_px": [(nx - 1) / 2.0, (ny - 1) / 2.0], "pixel_size_m": PIXEL_M,
            "distance_m": distance, "wavelength_angstrom": LAMBDA_A, "particle_radius_nm": R0_NM,
            "beam_size_um": L * R0_NM / 1000.0, "q_unit": "1/nm"}
    geo = flat_detector((ny, nx), spec["beam_center_px"], PIXEL_M, distance, wavelength=LAMBDA_A,
                        particle_radius_nm=R0_NM, beam_size_nm=L * R0_NM)
    rows, cols = np.mgrid[0:ny, 0:nx]
    cx, cy = spec["beam_center_px"]
    mask = geo.qr0 > beamstop
    mask &= ~((np.abs(cols - cx) < max(2, nx // 170)) & (rows > cy))
    gy, gx = int(cy + ny // 4), int(cx - nx // 5)
    mask[gy:gy + max(2, ny // 128), :] = False
    mask[:, gx:gx + max(2, nx // 128)] = False
    return geo, spec, mask, dq


def _check_common(params, n_frames, contrast, counts):
    if not isinstance(params, SystemParams):
        raise ShearcorrError(f"params must be a SystemParams, got {type(params).__name__}")
    if int(n_frames) < 2:
        raise ShearcorrError(f"a stack needs at least 2 frames, got {n_frames}")
    if not 0 < contrast <= 1:
        raise ShearcorrError(f"contrast must be in (0, 1], got {contrast}")
    if not counts > 0:
        raise ShearcorrError(f"counts must be > 0 (photons per pixel at q R0 = 0.5), got {counts}")


def _box(params, x_lo_shift, x_hi_shift, y_margin, rng):
    """Particles uniform in [-L/2 + x_lo_shift, L/2 + x_hi_shift] x [-L/2 - y_margin, L/2 + y_margin]
    at density n_l2 / L^2, log-normal radii."""
    L = params.beam_size
    x0, x1 = -L / 2 + x_lo_shift, L / 2 + x_hi_shift
    y0, y1 = -L / 2 - y_margin, L / 2 + y_margin
    n = int(rng.poisson(params.n_l2 * (x1 - x0) * (y1 - y0) / L**2))
    x = rng.uniform(x0, x1, n)
    y = rng.uniform(y0, y1, n)
    radius = sample_radii(n, params.rs, params.r0, rng)
    return x, y, radius


def _render_all(params, positions, n_frames, geo, flow_angle_deg, contrast, counts, rng_phot):
    frames = np.empty((n_frames,) + geo.shape, dtype=np.int32)
    n_in = []
    half = params.beam_size / 2
    for t, (x, y, radius) in enumerate(positions):
        frames[t] = render_frame(x, y, radius, geo.qr0, geo.phi, beam_size=params.beam_size,
                                 flow_angle_deg=flow_angle_deg, contrast=contrast, counts=counts, rng=rng_phot)
        n_in.append(int(((np.abs(x) < half) & (np.abs(y) < half)).sum()))
    return frames, n_in


def _truth(params, kind, flow_angle_deg, contrast, counts, dq, frame_time, seed, n_in, **extra):
    return {"protocol": kind, "n_l2": params.n_l2, "rs": params.rs, "displacement": params.displacement,
            "beam_size": params.beam_size, "flow_angle_deg": float(flow_angle_deg), "contrast": float(contrast),
            "counts": float(counts), "dq_r0_per_pixel": float(dq), "frame_time_s": float(frame_time),
            "seed": None if seed is None else int(seed), "n_in_beam_mean": float(np.mean(n_in)),
            "shearcorr_version": __version__, "units": "lengths in R0 (particle radius), time in frames", **extra}


def _streams(seed):
    ss = seed_sequence(seed)
    return [np.random.default_rng(np.random.SeedSequence(ss.entropy, spawn_key=(*ss.spawn_key, j), pool_size=ss.pool_size))
            for j in range(3)]


def _steps(params, radius, diffusion, rng, n):
    """Non-affine steps (n per particle... one call per frame interval): per-axis std sqrt(2 D) x the
    displacement convention's radius factor."""
    s = displacement_std(radius, math.sqrt(2.0 * diffusion), params.displacement, params.r0)
    return rng.standard_normal(n) * s, rng.standard_normal(n) * s


def _flow_stack(params, rates, diffusions, transit, geo_args, frame_time, seed, kind, extra):
    """Frames of particles advected by v + gamma_dot_t y per interval with diffusion D_t (arrays of
    length n_frames - 1)."""
    shape, dq, beamstop, flow_angle_deg, contrast, counts = geo_args
    n_frames = rates.size + 1
    L = params.beam_size
    geo, spec, mask, dq = _detector(shape, dq, L, beamstop)
    rng_conf, rng_phot, rng_step = _streams(seed)
    sig = 6.0 * math.sqrt(2.0 * float(np.sum(diffusions))) * (1.0 if params.displacement == "uniform" else 2.0) + 1.0
    ymax = L / 2 + sig
    strain = float(np.sum(np.abs(rates)))
    down = max(0.0, transit * (n_frames - 1) + strain * ymax) + sig
    up = max(0.0, -transit * (n_frames - 1) + strain * ymax) + sig
    x, y, radius = _box(params, -down, up, sig, rng_conf)

    def positions():
        xs, ys = x.copy(), y.copy()
        yield xs, ys, radius
        for t in range(n_frames - 1):
            dx, dy = _steps(params, radius, diffusions[t], rng_step, xs.size)
            xs = xs + transit + rates[t] * ys + dx
            ys = ys + dy
            yield xs, ys, radius

    frames, n_in = _render_all(params, positions(), n_frames, geo, flow_angle_deg, contrast, counts, rng_phot)
    truth = _truth(params, kind, flow_angle_deg, contrast, counts, dq, frame_time, seed, n_in, **extra)
    return SynthStack(frames, mask, geo, spec, truth, np.arange(n_frames) * float(frame_time))


def steady_stack(params: SystemParams, n_frames: int, *, shear_rate: float, diffusion: float, transit: float = 0.0,
                 frame_time: float = 1.0, flow_angle_deg: float = 30.0, contrast: float = 0.3, counts: float = 10.0,
                 shape=(128, 128), dq=None, beamstop: float = 0.15, seed=0) -> SynthStack:
    """A steady-shear stack (module docstring).

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
    """
    _check_common(params, n_frames, contrast, counts)
    if shear_rate < 0 or diffusion < 0:
        raise ShearcorrError("shear_rate and diffusion must be >= 0")
    rates = np.full(int(n_frames) - 1, float(shear_rate))
    diffs = np.full(int(n_frames) - 1, float(diffusion))
    extra = {"shear_rate_per_frame": float(shear_rate), "diffusion_r0sq_per_frame": float(diffusion),
             "transit_r0_per_frame": float(transit), "gamma_l_per_frame": float(shear_rate) * params.beam_size,
             "peclet": float(shear_rate / diffusion) if diffusion > 0 else None, "msd_exponent": 1.0,
             "n_frames": int(n_frames)}
    return _flow_stack(params, rates, diffs, float(transit), (shape, dq, beamstop, flow_angle_deg, contrast, counts),
                       frame_time, seed, "steady", extra)


def startup_stack(params: SystemParams, n_frames: int, *, start_frame: int, shear_rate: float, diffusion_rest: float,
                  diffusion_flow: float, ramp_frames: float = 0.0, transit: float = 0.0, frame_time: float = 1.0,
                  flow_angle_deg: float = 30.0, contrast: float = 0.3, counts: float = 10.0, shape=(128, 128), dq=None,
                  beamstop: float = 0.15, seed=0) -> SynthStack:
    """Start-up of shear (module docstring). ``truth["strain"]`` is the accumulated strain at every
    frame and ``truth["msd"]`` the accumulated per-axis non-affine variance (R0^2): for frames
    t1 < t2, gamma L = L (strain[t2] - strain[t1]) and D2^2 = msd[t2] - msd[t1]."""
    _check_common(params, n_frames, contrast, counts)
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
    return _flow_stack(params, rates, diffs, float(transit), (shape, dq, beamstop, flow_angle_deg, contrast, counts),
                       frame_time, seed, "startup", extra)


def oscillatory_stack(params: SystemParams, n_cycles: int, period: int, *, strain_amplitude: float, d2_cycle: float,
                      irreversible_fraction: float, residual_strain: float = 0.0, frame_time: float = 1.0,
                      flow_angle_deg: float = 30.0, contrast: float = 0.3, counts: float = 10.0, shape=(128, 128),
                      dq=None, beamstop: float = 0.15, seed=0) -> SynthStack:
    """Oscillatory shear, ``period`` frames per cycle (module docstring).

    Truth: the irreversible displacement per cycle (per-axis std) ``sqrt(f) d2_cycle`` and the
    residual affine strain per cycle times L (R0).
    """
    n_cycles, period = int(n_cycles), int(period)
    _check_common(params, n_cycles * period, contrast, counts)
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

    def positions():
        X, Y = x.copy(), y.copy()
        for n in range(n_cycles):
            for j in range(period):
                g = strain_amplitude * math.sin(2 * math.pi * j / period)
                u = g / strain_amplitude if strain_amplitude else 0.0
                yield X + g * Y + u * ex, Y + u * ey, radius
            s_irr = displacement_std(radius, d_irr, params.displacement, params.r0)
            X = X + residual_strain * Y + rng_step.standard_normal(X.size) * s_irr
            Y = Y + rng_step.standard_normal(Y.size) * s_irr

    n_frames = n_cycles * period
    frames, n_in = _render_all(params, positions(), n_frames, geo, flow_angle_deg, contrast, counts, rng_phot)
    truth = _truth(params, "oscillatory", flow_angle_deg, contrast, counts, dq, frame_time, seed, n_in,
                   n_cycles=n_cycles, period_frames=period, strain_amplitude=float(strain_amplitude),
                   d2_cycle=float(d2_cycle), irreversible_fraction=float(irreversible_fraction),
                   d2_irreversible=float(d_irr), residual_strain=float(residual_strain),
                   gamma_l_residual=float(residual_strain * L), n_frames=n_frames)
    return SynthStack(frames, mask, geo, spec, truth, np.arange(n_frames) * float(frame_time))


def write_stack(stack: SynthStack, out, *, compression: str = "lz4", sentinel_gaps: bool = True) -> Path:
    """Write a synthetic stack as an Eiger-like NeXus file plus geometry.json and truth.json.

    ``stack.h5``: ``/entry/data/data`` (uint32, one chunk per frame, bitshuffle/LZ4 through
    hdf5plugin when ``compression="lz4"``, else gzip or none), ``/entry/data/time`` (s),
    ``/entry/instrument/detector/pixel_mask`` (NeXus: 0 = good pixel) for the beam stop; the module
    gaps hold the detector flag 2^32 - 1 (``sentinel_gaps``) as Eiger files do -- both are masked
    automatically by the reader. Written in a temporary folder and renamed.
    """
    import h5py

    from ..experiment.analysis import publish, check_output

    out = check_output(out)
    import shutil
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        data = stack.frames.astype(np.uint32)
        geo_valid = stack.geometry.qr0 > 0
        gaps = ~stack.mask & _gap_pixels(stack.mask, stack.geometry) if sentinel_gaps else np.zeros_like(stack.mask)
        if gaps.any():
            data[:, gaps] = np.iinfo(np.uint32).max
        kw = {}
        if compression == "lz4":
            import hdf5plugin

            kw = dict(hdf5plugin.Bitshuffle(nelems=0, cname="lz4"))
        elif compression == "gzip":
            kw = {"compression": "gzip"}
        with h5py.File(tmp / "stack.h5", "w") as fh:
            entry = fh.create_group("entry")
            entry.attrs["NX_class"] = "NXentry"
            d = entry.create_group("data")
            d.attrs["NX_class"] = "NXdata"
            d.create_dataset("data", data=data, chunks=(1,) + data.shape[1:], **kw)
            d.create_dataset("time", data=stack.times)
            det = entry.create_group("instrument/detector")
            det.attrs["NX_class"] = "NXdetector"
            pm = np.where(stack.mask | gaps, 0, 1).astype(np.uint32)
            pm[~geo_valid] = 1
            det.create_dataset("pixel_mask", data=pm)
        (tmp / "geometry.json").write_text(json.dumps(stack.geometry_spec, indent=2) + "\n")
        truth = dict(stack.truth, files={"stack": "stack.h5", "dataset": "/entry/data/data", "time": "/entry/data/time",
                                         "pixel_mask": "/entry/instrument/detector/pixel_mask"})
        (tmp / "truth.json").write_text(json.dumps(truth, indent=2) + "\n")
        publish(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _gap_pixels(mask, geometry):
    """The straight module gaps of the synthetic detector (full rows / columns that are masked)."""
    rows = ~mask.any(axis=1)
    cols = ~mask.any(axis=0)
    g = np.zeros_like(mask)
    g[rows, :] = True
    g[:, cols] = True
    return g
