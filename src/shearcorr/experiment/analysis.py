"""``analyze``: two frames + geometry -> gamma L, D2, R_s, flow angle, contrast, with uncertainties.

Steps: read frames and mask (:mod:`.frames`), per-pixel q R0 and phi (:mod:`.geometry`), polar
correlation map in detector azimuth (:mod:`.correlation`), flow angle from the strip (:mod:`.flow`),
direct fit of the pair model from the analytic engine (:mod:`.model`, :mod:`.inference`), the map
re-binned in theta from the flow, optional geometry-specific GPR and optional ``shearcorr train``
model, then ``result.json`` + PNGs written atomically (temporary folder next to the output, renamed
at the end; on error nothing is left behind).
"""

from __future__ import annotations

import contextlib
import functools
import time
from pathlib import Path

import numpy as np

from .._version import __version__
from ..choices import check_choice
from ..errors import ShearcorrError
from ..files import atomic_folder, check_output_folder, json_text
from .correlation import correlation_map, q_bin_edges
from .flow import strip_angle, wrap_half
from .frames import FramePair, load_pair
from .geometry import DetectorGeometry, load_geometry
from .inference import default_cache_dir, fit_pair, gpr_predict
from .model import BinnedPairModel

__all__ = ["analyze"]


def _speckle_px(geo: DetectorGeometry, valid) -> float:
    """Speckle size (first zero of the intensity autocorrelation, 2 pi / L in q) in pixels."""
    dq = np.abs(np.diff(geo.qr0, axis=1))
    step = float(np.median(dq[valid[:, 1:] & valid[:, :-1]])) if valid.any() else float(np.median(dq))
    return (2 * np.pi / geo.beam_size_r0) / max(step, 1e-12)


def _pv(value, std, geo=None, length=False):
    d = {"value": float(value), "std": float(std)}
    if length and geo is not None:
        d.update(unit="R0", value_nm=geo.length_nm(value), std_nm=geo.length_nm(std))
    return d


def _external_model(path, pair, geo, cmap_opts):
    """Predict with a ``shearcorr train`` model: the data are binned onto the model's own grid."""
    from ..inverse.modelfile import load_model

    model = load_model(path)
    gq, gt = model.grid.q, model.grid.theta
    qv = geo.qr0[pair.valid]
    if gq[0] < qv.min() * 0.999 or gq[-1] > qv.max() * 1.001:
        raise ShearcorrError(f"model grid mismatch: the model needs q R0 in [{gq[0]:.3g}, {gq[-1]:.3g}] but the frames cover "
                             f"[{qv.min():.3g}, {qv.max():.3g}]; train a model on this geometry or use --method fit")
    if gt.size < 3 or not np.allclose(np.diff(gt), gt[1] - gt[0]) or abs(gt[-1] - gt[0] - np.pi) > 1e-6:
        raise ShearcorrError("model grid mismatch: the model's theta grid is not uniform on [0, pi]; it cannot be binned from frames")
    lq = np.log(gq)
    edges = np.exp(np.concatenate([[lq[0] - (lq[1] - lq[0]) / 2], (lq[1:] + lq[:-1]) / 2, [lq[-1] + (lq[-1] - lq[-2]) / 2]]))
    dt = gt[1] - gt[0]
    cm = correlation_map(pair.before, pair.after, pair.valid, geo.qr0, geo.phi, edges, gt.size - 1,
                         **dict(cmap_opts, phi_offset=cmap_opts["phi_offset"] - dt / 2))
    g = cm.y + 1.0
    g = np.concatenate([g, g[:, :1]], axis=1)  # theta = pi is theta = 0
    if not np.all(np.isfinite(g)):
        raise ShearcorrError(f"model grid mismatch: {int((~np.isfinite(g)).sum())} of the model's (q, theta) points get no valid pixel; "
                             "train a model on this geometry or use --method fit")
    P = np.concatenate([g.mean(axis=0), g.mean(axis=1)])[None, :]
    pred = model.predict_profiles(P)
    return {k: (float(m[0]), float(s[0])) for k, (m, s) in pred.items()}, str(path)


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


@_one_blas_thread
def analyze(before, after, geometry, output=None, *, dataset=None, dataset_after=None, frame_index=None,
            frame_index_after=None, mask=None, mask_convention="valid", mask_dataset=None, saturation=None, contrast=None,
            flow_angle_deg=None, method="fit", model=None, n_q=16, n_phi=36, q_min=None, q_max=None,
            n_l2=150.0, displacement="uniform", photon_counts=True, cache_dir=None, plots=True,
            overwrite=False, seed=0) -> dict:
    """Analyse one frame pair; return the result dict (and write it to ``output`` if given).

    Parameters
    ----------
    before, after : path or ndarray
        The two frames (file paths, or 2-D arrays in photon counts).
    geometry : path or DetectorGeometry
        Geometry JSON file (docs/experiment.md) or object.
    output : path, optional
        Folder to create with result.json, correlation.npz and PNGs.
    contrast : float, optional
        Speckle contrast beta; estimated from the frames when None.
    flow_angle_deg : float, optional
        Fix the flow direction (detector azimuth, degrees, APS convention); fitted when None.
    method : {"fit", "gpr", "both"}
        Direct physics fit, geometry-specific GPR, or both (values from the fit).
    model : path, optional
        A ``shearcorr train`` model file, applied in addition (its grid must be covered).
    n_q, n_phi : int
        Polar bins: log-spaced q bins, azimuth bins over [0, pi).
    q_min, q_max : float, optional
        q range in q R0 (default: what the valid pixels cover).
    n_l2, displacement : model constants (not identifiable from a pair; recorded).
    """
    t0 = time.perf_counter()
    check_choice("method", method)
    out = None if output is None else check_output_folder(output, overwrite=overwrite)
    if isinstance(before, np.ndarray) or isinstance(after, np.ndarray):
        from .frames import make_pair

        pair = make_pair(np.asarray(before), np.asarray(after), mask if isinstance(mask, np.ndarray) else None, saturation,
                         {"before": "array", "after": "array"})
    else:
        pair = load_pair(before, after, dataset=dataset, dataset_after=dataset_after, frame_index=frame_index,
                         frame_index_after=frame_index_after, mask=mask, mask_convention=mask_convention,
                         mask_dataset=mask_dataset, saturation=saturation)
    geo = geometry if isinstance(geometry, DetectorGeometry) else load_geometry(geometry, pair.before.shape)
    geo.check_shape(pair.before.shape)
    qe = q_bin_edges(geo.qr0, pair.valid, n_q, q_min, q_max)
    spx = _speckle_px(geo, pair.valid)
    opts = dict(contrast=contrast, photon_counts=photon_counts, speckle_px=spx)
    cm_det = correlation_map(pair.before, pair.after, pair.valid, geo.qr0, geo.phi, qe, n_phi, **opts)
    area = np.asarray(cm_det.info["correlation_area_px"])
    fixed = flow_angle_deg is not None
    if fixed:
        phi0, phi0_std, prof = np.radians(float(flow_angle_deg)), 0.0, None
    else:
        phi0, phi0_std = strip_angle(cm_det, seed=seed)
        prof = (float(np.degrees(phi0)), float(np.degrees(phi0_std)))
    mdl = BinnedPairModel(qe, cm_det.phi_edges, n_l2=n_l2, displacement=displacement, beam_size=geo.beam_size_r0)
    fit = fit_pair(cm_det, mdl, phi0=phi0, fit_flow=not fixed, seed=seed)
    flow = fit["flow_angle"][0] if not fixed else wrap_half(phi0)
    flow_std = fit["flow_angle"][1] if not fixed else 0.0
    cm = correlation_map(pair.before, pair.after, pair.valid, geo.qr0, geo.phi, qe, n_phi, phi_offset=flow, area=area, **opts)
    mdl_th = BinnedPairModel(qe, cm.phi_edges, n_l2=n_l2, displacement=displacement, beam_size=geo.beam_size_r0)
    y_fit = mdl_th.y(fit["gamma_l"][0], fit["d2"][0], fit["rs"][0], 0.0)
    cm.C_err = cm.errors(fit["beta"][0] * y_fit)  # errors at the prediction (see CorrelationMap.errors)
    methods = {"fit": {k: v for k, v in fit.items() if k not in ("model_y", "errors")}}
    if method in ("gpr", "both"):
        cache = default_cache_dir() if cache_dir is None else cache_dir
        methods["gpr"] = gpr_predict(cm, mdl_th, cache_dir=cache, seed=seed)
    if model is not None:
        pred, mpath = _external_model(model, pair, geo, dict(opts, phi_offset=flow))
        methods["model"] = dict(pred, path=mpath)
    main = methods["gpr"] if method == "gpr" else fit
    result = {
        "gamma_l": _pv(*main["gamma_l"], geo, True), "d2": _pv(*main["d2"], geo, True),
        "rs": dict(_pv(*main["rs"]), constrained=bool(fit["rs_constrained"]) if method != "gpr" else None,
                   note="a single pair barely constrains R_s (docs/experiment.md)"),
        "flow_angle_deg": dict(_pv(np.degrees(flow), np.degrees(flow_std)),
                               convention="detector azimuth of the flow axis, counter-clockwise from +x (columns), "
                                          "image displayed with row 0 at the top; defined modulo 180",
                               fixed=fixed, strip_estimate=prof),
        "contrast": {"value": fit["beta"][0], "std": fit["beta"][1], "estimate": cm_det.beta, "estimate_std": cm_det.beta_err,
                     "frames": list(cm_det.beta_frames), "given": contrast is not None},
        "chi2": {"chi2": fit["chi2"], "dof": fit["dof"], "reduced": fit["chi2_red"], "n_bins": fit["n_bins"]},
        "methods": methods,
        "inputs": dict(pair.sources, n_pixels=int(pair.valid.size), n_valid=int(pair.valid.sum()),
                       n_flagged=pair.n_flagged, n_q=int(n_q), n_phi=int(n_phi), photon_counts=bool(photon_counts)),
        "geometry": dict(geo.info, particle_radius_nm=geo.particle_radius_nm, beam_size_nm=geo.beam_size_nm,
                         beam_size_r0=geo.beam_size_r0, q_unit=geo.q_unit, q_r0_range=[float(qe[0]), float(qe[-1])],
                         q_range=[float(geo.q_to_unit(qe[0])), float(geo.q_to_unit(qe[-1]))], speckle_px=spx),
        "provenance": {"shearcorr_version": __version__, "method": method, "engine": "analytic",
                       "model": "pair model (g - B)/(A - B) from the ensemble engine", "n_l2": float(n_l2),
                       "displacement": displacement, "seed": seed, "time_s": None},
    }
    result["provenance"]["time_s"] = round(time.perf_counter() - t0, 3)
    if out is not None:
        _write(out, result, pair, geo, cm, y_fit, plots, overwrite)
    result["_map"] = cm
    result["_model_y"] = y_fit
    return result


def _write(out: Path, result, pair: FramePair, geo, cm, y_fit, plots, overwrite):
    with atomic_folder(out, overwrite=overwrite) as tmp:
        (tmp / "result.json").write_text(json_text(result, indent=2) + "\n")
        np.savez(tmp / "correlation.npz", q_r0=cm.q, theta=cm.phi, q_edges=cm.q_edges, theta_edges=cm.phi_edges,
                 C=cm.C, C_err=cm.C_err, n_pix=cm.n_pix, n_eff=cm.n_eff, y=cm.y, model_y=y_fit, beta=cm.beta)
        if plots:
            from ..plots.experiment import save_figures

            save_figures(tmp, pair, geo, cm, y_fit, result)
