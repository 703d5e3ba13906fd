r"""R_s of a steady stack from the covariance of its q-row mean intensities (the finite-N baseline alone).

The baseline B - 1 that carries R_s is the configuration-to-configuration fluctuation of the incoherent
intensity P/S: common to every pixel of a q row. The mean of a row over its n pixels keeps it and
averages the speckle down: with :math:`x_t = \bar I_t/\langle\bar I\rangle_t - 1` the row mean's
relative fluctuation in frame t (the 'time' normalisation),

.. math:: \langle x_t x_{t+\tau}\rangle = (B - 1) f_\tau k_\tau + \frac{\bar c^{\,coh}_\tau}{n_{\rm eff}}
          - \frac{1}{T}\sum_{|s|<T}\Big(1 - \frac{|s|}{T}\Big)(B - 1) f_s k_s ,\qquad \tau \ge 1

-- the baseline covariance of the shared particles (f, k: transit and non-affine losses, as in
:mod:`.steadyfit`), the coherent (speckle) part of the pixel correlation divided by the number of
independent speckles of the row (n_eff = n / a, a = s^2 (1 + f): the speckle area s^2 in pixels, doubled for
the fraction f of the row's pixels whose Friedel mirror -- the same speckle -- is in the row too;
:func:`.analysis.speckle_area`), and minus the variance of the time mean that the normalisation removes.
Lag 0 (shot noise) is not used.

Why not from the bin maps alone: there the baseline (1e-4 of the contrast at R_s = 0.10) sits under the
coherent term and R_s also scales the ratio to lag 0 (beta S / (beta S + B - 1)), so a 1e-3 misfit of the
coherent model at high q moves R_s (docs/stacks.md, "R_s from the row means"). Here the coherent part is
suppressed by 1/n_eff and modelled from the global fit.

Fit: R_s on a grid of :data:`.steadyfit.RS_STEP` / 6 over [0, RS_MAX] then refined, weighted by the
delete-one-group jackknife variances of the row covariances; its error is the delete-one-group jackknife
of the whole estimate (every group re-solved; B - 1 is even in R_s, so a linear error near 0 is meaningless).
At the bound R_s = 0 the groups re-solve to 0 as well and that jackknife collapses; there the std is at least
the one-sigma upper limit of a linear fit of the excess over the R_s = 0 baseline, and the 68 % and 95 % intervals
of R_s come from that linear excess (:func:`_excess_intervals`: asymmetric near 0, where R_s is the square root
of a noisy excess).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar

from .steadyfit import RS_MAX, RS_STEP, Baseline, time_mean_variance
from .transit import footprint

__all__ = ["row_covariances", "row_jackknife", "fit_row_baseline"]


def _row_fluctuations(lag):
    """The q-row mean intensities per frame ``row`` (T, n_q), their relative fluctuations ``x`` = row / its time
    mean - 1 (0 where undefined) and the pixels per row ``n_row`` (n_q,)."""
    plan = lag.plan
    n_q, n_sub = plan.n_q, plan.n_sub
    npr = plan.n_pix_ring.astype(np.float64)
    rm = np.asarray(lag.ring_mean, dtype=np.float64)  # (T, n_rings), counts per pixel
    tot = (rm * npr[None]).reshape(rm.shape[0], n_q, n_sub).sum(2)
    n_row = npr.reshape(n_q, n_sub).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        row = tot / n_row[None]
        x = row / row.mean(axis=0)[None] - 1.0
    return row, np.where(np.isfinite(x), x, 0.0), n_row


def _group_sums(values, lag, edges):
    """Per group of origins t (``edges`` relative to the first frame) and lag tau >= 1 of ``lag``: the sum of
    ``values(tau)[t]`` (T - tau rows of n_q) over the group's origins with t + tau < T.
    Returns (sums (G, n_lags - 1, n_q), pairs (G, n_lags - 1))."""
    taus = np.asarray(lag.lags[1:], dtype=np.int64)
    T = int(lag.stop - lag.start)
    sums = np.zeros((edges.size - 1, taus.size, int(lag.plan.n_q)))
    pairs = np.zeros((edges.size - 1, taus.size))
    for j, tau in enumerate(taus):
        v = values(int(tau))
        cum = np.vstack([np.zeros((1, v.shape[1])), np.cumsum(v, axis=0)])
        hi = np.clip(edges, 0, T - tau)
        sums[:, j] = cum[hi[1:]] - cum[hi[:-1]]
        pairs[:, j] = hi[1:] - hi[:-1]
    return sums, pairs


def row_covariances(lag):
    r"""Per group of origins, the sums :math:`\sum_{t\in g} x_t x_{t+\tau}` of the q-row mean fluctuations
    and their pair counts, for the lags >= 1 of ``lag`` (:class:`.engine.LagSums`).

    Returns ``(sums (G, n_lags - 1, n_q), pairs (G, n_lags - 1), n_row (n_q,))``; ``n_row``: pixels per row.
    """
    _, x, n_row = _row_fluctuations(lag)
    T = x.shape[0]
    edges = np.asarray(lag.group_edges, dtype=np.int64) - int(lag.start)
    sums, pairs = _group_sums(lambda tau: x[: T - tau] * x[tau:], lag, edges)  # origins 0 .. T - tau - 1
    return sums, pairs, n_row


def row_jackknife(lag):
    r"""Delete-one-group row covariances, each normalised by the *deleted sample's own* time mean (as the full
    estimate is by all frames'): with :math:`c = \bar R/\bar R^{(g)}` per row (:math:`\bar R^{(g)}` the mean
    over the frames outside group g) the deleted sample's fluctuation is :math:`c(1 + x_t) - 1`, so over the
    origins outside g

    .. math:: \sum x^{(g)}_t x^{(g)}_{t+\tau} = c^2 (P + \Sigma x_t + \Sigma x_{t+\tau} + \Sigma x_t x_{t+\tau})
              - c\,(2P + \Sigma x_t + \Sigma x_{t+\tau}) + P .

    Keeping the full stack's mean instead counts a group's own mean level -- which the estimate normalises
    away -- as variance (the same correction as :meth:`.engine.LagSums.jackknife`). Returns
    (G, n_lags - 1, n_q) covariances (NaN where a deleted sample has no pair).
    """
    row, x, _ = _row_fluctuations(lag)
    T = x.shape[0]
    edges = np.asarray(lag.group_edges, dtype=np.int64) - int(lag.start)
    sxy, pairs = _group_sums(lambda tau: x[: T - tau] * x[tau:], lag, edges)
    sx, _ = _group_sums(lambda tau: x[: T - tau], lag, edges)
    sy, _ = _group_sums(lambda tau: x[tau:], lag, edges)
    total = row.sum(axis=0)
    out = np.empty_like(sxy)
    for g in range(edges.size - 1):
        n_out = T - (edges[g + 1] - edges[g])
        with np.errstate(invalid="ignore", divide="ignore"):
            c = (total / T) / ((total - row[edges[g]:edges[g + 1]].sum(axis=0)) / max(n_out, 1))
        c = np.where(np.isfinite(c), c, 1.0)[None]
        P = (pairs.sum(0) - pairs[g])[:, None]
        S, X, Y = sxy.sum(0) - sxy[g], sx.sum(0) - sx[g], sy.sum(0) - sy[g]
        with np.errstate(invalid="ignore", divide="ignore"):
            out[g] = (c**2 * (P + X + Y + S) - c * (2 * P + X + Y) + P) / P
    return out


def _excess_intervals(rows_b1, shape, spk, w, ok, data_g, rs) -> dict:
    r"""Intervals of R_s from the linear excess of the row covariances over the R_s = 0 model (module docstring).

    The excess :math:`r = c - (B_0 - 1)\,s - c^{spk}` along :math:`d = (B_{R_*} - B_0)\,s`
    (:math:`R_* = 4\,` RS_STEP) is linear in the data, :math:`a = \sum w\,r\,d / \sum w\,d^2`, and may go
    negative, so its delete-one-group jackknife std :math:`\sigma_a` holds near R_s = 0, where B - 1 is even in
    R_s and R_s's own jackknife fails (it collapses at the bound). With :math:`a(R)` the excess of the model at R,
    the intervals are :math:`a^{-1}(a(R_s) \pm k\sigma_a)` (0 below, RS_MAX above) for k = 1, 2 -- asymmetric
    near 0 -- and the one-sigma upper limit :math:`a^{-1}(\sigma_a)` for an estimate at the bound."""
    from scipy.optimize import brentq

    b0 = rows_b1(0.0)
    d = np.where(ok, (rows_b1(4.0 * RS_STEP) - b0)[None] * shape, 0.0)
    norm = float(np.sum(w * d * d))
    amp = lambda c: float(np.sum(w * d * np.where(ok, c - b0[None] * shape - spk, 0.0))) / norm  # noqa: E731
    a_g = np.array([amp(c) for c in data_g])
    G = a_g.size
    sigma = float(np.sqrt((G - 1.0) / G * np.sum((a_g - a_g.mean()) ** 2)))

    def excess(x):  # the model's excess at R_s = x along d
        return float(np.sum(w * d * np.where(ok, (rows_b1(x) - b0)[None] * shape, 0.0))) / norm

    top = excess(RS_MAX)

    def inverse(target):
        if target <= 0.0:
            return 0.0
        return RS_MAX if target >= top else float(brentq(lambda x: excess(x) - target, 0.0, RS_MAX, xtol=1e-5))

    a0 = excess(rs)
    return {"excess_std": sigma, "upper_limit": inverse(sigma),
            "interval68": [inverse(a0 - sigma), inverse(a0 + sigma)],
            "interval95": [inverse(a0 - 2.0 * sigma), inverse(a0 + 2.0 * sigma)]}


def _kept_in_row(model, weights, npix, strain, phi0) -> np.ndarray:
    r"""Share of each q row's pixels whose speckle stays in the row after the shear advects it, (n_strain, n_q).

    An affine shear of strain :math:`\gamma` moves the speckle of q to :math:`q + \gamma q_\parallel e_\perp`
    (parallel and perpendicular to the flow angle ``phi0``): a fixed pixel loses it (the pair model's
    decorrelation), but the row mean keeps it while :math:`|q|` stays inside the row,
    :math:`\ln|q'| - \ln|q| = \tfrac12\ln(1 + 2\gamma\cos\psi\sin\psi + \gamma^2\cos^2\psi)`. The pixels
    fill the model's sub-cells (:func:`.templates.pixel_weights` times the pixels of each bin), each cell uniform
    in ln q."""
    lq = np.log(model.q_edges)
    width = np.diff(lq)[:, None] / model.sq
    lo = lq[:-1, None] + width * np.arange(model.sq)[None]  # (n_q, sq) sub-cells in ln q
    psi = model.phi_sub.reshape(model.n_phi, model.sp) - phi0
    c, s = np.cos(psi), np.sin(psi)
    w = (np.full((model.n_q, model.sq, model.n_phi, model.sp), 1.0 / (model.sq * model.sp)) if weights is None
         else np.asarray(weights, dtype=np.float64)) * np.nan_to_num(npix)[:, None, :, None]
    total = np.maximum(w.sum(axis=(1, 2, 3)), 1e-300)
    out = []
    for g in np.atleast_1d(strain):
        dl = 0.5 * np.log1p(2.0 * g * c * s + (g * c) ** 2)[None, None]  # (1, 1, n_phi, sp)
        a, b = lo[:, :, None, None] + dl, (lo + width)[:, :, None, None] + dl
        ov = np.clip(np.minimum(b, lq[1:, None, None, None]) - np.maximum(a, lq[:-1, None, None, None]), 0.0, None)
        out.append((w * ov / width[:, :, None, None]).sum(axis=(1, 2, 3)) / total)
    return np.array(out)


def fit_row_baseline(lag, model, fit, *, speckle_area=1.0, weights=None, intensity=None, errors=True,
                     table=None, speckle_px=1.0) -> dict:
    """R_s from the row-mean covariances (module docstring), given the global steady fit ``fit``
    (:class:`.steadyfit.SteadyFit`, either normalisation: transit, shear rate, D2(tau) and its coherent
    prediction; the row means are those of the raw frames); ``speckle_area``:
    pixels per independent speckle of each row's mean (scalar or (n_q,); :func:`.analysis.speckle_area`);
    ``weights``: pixel weights of the sub-grid (:class:`.steadyfit.Baseline`); ``intensity``: the frames' convention
    (:mod:`.intensity`; default the fit's); ``errors=False`` skips the jackknife (``std`` and ``jackknife`` None);
    ``table`` (:class:`.templates.PairTable`) and ``speckle_px`` (speckle size in pixels): with speckles of at
    least a pixel the coherent term keeps the speckles the shear moves within the row (:func:`_kept_in_row`);
    otherwise (and without a table) it is a fixed pixel's own -- point pixels spaced wider than the speckle do
    not sample a moved speckle (docs/stacks.md).

    Returns a dict: ``rs``, ``std`` (delete-one-group jackknife; at the bound R_s = 0 at least ``upper_limit``,
    else None), ``interval68`` and ``interval95`` (:func:`_excess_intervals`), ``chi2``, ``n_values``, ``jackknife``
    (R_s per deleted group), ``lags`` and the per-row data ``cov`` (n_lags - 1, n_q) and ``model``.
    """
    sums, pairs, n_row = row_covariances(lag)
    G = sums.shape[0]
    v = fit.values
    L = fit.info["beam_size"]
    T = int(lag.stop - lag.start)
    taus = np.asarray(lag.lags[1:], dtype=np.float64)
    fp = footprint(getattr(model, "beam", None), L)
    fk = lambda s: (fp.fractions(v["transit"] * s, v["shear_rate"] * s)[1]  # noqa: E731
                    * np.clip(fp.step_keep(fit.d2(np.maximum(s, 1e-12))), 0.0, None))
    f_tau = fk(taus)
    var_mean = time_mean_variance(fk, T)  # Var of the time mean per unit (B - 1)
    base = Baseline(model, weights, intensity or fit.info.get("intensity", "volume"))
    # the coherent part of the bin maps (prediction minus its baseline term), averaged over each row's pixels
    npix = np.asarray(lag.n_pix_bin, dtype=np.float64)
    coh = fit.prediction[1:]
    if fit.info.get("normalization", "time") == "time":  # the fit's baseline term (B - 1)(f k - V) removed
        _, b1_fit = base(v["rs"])
        coh = coh - b1_fit[None] * (f_tau - fit.info.get("time_mean_variance", 0.0))[:, None, None]
    def row_mean(x):
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.nansum(x * npix[None], axis=2) / npix.sum(axis=1)[None]

    coh_row = row_mean(coh)  # a fixed pixel's own speckle (the pair model: the shear's decorrelation included)
    if table is not None and speckle_px >= 1.0:  # the row keeps the speckles the shear moves within it
        S = base(v["rs"])[0] if fit.info.get("normalization", "time") == "time" else 1.0
        fc = fp.fractions(v["transit"] * taus, v["shear_rate"] * taus)[0]
        y0 = table.y(np.zeros_like(taus), fit.d2(taus), v["flow_angle"])  # without the shear
        coh_row = row_mean(v["beta"] * S * (fc**2)[:, None, None] * y0) * _kept_in_row(
            model, weights, npix, v["shear_rate"] * taus, v["flow_angle"])
    n_eff = n_row / np.maximum(np.asarray(speckle_area, dtype=np.float64), 1.0)
    spk = np.nan_to_num(coh_row / np.where(n_eff > 0, n_eff, np.nan)[None])

    def cov_of(s, p):
        with np.errstate(invalid="ignore", divide="ignore"):
            return s / p[:, None]

    cov = cov_of(sums.sum(0), pairs.sum(0))
    jack = row_jackknife(lag)
    var = (G - 1.0) / G * np.nansum((jack - np.nanmean(jack, axis=0)) ** 2, axis=0)
    rows_b1 = lambda rs: base(rs)[1][:, 0]  # noqa: E731  (n_q,)
    shape = f_tau[:, None] - var_mean  # (n_lags - 1, 1): the baseline's lag dependence, mean removed
    ok = np.isfinite(cov) & (var > 0) & (n_row[None] > 0)
    w = np.where(ok, 1.0 / np.where(var > 0, var, 1.0), 0.0)

    def chi2(rs, data):
        m = rows_b1(rs)[None] * shape + spk
        return float(np.sum(w * np.where(ok, data - m, 0.0) ** 2))

    grid = np.arange(0.0, RS_MAX + 1e-9, RS_STEP / 6.0)

    def solve(data):
        c = [chi2(r, data) for r in grid]
        i = int(np.argmin(c))
        lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, grid.size - 1)]
        if hi - lo <= 0:
            return float(grid[i])
        r = minimize_scalar(lambda x: chi2(x, data), bounds=(lo, hi), method="bounded", options={"xatol": 1e-5})
        return float(r.x) if r.fun <= c[i] else float(grid[i])

    rs = solve(cov)
    data_g = [np.where(np.isfinite(jack[g]), jack[g], cov) for g in range(G)]
    rs_g = np.array([solve(d) for d in data_g]) if errors else None
    std = float(np.sqrt((G - 1.0) / G * np.sum((rs_g - rs_g.mean()) ** 2))) if errors else None
    ex = _excess_intervals(rows_b1, shape, spk, w, ok, data_g, rs) if errors else {}
    upper = None
    if errors and rs < grid[1]:  # at the bound the groups re-solve to 0 too: the linear excess's upper limit
        upper = ex["upper_limit"]
        std = max(std, upper)
    return {"rs": rs, "std": std, "chi2": chi2(rs, cov), "n_values": int(ok.sum()), "upper_limit": upper,
            "interval68": ex.get("interval68"), "interval95": ex.get("interval95"),
            "jackknife": None if rs_g is None else rs_g.tolist(), "lags": taus.tolist(), "cov": cov,
            "model": rows_b1(rs)[None] * shape + spk, "speckle": spk, "n_eff": n_eff}
