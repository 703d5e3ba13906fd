r"""Steady shear: the lag-averaged correlation maps of a stack -> shear rate, diffusion, R_s, Peclet.

The model and its fit are in :mod:`.steadyfit` (docs/stacks.md derives them); this module runs the
mode: lag maps and their errors, the global fit (refitted at its flow angle), every lag alone with the
pair table (model-free gamma L(tau), D2(tau)), and the particles' own sampling error over the
independent configurations the stack holds (the configuration term).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.linalg import block_diag

from ..errors import ShearcorrError
from .steadyfit import SteadyFit, Baseline, fit_steady, lag_map_errors, lag_ratios
from .transit import footprint, transit_shape_correction

__all__ = ["SteadyAnalysis", "analyze_steady", "independent_configurations", "jackknife_blind_share"]


@dataclass
class SteadyAnalysis:
    """Everything the steady mode measured: the global fit and the model-free per-lag fits.

    ``per_lag``: arrays over ``lags[1:]`` -- gamma_l, gamma_l_std, d2, d2_std, amplitude,
    amplitude_std, chi2_red (each lag fitted alone with the pair table; std from the same jackknife).
    ``c`` and ``errors``: the lag maps (n_lags, n_q, n_phi) and their standard errors.
    """

    fit: SteadyFit
    lags: np.ndarray
    c: np.ndarray
    errors: np.ndarray
    per_lag: dict
    flow_angle: float
    info: dict = field(default_factory=dict)


def _per_lag(table, fit, c, jack, model, weights=None, segments=None):
    """Each lag alone on the ratio to lag 0: (gamma L, D2, amplitude = transit factor), baseline and the
    transit's shape term (:func:`.transit.transit_shape_correction` at the global fit) held."""
    from .fitting import fit_maps

    v = fit.values
    pos = fit.lags[1:].astype(np.float64)
    L = model.beam_size
    r, _, jr = lag_ratios(c, jack, segments)
    with np.errstate(invalid="ignore", divide="ignore"):
        err = fit.errors[1:] / np.where(c[0] > 0, c[0], np.nan)[None]
    fp = footprint(getattr(model, "beam", None), L)
    fc, fb = fp.fractions(v["transit"] * pos, v["shear_rate"] * pos)
    # lag 0 = beta S + (B - 1)(1 - V), lag tau adds (B - 1)(f k - V) (steadyfit); "frame": share 0
    scale, share = _coherent_scale(fit, model, weights)
    vm = fit.info.get("time_mean_variance", 0.0)
    offset = share[None] * (fb * fp.step_keep(fit.d2(pos)) - vm)[:, None, None]
    if v["transit"] != 0.0:  # the transit's shape of the coherent term (steadyfit), at the global fit's values
        delta = transit_shape_correction(model, v["flow_angle"], fit.gamma_l(pos), fit.d2(pos), v["transit"] * pos, weights)
        offset = offset + scale[None] * delta
    f_tr = fc / fp.fractions(0.0 * pos, v["shear_rate"] * pos)[0]
    start = np.stack([fit.gamma_l(pos), fit.d2(pos), f_tr**2], axis=1)
    mf = fit_maps(table, v["flow_angle"], r, err, scale=scale, offset=offset, start=start, return_gain=True)
    G = jack.shape[0]
    dp = np.einsum("lkqp,glqp->glk", np.nan_to_num(mf.gain), np.nan_to_num(jr - r[None]))
    std = np.maximum(np.sqrt((G - 1.0) / G * ((dp - dp.mean(0)) ** 2).sum(0)), np.nan_to_num(mf.std) * 0)
    p = mf.params
    return {"gamma_l": p[:, 0], "gamma_l_std": std[:, 0], "d2": p[:, 1], "d2_std": std[:, 1], "amplitude": p[:, 2],
            "amplitude_std": std[:, 2], "chi2_red": mf.chi2_red, "std_nominal": mf.std}


def independent_configurations(values: dict, n_frames: int, beam_size: float, beam=None) -> float:
    r"""How many independent configurations of the beam a stack samples: one, plus the beam content
    renewed over the stack, by transit (|v| per frame) and by shear exchange at the edges
    (:math:`\dot\gamma L/4` per frame): :math:`K = 1 + (|v| + \dot\gamma L/4)(T - 1)/\ell`, with the
    renewal length :math:`\ell` of the footprint (:meth:`.transit.Footprint.renewal_length`: L for the square, ~2.1
    FWHM for a Gaussian, whose tails keep particles longer)."""
    L = float(beam_size)
    ell = footprint(beam, L).renewal_length
    return 1.0 + (abs(values["transit"]) + values["shear_rate"] * L / 4.0) * max(n_frames - 1, 0) / ell


def jackknife_blind_share(rho, n_frames: int, n_groups: int) -> float:
    r"""Share of a per-frame random effect's variance that the stack average carries but the
    delete-one-group jackknife over contiguous groups of origins does not see.

    An effect with variance 1 for one frame and correlation :math:`\rho(s)` between frames s apart
    has, in the mean of n consecutive frames, the variance
    :math:`V_n = n^{-2}\sum_{|s|<n}(n - |s|)\rho(s)`. Over T frames in G groups of b = T/G, the
    jackknife expects :math:`(V_b - V_T)/(G - 1)` (groups that share the effect look alike); the
    share it misses is :math:`V_T - (V_b - V_T)/(G - 1)` (>= 0): the whole V_T when nothing
    renews (rho = 1), 0 when the effect renews within a group.

    Parameters
    ----------
    rho : callable
        rho(s) for an array of frame separations s >= 0 (rho(0) = 1).
    n_frames, n_groups : int
        T and G.
    """
    T, G = max(int(n_frames), 1), max(int(n_groups), 1)
    grid = np.unique(np.concatenate([np.arange(min(T, 256)), np.geomspace(256, max(T, 257), 512).round()])).astype(np.int64)
    r = np.interp(np.arange(T), grid, np.asarray(rho(grid.astype(np.float64)), dtype=np.float64))

    def v(n):
        k = np.arange(1, n)
        return (r[0] * n + 2.0 * np.sum((n - k) * r[1:n])) / n**2

    true = v(T)
    if G < 2:
        return float(true)
    seen = max(v(max(int(round(T / G)), 1)) - true, 0.0) / (G - 1.0)
    return float(max(true - seen, 0.0))


def _configuration_term(fit, per, table, model, n_frames, n_groups, seed, n_configs=24, rs_max=0.3, rs_measured=None,
                        weights=None):
    """The particles' own sampling error (the single-pair configuration term) that the jackknife over
    groups of time origins cannot see, added to the covariance of the shear rate, D and, when fitted, the MSD
    exponent (:meth:`.steadyfit.SteadyFit.add_covariance`).

    One configuration's covariance of (shear rate, D[, exponent]) through the global fit (:func:`_configurations_through_fit`:
    the draws at the lag where gamma L ~ 10 R0 carried to every lag), split into the part of *which particles*
    are in the beam (their y positions and sizes; correlation between origins s frames apart: the overlap
    fraction f(|v| s, shear rate s)) and the part of their own random steps (fresh once the lag windows no
    longer overlap: f (1 - s/tau)+); each part times the share :func:`jackknife_blind_share` misses (issue 11:
    the whole spread of a lag fitted alone used to get the particles' share, also its step part, which the
    groups see). Without ``fit.linear``, the former estimate (the lag alone). The configurations are drawn with
    R_s over its prior U(0, rs_max), or, when the stack measures R_s (``rs_measured`` = (R_s, std) and K >= 10
    independent configurations, as ``rs.constrained``), over U(R_s -+ sqrt(3) std). R_s gets the relative error
    sqrt(2 V) of the baseline (a variance estimated from K independent configurations, V = 1/K; B - 1 ~ R_s^4),
    with V the share the jackknife misses of an effect with the particles' correlation f."""
    from ..experiment.model import configuration_samples, rs_levels
    from .fitting import fit_maps

    v = fit.values
    L = fit.info["beam_size"]
    K = independent_configurations(v, n_frames, L, getattr(model, "beam", None))
    pos = fit.lags[1:].astype(np.float64)
    gl = fit.gamma_l(pos)
    i = int(np.argmin(np.abs(gl - 10.0)))  # a lag where the strip is well resolved
    tau, g_c, d_c = float(pos[i]), float(gl[i]), float(fit.d2(pos[i]))
    from .output import MIN_CONFIGURATIONS_RS

    lo, hi = 0.0, rs_max
    if rs_measured is not None and K >= MIN_CONFIGURATIONS_RS and np.all(np.isfinite(rs_measured)):
        lo = max(float(rs_measured[0]) - np.sqrt(3.0) * float(rs_measured[1]), 0.0)
        hi = max(float(rs_measured[0]) + np.sqrt(3.0) * float(rs_measured[1]), lo)
    rs_draw = rs_levels(n_configs, hi, n_levels=n_configs, lo=lo)  # one R_s per sample over U(lo, hi)
    ys = configuration_samples(model, g_c, d_c, rs_draw, v["flow_angle"], n_samples=n_configs, seed=seed)
    amp = float(per["amplitude"][i]) if np.isfinite(per["amplitude"][i]) else 1.0
    clean = amp * table.y(g_c, d_c, v["flow_angle"])
    # the gain H J^T W does not depend on a common scale of the errors; unit errors made fit_maps' bound test
    # (gamma L within 2 sigma of 0: no linear gain) zero the gain on small maps -- the smoke stack's term was 0
    mf = fit_maps(table, v["flow_angle"], clean[None], np.full((1,) + clean.shape, 1e-4), start=np.array([[g_c, d_c, amp]]),
                  return_gain=True)
    dev = amp * (ys - ys.mean(axis=0))
    dp = np.einsum("kqp,gqp->gk", np.nan_to_num(mf.gain[0]), np.nan_to_num(dev))  # (configs, 3)
    # (shear rate, D) = (gamma L / (L tau), D2^2 / (2 tau)) locally: one configuration at the lag tau alone
    jac = np.array([1.0 / (L * tau), d_c / tau])
    cov_lag = np.cov(dp[:, :2].T) * np.outer(jac, jac)
    fp = footprint(getattr(model, "beam", None), L)
    f_pos = lambda s: fp.fractions(abs(v["transit"]) * s, v["shear_rate"] * s)[0]  # noqa: E731
    share_g = jackknife_blind_share(f_pos, n_frames, n_groups)
    share_s = jackknife_blind_share(lambda s: f_pos(s) * np.clip(1.0 - s / tau, 0.0, None), n_frames, n_groups)
    names = ["shear_rate", "diffusion"] + (["exponent"] if "exponent" in fit.free else [])
    split = _configurations_through_fit(fit, model, per, gl, pos, g_c, d_c, rs_draw, n_configs, seed, weights, names)
    if split is not None:
        # which particles are in the beam persists while they stay (correlation f, the overlap fraction); their
        # steps are fresh once the lag windows no longer overlap (f (1 - s/tau)+): each part times its own share.
        # Measured on the renderer's own particle streams (16 stacks of the study's parameters, issue 11): the
        # shear rate's configuration effect has autocorrelation 0.69 / 0.52 / 0.36 / 0.21 / 0.10 at s = 1 / 4 / 8 /
        # 12 / 15 frames -- a step part that renews at once and a ~60 % part that follows f (0.95 ... 0.24)
        persistent, step = split
        blind = share_g * persistent + share_s * step
        one = persistent + step
        shares = {"gamma_l": share_g, "d2": share_s, "persistent": share_g, "steps": share_s}
        how = "global fit, every lag; persistent (which particles) and step parts"
    else:  # former estimate: the lag tau alone, gamma L with the persistence of the particles, D2 of the steps
        names = names[:2]
        sq = np.sqrt(np.array([share_g, share_s]))
        blind = cov_lag * np.outer(sq, sq)
        one = cov_lag
        shares = {"gamma_l": share_g, "d2": share_s}
        how = f"lag {tau:g} alone"
    sr_c, d_c_std = float(np.sqrt(blind[0, 0])), float(np.sqrt(blind[1, 1]))
    out = {"independent_configurations": K, "lag_frames": tau, "rs_drawn": [lo, hi], "shear_rate_std": sr_c, "diffusion_std": d_c_std,
           "shear_rate_diffusion_cov": float(blind[0, 1]), "jackknife_blind_share": shares, "propagation": how,
           "one_configuration_rel_std": {"shear_rate": float(np.sqrt(one[0, 0])) / v["shear_rate"],
                                         "diffusion": float(np.sqrt(one[1, 1])) / v["diffusion"],
                                         "shear_rate_lag_alone": float(np.sqrt(cov_lag[0, 0])) / v["shear_rate"],
                                         "diffusion_lag_alone": float(np.sqrt(cov_lag[1, 1])) / v["diffusion"]}}
    if split is not None:
        out["one_configuration_rel_std"]["shear_rate_persistent"] = float(np.sqrt(split[0][0, 0])) / v["shear_rate"]
        out["one_configuration_rel_std"]["diffusion_persistent"] = float(np.sqrt(split[0][1, 1])) / v["diffusion"]
    if len(names) == 3:  # the MSD exponent: the lag dependence of D2 read through the same particles
        out["exponent_std"] = float(np.sqrt(blind[2, 2]))
        out["one_configuration_rel_std"]["exponent"] = float(np.sqrt(one[2, 2])) / v["exponent"]
    # added to the fit's covariance (std and Peclet number carry it alike)
    fit.add_covariance(names, blind, term="configuration")
    if "rs" in fit.free or fit.info.get("rs_from") == "row means":
        # the baseline is a variance over the configurations in the beam (relative error sqrt(2/K) over K of them);
        # set by which particles are in the beam (correlation f, as gamma L), of which the jackknife misses share_g
        rs_c = 0.25 * v["rs"] * np.sqrt(2.0 * share_g)
        if "rs" in fit.free:
            fit.add_covariance(["rs"], [[rs_c**2]], term="configuration")
        else:
            fit.std["rs"] = float(np.hypot(fit.std["rs"], rs_c))
        out["rs_std"] = float(rs_c)
    return out


def _configurations_through_fit(fit, model, per, gl, pos, g_c, d_c, rs_draw, n_configs, seed, weights,
                                names=("shear_rate", "diffusion")):
    r"""One configuration's covariance of the parameters ``names`` through the *global* fit, split into the part set by
    *which particles* are in the beam (their y positions and sizes; it persists while they stay) and the part of
    their own random steps (fresh in every lag window).

    The draws of :func:`shearcorr.experiment.model.draw_configurations` at the lag where gamma L ~ 10 R0 are
    carried to every fitted lag (shift gamma(tau) y, steps scaled by D2(tau)/D2), twice: with their own steps and
    with fresh steps of the same law. Their maps (:func:`~shearcorr.experiment.model.configuration_maps`) minus the
    mean over draws change the ratio maps by :math:`\delta d_\tau = s\,a_\tau\,\delta y_\tau` (s: the
    baseline's scale of the coherent term, a: the per-lag amplitude) and go through the fit's linear response
    ``fit.linear``. The covariance between the two step realisations is the persistent part, the rest of each
    one's covariance the step part. Returns (persistent, steps), each (k, k) over ``names`` (block-diagonal beyond the
    first two); None without ``fit.linear``."""
    from ..experiment.model import ConfigurationDraws, configuration_maps, draw_configurations
    from ..physics import displacement_std
    from ..rng import child_seed, seed_sequence

    lin = fit.linear
    if lin is None:
        return None
    v = fit.values
    draws = draw_configurations(model, g_c, d_c, rs_draw, n_configs, seed)
    ell = draws.beam.shear_length(model.beam_size)
    rng = np.random.default_rng(child_seed(seed_sequence(seed), 1001))
    s_step = displacement_std(draws.radius, d_c, model.displacement, 1.0)
    steps = [(draws.xa - draws.x - (g_c / ell) * draws.y, draws.ya - draws.y),
             (rng.standard_normal(draws.x.shape) * s_step, rng.standard_normal(draws.x.shape) * s_step)]
    d2 = fit.d2(pos)
    scale = _coherent_scale(fit, model, weights)[0]
    amp = np.where(np.isfinite(per["amplitude"]), per["amplitude"], 1.0)
    idx = [fit.free.index(n) for n in names]

    def dtheta(x, dx, dy):  # (configs, k): the draws with origins at x (same y), steps (dx, dy) at the lag of g_c
        dd = np.zeros(lin["ok"].shape + (n_configs,))
        for j in range(pos.size):
            k = d2[j] / d_c
            dr = ConfigurationDraws(x, draws.y, draws.radius, x + (gl[j] / ell) * draws.y + k * dx, draws.y + k * dy,
                                    draws.rs, draws.beam)
            ys = configuration_maps(model, dr, v["flow_angle"])
            dd[j + 1] = np.moveaxis(scale[None] * amp[j] * (ys - ys.mean(axis=0)), 0, -1)
        e = (lin["gain"] @ np.nan_to_num((dd / lin["err"][..., None])[lin["ok"]])).T[:, idx]
        return e - e.mean(axis=0)

    def cross(a, b):
        return 0.5 * (a.T @ b + b.T @ a) / (a.shape[0] - 1.0)

    def split(a, b):
        total = 0.5 * (cross(a, a) + cross(b, b))
        # the persistent part: the cross covariance, kept positive semi-definite and below the total
        w_, u_ = np.linalg.eigh(cross(a, b))
        persistent = (u_ * np.clip(w_, 0.0, None)) @ u_.T
        w2, u2 = np.linalg.eigh(total - persistent)
        return persistent, (u2 * np.clip(w2, 0.0, None)) @ u2.T

    a, b = dtheta(draws.x, *steps[0]), dtheta(draws.x, *steps[1])
    # (shear rate, D) split jointly; a third parameter (the MSD exponent) on its own, without its covariance with
    # them: a joint 3-D projection on positive semi-definite matrices inflated the shear rate's part (by 25 % on a
    # Gaussian-beam stack of 24 draws), and the two are the calibrated ones (docs/stacks.md)
    parts = [split(a[:, :2], b[:, :2])] + ([split(a[:, 2:], b[:, 2:])] if a.shape[1] > 2 else [])
    return block_diag(*[p[0] for p in parts]), block_diag(*[p[1] for p in parts])


def _coherent_scale(fit, model, weights):
    """(scale, share) per bin: how the coherent term and the baseline (B - 1) enter the ratio to lag 0, each
    divided by lag 0 = beta S + (B - 1)(1 - V) (V the time mean's variance, steadyfit); "frame": (1, 0)."""
    v = fit.values
    if fit.info.get("normalization") != "time":
        return np.ones((model.n_q, model.n_phi)), np.zeros((model.n_q, model.n_phi))
    S, B1 = Baseline(model, weights, fit.info.get("intensity", "volume"))(v["rs"])
    lag0 = v["beta"] * S + B1 * (1.0 - fit.info.get("time_mean_variance", 0.0))
    return v["beta"] * S / lag0, B1 / lag0


def _propagate_held_rs(fit, rs_jackknife, rs_extra_std=0.0) -> dict:
    r"""The error of a held R_s (measured on the q-row means) in the other parameters.

    The global fit with R_s held gives theta(R_s); :math:`g = d\theta/dR_s` (``fit.info["rs_gradient"]``,
    linear, the others refitted). The row-mean R_s has its own delete-one-group jackknife over the same groups
    of origins (``rs_jackknife``, R_s without group g), so the joint jackknife of the two-step estimate has the
    deltas :math:`\delta\theta_g + g\,\delta R_{s,g}` -- it carries the correlation of the two statistics;
    its covariance replaces the fit's jackknife part, and the configuration part of R_s's error that no
    jackknife sees (``rs_extra_std``) adds :math:`\sigma^2 g g^T`. Returns the std added per parameter
    (signed: negative where the two statistics are anti-correlated) and the gradient."""
    g = fit.info.get("rs_gradient")
    deltas = fit.info.get("jackknife_deltas") or {}
    if not g:
        return {}
    names = [n for n in fit.free if n in g]
    vec = np.array([g[n] for n in names])
    r = np.asarray(rs_jackknife, dtype=np.float64)
    before = {n: fit.std[n] for n in names}
    extra = float(rs_extra_std) ** 2 * np.outer(vec, vec)
    if all(n in deltas and len(deltas[n]) == r.size for n in names) and r.size > 1:
        dth = np.array([deltas[n] for n in names]).T  # (G, k)
        G = r.size

        def jk(x):
            xc = x - x.mean(axis=0)
            return (G - 1.0) / G * xc.T @ xc

        extra = extra + jk(dth + np.outer(r - r.mean(), vec)) - jk(dth)
    else:  # no jackknife of R_s: its std, taken as independent of the maps
        extra = extra + float(np.var(r, ddof=0) * (r.size - 1) if r.size > 1 else 0.0) * np.outer(vec, vec)
    fit.add_covariance(names, extra, term="held_rs")
    return {"added_std": {n: fit.std[n] - before[n] for n in names}, "rs_gradient": dict(zip(names, vec.tolist()))}


#: Row-mean chi^2 per value above which, with the other intensity convention fitting INTENSITY_RATIO times better,
#: the analysis warns that the frames may follow the other one (docs/stacks.md, "Frames as a detector records them").
INTENSITY_CHI2, INTENSITY_RATIO = 3.0, 3.0


def _intensity_check(lag, model, fit, rb, speckle_area, weights, intensity, table, speckle_px) -> dict:
    """The row means' chi^2 per value under both intensity conventions (:mod:`.intensity`), the global fit held,
    and a warning when the other one fits far better."""
    from .rowbaseline import fit_row_baseline

    other = "volume" if intensity == "detector" else "detector"
    ro = fit_row_baseline(lag, model, fit, speckle_area=speckle_area, weights=weights, intensity=other, errors=False,
                          table=table, speckle_px=speckle_px)
    n = max(rb["n_values"], 1)
    chi = {intensity: rb["chi2"] / n, other: ro["chi2"] / n}
    warn = None
    if chi[intensity] > INTENSITY_CHI2 and chi[other] * INTENSITY_RATIO < chi[intensity]:
        warn = (f"the q-row means fit the '{other}' intensity convention far better than '{intensity}' (chi2 per value "
                f"{chi[other]:.3g} against {chi[intensity]:.3g}): R_s, D and the shear rate may be biased; analyse "
                f"again with --intensity {other}")
    return {"chi2_red": chi, "rs_other": ro["rs"], "warning": warn}


def analyze_steady(lag, model, *, flow_angle=None, fit_exponent=True, fit_transit=True, fit_rs=None,
                   rs_start: float = 0.15, executor=None, cache_dir=None, table_steps=None, weights=None,
                   seed=0, speckle_area=1.0, rs_from: str = "rows", intensity: str = "detector",
                   speckle_px: float = 1.0) -> SteadyAnalysis:
    """The steady mode on lag sums (:class:`.engine.LagSums` with lag 0 and >= 2 further lags).

    1. Lag maps and their delete-one-group jackknife; errors by :func:`lag_map_errors`.
    2. Start values: the pair fit (:func:`.prelim.pair_fit_map`) of the lag-1 map (flow angle free
       unless ``flow_angle`` (rad) is given) and of a later lag where the correlation is still
       clear; shear rate = gamma L / (tau L), D = D2^2 / (2 tau).
    3. The pair table over the lag window, :func:`fit_steady`; if the fitted R_s is more than 0.075
       from the table's, the table is rebuilt at the fitted R_s and the fit repeated.
    4. With ``rs_from="rows"`` (the default) and R_s fitted ("time") or not excluded (``fit_rs`` not False,
       "frame"): R_s from the covariance of the q-row mean intensities of the raw frames
       (:func:`.rowbaseline.fit_row_baseline`, the baseline alone; ``speckle_area``: pixels per independent
       speckle of each row, :func:`.analysis.speckle_area`; ``speckle_px``: the speckle size in pixels), and the
       global fit repeated with R_s held there
       (the table rebuilt if it is more than 0.075 away) (``rs_from="maps"``: R_s of the global "time" fit,
       where it also absorbs misfits of the coherent term at high q; docs/stacks.md).
    5. Every lag alone with the table (:func:`_per_lag`), for the model-free gamma L(tau), D2(tau).

    ``intensity``: ``"detector"`` (the default: frames as a detector records them, the number of particles in the
    beam not divided out) or ``"volume"`` (each frame divided by its configuration's scattering volume, the paper's
    eq. 1); the baseline of the "time" normalisation and of the row means differs (:mod:`.intensity`).
    """
    from ..choices import check_choice
    from .prelim import build_table, pair_fit_map

    intensity = check_choice("intensity", intensity)
    if rs_from not in ("rows", "maps"):
        raise ShearcorrError(f"rs_from must be 'rows' or 'maps', got {rs_from!r}")
    lags = lag.lags
    if lags[0] != 0 or lags.size < 3 or np.any(np.diff(lags) != 1):
        raise ShearcorrError("the steady mode needs the lags 0, 1, ..., max_lag (max_lag >= 2)")
    c = lag.correlation()
    jack = lag.jackknife()
    segs = lag.segment_jackknife()  # None for lag sums pickled before they kept the segment sums
    npix = lag.n_pix_bin
    L = model.beam_size
    W = int(lags[-1])
    err0 = lag_map_errors(jack, npix, np.zeros_like(c))
    beta0 = float(np.nanmean(c[0]))
    if not beta0 > 0:
        raise ShearcorrError(f"the frames show no speckle (lag-0 correlation {beta0:.3g}); check the data")
    first = pair_fit_map(c[1], err0[1], lag.plan, model, beta=beta0, beta_err=0.5 * beta0, phi0=flow_angle, seed=seed)
    phi = first["flow_angle"][0] if flow_angle is None else float(flow_angle)
    q_mid = float(np.sqrt(lag.plan.q_edges[0] * lag.plan.q_edges[-1]))
    d1 = max(first["d2"][0], 0.05)
    tb = int(np.clip(round(1.0 / (q_mid * d1) ** 2), 2, W))
    second = pair_fit_map(c[tb], err0[tb], lag.plan, model, beta=beta0, beta_err=0.5 * beta0, phi0=phi, seed=seed)
    sr = max(second["gamma_l"][0] / (tb * L), first["gamma_l"][0] / L, 1e-6)
    D = max(second["d2"][0] ** 2 / (2 * tb), 1e-4)
    d2_w = max(np.sqrt(2 * D * W) * 1.6, second["d2"][0] * np.sqrt(W / tb) * 1.3) + 0.5
    steps = dict(table_steps or {}, weights=weights)
    rs_tab = float(rs_start)
    table = build_table(model, rs_tab, 1.6 * sr * L * W + 10.0, d2_w, executor=executor, cache_dir=cache_dir, **steps)
    start = {"shear_rate": sr, "diffusion": D, "exponent": 1.0, "transit": 0.0, "rs": rs_tab}
    norm = lag.normalization
    n_frames = int(lag.stop - lag.start)
    fit = fit_steady(c, jack, lags, table, model, n_pix=npix, normalization=norm, phi0=phi, beta0=beta0,
                     fit_exponent=fit_exponent, fit_transit=fit_transit, fit_rs=fit_rs, start=start, weights=weights,
                     segments=segs, intensity=intensity, n_frames=n_frames)
    rebuilt = False
    if "rs" in fit.free and abs(fit.values["rs"] - rs_tab) > 0.075:
        rs_tab = round(fit.values["rs"], 2)
        table = build_table(model, rs_tab, 1.6 * sr * L * W + 10.0, d2_w, executor=executor, cache_dir=cache_dir, **steps)
        start = {k: fit.values[k] for k in ("shear_rate", "diffusion", "exponent", "transit", "rs")}
        fit = fit_steady(c, jack, lags, table, model, n_pix=npix, normalization=norm, phi0=fit.values["flow_angle"],
                         beta0=fit.values["beta"], fit_exponent=fit_exponent, fit_transit=fit_transit, fit_rs=fit_rs,
                         start=start, weights=weights, segments=segs, intensity=intensity, n_frames=n_frames)
        rebuilt = True
    row_info = None
    if rs_from == "rows" and ("rs" in fit.free or (norm == "frame" and fit_rs is not False)):
        from .rowbaseline import fit_row_baseline

        rb = fit_row_baseline(lag, model, fit, speckle_area=speckle_area, weights=weights, table=table,
                              speckle_px=speckle_px)
        rs_maps = (fit.values["rs"], fit.std["rs"]) if "rs" in fit.free else (None, None)
        if abs(rb["rs"] - table.rs) > 0.075:  # the pair model's own R_s (frame maps: the table's start value)
            rs_tab = round(rb["rs"], 2)
            table = build_table(model, rs_tab, 1.6 * sr * L * W + 10.0, d2_w, executor=executor, cache_dir=cache_dir,
                                **steps)
            rebuilt = True
        start = {k: fit.values[k] for k in ("shear_rate", "diffusion", "exponent", "transit")}
        fit = fit_steady(c, jack, lags, table, model, n_pix=npix, normalization=norm, phi0=fit.values["flow_angle"],
                         beta0=fit.values["beta"], fit_exponent=fit_exponent, fit_transit=fit_transit, fit_rs=False,
                         start=dict(start, rs=rb["rs"]), weights=weights, segments=segs, intensity=intensity,
                         n_frames=n_frames)
        fit.std["rs"] = rb["std"]
        fit.info["rs_from"] = "row means"
        row_info = {"rs": rb["rs"], "std": rb["std"], "chi2": rb["chi2"], "n_values": rb["n_values"],
                    "upper_limit": rb["upper_limit"], "interval68": rb["interval68"],
                    "interval95": rb["interval95"], "rs_global_fit": rs_maps[0], "rs_global_fit_std": rs_maps[1],
                    "intensity_check": _intensity_check(lag, model, fit, rb, speckle_area, weights, intensity,
                                                        table, speckle_px)}
    per = _per_lag(table, fit, c, jack, model, weights, segs)
    rs_meas = (fit.values["rs"], fit.std["rs"]) if "rs" in fit.free or row_info is not None else None
    config = _configuration_term(fit, per, table, model, lag.stop - lag.start, len(lag.group_edges) - 1, seed,
                                 rs_measured=rs_meas, weights=weights)
    if row_info is not None:  # R_s held at the row means: its error (jackknife jointly, configuration part) in the others
        row_info["propagated"] = _propagate_held_rs(fit, rb["jackknife"], config.get("rs_std", 0.0))
    edge = bool(fit.gamma_l(W) > 0.98 * table.gamma_max or fit.d2(W) > 0.98 * table.d2_max)
    return SteadyAnalysis(fit=fit, lags=lags, c=c, errors=fit.errors, per_lag=per, flow_angle=fit.values["flow_angle"],
                          info={"start": {"lag_a": 1, "lag_b": tb, "gamma_l_a": first["gamma_l"][0],
                                          "gamma_l_b": second["gamma_l"][0], "d2_b": second["d2"][0],
                                          "flow_angle_pair_fit": phi},
                                "table": {"rs": table.rs, "gamma_max": table.gamma_max, "d2_max": table.d2_max,
                                          "nodes": table.n_nodes, "cached": table.cached, "rebuilt_at_fitted_rs": rebuilt},
                                "table_edge_reached": edge, "configurations": config, "rs_row_means": row_info})
