"""``analyze``: two frames + geometry -> gamma L, D2, R_s, flow angle, contrast, with uncertainties.

Steps, each a function below: read frames and mask (:mod:`.frames`) and the per-pixel q R0 and phi
(:mod:`.geometry`); polar correlation map in detector azimuth (:mod:`.correlation`); flow angle from
the strip (:mod:`.flow`) and direct fit of the pair model from the analytic engine (:mod:`.model`,
:mod:`.inference`); the map re-binned in theta from the flow; optional geometry-specific GPR and
optional ``shearcorr train`` model (:mod:`.regression`); the typed :class:`~.results.PairAnalysis`;
``result.json`` + ``correlation.npz`` + PNGs written atomically (temporary folder next to the output,
renamed at the end; on error nothing is left behind).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._version import __version__
from ..choices import check_choice
from ..errors import ShearcorrError
from ..files import atomic_folder, check_output_folder, json_text
from . import checks
from .correlation import correlation_map, q_bin_edges
from .flow import strip_angle, wrap_half
from .pair import FramePair, load_pair, make_pair, shadow_mask, shadow_warning
from .geometry import DetectorGeometry
from .geometryfile import load_geometry
from .inference import D2_MIN, fit_pair, pair_profile
from .nexus import geometry_mask
from .model import BinnedPairModel, engine_step_max
from .regression import GPR_BOX, default_cache_dir, gpr_predict, model_predict
from .results import ChiSquare, Contrast, FlowAngle, Length, PairAnalysis, RsEstimate

__all__ = ["analyze", "AnalysisOptions"]


#: Whether ``analyze`` conditions the configuration term on the pair's intensity profile by default (on: the
#: marginal term is calibrated only on average over the R_s prior, 0.6-0.75 / 1.3-1.5 z std in its two halves on
#: four studies; docs/experiment.md "Conditioning the term on the pair's own profile").
CONDITION_PROFILE_DEFAULT = True


@dataclass(frozen=True)
class AnalysisOptions:
    """Everything about how a pair is analysed, validated once (the frames and geometry are arguments).

    Reading the frames
        dataset, dataset_after : HDF5 dataset paths (e.g. ``/entry/data/data``; after defaults to before);
        mask : path or bool array (True = valid); mask_convention : {"valid", "masked"} (1 = valid as at
        APS, or 1 = masked as in pyFAI); mask_dataset : its HDF5 path; saturation : counts at or above this
        are masked.
    The correlation map
        n_q : log-spaced q bins; n_phi : azimuth bins over [0, pi); q_min, q_max : q range in q R0 (default
        what the valid pixels cover); photon_counts : frames are photon counts (Poisson term in the
        contrast); gain : detector counts per photon (default 1, a photon-counting detector; the frames are
        divided by it, so an integrating detector's ADU become photons); contrast : speckle contrast beta
        (default: estimated from the frames).
    The inference
        flow_angle_deg : fix the flow direction (detector azimuth, degrees, APS convention; fitted when
        None); method : {"fit", "gpr", "both"} (direct physics fit, geometry-specific GPR, or both with
        values from the fit); model : a ``shearcorr train`` model file applied in addition; n_l2,
        displacement : model constants (not identifiable from a pair; recorded); cache_dir : cache of the
        geometry-specific GPR (default :func:`~.regression.default_cache_dir`); seed : bootstraps and
        configuration samples; rs_prior : (lo, hi), the range of R_s the sample is known to lie in (e.g. from
        SAXS; default (0, 0.3), the paper's box): R_s is not identifiable from one pair, but the pair's
        configuration error grows steeply with it, so its std is marginalised over U(lo, hi);
        condition_profile : condition that configuration term on the pair's own intensity profile (the
        ring means of its frames: their fall with q tells the intensity-weighted size of the particles in the
        beam; ``fit_pair(profile=...)``, docs/experiment.md "Conditioning the term on the pair's own profile");
        on by default; a profile the model cannot explain falls back to the marginal term with a warning.
    The instrument (docs/experiment.md "Describe your beamline", docs/theory.md section 7)
        beam : a :class:`shearcorr.beam.Beam` in R0 that replaces the geometry's (default: the geometry
        file's ``"beam"``, else the paper's coherent square); pixel_integration : the model integrates
        each pixel's footprint in q (default True, as a real detector does; False: point pixels);
        psf_sigma_px : detector point-spread rms in pixels (default: the geometry's).
    Output
        plots : write the PNGs.
    """

    dataset: str | None = None
    dataset_after: str | None = None
    mask: Any = None
    mask_convention: str = "valid"
    mask_dataset: str | None = None
    saturation: float | None = None
    n_q: int = 16
    n_phi: int = 36
    q_min: float | None = None
    q_max: float | None = None
    photon_counts: bool = True
    gain: float = 1.0
    contrast: float | None = None
    flow_angle_deg: float | None = None
    method: str = "fit"
    model: Any = None
    n_l2: float = 150.0
    displacement: str = "uniform"
    cache_dir: Any = None
    seed: int = 0
    rs_prior: Any = None
    condition_profile: bool = CONDITION_PROFILE_DEFAULT
    plots: bool = True
    beam: Any = None
    pixel_integration: bool = True
    psf_sigma_px: float | None = None

    def __post_init__(self):
        if self.beam is not None:
            from ..beam import Beam

            if not isinstance(self.beam, Beam):
                raise ShearcorrError(f"beam must be a shearcorr.beam.Beam, got {type(self.beam).__name__}")
        check_choice("method", self.method)
        check_choice("mask_convention", self.mask_convention, what="mask convention")
        check_choice("displacement", self.displacement)
        checks.validate_options(self)  # ranges: bins, flow angle, n_l2, contrast, q limits (one-line errors)
        if self.rs_prior is not None:
            try:
                lo, hi = (float(v) for v in self.rs_prior)
            except (TypeError, ValueError):
                raise ShearcorrError(f"rs_prior must be two numbers (lo, hi), got {self.rs_prior!r}") from None
            if not 0.0 <= lo <= hi <= RS_PRIOR_MAX:
                raise ShearcorrError(f"rs_prior must satisfy 0 <= lo <= hi <= {RS_PRIOR_MAX:g} (the pair model's R_s "
                                     f"range), got ({lo:g}, {hi:g})")
            object.__setattr__(self, "rs_prior", (lo, hi))

    def replace(self, **changes) -> "AnalysisOptions":
        """A copy with ``changes`` (validated again)."""
        return dataclasses.replace(self, **changes)


def _one_blas_thread(func):
    """Run ``func`` with the BLAS thread pool limited to one thread.

    The linear algebra of a pair analysis is on small matrices (hundreds of bins, a few parameters);
    BLAS threads only add synchronisation. On this 2-core machine under load, OpenBLAS threads made
    the 1-megapixel analysis ~15 s instead of ~1 s (benchmarks/bench_analyze.py).
    """

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            from threadpoolctl import threadpool_limits  # installed with scikit-learn

            limit = threadpool_limits(limits=1, user_api="blas")
        except ImportError:  # pragma: no cover
            limit = contextlib.nullcontext()
        with limit:
            return func(*args, **kwargs)

    return wrapper


def _read(before, after, geometry, opt: AnalysisOptions, frame_index, frame_index_after):
    """The frame pair (from arrays or files) and its geometry, checked against each other. A reader
    library's own exception on a damaged file (an HDF5 link loop or missing external file, a truncated
    TIFF, ...) becomes one line naming the files."""
    try:
        return _read_files(before, after, geometry, opt, frame_index, frame_index_after)
    except (ShearcorrError, MemoryError):
        raise
    except (OSError, RuntimeError, KeyError, ValueError, TypeError, EOFError, IndexError) as exc:
        files = ", ".join(str(f) for f in (before, after, opt.mask) if f is not None and not isinstance(f, np.ndarray))
        raise ShearcorrError(f"cannot read the frames or mask ({files}): {type(exc).__name__}: "
                             f"{' '.join(str(exc).split())[:200]}; check the files, --dataset and --frame-index") from None


def _read_files(before, after, geometry, opt: AnalysisOptions, frame_index, frame_index_after):
    if isinstance(before, np.ndarray) or isinstance(after, np.ndarray):
        pair = make_pair(np.asarray(before), np.asarray(after), opt.mask if isinstance(opt.mask, np.ndarray) else None,
                         opt.saturation, {"before": "array", "after": "array"})
    else:
        pair = load_pair(before, after, dataset=opt.dataset, dataset_after=opt.dataset_after, frame_index=frame_index,
                         frame_index_after=frame_index_after, mask=opt.mask, mask_convention=opt.mask_convention,
                         mask_dataset=opt.mask_dataset, saturation=opt.saturation)
    geo = geometry if isinstance(geometry, DetectorGeometry) else load_geometry(geometry, pair.before.shape)
    geo.check_shape(pair.before.shape)
    aps = geometry_mask(geo)  # the APS q map's own mask
    if aps is not None:
        pair = pair.restrict(aps, "aps_mask")
    return pair, geo


def _mask_shadow(pair: FramePair, geo: DetectorGeometry, spx: float):
    """The pair with the pixels of :func:`.pair.shadow_mask` masked (reason "shadow"), and a warning naming them."""
    shadow = shadow_mask(pair.before + pair.after, pair.valid, geo.qr0, spx)
    if not shadow.any():
        return pair, []
    return pair.restrict(~shadow, "shadow"), [shadow_warning(int(shadow.sum()), "both frames")]


#: Largest R_s a prior may reach (the paper's box, where the pair model is validated).
RS_PRIOR_MAX = 0.3


#: Refit with the pixel response re-oriented when the fitted flow moved this far from the start (rad).
PIXEL_REORIENT = np.radians(5.0)


def _instrument(opt: AnalysisOptions, geo, valid):
    """(beam or None, pixel response or None) of the model: the options override the geometry file."""
    beam = opt.beam if opt.beam is not None else geo.beam
    if beam is not None and beam.is_paper(geo.beam_size_r0):
        beam = None
    pixel = None
    if opt.pixel_integration:
        pixel = geo.with_instrument(psf_sigma_px=opt.psf_sigma_px).pixel_response(valid)
    return beam, pixel


def _model(opt: AnalysisOptions, q_edges, phi_edges, geo, instrument=(None, None), flow=0.0) -> BinnedPairModel:
    beam, pixel = instrument
    return BinnedPairModel(q_edges, phi_edges, n_l2=opt.n_l2, displacement=opt.displacement,
                           beam_size=geo.beam_size_r0, beam=beam, pixel=pixel, flow_angle=flow)


def _fit_in_detector_frame(pair, geo, qe, opt: AnalysisOptions, map_opts: dict, bounds: dict, instrument=(None, None)):
    """Map in detector azimuth, the strip's flow estimate (unless fixed), the direct fit; returns
    (map, fit, flow (rad), flow std (rad), strip estimate (deg, deg) or None). The pixel response is
    oriented by the start flow angle; when the fitted flow differs by more than
    :data:`PIXEL_REORIENT`, the fit's passes are repeated from its solution with the model re-oriented at
    the fitted angle (``fit_pair(reorient=...)``)."""
    cm = correlation_map(pair, geo, qe, opt.n_phi, **map_opts)
    fixed = opt.flow_angle_deg is not None
    if fixed:
        phi0, strip = np.radians(float(opt.flow_angle_deg)), None
    else:
        phi0, phi0_std = strip_angle(cm, seed=opt.seed)
        strip = (float(np.degrees(phi0)), float(np.degrees(phi0_std)))
    reorient = None
    if instrument[1] is not None and not fixed:
        def reorient(phi):
            return _model(opt, qe, cm.phi_edges, geo, instrument, phi)

    profile, profile_err = (pair_profile(pair.before, pair.after, geo.qr0, geo.phi, pair.valid, qe)
                            if opt.condition_profile else (None, 0.0))
    fit = fit_pair(cm, _model(opt, qe, cm.phi_edges, geo, instrument, phi0), phi0=phi0, fit_flow=not fixed, seed=opt.seed,
                   reorient=reorient, reorient_tol=PIXEL_REORIENT, profile=profile, profile_slope_err=profile_err, **bounds)
    flow, flow_std = (wrap_half(phi0), 0.0) if fixed else fit.flow_angle
    return cm, fit, flow, flow_std, strip


def _instrument_info(geo, instrument) -> dict:
    """The instrument the model was told, for result.json (lengths in R0 and nm)."""
    beam, pixel = instrument
    info = {"shear_length_r0": geo.shear_length_r0 if beam is None else beam.shear_length(geo.beam_size_r0),
            "pixel_response": None if pixel is None else pixel.to_dict(),
            "beam": None if beam is None else beam.resolved(geo.beam_size_r0).to_dict()}
    info["shear_length_nm"] = geo.length_nm(info["shear_length_r0"])
    return info


def _result(opt: AnalysisOptions, pair: FramePair, geo, qe, cm_det, fit, methods, flow, flow_std, strip, spx,
            instrument=(None, None)):
    """The typed result: values of the reported method, contrast and chi^2 of the fit, inputs, provenance."""
    main = methods["gpr"] if opt.method == "gpr" else fit
    nm = geo.particle_radius_nm
    return dict(
        gamma_l=Length(*main.gamma_l, nm), d2=Length(*main.d2, nm),
        rs=RsEstimate(*main.rs, constrained=bool(fit.rs_constrained) if opt.method != "gpr" else None),
        flow_angle_deg=FlowAngle(float(np.degrees(flow)), float(np.degrees(flow_std)), opt.flow_angle_deg is not None,
                                 strip),
        contrast=Contrast(fit.beta.value, fit.beta.std, cm_det.beta, cm_det.beta_err, tuple(cm_det.beta_frames),
                          opt.contrast is not None),
        chi2=ChiSquare(fit.chi2, fit.dof, fit.chi2_red, fit.n_bins), methods=methods,
        inputs=dict(pair.sources, n_pixels=int(pair.valid.size), n_valid=int(pair.valid.sum()), n_flagged=pair.n_flagged,
                    n_q=int(opt.n_q), n_phi=int(opt.n_phi), photon_counts=bool(opt.photon_counts),
                    gain=float(opt.gain)),
        geometry=dict(geo.info, particle_radius_nm=geo.particle_radius_nm, beam_size_nm=geo.beam_size_nm,
                      beam_size_r0=geo.beam_size_r0, q_unit=geo.q_unit, q_r0_range=[float(qe[0]), float(qe[-1])],
                      q_range=[float(geo.q_to_unit(qe[0])), float(geo.q_to_unit(qe[-1]))], speckle_px=spx,
                      instrument=_instrument_info(geo, instrument)),
    )


@_one_blas_thread
def analyze(before, after, geometry, output=None, *, options: AnalysisOptions | None = None, frame_index=None,
            frame_index_after=None, overwrite: bool = False) -> PairAnalysis:
    """Analyse one frame pair; return the :class:`~.results.PairAnalysis` (and write it to ``output``).

    Parameters
    ----------
    before, after : path or ndarray
        The two frames (file paths, or 2-D arrays in photon counts).
    geometry : path or DetectorGeometry
        Geometry JSON file (docs/experiment.md) or object.
    output : path, optional
        Folder to create with result.json (``PairAnalysis.to_dict()``), correlation.npz and PNGs.
    options : AnalysisOptions, optional
        How to read, bin, fit and plot (defaults: :class:`AnalysisOptions`).
    frame_index, frame_index_after : int, optional
        Frames of 3-D stacks (after defaults to before's index).
    overwrite : bool
        Replace an existing non-empty output folder (only once the new one is complete).
    """
    t0 = time.perf_counter()
    opt = AnalysisOptions() if options is None else options
    out = None if output is None else check_output_folder(output, overwrite=overwrite)
    cache, notes = checks.cache_folder(opt.cache_dir, default_cache_dir) if opt.method != "fit" else (None, [])
    pair, geo = _read(before, after, geometry, opt, frame_index, frame_index_after)
    checks.check_bins(opt.n_q, opt.n_phi, int(pair.valid.sum()))
    spx = geo.speckle_px(pair.valid)
    notes += checks.check_speckle(spx, pair.before.shape)
    notes += checks.counts_warning((pair.before, pair.after), pair.valid, opt.photon_counts)
    notes += checks.gain_warning((pair.before, pair.after), pair.valid, geo.qr0, float(opt.gain), opt.photon_counts)
    if float(opt.gain) != 1.0:  # detector counts -> photons
        pair = dataclasses.replace(pair, before=pair.before / float(opt.gain), after=pair.after / float(opt.gain))
    pair, shadow_notes = _mask_shadow(pair, geo, spx)
    notes += shadow_notes
    instrument = _instrument(opt, geo, pair.valid)
    q_min, q_max, q_notes = checks.model_q_range(geo.qr0, pair.valid, opt, geo.beam_size_r0,
                                                 engine_step_max(*instrument, geo.beam_size_r0))
    qe = q_bin_edges(geo.qr0, pair.valid, opt.n_q, q_min, q_max)
    map_opts = dict(contrast=opt.contrast, photon_counts=opt.photon_counts, speckle_px=spx)
    bounds = checks.fit_bounds(opt, geo.beam_size_r0)
    if opt.rs_prior is not None:
        bounds = dict(bounds, rs_min=opt.rs_prior[0], rs_max=opt.rs_prior[1])
    cm_det, fit, flow, flow_std, strip = _fit_in_detector_frame(pair, geo, qe, opt, map_opts, bounds, instrument)
    notes += q_notes + checks.fit_warnings(fit, bounds, D2_MIN)
    if fit.conditioning is not None and not fit.conditioning["used"]:
        notes.append(fit.conditioning["reason"])
    if fit.bias_correction is not None and not fit.bias_correction["applied"]:
        notes.append("second-order bias correction not applied: " + fit.bias_correction["reason"])
    # the same frames binned in theta from the flow (the correlation area and the rings' shares do not depend on it)
    cm = correlation_map(pair, geo, qe, opt.n_phi, phi_offset=flow, area=np.asarray(cm_det.info["correlation_area_px"]),
                         ring_share=np.asarray(cm_det.info["thin_ring_share"]), **map_opts)
    mdl_th = _model(opt, qe, cm.phi_edges, geo, instrument, flow)
    y_fit = mdl_th.y(fit.gamma_l.value, fit.d2.value, fit.rs.value, 0.0)
    cm.C_err = cm.errors(fit.beta.value * y_fit)  # errors at the prediction (see CorrelationMap.errors)
    methods = {"fit": fit}
    if opt.method in ("gpr", "both"):
        methods["gpr"] = gpr_predict(cm, mdl_th, cache_dir=cache, seed=opt.seed, box=checks.gpr_box(GPR_BOX, bounds))
    if opt.model is not None:
        methods["model"] = model_predict(opt.model, pair, geo, phi_offset=flow, **map_opts)
    provenance = {"shearcorr_version": __version__, "method": opt.method, "engine": "analytic",
                  "model": "pair model (g - B)/(A - B) from the ensemble engine"
                           + (", pixel-integrated" if instrument[1] is not None else ", point pixels")
                           + (f", beam {instrument[0].profile} ({instrument[0].plane})" if instrument[0] is not None else ""),
                  "n_l2": float(opt.n_l2),
                  "displacement": opt.displacement, "seed": opt.seed, "time_s": round(time.perf_counter() - t0, 3)}
    shown = (flow, flow_std) if opt.flow_angle_deg is not None or checks.flow_defined(*fit.gamma_l) else (np.nan, np.nan)
    result = PairAnalysis(**_result(opt, pair, geo, qe, cm_det, fit, methods, *shown, strip, spx, instrument),
                          provenance=provenance, warnings=tuple(notes), correlation_map=cm, model_y=y_fit)
    if out is not None:
        _write(out, result, pair, geo, opt.plots, overwrite)
    return result


def _write(out, result: PairAnalysis, pair: FramePair, geo, plots: bool, overwrite: bool) -> None:
    cm, y_fit = result.correlation_map, result.model_y
    with atomic_folder(out, overwrite=overwrite) as tmp:
        (tmp / "result.json").write_text(json_text(result.to_dict(), indent=2) + "\n")
        np.savez(tmp / "correlation.npz", q_r0=cm.q, theta=cm.phi, q_edges=cm.q_edges, theta_edges=cm.phi_edges,
                 C=cm.C, C_err=cm.C_err, n_pix=cm.n_pix, n_eff=cm.n_eff, y=cm.y, model_y=y_fit, beta=cm.beta)
        if plots:
            from ..plots.experiment import save_figures

            save_figures(tmp, pair, geo, cm, y_fit, result)
