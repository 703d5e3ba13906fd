"""Helpers shared by the stack modes: a stack map as a pair map, start values, the pair table.

A correlation map of a stack (a lag average, a pair of time bins, an echo) with standard errors
is wrapped as a :class:`~shearcorr.experiment.correlation.CorrelationMap`, so the pair analysis'
own tools apply unchanged: the flow-angle strip estimate (:func:`shearcorr.experiment.flow.strip_angle`)
and the direct fit (:func:`shearcorr.experiment.inference.fit_pair`, without the single-pair
configuration term, which a stack map averaged over many configurations does not have). They give
the flow angle and the start values; the amortized fits then use the pair table.
"""

from __future__ import annotations

import numpy as np

from ..errors import ShearcorrError
from .templates import PairTable

__all__ = ["map_as_cmap", "pair_fit_map", "build_table", "table_gamma_limit", "configuration_term", "stack_profile",
           "TABLE_GAMMA_CAP", "TABLE_D2_CAP", "CONDITION_DRAWS"]

#: Largest gamma L (R0) and D2 (R0) a table covers: beyond, the maps hold no correlation at q R0 >= 0.15.
TABLE_GAMMA_CAP, TABLE_D2_CAP = 800.0, 8.0
#: With a profile (:func:`configuration_term`): draws over the R_s prior per configuration sample kept (as the pair's
#: ``experiment.inference.CONDITION_DRAWS``); the kept samples are the 1/CONDITION_DRAWS nearest in profile slope.
CONDITION_DRAWS = 8
#: Child stream of ``seed`` for the conditioning draws (as ``experiment.inference.CONDITION_STREAM``).
CONDITION_STREAM = 1000
#: Fewest q rows with a positive, finite mean intensity for the profile conditioning.
MIN_PROFILE_ROWS = 4
#: Smallest gamma L (R0) of the maps whose relative gamma L error enters ``gamma_l_shared_rel_std``.
SHARED_GAMMA_MIN = 5.0


def map_as_cmap(c, sigma, plan, beta: float, beta_err: float):
    """A CorrelationMap holding C - 1 = ``c`` with errors ``sigma`` (n_q, n_phi) on the plan's bins.

    The variance law of the pair is set up so that :meth:`CorrelationMap.errors` at c = 0 returns
    the row medians of ``sigma`` scaled by the pixel counts, and grows with c^2 as ``sigma`` does.
    """
    from ..experiment.correlation import CorrelationMap

    npix = plan.n_pix_bin.astype(np.float64)
    s = np.asarray(sigma, dtype=np.float64)
    good = np.isfinite(c) & np.isfinite(s) & (s > 0)
    var_u = np.where(good, s**2 * npix, np.nan)
    with np.errstate(invalid="ignore"):
        V = np.array([np.nanmedian(row) if np.isfinite(row).any() else np.nan for row in var_u])
    phi_edges = plan.phi_edges
    return CorrelationMap(q=plan.q, phi=0.5 * (phi_edges[:-1] + phi_edges[1:]), q_edges=plan.q_edges, phi_edges=phi_edges,
                          C=np.where(good, 1.0 + c, np.nan), C_err=np.where(good, s, np.nan), n_pix=npix,
                          n_eff=np.where(good, npix, 0.0), beta=float(beta), beta_err=float(beta_err),
                          beta_frames=(float(beta), float(beta)), ring_q=plan.q, ring_I=(None, None),
                          var_u=np.nan_to_num(var_u), area=np.ones_like(npix), var_d=np.stack([np.sqrt(V), np.sqrt(V)], axis=1),
                          info={"source": "stack map"})


def pair_fit_map(c, sigma, plan, model, *, beta: float, beta_err: float, phi0=None, seed=0) -> dict:
    """Direct pair fit of one stack map (flow angle free unless ``phi0`` is given).

    Returns the estimates of the :class:`~shearcorr.experiment.inference.PairFit` as a dict of
    (value, std): ``gamma_l``, ``d2``, ``flow_angle`` (rad), ``beta``, and ``chi2_red``; with the flow
    free also ``strip`` (the model-free flow estimate, rad).
    """
    from ..experiment.flow import strip_angle
    from ..experiment.inference import fit_pair

    cm = map_as_cmap(c, sigma, plan, beta, beta_err)
    if cm.ok.sum() < 8:
        raise ShearcorrError(f"only {int(cm.ok.sum())} usable bins in a stack map; use fewer bins or check the mask")
    strip = None
    if phi0 is None:
        strip = strip_angle(cm, seed=seed)[0]
        f = fit_pair(cm, model, phi0=strip, fit_flow=True, n_configs=0, seed=seed)
    else:
        f = fit_pair(cm, model, phi0=float(phi0), fit_flow=False, n_configs=0, seed=seed)
    return {"gamma_l": tuple(f.gamma_l), "d2": tuple(f.d2), "flow_angle": tuple(f.flow_angle), "beta": tuple(f.beta),
            "chi2_red": f.chi2_red, "strip": strip}


def table_gamma_limit(model, du=None) -> float:
    """Largest ``gamma_max`` a table may be asked for: its last node (the range is rounded up to a whole
    node and two more are added for the interpolation stencil) stays inside the analytic engine's
    domain, gamma L <= ``forward.domain.GAMMA_MAX`` x beam size."""
    from ..forward.domain import GAMMA_MAX
    from .templates import DEFAULT_DU, GAMMA0

    step = float(DEFAULT_DU if du is None else du)
    n_nodes = int(np.floor(np.arcsinh(GAMMA_MAX * float(model.beam_size) / GAMMA0) / step)) + 1
    return float(GAMMA0 * np.sinh(max(n_nodes - 3, 1) * step))


def build_table(model, rs: float, gamma_max: float, d2_max: float, *, executor=None, cache_dir=None, du=None, dd=None,
                weights=None):
    """A :class:`.templates.PairTable` over [0, gamma_max] x [0, d2_max] (capped), cached on disk;
    ``weights``: the pixel weights of the sub-grid (:func:`.templates.pixel_weights`)."""
    kw = {}
    if du is not None:
        kw["du"] = du
    if dd is not None:
        kw["dd"] = dd
    g = float(np.clip(gamma_max, 5.0, min(TABLE_GAMMA_CAP, table_gamma_limit(model, du))))
    d = float(np.clip(d2_max, 0.5, TABLE_D2_CAP))
    return PairTable(model, rs, gamma_max=g, d2_max=d, executor=executor, cache_dir=cache_dir, weights=weights, **kw)


def stack_profile(mean_image, plan):
    r"""The static intensity profile of a stack's particles and the noise of its Guinier slope.

    ``mean_image`` (ny, nx): the time-averaged frame (``LagSums.mean_image``, ``TwoTimeMaps.mean_image``; counts per
    pixel, NaN where unused). Profile: per q row of ``plan``, the mean of its used pixels, I_row. The static
    intensity of a dilute sample is isotropic, so the row's azimuth bins b (n_b pixels, mean I_b) are independent
    estimates of it (as :func:`shearcorr.experiment.inference.pair_profile` does with 36 sectors):

    .. math:: \mathrm{var}(\ln I_{row}) = \frac{\sum_b n_b^2 (I_b - I_{row})^2}{(\sum_b n_b)^2}\,\frac{B}{B - 1}\,
              \frac{1}{I_{row}^2}

    (B bins with pixels; speckle that persists over the frames, photons, mask included), propagated to the slope
    of :func:`shearcorr.experiment.model.profile_slope` (ln I against (q R0)^2 at the rows' geometric centres).

    Returns
    -------
    profile : ndarray (n_q,)
        I_row (counts per pixel; NaN for a row without pixels).
    slope_err : float
        Standard error of the profile's slope (R0^2).
    """
    v = np.asarray(mean_image, dtype=np.float64).ravel()[plan.index]
    seg = np.repeat(np.arange(plan.n_seg), plan.n_pix_seg)
    with np.errstate(invalid="ignore"):
        s_b = plan.to_bins(np.bincount(seg, np.where(np.isfinite(v), v, 0.0), plan.n_seg))
        n_b = plan.to_bins(np.bincount(seg, np.isfinite(v).astype(np.float64), plan.n_seg))
    n_row = n_b.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        row = s_b.sum(axis=1) / n_row
        i_b = np.where(n_b > 0, s_b / np.maximum(n_b, 1.0), row[:, None])
        n_sec = (n_b > 0).sum(axis=1)
        var_ln = (np.sum(n_b**2 * (i_b - row[:, None]) ** 2, axis=1) / n_row**2 * n_sec / np.maximum(n_sec - 1, 1)
                  / row**2)
    good = np.isfinite(row) & (row > 0) & np.isfinite(var_ln) & (n_sec > 1)
    if good.sum() < 2:
        return np.where(good, row, np.nan), 0.0
    x = plan.q[good] ** 2
    x = x - x.mean()
    return np.where(good, row, np.nan), float(np.sqrt(np.sum(x**2 * var_ln[good])) / np.sum(x**2))


def _kept_draws(model, gl, d2, n_configs, rs_max, seed, profile, slope_err, report):
    """The ``n_configs`` of CONDITION_DRAWS x ``n_configs`` draws over U(0, rs_max) whose profile slope (plus a draw
    of its noise) is nearest the stack's (``experiment.inference.condition_on_profile``); None (marginal term)
    when the profile has too few rows or lies outside the draws' range. ``report`` (dict) gets the summary."""
    from ..experiment.inference import condition_on_profile
    from ..experiment.model import configuration_profiles, draw_configurations, profile_slope, rs_levels
    from ..rng import child_seed, seed_sequence

    profile = np.asarray(profile, dtype=np.float64)
    qc = np.sqrt(model.q_edges[:-1] * model.q_edges[1:])
    with np.errstate(invalid="ignore"):
        rows = np.isfinite(profile) & (profile > 0)
    if profile.shape != qc.shape or rows.sum() < MIN_PROFILE_ROWS:
        report.update(used=False, reason=f"fewer than {MIN_PROFILE_ROWS} q rows with a mean intensity")
        return None
    n_draw = n_configs * CONDITION_DRAWS
    draws = draw_configurations(model, gl, d2, rs_levels(n_draw, rs_max), n_draw,
                                child_seed(seed_sequence(seed), CONDITION_STREAM))
    slopes = profile_slope(qc[rows], configuration_profiles(model, draws)[:, rows])
    keep, info = condition_on_profile(profile_slope(qc[rows], profile[rows]), slopes, n_configs, slope_err, seed)
    report.update(info)
    if keep is None:
        return None
    report["rs_kept"] = [float(v) for v in np.percentile(draws.rs[keep], [50, 16, 84])]
    return draws.take(keep)


def configuration_term(fits, model, phi0: float, *, n_configs: int = 24, rs_max: float = 0.3, seed=0,
                       gamma_step: float = 0.7, d2_step: float = 0.5, maps=None, profile=None, profile_slope_err=0.0,
                       report=None) -> np.ndarray:
    r"""Covariance of (gamma L, D2, amplitude) per map from the map's own particles (as for a pair).

    A map that compares one configuration with its rearranged self fluctuates around the ensemble
    model with the finite sample of ~n_l2 particles (:func:`shearcorr.experiment.model.configuration_samples`).
    The spread of ``n_configs`` single-configuration maps at the fitted point, times the fitted amplitude, is
    propagated through each map's gain (sandwich :math:`G\,\mathrm{Cov}\,G^T`). Amortized: the spread is
    computed once per cell of a grid in (asinh(gamma L / 2), D2) with steps ``gamma_step``, ``d2_step`` and shared
    by the maps in it. ``maps`` (M,) bool, optional: only these maps (e.g. the ones reported; the engine calls are
    per cell of the maps used).

    Which configurations: without ``profile``, R_s marginalised over U(0, rs_max) -- honest on average over that
    prior, up to 1.6 x too wide for monodisperse particles (the spread grows steeply with R_s). With ``profile``
    (the static intensity per q row of the frames' particles, :func:`stack_profile`, and ``profile_slope_err`` the
    noise of its slope), conditioned on what the stack shows of its particles: of CONDITION_DRAWS x ``n_configs``
    draws over the prior the ``n_configs`` whose profile slope is nearest the stack's are used (as ``analyze``
    does for a pair with ``condition_profile``; docs/experiment.md). Only for maps of one set of particles (echoes,
    two-time maps of a stack whose beam content does not renew). ``report`` (dict, optional) receives the
    conditioning summary of the cell with the most maps (slope, its noise, quantile, ``rs_kept``: median and
    16-84 % of the kept draws' R_s; ``used``) and ``gamma_l_shared_rel_std``: the std over the configuration samples
    of their relative gamma L error averaged over the maps with gamma L >= ``SHARED_GAMMA_MIN`` (``shared_maps`` of
    them). The samples are the same particles in every cell (same seed; with ``profile`` nearly the same draws),
    so this is the part of the term that maps of one set of particles share: the relative gamma L error of their
    common average (it is in each map's own term too; pairs of one stack are not independent).

    Returns (M, 3, 3); maps without a fit (or not in ``maps``) get NaN.
    """
    from ..experiment.model import configuration_maps, configuration_samples, rs_levels

    p = fits.params
    M = p.shape[0]
    out = np.full((M, 3, 3), np.nan)
    good = np.all(np.isfinite(p), axis=1) & np.all(np.isfinite(fits.gain.reshape(M, 3, -1)), axis=(1, 2))
    if maps is not None:
        good &= np.asarray(maps, dtype=bool)
    if not good.any():
        return out
    cell_u = np.round(np.arcsinh(p[good, 0] / 2.0) / gamma_step).astype(int)
    cell_d = np.round(p[good, 1] / d2_step).astype(int)
    keys = np.stack([cell_u, cell_d], axis=1)
    uniq, inv = np.unique(keys, axis=0, return_inverse=True)
    rs_draw = rs_levels(n_configs, rs_max, n_levels=n_configs)  # one R_s per sample over U(0, rs_max)
    idx = np.flatnonzero(good)
    largest = int(np.argmax(np.bincount(inv.ravel(), minlength=len(uniq))))
    rel_sum, rel_n = 0.0, 0
    for k, (cu, cd) in enumerate(uniq):
        gl, d2 = 2.0 * np.sinh(cu * gamma_step), max(cd * d2_step, 0.0)
        kept, cell_report = None, {}
        if profile is not None:
            kept = _kept_draws(model, gl, d2, n_configs, rs_max, seed, profile, profile_slope_err, cell_report)
            if report is not None and k == largest:
                report.update(cell_report, cell={"gamma_l": float(gl), "d2": float(d2)})
        ys = (configuration_maps(model, kept, phi0) if kept is not None
              else configuration_samples(model, gl, d2, rs_draw, phi0, n_samples=n_configs, seed=seed))
        dev = (ys - ys.mean(axis=0)).reshape(ys.shape[0], -1)  # (K, nb)
        ms = idx[inv.ravel() == k]
        g = np.nan_to_num(fits.gain[ms].reshape(ms.size, 3, -1)) * p[ms, 2, None, None]
        G = np.einsum("kb,mib->mki", dev, g)  # (maps, K, 3)
        out[ms] = np.einsum("mki,mkj->mij", G, G) / max(ys.shape[0] - 1, 1)
        big = p[ms, 0] >= SHARED_GAMMA_MIN
        if big.any():
            rel_sum = rel_sum + (G[big, :, 0] / p[ms[big], 0, None]).sum(axis=0)  # (K,) per sample
            rel_n += int(big.sum())
    if report is not None:
        report["shared_maps"] = rel_n
        report["gamma_l_shared_rel_std"] = float(np.std(rel_sum / rel_n, ddof=1)) if rel_n else None
    return out
