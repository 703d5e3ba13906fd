r"""Fits of two-time maps: gamma L(t1, t2) and D2(t1, t2) on the pairs of time bins (amortized, on the
pair table), their errors and the error law they share with echoes (:func:`variance_law`).

The maps come from :func:`.twotime.twotime_maps`; every map is divided bin by bin by the lag-0
contrast of its two time bins (:func:`ratio_maps`) and fitted with :func:`.fitting.fit_maps`
(:func:`analyze_twotime`; docs/stacks.md "Two-time maps").
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from ..errors import ShearcorrError
from .twotime import TwoTimeMaps

__all__ = ["variance_law", "ratio_maps", "TwoTimeAnalysis", "analyze_twotime", "RATIO_MIN_SPECKLES"]

#: Diagonal offsets (log-spaced) whose averaged maps give the flow angle, start values and table range.
PRELIM_OFFSETS = 4
#: Bins with fewer speckles (pixels / pixels per speckle) are left out of the ratio maps: the ratio to
#: the bin's own lag-0 contrast is biased by O(1/speckles) (mean r - y = +0.11..+0.17 at 4-20 pixels,
#: <= +0.02 from 40 on, measured over 60 configurations; docs/stacks.md).
RATIO_MIN_SPECKLES = 30.0
#: Condition the configuration term on the stack's static profile (:func:`.prelim.stack_profile`), as the echo mode
#: does. Off: measured over independent start-up configurations (docs/stacks.md, "Two-time maps", issue 11).
CONDITION_PROFILE = False
#: The pair table grows by this factor (gamma L or D2 range), at most this many times, while reported
#: pairs are fitted at its end.
TABLE_GROWTH, TABLE_GROWTH_ROUNDS = 2.5, 4


def _at_table_end(params, reported, table, rel: float = 1e-3):
    """Reported fits (M,) bool with gamma L (first) or D2 (second) at the end of the table's range,
    where :func:`.fitting.fit_maps` clips them."""
    with np.errstate(invalid="ignore"):
        g = reported & (params[:, 0] >= (1.0 - rel) * table.gamma_max)
        d = reported & (params[:, 1] >= (1.0 - rel) * table.d2_max)
    return g, d


def _assign(fits, m, sub):
    """Write the fits ``sub`` of the maps ``m`` into ``fits`` (:class:`.fitting.MapFits`) in place."""
    for name in ("params", "cov", "chi2", "dof", "prediction", "converged", "gain"):
        dst = getattr(fits, name)
        if dst is not None:
            dst[m] = getattr(sub, name)


def variance_law(var_u, row_var_a, row_var_b, area, n_pix, c_pred, ok=None):
    r"""Standard errors of many maps by the pair's variance law, vectorised over maps.

    Per map m and q row r: :math:`\mathrm{Var}_b(u) = V_{mr} + \kappa_{mr} c_b^2` with
    :math:`V_{mr} = \langle d_a^2\rangle_r\langle d_b^2\rangle_r` (measured) and kappa regressed on the
    bins' pixel variances at the predicted c (weights: pixels per bin), as
    :meth:`shearcorr.experiment.correlation.CorrelationMap.errors`; then
    :math:`\sigma_b = \sqrt{(V + \kappa c^2)\,a_r/n_b}`.

    Shapes: var_u, c_pred (M, n_q, n_phi); row_var_a, row_var_b (M, n_q); area (n_q,);
    n_pix (n_q, n_phi).
    """
    c2 = np.asarray(c_pred, dtype=np.float64) ** 2
    ok = np.isfinite(var_u) & np.isfinite(c2) & (n_pix[None] > 0) if ok is None else ok
    c2o = np.where(ok, c2, 0.0)
    w = np.where(ok, n_pix[None] / area[None, :, None], 0.0)
    V = (row_var_a * row_var_b)[:, :, None]
    s2 = (w * c2o * c2o).sum(2)
    with np.errstate(invalid="ignore", divide="ignore"):
        kap = np.where(s2 > 0, (w * c2o * (np.where(ok, var_u, 0.0) - V)).sum(2) / s2, 0.0)
        kap = np.clip(np.nan_to_num(kap), 0.0, None)
        return np.sqrt((V + kap[:, :, None] * c2) * area[None, :, None] / np.where(n_pix > 0, n_pix, np.nan)[None])


@dataclass
class TwoTimeAnalysis:
    """gamma L(t1, t2) and D2(t1, t2) on the time bins (lengths in R0; arrays (K, K), symmetric, NaN
    on the diagonal and where a pair of bins holds no significant correlation).

    ``signal``: the chi^2 gain of the fit over "no correlation" (>= ``min_signal`` to be fitted).
    ``flow_angle``: rad (detector azimuth). ``times``: bin centres (frames).
    """

    maps: TwoTimeMaps
    times: np.ndarray
    gamma_l: np.ndarray
    gamma_l_std: np.ndarray
    d2: np.ndarray
    d2_std: np.ndarray
    amplitude: np.ndarray
    chi2_red: np.ndarray
    signal: np.ndarray
    flow_angle: float
    info: dict = field(default_factory=dict)


def _pairs_errors(tt, ks, ls, area, c_pred):
    var_u = tt.var_u[ks, ls]
    return variance_law(var_u, tt.row_var[ks], tt.row_var[ls], area, tt.n_pix, c_pred)


def ratio_maps(tt, ks, ls, area):
    r"""Ratio maps of the time-bin pairs (ks[m], ls[m]) and the scales of their errors.

    :math:`r_b = C_b/\sqrt{c_{0,k,b}\,c_{0,l,b}}` with the lag-0 contrast of the bin itself (its speckle
    fingerprint, common to every map of a slowly renewed sample, cancels); bins with fewer than
    ``RATIO_MIN_SPECKLES`` speckles (pixels / ``area``) are NaN. The errors are the pair's law at
    c = 0 (:func:`variance_law`) divided by the lag-0 contrast of the *q row*, and
    :func:`.echo.ratio_errors` takes the q row's :math:`\langle d^2\rangle`: scaled by the bin's own
    noisy contrast, a bin whose contrast came out high got a small error and a ratio pulled low (and
    the reverse), so the weights were correlated with the data -- gamma L read 4-6 % low and D2 high
    over 60 independent configurations (docs/stacks.md).

    Parameters
    ----------
    tt : TwoTimeMaps
    ks, ls : ndarray (M,) int
        Time bins of the maps.
    area : ndarray (n_q,)
        Pixels per speckle per q row.

    Returns
    -------
    c : ndarray (M, n_q, n_phi)
        Ratio maps (NaN: bin not used).
    e_c0 : ndarray (M, n_q, n_phi)
        Standard error of C at c = 0.
    den_row, d2_row : ndarray (M, n_q, 1)
        :math:`\sqrt{c_{0,k} c_{0,l}}` and :math:`\sqrt{\langle d_k^2\rangle\langle d_l^2\rangle}` of the q rows.
    """
    area = np.asarray(area, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        den = np.sqrt(np.where((tt.contrast_bin[ks] > 0) & (tt.contrast_bin[ls] > 0),
                               tt.contrast_bin[ks] * tt.contrast_bin[ls], np.nan))
        den_row = np.sqrt(np.where((tt.contrast[ks] > 0) & (tt.contrast[ls] > 0), tt.contrast[ks] * tt.contrast[ls],
                                   np.nan))[:, :, None]
        d2_row = np.sqrt(tt.row_var[ks] * tt.row_var[ls])[:, :, None]
        c = tt.C[ks, ls] / den
    c[:, tt.n_pix / area[:, None] < RATIO_MIN_SPECKLES] = np.nan
    e_c0 = _pairs_errors(tt, ks, ls, area, np.zeros_like(c))
    return c, e_c0, den_row, d2_row


def analyze_twotime(tt: TwoTimeMaps, model, *, flow_angle=None, area=None, executor=None, cache_dir=None,
                    table_steps=None, weights=None, configuration: bool = True, min_signal: float = 25.0,
                    seed=0) -> TwoTimeAnalysis:
    r"""Amortized fits of every pair of time bins (k < l) of ``tt`` (no engine call per pair).

    1. Every map divided, bin by bin, by the lag-0 contrast of the frames of its two time bins
       (:math:`r_{kl} = C_{kl}/\sqrt{c_{0,k} c_{0,l}}`: the speckle contrast of the configuration in a
       bin is common to all maps of slowly renewed samples and cancels, as for echoes; bins under
       ``RATIO_MIN_SPECKLES`` speckles left out); errors by the pair's variance law at c = 0
       (:func:`variance_law`, area per q row from ``area``, pixels per speckle, default 1) over the q
       row's lag-0 contrast, times :math:`\sqrt{1-\rho^2}` (:func:`.echo.ratio_errors`; :func:`ratio_maps`).
    2. Flow angle (unless given) and start values: the pair fit (:func:`.prelim.pair_fit_map`) of
       the maps averaged along the diagonals |k - l| = 1, 2, 4, ... (their largest gamma L and D2
       also set the first range of the pair table).
    3. :func:`.fitting.fit_maps` for all pairs at once, twice (errors at c = 0, then at the
       prediction); while a reported pair is fitted at the end of the table's gamma L or D2 range (where
       the fit is clipped), the table grows by ``TABLE_GROWTH`` and the fits are repeated (at most
       ``TABLE_GROWTH_ROUNDS`` times, up to the caps of :mod:`.prelim`); covariance (J^T W J)^-1
       x chi2_red (both ways for >= 50 degrees of freedom) plus the single-pair configuration term
       (:func:`.prelim.configuration_term`; conditioned on the stack's profile when ``CONDITION_PROFILE``). The
       pairs of one stack share its particles: the part of the term they share, as a relative gamma L error,
       is ``info["configuration_shared"]["gamma_l_shared_rel_std"]`` (it is in every pair's std too).
    """
    from .fitting import MIN_DOF_SCALE, fit_maps
    from .prelim import (TABLE_D2_CAP, TABLE_GAMMA_CAP, build_table, configuration_term, pair_fit_map, stack_profile,
                         table_gamma_limit)

    K = tt.n_bins
    if K < 3:
        raise ShearcorrError(f"a two-time analysis needs at least 3 time bins, got {K}")
    area = np.ones(tt.plan.n_q) if area is None else np.asarray(area, dtype=np.float64)
    from .echo import ratio_errors

    ks, ls = np.triu_indices(K, 1)
    c, e_c0, den_row, d2_row = ratio_maps(tt, ks, ls, area)
    err0 = e_c0 / den_row
    beta0 = float(np.nanmean(tt.contrast))
    if not beta0 > 0:
        raise ShearcorrError(f"the frames show no speckle (contrast {beta0:.3g}); check the data")
    # diagonal averages for the flow angle, start values and the table range
    offsets = sorted({int(v) for v in np.unique(np.round(np.geomspace(1, K - 1, min(PRELIM_OFFSETS, K - 1)))) if v >= 1})
    prelim = []
    phi = None if flow_angle is None else float(flow_angle)
    for dlt in offsets:
        sel = (ls - ks) == dlt
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # empty bins
            cm = np.nanmean(c[sel], axis=0)
            em = np.sqrt(np.nanmean(err0[sel] ** 2, axis=0) / sel.sum())
        snr = float(np.nansum((cm / em) ** 2))
        if not snr > 4.0 * np.isfinite(cm).sum():  # hardly any correlation left at this offset
            continue
        try:
            f = pair_fit_map(cm, em, tt.plan, model, beta=1.0, beta_err=0.5, phi0=phi, seed=seed)
        except ShearcorrError:
            continue
        if phi is None:
            phi = float(f["flow_angle"][0])
        prelim.append((dlt, f["gamma_l"][0], f["d2"][0], f["chi2_red"]))
    if phi is None:
        raise ShearcorrError("no pair of time bins holds enough correlation to find the flow direction; give --flow-angle")
    g_hi = max(p[1] for p in prelim)
    d_hi = max(p[2] for p in prelim)
    # the diagonal averages mix lags (and, during a ramp, very different gamma L): the table's range
    # from them is a start; it grows while reported pairs sit at its end (fits there are clipped)
    g_top, d_top = 1.6 * g_hi + 10.0, 1.6 * d_hi + 0.5

    def two_passes(table, m):
        first = fit_maps(table, phi, c[m], err0[m], min_signal=np.inf)  # only its values are used
        err1 = ratio_errors(e_c0[m], den_row[m], d2_row[m], first.prediction)
        # errors at the bounds and gains only for the pairs reported (chi^2 gain >= min_signal, as below)
        fits = fit_maps(table, phi, c[m], err1, start=first.params, return_gain=configuration,
                        min_signal=0.999 * min_signal)  # a hair below: the sums run in another order
        with np.errstate(invalid="ignore", divide="ignore"):
            w = np.where(np.isfinite(c[m]) & np.isfinite(err1) & (err1 > 0), 1.0 / err1**2, 0.0)
            chi_null = np.sum(w * np.nan_to_num(c[m]) ** 2, axis=(1, 2))
        return fits, chi_null - fits.chi2

    table = build_table(model, 0.15, g_top, d_top, executor=executor, cache_dir=cache_dir, weights=weights,
                        **dict(table_steps or {}))
    fits, gain_sig = two_passes(table, slice(None))
    grown = 0
    while grown < TABLE_GROWTH_ROUNDS:
        ok = np.isfinite(gain_sig) & (gain_sig >= min_signal)
        g_end, d_end = _at_table_end(fits.params, ok, table)
        g_end &= table.gamma_max < min(TABLE_GAMMA_CAP, table_gamma_limit(model, (table_steps or {}).get("du")))
        d_end &= table.d2_max < TABLE_D2_CAP
        if not (g_end.any() or d_end.any()):
            break
        # only the pairs at the end are fitted again (the others' fits do not depend on the range)
        table = build_table(model, 0.15, table.gamma_max * (TABLE_GROWTH if g_end.any() else 1.0),
                            table.d2_max * (TABLE_GROWTH if d_end.any() else 1.0), executor=executor,
                            cache_dir=cache_dir, weights=weights, **dict(table_steps or {}))
        m = np.flatnonzero(g_end | d_end)
        sub, gain_sig[m] = two_passes(table, m)
        _assign(fits, m, sub)
        grown += 1
    ok = np.isfinite(gain_sig) & (gain_sig >= min_signal)
    # speckle part scaled by chi2_red both ways (Birge ratio; >= 50 bins per map): the error law is
    # approximate for averaged maps, the fit's own residuals measure its scale
    cov = fits.cov * np.where(fits.dof >= MIN_DOF_SCALE, fits.chi2_red, np.maximum(fits.chi2_red, 1.0))[:, None, None]
    shared = {}
    if configuration:  # only for the pairs reported (the others are NaN in the result)
        prof = stack_profile(tt.mean_image, tt.plan) if CONDITION_PROFILE else (None, 0.0)
        cov = cov + np.nan_to_num(configuration_term(fits, model, phi, seed=seed, maps=ok, profile=prof[0],
                                                     profile_slope_err=prof[1], report=shared))
    std = np.sqrt(np.clip(np.diagonal(cov, axis1=1, axis2=2), 0, None))
    out = {name: np.full((K, K), np.nan) for name in ("gamma_l", "gamma_l_std", "d2", "d2_std", "amplitude", "chi2_red",
                                                        "signal")}
    cols = {"gamma_l": fits.params[:, 0], "gamma_l_std": std[:, 0], "d2": fits.params[:, 1], "d2_std": std[:, 1],
            "amplitude": fits.params[:, 2], "chi2_red": fits.chi2_red}
    for name, v in cols.items():
        v = np.where(ok, v, np.nan)
        out[name][ks, ls] = v
        out[name][ls, ks] = v
    out["signal"][ks, ls] = gain_sig
    out["signal"][ls, ks] = gain_sig
    return TwoTimeAnalysis(maps=tt, times=tt.centers, flow_angle=phi, **out,
                           info={"n_pairs": int(ks.size), "n_fitted": int(ok.sum()), "min_signal": float(min_signal),
                                 "prelim": [{"offset_bins": d, "gamma_l": g, "d2": e, "chi2_red": r} for d, g, e, r in prelim],
                                 "table": {"gamma_max": table.gamma_max, "d2_max": table.d2_max, "nodes": table.n_nodes,
                                           "grown": grown},
                                 "configuration_term": bool(configuration), "contrast": beta0,
                                 "configuration_shared": shared})
