r"""Oscillatory shear, stroboscopically: echoes of the speckle one or more cycles apart.

Under oscillatory shear with ``period`` frames per cycle, two frames at the same phase of cycles n and
n + k differ by what did not return: the *irreversible* non-affine displacement and a *residual*
affine strain (slip, ratcheting). The echo map of cycle n and lag k is the correlation of every frame
of cycle n with the frame k periods later (``"frame"`` normalisation, averaged over the phases):

.. math:: c_{n,k,b} = \frac{1}{P}\sum_{j=0}^{P-1}\langle d_{nP+j}\,d_{(n+k)P+j}\rangle_b

It is a pair map of (nearly) one configuration: the particles hardly change between cycles, so every
bin carries the same random speckle contrast of that configuration (the finite number of speckles
of the bin), in the echo and at lag 0 alike. Dividing by the lag-0 map of the same frames, bin by bin,

.. math:: r_{n,k,b} = c_{n,k,b}\big/\sqrt{c_{n,0,b}\,c_{n+k,0,b}} = a\,y_b(\gamma L_{res}, D_{2,irr})

removes that common factor (measured: without it, D_irr of a synthetic series came out 17 % low with
chi^2_red ~ 8; with it, within 1 %). r is fitted per cycle and lag with the pair table (amortized,
:mod:`.fitting`; a ~ 1, Gaussian prior 1 +- 0.05); errors: :func:`ratio_errors` -- the pair's variance law of c at
c = 0 (phases as independent speckle samples) times :math:`\sqrt{1-\rho^2}` (the speckle
self-noise shared with lag 0 cancels in the ratio) over the q row's lag-0 contrast (not the bin's own,
the ratio's noisy denominator: :func:`cycle_ratio_maps`), scaled by chi^2_red (both ways for >= 50
degrees of freedom, else by max(1, chi^2_red)),
plus the single-pair configuration term
(:func:`.prelim.configuration_term`), conditioned on the static intensity profile of the file's particles
(:func:`.prelim.stack_profile`: every cycle holds the same particles, so their profile tells which
configurations of the R_s prior they resemble; the spread grows steeply with R_s).

Per cycle: D2_irr(n) and gamma L_res(n) from lag k = 1. Over the file: the lag-k maps averaged over
all cycles give :math:`D_2^2(k)` and gamma L(k); for independent irreversible steps
:math:`D_2^2(k) = k\,D_{irr}^2` and :math:`\gamma L(k) = k\,\gamma L_{res}`, fitted through the origin
with errors from a delete-one-cycle jackknife that keeps the covariance of echoes up to K cycles apart
(:func:`dependent_jackknife_std`: the lag-k echoes of cycles n and n + 1 share k - 1 irreversible steps,
those k cycles apart share frames). Across files: :func:`amplitude_sweep` tabulates
D_irr and gamma L_res against the strain amplitude (the echo-XPCS yielding curve).

The flow angle: the strip of an echo is weak (gamma L_res ~ 0), so it is taken from the user or
from within-cycle pairs a quarter period apart (strain difference gamma_0 between phases 0 and P/4)
when P >= 4; otherwise from the echo itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import ShearcorrError

__all__ = ["EchoAnalysis", "echo_period", "analyze_echo", "amplitude_sweep", "cycle_ratio_maps", "ratio_errors",
           "dependent_jackknife_std"]

#: Prior std of the echo amplitude relative to the lag-0 contrast of the same frames (no transit).
AMPLITUDE_PRIOR = 0.05


def echo_period(n_frames: int, period=None, *, times=None, period_s=None) -> int:
    """The period in frames: ``period`` (frames), or ``period_s`` (s) with frame time stamps ``times``.

    The time stamps must be one per frame and evenly spaced (within 1 %); the period must be a whole
    number of frames (within 2 %) and divide the number of frames. One-line errors otherwise.
    """
    if period is None:
        if times is None or period_s is None:
            raise ShearcorrError("the echo mode needs --period (frames) or --period-s with --timestamps")
        t = np.asarray(times, dtype=np.float64).ravel()
        if t.size != n_frames:
            raise ShearcorrError(f"the time-stamp dataset has {t.size} values but the analysis has {n_frames} frames")
        dt = np.diff(t)
        if t.size < 2 or not np.all(np.isfinite(t)) or np.any(dt <= 0):
            raise ShearcorrError("the time stamps must be finite and increasing")
        step = float(np.median(dt))
        if np.max(np.abs(dt - step)) > 0.01 * step:
            raise ShearcorrError(f"the time stamps are not evenly spaced (steps {dt.min():.4g} to {dt.max():.4g} s)")
        p = float(period_s) / step
        if not np.isfinite(p) or p < 0.98 or abs(p - round(p)) > 0.02 * max(p, 1.0):
            raise ShearcorrError(f"the period {period_s:g} s is {p:.3f} frames of {step:.4g} s; it must be a whole number of frames")
        period = int(round(p))
    try:
        period = int(period)
    except (TypeError, ValueError):
        raise ShearcorrError(f"the period must be a whole number of frames, got {period!r}") from None
    if period < 1:
        raise ShearcorrError(f"the period must be >= 1 frame, got {period}")
    if n_frames % period:
        raise ShearcorrError(f"the period of {period} frames does not divide the {n_frames} frames "
                             f"({n_frames / period:.2f} cycles); choose --frames covering whole cycles")
    if n_frames // period < 2:
        raise ShearcorrError(f"{n_frames} frames hold fewer than 2 cycles of {period} frames")
    return period


@dataclass
class EchoAnalysis:
    """Result of :func:`analyze_echo` (lengths in R0, per cycle = per period).

    ``per_cycle``: arrays over cycles 0..N-2 (echo with the next cycle): gamma_l, gamma_l_std, d2,
    d2_std, amplitude, chi2_red. ``per_lag``: arrays over k = 1..K (maps averaged over cycles):
    gamma_l, gamma_l_std, d2, d2_std. ``d2_irreversible``, ``gamma_l_residual``: (value, std)
    per cycle from the lag series. ``flow_angle``: rad (detector azimuth); ``period``: frames.
    """

    period: int
    n_cycles: int
    per_cycle: dict
    per_lag: dict
    d2_irreversible: tuple
    gamma_l_residual: tuple
    flow_angle: float
    maps: np.ndarray
    errors: np.ndarray
    info: dict = field(default_factory=dict)


def ratio_errors(sigma0, c0, d2_bin, r_pred):
    r"""Errors of a ratio map r = c / c0 at the predicted r: with the correlation coefficient of the
    normalised pixels of the two frames :math:`\rho = r c_0/\langle d^2\rangle`, the part of the
    products that is not shared with lag 0 has variance :math:`(1 - \rho^2) V`, so
    :math:`\sigma_r = \sigma_c(c = 0)\sqrt{1 - \rho^2}/c_0` (sigma0: the c = 0 law; c0 and d2_bin:
    the lag-0 contrast and :math:`\langle d^2\rangle` (shot noise included) of the q row -- not of the
    bin, whose own contrast is the noisy denominator of the ratio; shapes broadcast)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = np.clip(np.asarray(r_pred) * c0 / np.asarray(d2_bin), -0.95, 0.95)
        return sigma0 * np.sqrt(1.0 - rho * rho) / c0


def dependent_jackknife_std(deltas, reach: int):
    r"""Standard error from delete-one-group jackknife deltas of groups whose influences are correlated with
    their neighbours up to ``reach`` groups apart.

    With e_g = delta_g - mean (G groups, axis 0 of ``deltas``), the delete-one jackknife assumes independent
    groups, :math:`\mathrm{Var} = \frac{G-1}{G}\sum_g e_g^2`. Echo maps of consecutive cycles are not: the
    lag-k echo of cycle n compares cycles n and n + k, so it shares k - 1 irreversible steps with the lag-k echo
    of cycle n + 1 and its frames with those of cycle n + k. The variance of a mean of such terms carries their
    autocovariances (truncated kernel, the dependence ends at ``reach`` = the largest lag in cycles):

    .. math:: \mathrm{Var} = \frac{G-1}{G}\,c_H\Big[\sum_g e_g^2 + 2\sum_{h=1}^{H}\sum_g e_g e_{g+h}\Big],\qquad
              c_H = \frac{G - 1}{G - 2H - 1 + H(H + 1)/G}

    (c_H undoes the bias of the centred cross products, :math:`E[e_g e_{g'}] = -\sigma^2/G`, exactly for
    independent groups; without it the variance came out 24 % low for G = 30, H = 4), floored at the
    independent-group value (a sampled autocovariance sum below 0 is taken as noise). ``reach`` = 0 is the
    ordinary jackknife. Shapes: ``deltas`` (G, ...) -> (...).
    """
    d = np.asarray(deltas, dtype=np.float64)
    G = d.shape[0]
    e = d - d.mean(axis=0)
    v0 = (e * e).sum(axis=0)
    v = v0.copy()
    H = min(int(reach), G - 1)
    for h in range(1, H + 1):
        v = v + 2.0 * (e[h:] * e[:-h]).sum(axis=0)
    c = (G - 1.0) / max(G - 2.0 * H - 1.0 + H * (H + 1.0) / G, 1.0)
    return np.sqrt((G - 1.0) / G * np.maximum(c * v, v0))


def _row_d2(lag, groups):
    r"""<d^2> per q row over the origins of ``groups`` (lag 0, shot noise included): (n_q, 1)."""
    sel = slice(None) if groups is None else np.asarray(groups)
    npix = lag.n_pix_bin
    with np.errstate(invalid="ignore", divide="ignore"):
        return (lag.sums[sel, 0].sum(axis=0).sum(axis=1) / (npix.sum(axis=1) * lag.pairs[sel].sum(axis=0)[0]))[:, None]


def _row_contrast(c0, n_pix):
    """Pixel-weighted mean of lag-0 maps (..., n_q, n_phi) over the usable bins of each q row: (..., n_q, 1)."""
    ok = np.isfinite(c0) & (n_pix > 0)
    w = np.where(ok, n_pix, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (np.where(ok, c0, 0.0) * w).sum(axis=-1, keepdims=True) / w.sum(axis=-1, keepdims=True)


def cycle_ratio_maps(lag, area):
    r"""Per-cycle echo maps (cycle n with cycle n + 1, lag index 1 of ``lag``) divided bin by bin by the
    lag-0 contrast of both cycles, and the scales of their errors.

    :math:`r_{n,b} = c_{n,1,b}/\sqrt{c_{n,0,b}\,c_{n+1,0,b}}`: the bin's own contrast is the speckle
    fingerprint of the (nearly unchanged) configuration and cancels in the ratio. Unlike two-time maps,
    bins of few speckles are kept: over 30 independent echo pairs (docs/stacks.md, "Echoes") leaving
    out the bins under 30 speckles widened the scatter of D2 (0.055 against 0.045 R0) without a
    measurable change of its mean. The errors belong to the *q row*: the pair's law
    at c = 0 (:func:`_map_errors`) over the row's lag-0 contrast, with the row's :math:`\langle d^2\rangle`
    for :func:`ratio_errors` -- scaled by the bin's own noisy contrast, the weights were correlated with
    the ratio itself (docs/stacks.md, "Echoes").

    Parameters
    ----------
    lag : LagSums
        Lags 0 and one period (and more), one group of origins per cycle, ``squares=True``.
    area : ndarray (n_q,)
        Pixels per speckle per q row.

    Returns
    -------
    maps : ndarray (N - 1, n_q, n_phi)
        Ratio maps of the N - 1 consecutive cycle pairs (NaN: bin not used).
    e_c0 : ndarray (N - 1, n_q, n_phi)
        Standard error of the echo map at c = 0.
    den_row, d2_row : ndarray (N - 1, n_q, 1)
        :math:`\sqrt{c_{0,n}c_{0,n+1}}` and :math:`\sqrt{\langle d_n^2\rangle\langle d_{n+1}^2\rangle}`
        of the q rows.
    """
    N = lag.pairs.shape[0]
    npix = lag.n_pix_bin
    cyc = np.arange(N - 1)
    corr = [lag.correlation([n]) for n in range(N)]
    c0 = np.stack([c[0] for c in corr])
    c0_row = _row_contrast(c0, npix)
    d2 = np.stack([_row_d2(lag, [n]) for n in range(N)])
    with np.errstate(invalid="ignore", divide="ignore"):
        den = np.sqrt(np.where((c0[:-1] > 0) & (c0[1:] > 0), c0[:-1] * c0[1:], np.nan))
        den_row = np.sqrt(np.where((c0_row[:-1] > 0) & (c0_row[1:] > 0), c0_row[:-1] * c0_row[1:], np.nan))
        maps = np.stack([corr[n][1] for n in cyc]) / den
    e_c0 = np.stack([_map_errors(lag, [n], area, np.zeros((lag.lags.size,) + npix.shape))[1] for n in cyc])
    return maps, e_c0, den_row, np.sqrt(d2[:-1] * d2[1:])


def _map_errors(lag, groups, area, c_pred):
    """Pair variance law for echo maps of the given origin groups (cycles), per lag: (n_lags, n_q, n_phi)."""
    from .twotimefit import variance_law

    var_u = lag.pixel_variance(groups)
    sel = slice(None) if groups is None else np.asarray(groups)
    npix = lag.n_pix_bin
    P = lag.pairs[sel].sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):  # <d^2> per q row, shot noise included (lag 0)
        row_v = lag.sums[sel, 0].sum(axis=0).sum(axis=1) / (npix.sum(axis=1) * P[0])
    # Var_b(u) per (pixel, origin) -> the map averages n_pix x P samples; area per q row
    rv = np.broadcast_to(row_v, (var_u.shape[0],) + row_v.shape)
    s = variance_law(var_u, rv, rv, area, npix, c_pred)
    with np.errstate(invalid="ignore", divide="ignore"):
        return s / np.sqrt(np.maximum(P, 1))[:, None, None]


def analyze_echo(stack, plan, model, *, period: int, start: int, stop: int, max_cycles: int = 4, flow_angle=None,
                 area=None, executor=None, cache_dir=None, table_steps=None, weights=None, configuration: bool = True,
                 seed=0, gain: float = 1.0) -> EchoAnalysis:
    """The echo mode on frames [start, stop) of ``stack`` (module docstring).

    Parameters
    ----------
    stack : frame source
    plan : BinPlan
    model : BinnedPairModel
        On the plan's bins (detector azimuth).
    period : int
        Frames per cycle (:func:`echo_period`); (stop - start) must be a multiple.
    max_cycles : int
        Largest echo lag K (cycles).
    flow_angle : float, optional
        Known flow direction (rad, detector azimuth).
    area : ndarray (n_q,), optional
        Correlation area per q row in pixels (speckle size); default 1 (one pixel per speckle).
    gain : float
        Detector counts per photon (1: photon counts).
    """
    from .engine import lag_sums
    from .fitting import MIN_DOF_SCALE, fit_maps
    from .prelim import build_table, configuration_term, pair_fit_map, stack_profile

    n_frames = stop - start
    echo_period(n_frames, period)
    N = n_frames // period
    K = int(max(1, min(max_cycles, N - 1)))
    lags = np.arange(K + 1) * period
    edges = start + np.arange(N + 1) * period
    lag = lag_sums(stack, plan, lags, start=start, stop=stop, groups=edges, normalization="frame", executor=executor,
                   squares=True, gain=gain)
    area = np.ones(plan.n_q) if area is None else np.asarray(area, dtype=np.float64)
    beta0 = float(np.nanmean(lag.correlation()[0]))
    if not beta0 > 0:
        raise ShearcorrError(f"the frames show no speckle (lag-0 correlation {beta0:.3g}); check the data")
    # flow angle: given, from quarter-period pairs, or from the echo itself
    phi, flow_source = (float(flow_angle), "given") if flow_angle is not None else (None, None)
    if phi is None and period >= 4:
        q4 = lag_sums(stack, plan, [0, period // 4], start=start, stop=stop, groups=edges, normalization="frame",
                      executor=executor, squares=True, gain=gain)
        cq = q4.correlation()
        eq = _map_errors(q4, None, area, np.zeros_like(cq))
        phi = float(pair_fit_map(cq[1], eq[1], plan, model, beta=beta0, beta_err=0.5 * beta0, seed=seed)["flow_angle"][0])
        flow_source = "quarter-period pairs"
    c_all = lag.correlation()
    e_all = _map_errors(lag, None, area, np.zeros_like(c_all))
    with np.errstate(invalid="ignore", divide="ignore"):
        norm_all = np.where(c_all[0] > 0, c_all[0], np.nan)
    norm_row = _row_contrast(c_all[0], lag.n_pix_bin)  # errors: the q row's contrast (cycle_ratio_maps)
    first = pair_fit_map(c_all[1] / norm_all, e_all[1] / norm_row, plan, model, beta=1.0, beta_err=AMPLITUDE_PRIOR,
                         phi0=phi, seed=seed)
    if phi is None:
        phi, flow_source = float(first["flow_angle"][0]), "echo strip (weak: give --flow-angle if known)"
    d2k = max(first["d2"][0], 0.1) * np.sqrt(K) * 1.6 + 0.5
    gk = max(first["gamma_l"][0], 1.0) * K * 1.6 + 5.0
    table = build_table(model, 0.15, gk, d2k, executor=executor, cache_dir=cache_dir, weights=weights,
                        **dict(table_steps or {}))
    prior = (1.0, AMPLITUDE_PRIOR)
    # per cycle (lag 1): every cycle n with its successor, normalised by both cycles' lag-0 maps
    cyc = np.arange(N - 1)
    maps, e0, den_row, d2r = cycle_ratio_maps(lag, area)
    start_p = np.tile([first["gamma_l"][0], first["d2"][0], 1.0], (cyc.size, 1))
    f1 = fit_maps(table, phi, maps, e0 / den_row, start=start_p, amplitude_prior=prior)
    errs = ratio_errors(e0, den_row, d2r, f1.prediction)
    fits = fit_maps(table, phi, maps, errs, start=f1.params, return_gain=True, amplitude_prior=prior)
    # speckle part scaled by chi2_red both ways (Birge ratio; >= 50 bins per map): the error law is
    # approximate for averaged maps, the fit's own residuals measure its scale
    cov = fits.cov * np.where(fits.dof >= MIN_DOF_SCALE, fits.chi2_red, np.maximum(fits.chi2_red, 1.0))[:, None, None]
    conditioning = {}
    if configuration:  # conditioned on the static profile of the file's particles (the same in every cycle)
        profile, slope_err = stack_profile(lag.mean_image, plan)
        marginal = cov + np.nan_to_num(configuration_term(fits, model, phi, seed=seed))  # reported for comparison
        conditioning["d2_std_marginal"] = np.sqrt(np.clip(marginal[:, 1, 1], 0, None))
        cov = cov + np.nan_to_num(configuration_term(fits, model, phi, seed=seed, profile=profile,
                                                     profile_slope_err=slope_err, report=conditioning))
    std = np.sqrt(np.clip(np.diagonal(cov, axis1=1, axis2=2), 0, None))
    per_cycle = {"cycle": cyc, "gamma_l": fits.params[:, 0], "gamma_l_std": std[:, 0], "d2": fits.params[:, 1],
                 "d2_std": std[:, 1], "amplitude": fits.params[:, 2], "chi2_red": fits.chi2_red}
    # lag series over all cycles, with a delete-one-cycle jackknife through the gains
    c_lag = c_all[1:] / norm_all
    fl0 = fit_maps(table, phi, c_lag, e_all[1:] / norm_row, amplitude_prior=prior)
    e_lag = ratio_errors(e_all[1:], norm_row[None], _row_d2(lag, None)[None], fl0.prediction)
    fl = fit_maps(table, phi, c_lag, e_lag, start=fl0.params, return_gain=True, amplitude_prior=prior)
    G = N

    def ratio_without(g):
        cj = lag.correlation(np.delete(np.arange(N), g))
        return cj[1:] / np.where(cj[0] > 0, cj[0], np.nan)

    jack = np.stack([ratio_without(g) for g in range(G)])
    dp = np.einsum("lkqp,glqp->glk", np.nan_to_num(fl.gain), np.nan_to_num(jack - c_lag[None]))
    std_l = dependent_jackknife_std(dp, K)  # echoes of cycles up to K apart share steps and frames
    std_l = np.maximum(std_l, fl.std)  # gamma L at its bound 0: the one-sided error of the fit
    ks = np.arange(1, K + 1, dtype=np.float64)
    per_lag = {"k": ks.astype(int), "gamma_l": fl.params[:, 0], "gamma_l_std": std_l[:, 0], "d2": fl.params[:, 1],
               "d2_std": std_l[:, 1]}
    # D2^2(k) = k D_irr^2 and gamma L(k) = k gamma L_res through the origin: jackknife of the slopes
    d2sq, glk = fl.params[:, 1] ** 2, fl.params[:, 0]
    d2sq_j = (fl.params[None, :, 1] + dp[:, :, 1]) ** 2
    gl_j = fl.params[None, :, 0] + dp[:, :, 0]

    def slope(v, w):
        return float(np.sum(w * ks * v) / np.sum(w * ks * ks))

    w = 1.0 / np.maximum(std_l[:, 1] * 2 * np.abs(fl.params[:, 1]), 1e-12) ** 2
    wg = 1.0 / np.maximum(std_l[:, 0], 1e-12) ** 2
    s_d = slope(d2sq, w)
    s_dj = np.array([slope(d2sq_j[g], w) for g in range(G)])
    s_g = slope(glk, wg)
    s_gj = np.array([slope(gl_j[g], wg) for g in range(G)])
    jk = lambda a: float(dependent_jackknife_std(a, K))  # noqa: E731
    d_irr = float(np.sqrt(max(s_d, 0.0)))
    d_irr_std = jk(s_dj) / (2 * max(d_irr, 1e-6))
    d_irr_std_indep = float(dependent_jackknife_std(s_dj, 0)) / (2 * max(d_irr, 1e-6))  # independent cycles (before)
    return EchoAnalysis(period=int(period), n_cycles=int(N), per_cycle=per_cycle, per_lag=per_lag,
                        d2_irreversible=(d_irr, d_irr_std), gamma_l_residual=(float(s_g), jk(s_gj)), flow_angle=float(phi),
                        maps=maps, errors=errs,
                        info={"flow_angle_source": flow_source, "max_cycles": K, "contrast": beta0,
                              "table": {"gamma_max": table.gamma_max, "d2_max": table.d2_max, "nodes": table.n_nodes},
                              "configuration_term": bool(configuration), "configuration_conditioning": conditioning,
                              "d2_irreversible_std_independent_cycles": d_irr_std_indep})


def amplitude_sweep(results, amplitudes) -> dict:
    """Echo results of several files against their strain amplitudes (the yielding curve).

    Returns arrays sorted by amplitude: ``strain_amplitude``, ``d2_irreversible`` (+ ``_std``),
    ``gamma_l_residual`` (+ ``_std``) per cycle, and ``n_cycles``.
    """
    amplitudes = np.asarray(amplitudes, dtype=np.float64)
    if amplitudes.size != len(results):
        raise ShearcorrError(f"give one strain amplitude per file: {len(results)} files, {amplitudes.size} amplitudes")
    if not np.all(np.isfinite(amplitudes)):
        raise ShearcorrError("strain amplitudes must be finite numbers")
    order = np.argsort(amplitudes)
    pick = lambda f: np.array([f(results[i]) for i in order])  # noqa: E731
    return {"strain_amplitude": amplitudes[order], "d2_irreversible": pick(lambda r: r.d2_irreversible[0]),
            "d2_irreversible_std": pick(lambda r: r.d2_irreversible[1]),
            "gamma_l_residual": pick(lambda r: r.gamma_l_residual[0]),
            "gamma_l_residual_std": pick(lambda r: r.gamma_l_residual[1]), "n_cycles": pick(lambda r: r.n_cycles)}
