"""``analyze-stack``: a stack of frames + geometry -> steady shear, two-time maps or echoes, written atomically.

Steps: open the stack lazily (:class:`shearcorr.experiment.frames.FrameStack`: HDF5/NeXus incl.
compressed Eiger data, Zarr, .npy, TIFF; or an array / Dask array), build the mask (user mask, the
NeXus ``pixel_mask``, the APS q map's mask, pixels flagged 2^n - 1 / negative / NaN in the sampled
frames), the polar bins (:func:`.plan.make_plan`), the pair model on them, the correlation area of
the speckle (from one pair of frames, as ``analyze``), then the mode:

* ``steady``: :func:`.engine.lag_sums` (lags 0..max_lag, groups of origins) -> :func:`.steady.analyze_steady`;
* ``twotime``: :func:`.twotime.twotime_maps` -> :func:`.twotimefit.analyze_twotime`;
* ``echo``: :func:`.echo.analyze_echo` (period in frames, or from time stamps).

The output folder (``result.json``, ``result.h5`` with an NXprocess provenance group, PNGs) is
written by :mod:`.output` in a temporary folder and renamed at the end; on error nothing is left.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np

from .._version import __version__
from ..choices import check_choice
from ..errors import ShearcorrError
from ..files import JSONRecord

__all__ = ["analyze_stack", "StackResult", "frame_range", "DEFAULTS"]

#: Defaults of the stack analysis options.
DEFAULTS = {"n_q": 16, "n_phi": 36, "max_lag": 20, "groups": 20, "time_bins": 200, "max_cycles": 4}
#: Sampled frames for the global detector flags (pixels bad in any of them are masked everywhere).
N_FLAG_FRAMES = 8
#: ... doubled, up to this many, while their summed counts average below SHADOW_TARGET_COUNTS per pixel: the shadow
#: search (:func:`shearcorr.experiment.pair.shadow_mask`) needs bright rings, which a low-count stack reaches only
#: summed over many frames.
N_SHADOW_FRAMES = 256
SHADOW_TARGET_COUNTS = 30.0


@dataclass
class StackResult(JSONRecord):
    """Result of :func:`analyze_stack`: ``summary`` (the JSON content of result.json) and the mode's
    analysis object (``analysis``: :class:`.steady.SteadyAnalysis`, :class:`.twotimefit.TwoTimeAnalysis`
    or :class:`.echo.EchoAnalysis`) with the bins (``plan``) and geometry."""

    mode: str
    summary: dict
    analysis: object = field(repr=False)
    plan: object = field(repr=False)
    geometry: object = field(repr=False)
    extra: dict = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict:
        return self.summary


def frame_range(text, n_frames: int) -> tuple[int, int]:
    """``"A:B"`` (or a (start, stop) pair, or None) -> frames [start, stop) of a stack of ``n_frames``."""
    if text is None:
        return 0, int(n_frames)
    if isinstance(text, str):
        try:
            parts = [int(v) if v.strip() else None for v in text.split(":")]
            if len(parts) != 2:
                raise ValueError
        except ValueError:
            raise ShearcorrError(f"--frames must be START:STOP (integers), got {text!r}") from None
        a, b = parts
    else:
        a, b = text
    a = 0 if a is None else int(a)
    b = int(n_frames) if b is None else int(b)
    if a < 0:
        a += n_frames
    if b < 0:
        b += n_frames
    if not 0 <= a < b <= n_frames:
        raise ShearcorrError(f"frames {a}:{b} are outside the stack of {n_frames} frames")
    return a, b


def _source(stack, dataset):
    from ..experiment.frames import FrameStack, open_stack
    from .plan import as_source

    if isinstance(stack, (str, bytes)) or hasattr(stack, "__fspath__"):
        return open_stack(stack, dataset)
    if isinstance(stack, FrameStack):
        return stack
    return as_source(stack)


def _flagged_pixels(src, start, stop, n=N_FLAG_FRAMES, n_max=N_SHADOW_FRAMES):
    """Pixels that hold a detector flag (2^n - 1), a negative value or NaN in any of ``n`` frames spread over the
    analysis: module gaps and dead pixels, masked in every frame. Also returns the sum of the sampled frames (0 where
    flagged) for :func:`shearcorr.experiment.pair.shadow_mask`, and how many were summed: while the sum averages
    below ``SHADOW_TARGET_COUNTS`` per pixel, the sample is doubled (spread evenly again; up to ``n_max`` frames,
    all of them in a short stack), its frames' flags included."""
    from ..experiment.frames import sentinel_value

    bad = np.zeros(tuple(src.frame_shape), dtype=bool)
    total = np.zeros(tuple(src.frame_shape))
    done: set = set()
    m = min(n, stop - start)
    while True:
        for t in np.unique(np.linspace(start, stop - 1, m).round().astype(int)):
            if int(t) in done:
                continue
            done.add(int(t))
            f = np.asarray(src.read(int(t), int(t) + 1))[0]
            sent = sentinel_value(f.dtype) if f.dtype != bool else None
            with np.errstate(invalid="ignore"):
                b = ~np.isfinite(f) | (f < 0) if np.issubdtype(f.dtype, np.floating) else f < 0
                if sent is not None:
                    b |= f >= sent
            bad |= b
            total += np.where(b, 0.0, f)
        good = ~bad
        level = float(total[good].mean()) if good.any() else 0.0
        if level >= SHADOW_TARGET_COUNTS or m >= min(n_max, stop - start):
            return bad, np.where(bad, 0.0, total), len(done)
        m = min(2 * m, n_max, stop - start)


def _valid_mask(src, geo, start, stop, mask, mask_convention, mask_dataset):
    """The valid pixels (True), the count of pixels masked per reason, and warnings."""
    from ..experiment.frames import check_mask_plausible, read_mask
    from ..experiment.nexus import geometry_mask
    from ..experiment.pair import shadow_mask, shadow_warning

    shape = tuple(src.frame_shape)
    valid = np.ones(shape, dtype=bool)
    counts = {}
    if mask is not None:
        m = np.asarray(mask, dtype=bool) if isinstance(mask, np.ndarray) else check_mask_plausible(
            read_mask(mask, mask_convention, mask_dataset), mask_convention, mask)
        if m.shape != shape:
            raise ShearcorrError(f"the mask has shape {m.shape} but the frames are {shape}")
        counts["mask"] = int((~m).sum())
        valid &= m
    det = src.detector_mask() if hasattr(src, "detector_mask") else None
    if det is not None:
        counts["pixel_mask"] = int((valid & ~det).sum())
        valid &= det
    aps = geometry_mask(geo)
    if aps is not None:
        counts["aps_mask"] = int((valid & ~aps).sum())
        valid &= aps
    flags, total, n_summed = _flagged_pixels(src, start, stop)
    counts["detector_flag"] = int((valid & flags).sum())
    valid &= ~flags
    if not valid.any():
        raise ShearcorrError(f"all {valid.size} pixels are masked (reasons: {counts}); check the mask convention")
    shadow = shadow_mask(total, valid, geo.qr0, geo.speckle_px(valid))
    notes = []
    if shadow.any():
        counts["shadow"] = int(shadow.sum())
        valid &= ~shadow
        notes.append(shadow_warning(counts["shadow"], f"the sum of {n_summed} sampled frames"))
    return valid, counts, notes


def _area(src, plan, geo, start, gain=1.0):
    """Correlation area per q row (pixels), the speckle size (pixels) and the speckle area per q row, measured
    on frames start, start + 1 of the plan's pixels (:func:`speckle_area`), and the warning of those two frames'
    shot noise against ``gain`` (:func:`shearcorr.experiment.checks.gain_warning`)."""
    from ..experiment.checks import gain_warning
    from ..experiment.correlation import correlation_map
    from ..experiment.pair import make_pair

    plan_valid = plan.valid_image()
    speckle_px = geo.speckle_px(plan_valid)
    two = np.asarray(src.read(start, start + 2), dtype=np.float64)
    notes = gain_warning(two, plan_valid, geo.qr0, float(gain), True)
    pair = make_pair(two[0] / gain, two[1] / gain, plan_valid, sources={"before": "stack", "after": "stack"})
    cm = correlation_map(pair, geo, plan.q_edges, plan.n_phi, speckle_px=speckle_px)
    rows = np.full(plan.shape, -1, dtype=np.int64)
    rows.flat[plan.index] = np.repeat(plan.seg_ring // plan.n_sub, plan.n_pix_seg)
    return (np.asarray(cm.info["correlation_area_px"], dtype=np.float64), speckle_px,
            speckle_area(rows, speckle_px, cm.info["beam_center_px"], plan.n_q), notes)


def speckle_area(rows: np.ndarray, speckle_px: float, beam_center, n_q: int) -> np.ndarray:
    r"""Pixels per independent speckle of each q row's mean intensity, (n_q,):
    :math:`a_r = s^2 (1 + f_r)` with s the speckle size (pixels; the intensity covariance of a coherent square
    footprint, sinc^2 x sinc^2, sums to s^2 over pixel offsets) and f_r the fraction of the row's pixels whose
    Friedel mirror (the point 2c - p, the same speckle, at the same |q|) falls on a used pixel. ``rows``: the q row of each pixel
    (-1: unused); ``beam_center``: (col, row) of q = 0."""
    from ..experiment.correlation import _mirror

    used = rows >= 0
    # the mirror point 2c - p has the same |q|: it is in the row whenever its pixel is used (the nearest pixel
    # may fall in a neighbouring thin row; the speckle's covariance still sums to s^2 around the exact point)
    mirrored = used & (_mirror(rows + 1, beam_center) > 0)
    n = np.bincount(rows[used], minlength=n_q).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        f = np.where(n > 0, np.bincount(rows[mirrored], minlength=n_q) / n, 0.0)
    return max(float(speckle_px), 1.0) ** 2 * (1.0 + f)


def _read_aux(src, spec, n_frames, what):
    """A per-frame array: given as an array, or an HDF5 dataset path in the stack's file."""
    if spec is None:
        return None
    if isinstance(spec, str):
        from ..experiment.nexus import open_hdf5

        path = getattr(src, "path", None)
        if path is None:
            raise ShearcorrError(f"the {what} dataset {spec!r} needs a stack read from an HDF5 file; pass an array instead")
        with open_hdf5(path) as fh:
            if spec not in fh:
                raise ShearcorrError(f"the {what} dataset {spec!r} does not exist in {path}")
            arr = np.asarray(fh[spec][()], dtype=np.float64).ravel()
    else:
        arr = np.asarray(spec, dtype=np.float64).ravel()
    if arr.size != n_frames:
        raise ShearcorrError(f"the {what} has {arr.size} values but the stack has {n_frames} frames")
    return arr


def analyze_stack(stack, geometry, output=None, *, mode: str, dataset=None, frames=None, mask=None,
                  mask_convention="valid", mask_dataset=None, n_q=DEFAULTS["n_q"], n_phi=DEFAULTS["n_phi"], q_min=None,
                  q_max=None, n_l2=150.0, displacement="uniform", max_lag=DEFAULTS["max_lag"], normalization=None,
                  groups=DEFAULTS["groups"], time_bins=DEFAULTS["time_bins"], c2_bins=None, period=None, period_s=None,
                  timestamps=None, max_cycles=DEFAULTS["max_cycles"], flow_angle_deg=None, frame_time=None, flux=None,
                  fit_exponent=True, fit_transit=True, executor=None, cache_dir=None, table_steps=None, plots=True,
                  overwrite=False, seed=0, gain=1.0, intensity="detector") -> StackResult:
    """Analyse a stack of frames (module docstring); return the result and write it to ``output``.

    Parameters
    ----------
    stack : path, FrameStack, ndarray (n_frames, ny, nx) or dask array
        Photon counts, or detector counts with ``gain``.
    geometry : path or DetectorGeometry
        Geometry JSON (docs/experiment.md; ``aps_qmap`` reads an APS 8-ID-I file).
    output : path, optional
        Folder to create (result.json, result.h5, PNGs).
    mode : {"steady", "twotime", "echo"}
    frames : "A:B" or (start, stop), optional
        Frames of the stack to analyse.
    max_lag, groups, normalization : steady mode (lags 0..max_lag; origin groups for the errors;
        "frame" (each frame divided by its ring means) or "time" (by their time means: the ensemble baseline in the
        maps); default "frame" for detector frames, "time" for volume frames (``intensity``); R_s is measured on
        the q-row means of the raw frames with either).
    time_bins, c2_bins : twotime mode (time bins; bin labels with full-resolution C(t1, t2)).
    period, period_s, timestamps, max_cycles : echo mode.
    flow_angle_deg : float, optional
        Known flow direction (deg, detector azimuth); fitted otherwise.
    frame_time : float, optional
        Seconds per frame (default: from ``timestamps``, else results per frame).
    flux : array or dataset, optional
        Per-frame flux (monitor), divides the frames (steady "time" normalisation).
    executor : executor, optional
        Runs the reading and correlation tasks and the table (process pool or Dask client executor).
    table_steps : dict, optional
        Node steps ``du``, ``dd`` of the pair table (:mod:`.templates`; default 0.15: y within 4e-4).
    gain : float
        Detector counts per photon (default 1: a photon-counting detector); scales the shot-noise terms. Two
        frames are checked against it (:func:`shearcorr.experiment.checks.gain_warning`).
    intensity : {"detector", "volume"}
        Steady mode: the frames as a detector records them (default), or divided by their configuration's
        scattering volume (the paper's eq. 1; ``synth-stack --intensity volume``); it sets the baseline that
        carries R_s (:mod:`.intensity`) and the default ``normalization``.
    """
    from ..experiment.checks import check_gain, model_q_range
    from ..experiment.correlation import q_bin_edges
    from ..experiment.geometry import DetectorGeometry
    from ..experiment.geometryfile import load_geometry
    from ..experiment.model import BinnedPairModel, engine_step_max
    from ..files import check_output_folder
    from .plan import make_plan
    from .templates import pixel_weights

    t0 = time.perf_counter()
    check_choice("stack_mode", mode, what="mode")
    check_choice("displacement", displacement)
    intensity = check_choice("intensity", intensity)
    out = None if output is None else check_output_folder(output, overwrite=overwrite)
    for name, v in (("n_q", n_q), ("n_phi", n_phi), ("max_lag", max_lag), ("groups", groups), ("time_bins", time_bins),
                    ("max_cycles", max_cycles)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1 or v > 100000:
            raise ShearcorrError(f"{name} must be a whole number in 1..100000, got {v!r}")
    gain = check_gain(gain)
    if flow_angle_deg is not None and not np.isfinite(float(flow_angle_deg)):
        raise ShearcorrError(f"the flow angle must be a finite number of degrees, got {flow_angle_deg}")
    src = _source(stack, dataset)
    start, stop = frame_range(frames, src.n_frames)
    n = stop - start
    geo = geometry if isinstance(geometry, DetectorGeometry) else load_geometry(geometry, tuple(src.frame_shape))
    geo.check_shape(tuple(src.frame_shape))
    valid, counts, notes = _valid_mask(src, geo, start, stop, mask, mask_convention, mask_dataset)
    beam = geo.beam if geo.beam is not None and not geo.beam.is_paper(geo.beam_size_r0) else None
    if mode == "steady" and beam is not None:
        from .transit import footprint

        footprint(beam, geo.beam_size_r0)  # the steady model's transit needs the 1-2 plane: refused before any work
    # the pair model's q domain (experiment.checks.model_q_range): the user's limits refused outside it, the
    # frame's clipped to it with a warning
    q_min, q_max, q_notes = model_q_range(geo.qr0, valid, SimpleNamespace(n_l2=float(n_l2), displacement=displacement,
                                          q_min=q_min, q_max=q_max), geo.beam_size_r0,
                                          engine_step_max(beam, None, geo.beam_size_r0))
    notes += q_notes
    qe = q_bin_edges(geo.qr0, valid, int(n_q), q_min, q_max)
    plan = make_plan(valid, geo.qr0, geo.phi, qe, int(n_phi))
    # the geometry file's beam enters the model; pixels are modelled as points (docs/stacks.md)
    model = BinnedPairModel(qe, plan.phi_edges, n_l2=n_l2, displacement=displacement, beam_size=geo.beam_size_r0,
                            beam=beam)
    area, speckle_px, speckle_rows, gain_notes = _area(src, plan, geo, start, gain)
    notes += gain_notes
    weights = pixel_weights(plan, geo.qr0, geo.phi, model)
    times = _read_aux(src, timestamps, src.n_frames, "time-stamp")
    if frame_time is None and times is not None and times.size > 1:
        frame_time = float(np.median(np.diff(times[start:stop])))
    flux_arr = _read_aux(src, flux, src.n_frames, "flux")
    if flux_arr is not None:
        flux_arr = flux_arr / np.mean(flux_arr[start:stop])
    phi = None if flow_angle_deg is None else np.radians(float(flow_angle_deg))
    ctx = dict(plan=plan, model=model, geometry=geo, start=start, stop=stop, area=area, speckle_px=speckle_px,
               frame_time=frame_time, counts=counts)
    timing = {"setup_s": round(time.perf_counter() - t0, 3)}
    if mode == "steady":
        from .engine import lag_sums
        from .steady import analyze_steady

        # detector frames: the maps normalised per frame (the particle number in the beam divides out, as the
        # paper's S does), R_s from the row means of the raw frames; volume frames: the ensemble ('time') maps
        norm = (("frame" if intensity == "detector" else "time") if normalization is None
                else check_choice("normalization", normalization))
        if n <= int(max_lag):
            raise ShearcorrError(f"the stack has {n} frames, not more than the lag window of {max_lag} frames; "
                                 "use a smaller --max-lag or more frames")
        g = int(min(groups, max(2, n // max(int(max_lag), 1))))
        t_c = time.perf_counter()
        lag = lag_sums(src, plan, np.arange(int(max_lag) + 1), start=start, stop=stop, groups=g, normalization=norm,
                       flux=flux_arr, executor=executor, gain=gain)
        timing["correlation_s"] = round(time.perf_counter() - t_c, 3)
        analysis = analyze_steady(lag, model, flow_angle=phi, fit_exponent=fit_exponent, fit_transit=fit_transit,
                                  executor=executor, cache_dir=cache_dir, table_steps=table_steps, weights=weights,
                                  seed=seed, speckle_area=speckle_rows, intensity=intensity, speckle_px=speckle_px)
        ctx["lag"] = lag
        check = (analysis.info.get("rs_row_means") or {}).get("intensity_check") or {}
        if check.get("warning"):
            notes.append(check["warning"])
    elif mode == "twotime":
        from .twotime import twotime_maps
        from .twotimefit import analyze_twotime

        labels = _c2_labels(c2_bins, plan, phi)
        t_c = time.perf_counter()
        maps = twotime_maps(src, plan, start=start, stop=stop, n_bins=int(time_bins), selected=labels, executor=executor,
                            gain=gain)
        timing["correlation_s"] = round(time.perf_counter() - t_c, 3)
        t_f = time.perf_counter()
        analysis = analyze_twotime(maps, model, flow_angle=phi, area=area, executor=executor, cache_dir=cache_dir,
                                   table_steps=table_steps, weights=weights, seed=seed)
        timing["fits_s"] = round(time.perf_counter() - t_f, 3)
    else:
        from .echo import analyze_echo, echo_period

        p = echo_period(n, period, times=None if times is None else times[start:stop], period_s=period_s)
        analysis = analyze_echo(src, plan, model, period=p, start=start, stop=stop, max_cycles=int(max_cycles),
                                flow_angle=phi, area=area, executor=executor, cache_dir=cache_dir,
                                table_steps=table_steps, weights=weights, seed=seed, gain=gain)
    from .output import summarize, write_result

    options = {"mode": mode, "frames": [start, stop], "dataset": getattr(src, "dataset", dataset), "n_q": int(n_q),
               "n_phi": int(n_phi), "q_min": q_min, "q_max": q_max, "n_l2": float(n_l2), "displacement": displacement,
               "max_lag": int(max_lag), "normalization": normalization, "intensity": intensity,
               "groups": int(groups), "time_bins": int(time_bins),
               "c2_bins": c2_bins, "period": period, "period_s": period_s, "timestamps": timestamps if isinstance(timestamps, str)
               else None, "max_cycles": int(max_cycles), "flow_angle_deg": flow_angle_deg, "frame_time": frame_time,
               "fit_exponent": bool(fit_exponent), "fit_transit": bool(fit_transit), "seed": seed, "gain": gain}
    summary = summarize(mode, analysis, ctx, src, options)
    summary["warnings"] = notes
    summary["provenance"] = {"shearcorr_version": __version__, "time_s": round(time.perf_counter() - t0, 3), "timing": timing,
                             "engine": "analytic (pair model on a table)", "n_l2": float(n_l2), "displacement": displacement}
    result = StackResult(mode=mode, summary=summary, analysis=analysis, plan=plan, geometry=geo, extra=ctx)
    if out is not None:
        write_result(out, result, src, options, plots=plots, overwrite=overwrite)
    return result


def _c2_labels(c2_bins, plan, phi):
    """Bins with full-resolution C(t1, t2): given labels, or by default the strip bin (theta = 90 deg
    from the flow, or the bin at 90 deg azimuth) at three q (low, middle, high)."""
    if c2_bins is not None:
        return [int(v) for v in c2_bins]
    iphi = int(((np.pi / 2 + (phi or 0.0)) % np.pi) / (np.pi / plan.n_phi)) % plan.n_phi
    rows = sorted({0, plan.n_q // 2, plan.n_q - 1})
    have = set((plan.seg_bin + 1).tolist())
    return [r * plan.n_phi + iphi + 1 for r in rows if r * plan.n_phi + iphi + 1 in have]
