"""The result of a stack analysis: ``result.json`` (numbers with units), ``result.h5`` (NeXus/HDF5 with
an NXprocess provenance group and the XPCS layouts users know) and PNGs, written atomically.

``result.h5``:

* ``/entry`` (NXentry) ``/entry/process`` (NXprocess: program, version, date, ``parameters`` and
  ``input`` as JSON NXnotes) and ``/entry/results`` (the shearcorr numbers of the mode, with units);
* the APS 8-ID-I / pyXPCSViewer layout: ``/xpcs/qmap`` (``dynamic_roi_map`` -- bin label per pixel,
  1-based, 0 = unused --, ``dynamic_v_list_dim0`` (q, in the geometry's q unit), ``dynamic_v_list_dim1``
  (azimuth, deg), ``mask``, and the flat-detector numbers), ``/xpcs/temporal_mean/scattering_2d``,
  ``/xpcs/spatial_mean/intensity_vs_time``; steady: ``/xpcs/multitau/{delay_list, normalized_g2,
  normalized_g2_err}`` (C(tau) per bin); two-time: ``/xpcs/twotime/correlation_map/c2_NNNNN`` (upper
  triangle of the frame-by-frame C(t1, t2) of bin label NNNNN), ``processed_bins``, and the
  time-binned maps of every bin in ``/entry/results/C_binned``.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

import numpy as np

from .._version import __version__
from ..files import atomic_folder, json_text

__all__ = ["summarize", "write_result", "MIN_CONFIGURATIONS_RS"]

#: Independent configurations a stack must sample before its R_s (from the baseline) is reported as
#: constrained (the baseline is a variance over configurations: relative error sqrt(2/K)).
MIN_CONFIGURATIONS_RS = 10


def _pv(value, std, **kw) -> dict:
    return {"value": float(value), "std": float(std), **kw}


def _per_time(v, s, ft, unit_frame, unit_s, scale=1.0) -> dict:
    """A rate per frame as {value, std, unit} in 1/s when the frame time is known."""
    if ft:
        return _pv(v * scale / ft, s * scale / ft, unit=unit_s, per_frame=_pv(v, s, unit=unit_frame))
    return _pv(v, s, unit=unit_frame)


def _common(ctx, src, options) -> dict:
    geo, plan = ctx["geometry"], ctx["plan"]
    return {
        "inputs": dict(getattr(src, "description", {}) or {}, frames=[int(ctx["start"]), int(ctx["stop"])],
                       n_pixels_used=int(plan.n_pix), n_flagged=ctx["counts"], options=options),
        "geometry": dict(geo.info, particle_radius_nm=geo.particle_radius_nm, beam_size_nm=geo.beam_size_nm,
                         beam_size_r0=geo.beam_size_r0, q_unit=geo.q_unit,
                         q_r0_range=[float(plan.q_edges[0]), float(plan.q_edges[-1])],
                         q_range=[float(geo.q_to_unit(plan.q_edges[0])), float(geo.q_to_unit(plan.q_edges[-1]))],
                         n_q=int(plan.n_q), n_phi=int(plan.n_phi), speckle_px=float(ctx["speckle_px"]),
                         frame_time_s=ctx["frame_time"]),
    }


def _flow(phi, std):
    return _pv(np.degrees(phi), np.degrees(std), convention="detector azimuth of the flow axis, counter-clockwise "
               "from +x (columns), image with row 0 at the top; defined modulo 180")


def _row_chi2_red(analysis):
    """chi^2 per value of the row-mean covariances against their model at the fitted R_s (``rowbaseline``), or
    None where R_s did not come from the row means. A check of that model, not a calibrated test: docs/stacks.md gives
    the values measured with R_s right and wrong."""
    r = analysis.info.get("rs_row_means")
    return None if not r or not r.get("n_values") else float(r["chi2"]) / float(r["n_values"])


def _rs_intervals(analysis) -> dict:
    """R_s's 68 % and 95 % intervals from the row means' linear excess (``rowbaseline._excess_intervals``:
    asymmetric near 0, where a symmetric std misleads), or {} where R_s did not come from the row means."""
    r = analysis.info.get("rs_row_means") or {}
    return {k: r[k] for k in ("interval68", "interval95") if r.get(k) is not None}


def summarize(mode, analysis, ctx, src, options) -> dict:
    """The JSON summary of a stack analysis (result.json)."""
    r0 = ctx["geometry"].particle_radius_nm
    ft = ctx["frame_time"]
    out = {"mode": mode}
    if mode == "steady":
        f = analysis.fit
        v, s = f.values, f.std
        L = f.info["beam_size"]
        pe, pe_std = f.peclet()  # from the full covariance: the same terms as the shear rate's and D's std
        alpha, a_std = v["exponent"], s["exponent"]
        regime = ("diffusive" if abs(alpha - 1) <= 2 * max(a_std, 1e-12) or "exponent" not in f.free else
                  "sub-diffusive" if alpha < 1 else "super-diffusive")
        pl = analysis.per_lag
        lags = f.lags[1:]
        k_conf = analysis.info["configurations"]["independent_configurations"]
        rs_fit = "rs" in f.free or f.info.get("rs_from") == "row means"
        out.update({
            "shear_rate": _per_time(v["shear_rate"], s["shear_rate"], ft, "1/frame", "1/s"),
            "gamma_l_per_frame": _pv(v["shear_rate"] * L, s["shear_rate"] * L, unit="R0",
                                     value_nm=v["shear_rate"] * L * r0, std_nm=s["shear_rate"] * L * r0),
            "diffusion": dict(_per_time(v["diffusion"], s["diffusion"], ft, "R0^2/frame", "nm^2/s", r0 * r0),
                              tau_ref_frames=f.tau_ref, definition="per-axis non-affine MSD D2^2(tau) = 2 D tau_ref "
                              "(tau / tau_ref)^alpha; D at tau_ref"),
            "msd_exponent": _pv(alpha, a_std, regime=regime, fitted="exponent" in f.free),
            "peclet": _pv(pe, pe_std, definition="Pe = shear rate x R0^2 / D with R0 the particle "
                          "radius and D the non-affine diffusion coefficient at tau_ref; dimensionless"),
            "transit": _per_time(v["transit"], s["transit"], ft, "R0/frame", "um/s", r0 / 1000.0),
            "rs": _pv(v["rs"], s["rs"], constrained=bool(rs_fit and k_conf >= MIN_CONFIGURATIONS_RS),
                      source=f.info.get("rs_from", "global fit") if rs_fit else None,
                      note=None if rs_fit and k_conf >= MIN_CONFIGURATIONS_RS else
                      "R_s needs the 'time' normalisation (ensemble baseline)" if not rs_fit else
                      f"R_s from the baseline needs >= {MIN_CONFIGURATIONS_RS} independent configurations; "
                      f"this stack samples {k_conf:.1f}", row_model_chi2_red=_row_chi2_red(analysis),
                      **_rs_intervals(analysis)),
            "configurations": analysis.info["configurations"],
            "contrast": _pv(v["beta"], s["beta"]),
            "flow_angle_deg": _flow(v["flow_angle"], s["flow_angle"]),
            "chi2": {"chi2": f.chi2, "dof": f.dof, "reduced": f.chi2_red},
            "errors": f"linear delete-one-group jackknife over {f.info['n_groups']} groups of time origins",
            "normalization": f.info["normalization"],
            "ratio_bias_correction": f.info.get("ratio_bias_correction"),  # jackknife subsets of lag tau / lag 0
            "per_lag": {"lag_frames": lags, "lag_s": None if not ft else lags * ft, "gamma_l": pl["gamma_l"],
                        "gamma_l_std": pl["gamma_l_std"], "d2": pl["d2"], "d2_std": pl["d2_std"],
                        "amplitude": pl["amplitude"], "chi2_red": pl["chi2_red"], "unit": "R0"},
            "model": {"gamma_l": f.gamma_l(lags), "d2": f.d2(lags)},
            "table": analysis.info["table"], "table_edge_reached": analysis.info["table_edge_reached"],
        })
    elif mode == "twotime":
        a = analysis
        t = a.times
        out.update({
            "n_time_bins": int(t.size), "time_bins_frames": a.maps.edges, "times_frames": t,
            "times_s": None if not ft else t * ft, "flow_angle_deg": _flow(a.flow_angle, 0.0),
            "fitted_pairs": a.info["n_fitted"], "pairs": a.info["n_pairs"],
            "from_first_bin": {"gamma_l": a.gamma_l[0, 1:], "gamma_l_std": a.gamma_l_std[0, 1:], "d2": a.d2[0, 1:],
                               "d2_std": a.d2_std[0, 1:], "t2_frames": t[1:], "unit": "R0"},
            "consecutive_bins": {"gamma_l": np.diagonal(a.gamma_l, 1), "gamma_l_std": np.diagonal(a.gamma_l_std, 1),
                                 "d2": np.diagonal(a.d2, 1), "d2_std": np.diagonal(a.d2_std, 1), "t_frames": t[:-1]},
            "c2_bins": sorted(int(k) for k in a.maps.selected),
            "table": a.info["table"], "note": "gamma_l(t1, t2), d2(t1, t2) of every pair of time bins: result.h5",
            "gamma_l_shared_rel_std": a.info.get("configuration_shared", {}).get("gamma_l_shared_rel_std"),
            "gamma_l_shared_note": "relative gamma L error common to the pairs (the same particles); it is part of every "
                                   "pair's gamma_l_std: pairs of one stack are not independent",
        })
    else:
        e = analysis
        out.update({
            "period_frames": e.period, "n_cycles": e.n_cycles,
            "d2_irreversible": _pv(*e.d2_irreversible, unit="R0 per cycle (per-axis std)",
                                   value_nm=e.d2_irreversible[0] * r0, std_nm=e.d2_irreversible[1] * r0),
            "gamma_l_residual": _pv(*e.gamma_l_residual, unit="R0 per cycle"),
            "flow_angle_deg": dict(_flow(e.flow_angle, 0.0), source=e.info["flow_angle_source"]),
            "per_cycle": dict(e.per_cycle, unit="R0"), "per_lag": dict(e.per_lag, unit="R0"),
            "contrast": e.info["contrast"], "table": e.info["table"],
            "configuration_conditioning": {k: v for k, v in e.info.get("configuration_conditioning", {}).items()
                                           if k != "d2_std_marginal"},
        })
    out.update(_common(ctx, src, options))
    return out


def _note(group, name, obj):
    n = group.create_group(name)
    n.attrs["NX_class"] = "NXnote"
    n.create_dataset("type", data="application/json")
    n.create_dataset("data", data=json_text(obj))


def _write_h5(path, result, src, options):
    from ..experiment.nexus import h5py_module

    h5py = h5py_module()
    plan, geo, a = result.plan, result.geometry, result.analysis
    ctx = result.extra
    roi = np.zeros(int(np.prod(plan.shape)), dtype=np.int32)
    roi[plan.index] = plan.seg_bin[np.repeat(np.arange(plan.n_seg), plan.n_pix_seg)] + 1
    phi_c = 0.5 * (plan.phi_edges[:-1] + plan.phi_edges[1:])
    with h5py.File(path, "w") as fh:
        entry = fh.create_group("entry")
        entry.attrs["NX_class"] = "NXentry"
        entry.create_dataset("definition", data="NXxpcs")
        proc = entry.create_group("process")
        proc.attrs["NX_class"] = "NXprocess"
        proc.create_dataset("program", data="shearcorr")
        proc.create_dataset("version", data=__version__)
        proc.create_dataset("date", data=datetime.now(timezone.utc).isoformat())
        proc.create_dataset("sequence_index", data=1)
        _note(proc, "parameters", options)
        _note(proc, "input", result.summary["inputs"])
        res = entry.create_group("results")
        res.attrs["NX_class"] = "NXcollection"
        _note(res, "summary", result.summary)
        xq = fh.create_group("xpcs/qmap")
        xq.create_dataset("dynamic_roi_map", data=roi.reshape(plan.shape), compression="gzip")
        xq.create_dataset("dynamic_v_list_dim0", data=geo.q_to_unit(plan.q))
        xq.create_dataset("dynamic_v_list_dim1", data=np.degrees(phi_c))
        xq.create_dataset("map_names", data=np.array([b"q", b"phi"]))
        xq.create_dataset("map_units", data=np.array([geo.q_unit.encode(), b"deg"]))
        xq.create_dataset("mask", data=plan.valid_image().astype(np.int32), compression="gzip")
        info = geo.info
        if info.get("type") in ("flat", "aps_qmap"):
            xq.create_dataset("beam_center_x", data=float(info["beam_center_px"][0]))
            xq.create_dataset("beam_center_y", data=float(info["beam_center_px"][1]))
            xq.create_dataset("detector_distance", data=float(info["distance_m"]))
            xq.create_dataset("pixel_size", data=float(np.mean(info["pixel_size_m"])))
            xq.create_dataset("energy", data=12.398419843320026 / float(info["wavelength_angstrom"]))
        ring_mean = getattr(ctx.get("lag"), "ring_mean", None) if result.mode == "steady" else None
        mean_img = ctx["lag"].mean_image if result.mode == "steady" else (a.maps.mean_image if result.mode == "twotime" else None)
        if result.mode == "twotime":
            ring_mean = a.maps.ring_mean
        if mean_img is not None:
            fh.create_dataset("xpcs/temporal_mean/scattering_2d", data=mean_img[None].astype(np.float32), compression="gzip")
        if ring_mean is not None:
            w = plan.n_pix_ring
            t = np.arange(ring_mean.shape[0]) + ctx["start"]
            fh.create_dataset("xpcs/spatial_mean/intensity_vs_time",
                              data=np.stack([t, (ring_mean * w).sum(1) / w.sum()]).astype(np.float64))
        ft = ctx["frame_time"] or 1.0
        if result.mode == "steady":
            c = a.c.reshape(a.c.shape[0], -1)
            e = a.errors.reshape(a.errors.shape[0], -1)
            mt = fh.create_group("xpcs/multitau")
            mt.create_dataset("delay_list", data=a.lags[1:] * ft)
            mt.create_dataset("normalized_g2", data=1.0 + c[1:])
            mt.create_dataset("normalized_g2_err", data=e[1:])
            g = res.create_group("steady")
            for k, v in a.per_lag.items():
                g.create_dataset(k, data=np.asarray(v, dtype=np.float64))
            g.create_dataset("lag_frames", data=a.lags)
            g.create_dataset("C_minus_1", data=a.c)
            g.create_dataset("model", data=a.fit.prediction)
            g.create_dataset("covariance", data=a.fit.cov)
            g.attrs["covariance_parameters"] = json.dumps(a.fit.free)
        elif result.mode == "twotime":
            tw = fh.create_group("xpcs/twotime")
            cm = tw.create_group("correlation_map")
            for lab, c2 in sorted(a.maps.selected.items()):
                cm.create_dataset(f"c2_{lab:05d}", data=np.triu(1.0 + c2).astype(np.float32), compression="gzip")
            tw.create_dataset("processed_bins", data=np.array(sorted(a.maps.selected), dtype=np.int64))
            tw.create_dataset("delay_list", data=np.arange(ctx["stop"] - ctx["start"]) * ft)
            g = res.create_group("twotime")
            g.create_dataset("time_bin_edges_frames", data=a.maps.edges)
            g.create_dataset("C_binned", data=(1.0 + a.maps.C).astype(np.float32), compression="gzip")
            for k in ("gamma_l", "gamma_l_std", "d2", "d2_std", "amplitude", "chi2_red", "signal"):
                g.create_dataset(k, data=getattr(a, k))
        else:
            g = res.create_group("echo")
            for k, v in a.per_cycle.items():
                g.create_dataset(f"per_cycle/{k}", data=np.asarray(v, dtype=np.float64))
            for k, v in a.per_lag.items():
                g.create_dataset(f"per_lag/{k}", data=np.asarray(v, dtype=np.float64))
            g.create_dataset("echo_maps", data=a.maps.astype(np.float32), compression="gzip")
        for grp in (fh["xpcs"],):
            grp.attrs["NX_class"] = "NXcollection"


def write_result(out, result, src, options, *, plots=True, overwrite=False):
    """Write result.json, result.h5 and (``plots``) the PNGs into the new folder ``out`` atomically."""
    with atomic_folder(out, overwrite=overwrite) as tmp:
        (tmp / "result.json").write_text(json_text(result.summary, indent=2) + "\n")
        _write_h5(tmp / "result.h5", result, src, options)
        if plots:
            from ..plots.stack import save_figures

            save_figures(tmp, result)
    return out
