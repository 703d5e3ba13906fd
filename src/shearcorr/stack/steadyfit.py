r"""The steady-shear model of the lag maps and its fit (used by :mod:`.steady`).

Data: :math:`c_{\tau b}` = C - 1 of bin b averaged over all time origins at lag tau
(:func:`.engine.lag_sums`), tau = 0 (the contrast, shot noise removed) and 1..W.

Model (docs/stacks.md derives it). With gamma L(tau) = (shear rate) x tau x L and the non-affine
mean-squared displacement per axis :math:`D_2^2(\tau) = 2 D \tau_r (\tau/\tau_r)^\alpha`
(tau_r = the geometric mean of the fitted lags, D the diffusion coefficient there, alpha = 1
diffusive, < 1 sub-, > 1 super-diffusive):

.. math:: c_{\tau b} = \beta\,S_b\,\big[T_\tau\,y_b\big(\gamma L(\tau), D_2(\tau);\ \phi_0\big) + \Delta_{\tau b}\big]
          + (B_b - 1)\,f_\tau\,k_\tau

* y: the pair model (:class:`.templates.PairTable`) -- the same model as one frame pair;
* ``normalization="time"`` (frames divided by the ring mean averaged over time): an average over
  time origins is an ensemble average, so the finite-N baseline B - 1 of the ensemble engine comes
  back: :math:`S = A - B` and B - 1 from the engine at R_s, which is fitted (n_l2 is given);
* ``normalization="frame"``: S = 1 and no baseline term (the pair's self-calibrated contrast);
* transit: particles carried through the beam by the mean velocity v at its centre. The fraction
  of particles in the beam at both times, :math:`f_\tau = \langle \max(0, 1 - |v\tau + \dot\gamma
  \tau y|/L)\rangle_y`, scales the baseline (its covariance counts shared particles) and, squared
  and relative to the shear-only fraction the engine already holds, the amplitude of the coherent
  term: :math:`T_\tau = (f_\tau/f_\tau^{v=0})^2`. Transit also changes the *shape* of that term: the
  shared particles are weighted by their overlap :math:`\max(0, 1 - |v\tau + \dot\gamma\tau y|/L)`, linear
  in y under transit (the whole beam height sampled evenly), even in y without it (particles sheared out
  at both edges); :math:`\Delta` (:func:`.transit.transit_shape_correction`) puts the transit's weight in
  place of the engine's (without it the sinc^2 strip was modelled wider by ~gamma/16 and the shear rate
  read high by as much); k: particles lost by their own steps (baseline only).

Fit: weighted least squares over (shear rate, D, alpha, v, R_s, beta, flow angle) of the lag-0 map and
of every other lag divided by lag 0 bin by bin (the speckle contrast of a bin -- a random number of its
finite set of speckles, the same for many frames when the beam content renews slowly -- cancels);
errors of the ratio maps from the variance across groups of time origins (a per (lag, q row) law
V + kappa r^2 at the prediction, as for pairs), of lag 0 from the scatter of its bins in a q row. Uncertainties: a linear delete-one-group jackknife
of the whole fit (the origins of one group removed, :math:`\delta\theta_g = H J^T W (c_{(g)} - c)`):
it carries every correlation between lags, bins and overlapping pairs. ``SteadyFit.cov`` starts as that
jackknife covariance; terms found later (:mod:`.steady`: the configuration term, a held R_s's error through
``info["rs_gradient"]`` = d theta / d R_s) are added to it by :meth:`SteadyFit.add_covariance`, so the stds
and every derived quantity (the Peclet number, :meth:`SteadyFit.peclet`) carry the same terms.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import least_squares

from ..errors import ShearcorrError
from .intensity import detector_baseline
from .transit import footprint, transit_shape_correction

__all__ = ["SteadyFit", "Baseline", "fit_steady", "lag_map_errors", "lag_ratios", "time_mean_variance", "STEADY_PARAMS"]

STEADY_PARAMS = ("shear_rate", "diffusion", "exponent", "transit", "rs", "beta", "flow_angle")
#: R_s grid of the baseline interpolation: step and upper end (the fit's bound).
RS_STEP, RS_MAX = 0.015, 0.45


def lag_map_errors(jack: np.ndarray, n_pix: np.ndarray, c_pred: np.ndarray) -> np.ndarray:
    r"""Standard errors of lag maps from their delete-one-group jackknife maps, smoothed by a law.

    Per lag and q row, the jackknife variance of every bin times its pixel count is regressed on
    the predicted correlation: :math:`n_b\,\mathrm{Var}_b = V + \kappa c_b^2` (V, kappa >= 0,
    least squares), as the variance law of a pair (:meth:`CorrelationMap.errors`); a bin's own
    noisy variance would favour bins that fluctuated low. Returns (n_lags, n_q, n_phi).
    """
    G = jack.shape[0]
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # bins without pixels: all-NaN columns
        var = (G - 1.0) / G * np.nansum((jack - np.nanmean(jack, axis=0)) ** 2, axis=0)  # (nl, nq, np)
    npx = np.broadcast_to(n_pix, var.shape)
    z = var * npx
    x2 = np.asarray(c_pred, dtype=np.float64) ** 2
    ok = np.isfinite(z) & np.isfinite(x2) & (npx > 0) & (z > 0)
    zz, xx = np.where(ok, z, 0.0), np.where(ok, x2, 0.0)
    n = ok.sum(axis=2)
    sx, sz = xx.sum(2), zz.sum(2)
    sxx, sxz = (xx * xx).sum(2), (xx * zz).sum(2)
    with np.errstate(invalid="ignore", divide="ignore"):
        det = n * sxx - sx * sx
        kap = np.where(det > 1e-300, (n * sxz - sx * sz) / det, 0.0)
        kap = np.clip(np.nan_to_num(kap), 0.0, None)
        V = np.where(n > 0, (sz - kap * sx) / n, np.nan)
        V = np.where(V > 0, V, np.where(n > 0, sz / np.maximum(n, 1), np.nan))
        return np.sqrt((V[:, :, None] + kap[:, :, None] * x2) / np.where(npx > 0, npx, np.nan))


def lag_ratios(c: np.ndarray, jack: np.ndarray, segments=None):
    r"""Every lag >= 1 divided by lag 0, bin by bin, with the ratio's own bias removed by a jackknife.

    A ratio of two noisy averages is biased: :math:`E[\hat c_\tau/\hat c_0] - c_\tau/c_0 \approx
    (c_\tau/c_0)\,[\mathrm{Var}\,\hat c_0/c_0^2 - \mathrm{Cov}(\hat c_\tau, \hat c_0)/(c_\tau c_0)]`, of order
    1/(speckles x configurations of the bin), and it reads *low* whenever the lag-tau map keeps less of lag 0's
    fluctuation than its own (transit; and, without transit, because lag 0 holds the squares of the very frames
    whose products make lag tau). Quenouille's correction over K subsets of the data,

    .. math:: r = K\,\hat r - (K - 1)\,\overline{\hat r_{(k)}},

    removes the 1/n part when the subsets are independent. The subsets:

    * ``segments`` given (:meth:`.engine.LagSums.segment_jackknife`): the bin's K thin rings, different
      speckles over all frames. Measured (issue 11, docs/stacks.md): on transit-free 128^2 stacks of 60 frames the
      plain per-bin ratio at lag 10 read 0.953 of the rows' pooled ratio, 0.975-1.018 corrected; the per-lag
      amplitude at lag 10 went from 0.93 to 0.983 and the spurious transit of seeds 11/12 from 1.4-1.5 to
      0.8-0.9 +- 1.1 R0 per frame;
    * otherwise the G groups of time origins (``jack``): they see only the part of the bias that is not shared
      between groups -- about half on transit stacks, none when one slowly renewing configuration spans them.

    Parameters
    ----------
    c : ndarray (n_lags, n_q, n_phi)
        C - 1 per lag, lag 0 first.
    jack : ndarray (G, n_lags, n_q, n_phi)
        Delete-one-group maps.
    segments : tuple (ndarray (n_lags - 1, n_q, n_phi), ndarray (n_q, n_phi)), optional
        Mean delete-one-segment ratio per bin and the number K of segments per bin.

    Returns
    -------
    r : ndarray (n_lags - 1, n_q, n_phi)
        Corrected ratios (the plain ratio where the subsets give none).
    r_plain : ndarray (n_lags - 1, n_q, n_phi)
    r_groups : ndarray (G, n_lags - 1, n_q, n_phi)
        The delete-one-group ratios (for the errors).
    """
    G = jack.shape[0]
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # bins without pixels: all-NaN columns
        plain = c[1:] / np.where(c[0] > 0, c[0], np.nan)[None]
        groups = jack[:, 1:] / np.where(jack[:, :1] > 0, jack[:, :1], np.nan)
        if segments is not None:
            mean_k, K = segments
            K = np.broadcast_to(K, plain.shape)
        else:
            mean_k, K = np.nanmean(groups, axis=0), np.full(plain.shape, float(G))
        r = np.where(np.isfinite(mean_k) & (K > 1), K * plain - (K - 1) * mean_k, plain)
    return r, plain, groups


def time_mean_variance(shared, n_frames: int, nodes: int = 64) -> float:
    r"""Variance of the time mean of a unit baseline fluctuation over ``n_frames`` frames, which the 'time'
    normalisation (frames divided by their time mean) removes from every lag:

    .. math:: V = \frac{1}{T}\Big[1 + 2\sum_{s=1}^{T-1}\Big(1 - \frac{s}{T}\Big) g(s)\Big]

    g(s) = ``shared(s)``, the baseline's shared fraction at lag s (f_s k_s; vectorised over s), evaluated on
    ``nodes`` geometric lags and interpolated linearly between them (the sum is smooth in s)."""
    T = int(n_frames)
    if T < 2:
        return 1.0
    s_all = np.arange(1, T, dtype=np.float64)
    at = np.unique(np.round(np.geomspace(1.0, T - 1.0, min(nodes, T - 1))))
    g = np.interp(s_all, at, np.asarray(shared(at), dtype=np.float64))
    return float((1.0 + 2.0 * np.sum((1.0 - s_all / T) * g)) / T)


def _one_sided_rs(resid, x, j, err, chi2, rs_max):
    """R_s step above the fit where chi^2 (other parameters held) has risen by 1."""
    for step in np.geomspace(0.002, rs_max, 60):
        xp = x.copy()
        xp[j] = min(x[j] + step, rs_max)
        if float(np.sum(resid(xp, err) ** 2)) - chi2 >= 1.0:
            return float(step)
    return float(rs_max)


@dataclass
class SteadyFit:
    """Result of :func:`fit_steady`.

    ``values``/``std``/``std_nominal``: dicts over :data:`STEADY_PARAMS` (frames, R0, rad);
    ``free``: fitted parameter names; ``cov``: covariance of the free parameters -- the jackknife's, plus every
    term added to it afterwards (:meth:`add_covariance`: the configuration term, a held R_s), so that
    ``std[name]**2 == cov[i, i]`` always holds and derived quantities (:meth:`peclet`) carry the same terms;
    ``tau_ref``: the reference lag of D (frames); ``prediction``: model maps (n_lags, n_q, n_phi);
    ``errors``: the standard errors used; ``chi2``, ``dof``.
    """

    values: dict
    std: dict
    std_nominal: dict
    free: list
    cov: np.ndarray
    tau_ref: float
    lags: np.ndarray
    prediction: np.ndarray
    errors: np.ndarray
    chi2: float
    dof: int
    info: dict = field(default_factory=dict)
    #: the fit's linear response to a change of the fitted data (not written out): ``gain`` (k, n) = -H J^T on
    #: the weighted values, ``ok`` (n_lags, n_q, n_phi) the values used, ``err`` their errors (lag 0 as is,
    #: the other lags as the ratio to lag 0): d theta = gain @ (delta d / err)[ok]
    linear: dict | None = field(default=None, repr=False, compare=False)

    @property
    def chi2_red(self) -> float:
        return self.chi2 / max(self.dof, 1)

    def add_covariance(self, names, extra, term=None) -> None:
        r"""Add the covariance ``extra`` (k, k) of the parameters ``names`` (a subset of ``free``) to ``cov``
        and set their ``std`` to the square root of the new diagonal: :math:`\Sigma \leftarrow \Sigma + E`
        (independent error sources add their covariances). ``term``: a name under which the addition (over all
        of ``free``) is kept in ``info["cov_terms"]`` (the jackknife part is ``cov`` minus their sum)."""
        idx = [self.free.index(n) for n in names]
        extra = np.asarray(extra, dtype=np.float64).reshape(len(idx), len(idx))
        self.cov = np.array(self.cov, dtype=np.float64)
        self.cov[np.ix_(idx, idx)] += extra
        if term is not None:
            terms = self.info.setdefault("cov_terms", {})
            full = np.asarray(terms.get(term, np.zeros(self.cov.shape)), dtype=np.float64)
            full[np.ix_(idx, idx)] += extra
            terms[term] = full
        for i, n in zip(idx, names):
            self.std[n] = float(np.sqrt(max(self.cov[i, i], 0.0)))

    def peclet(self) -> tuple:
        r"""Peclet number and its standard error: :math:`Pe = \dot\gamma R_0^2 / D` (R0 = 1: shear rate
        per frame over D in R0^2 per frame, dimensionless), with the linear propagation of the full covariance
        ``cov`` (all its terms, the cross term included):

        .. math:: \Big(\frac{\sigma_{Pe}}{Pe}\Big)^2 = \frac{\Sigma_{\dot\gamma\dot\gamma}}{\dot\gamma^2}
                  + \frac{\Sigma_{DD}}{D^2} - \frac{2\,\Sigma_{\dot\gamma D}}{\dot\gamma D}

        Returns (Pe, std)."""
        v = self.values
        i, j = self.free.index("shear_rate"), self.free.index("diffusion")
        pe = v["shear_rate"] / v["diffusion"]
        grad = np.array([1.0 / v["shear_rate"], -1.0 / v["diffusion"]])
        c = np.asarray(self.cov)[np.ix_([i, j], [i, j])]
        return float(pe), float(abs(pe) * np.sqrt(max(float(grad @ c @ grad), 0.0)))

    def gamma_l(self, lags) -> np.ndarray:
        """gamma L (R0) of the fitted model at ``lags`` (frames)."""
        return self.values["shear_rate"] * self.info["beam_size"] * np.asarray(lags, dtype=np.float64)

    def d2(self, lags) -> np.ndarray:
        """D2 (R0) of the fitted model at ``lags`` (frames)."""
        t = np.asarray(lags, dtype=np.float64)
        v = self.values
        return np.sqrt(2.0 * v["diffusion"] * self.tau_ref * (t / self.tau_ref) ** v["exponent"])


class Baseline:
    """Bin-level (A - B) and B_true - 1 of the ensemble engine as functions of R_s.

    Both are smooth in R_s (B - 1 grows as R_s^4 at small R_s): the engine is called on a grid of
    R_s (step :data:`RS_STEP` over [0, RS_MAX]) once, when first needed, and interpolated (cubic),
    so a fit over R_s costs no engine call per iteration. ``weights``: the pixel weights of the sub-grid
    (:func:`.templates.pixel_weights`, (n_q, sq, n_phi, sp)); a q row is averaged over its sub-grid in q
    as its pixels sample it (B - 1 rises steeply with q; the unweighted mean overstated it in the top
    rows, whose pixels crowd to their low-q side where the detector's corners cut them). ``intensity``:
    ``"volume"`` (frames divided by their configuration's scattering volume, as the engine) or ``"detector"``
    (frames as a detector records them: B - 1 of :func:`.intensity.detector_baseline`, lag-0 amplitude 1).
    """

    def __init__(self, model, weights=None, intensity: str = "volume"):
        from ..experiment.model import D_DECORRELATED

        self.model = model
        self.intensity = intensity
        if weights is None:
            self.w_row = np.full((model.n_q, model.sq), 1.0 / model.sq)
        else:
            w = np.asarray(weights, dtype=np.float64).reshape(model.n_q, model.sq, -1).sum(axis=2)
            tot = w.sum(axis=1, keepdims=True)
            self.w_row = np.where(tot > 0, w / np.where(tot > 0, tot, 1.0), 1.0 / model.sq)
        self.d_dec = D_DECORRELATED
        # the engine's decorrelated baseline has lost particles by the D_DECORRELATED steps
        self.f_eng = float(footprint(getattr(model, "beam", None), model.beam_size).step_keep(D_DECORRELATED))
        self._spline = None

    def _build(self):
        from scipy.interpolate import CubicSpline

        from ..experiment.model import ensemble_g

        m = self.model
        grid = np.arange(0.0, RS_MAX + RS_STEP / 2, RS_STEP)
        vals = []
        beam = getattr(m, "beam", None)  # the geometry's footprint: its effective particle number sets B - 1
        for rs in grid:
            if self.intensity == "detector":  # the particle number in the beam (.intensity): closed form
                b1 = detector_baseline(m.q_sub, rs, m.n_l2, beam, m.beam_size)
                vals.append(np.stack([np.ones(m.n_q), (b1.reshape(m.n_q, m.sq) * self.w_row).sum(1)]))
                continue
            a = ensemble_g(m.params(0.0, 0.0, rs), m.q_sub, [0.0], beam=beam)[:, 0]
            b = ensemble_g(m.params(0.0, self.d_dec, rs), m.q_sub, [0.0], beam=beam)[:, 0]
            vals.append(np.stack([((a - b).reshape(m.n_q, m.sq) * self.w_row).sum(1),
                                  ((b - 1.0).reshape(m.n_q, m.sq) * self.w_row).sum(1) / self.f_eng]))
        self._spline = CubicSpline(grid, np.array(vals), axis=0)

    def __call__(self, rs):
        if self._spline is None:
            self._build()
        S, B1 = self._spline(float(np.clip(rs, 0.0, RS_MAX)))
        n_phi = self.model.n_phi
        return np.repeat(S[:, None], n_phi, axis=1), np.repeat(B1[:, None], n_phi, axis=1)


def fit_steady(c, jack, lags, table, model, *, n_pix, normalization="time", phi0, beta0, tau_ref=None,
               fit_exponent=True, fit_transit=True, fit_rs=None, start=None, max_nfev=200, weights=None,
               segments=None, intensity="volume", n_frames=None) -> SteadyFit:
    """Fit the steady-shear model to lag maps (module docstring).

    Parameters
    ----------
    c : ndarray (n_lags, n_q, n_phi)
        C - 1 per lag (lag 0 = contrast), NaN for unusable bins.
    jack : ndarray (n_groups, n_lags, n_q, n_phi)
        Delete-one-group maps (:meth:`.engine.LagSums.jackknife`).
    lags : array of int
        The lags of ``c`` (frames), including 0.
    table : PairTable
        Interpolated pair model; its ``model`` (BinnedPairModel) gives the bins and constants.
    n_pix : ndarray (n_q, n_phi)
        Pixels per bin.
    normalization : {"time", "frame"}
    phi0 : float
        Start value of the flow angle (rad, detector azimuth).
    beta0 : float
        Start value of the contrast.
    start : dict, optional
        Start values of shear_rate (per frame), diffusion (R0^2 per frame), exponent, transit, rs.
    fit_rs : bool, optional
        Fit R_s (default: with the "time" normalisation only, where the baseline carries it).
    weights : ndarray, optional
        Pixel weights of the model's sub-grid (:func:`.templates.pixel_weights`) for the baseline's
        bin averages (:class:`Baseline`).
    segments : tuple, optional
        Delete-one-segment ratios (:meth:`.engine.LagSums.segment_jackknife`) for the ratio's bias
        correction (:func:`lag_ratios`; default: the groups of origins).
    intensity : {"volume", "detector"}
        What the frames were divided by (:class:`Baseline`; "time" normalisation only).
    n_frames : int, optional
        Frames of the stack ("time" normalisation): the baseline's variance of the time mean, which that
        normalisation removes, is subtracted from every lag (:func:`time_mean_variance`); None: not modelled.
    """
    lags = np.asarray(lags, dtype=np.int64)
    c = np.asarray(c, dtype=np.float64)
    if c.shape[0] != lags.size or lags[0] != 0 or lags.size < 3:
        raise ShearcorrError("the steady fit needs lag 0 and at least two further lags")
    L = model.beam_size
    pos = lags[1:].astype(np.float64)
    tau_ref = float(np.exp(np.mean(np.log(pos)))) if tau_ref is None else float(tau_ref)
    fit_rs = (normalization == "time") if fit_rs is None else bool(fit_rs)
    base = Baseline(model, weights, intensity)
    st = dict(start or {})
    full0 = np.array([st.get("shear_rate", 0.01), st.get("diffusion", 0.1), st.get("exponent", 1.0),
                      st.get("transit", 0.0), st.get("rs", table.rs), beta0, phi0])
    free = [0, 1] + ([2] if fit_exponent else []) + ([3] if fit_transit else []) + ([4] if fit_rs else []) + [5, 6]
    # per-parameter scales and bounds
    fp = footprint(getattr(model, "beam", None), L)
    vmax = fp.reach / max(float(pos.max()), 1.0)
    lo_full = np.array([0.0, 1e-8, 0.1, 0.0, 0.0, 1e-6, phi0 - np.pi / 4])
    hi_full = np.array([np.inf, np.inf, 2.5, vmax, RS_MAX, 2.0, phi0 + np.pi / 4])
    xs_full = np.array([max(full0[0], 1e-4), max(full0[1], 1e-3), 0.1, max(vmax / 20, 1e-3), 0.05, 0.05, 0.02])
    def var_mean(v):  # the baseline's variance of the time mean (per unit B - 1), removed by the normalisation
        sr, D, al, tr = v[:4]
        if n_frames is None or normalization != "time":
            return 0.0
        return time_mean_variance(lambda s: fp.fractions(tr * s, sr * s)[1] * fp.step_keep(
            np.sqrt(np.clip(2.0 * D * tau_ref * (s / tau_ref) ** al, 0.0, None))), n_frames)

    def maps(v):
        sr, D, al, tr, rs, beta, ph = v
        gl = sr * L * pos
        d2 = np.sqrt(np.clip(2.0 * D * tau_ref * (pos / tau_ref) ** al, 0.0, None))
        y = table.y(gl, d2, ph)  # (nl-1, nq, nphi)
        fc, f = fp.fractions(tr * pos, sr * pos)  # coherent and baseline shared fractions
        fc0 = fp.fractions(0.0 * pos, sr * pos)[0]
        keep = fp.step_keep(d2)  # particles lost by their non-affine steps
        T = (fc / fc0)[:, None, None] ** 2
        # the transit's shared weight in place of the transit-free one (its shape, beyond the amplitude T)
        coh = T * y + (transit_shape_correction(model, ph, gl, d2, tr * pos, weights) if tr != 0.0 else 0.0)
        out = np.empty(c.shape)
        if normalization == "time":
            S, B1 = base(rs)
            vm = var_mean(v)
            out[0] = beta * S + B1 * (1.0 - vm)
            out[1:] = beta * S[None] * coh + B1[None] * (f * keep - vm)[:, None, None]
        else:
            out[0] = beta
            out[1:] = beta * coh
        return out

    def full_of(x):
        v = full0.copy()
        v[free] = x
        return v

    # lag 0 as it is; every other lag divided by lag 0, bin by bin: the speckle contrast of a bin is a
    # random number fixed by its finite set of speckles and, when the beam content renews slowly, by
    # the same configuration for many frames -- common to all lags, it cancels in the ratio (whose own bias
    # the jackknife removes: lag_ratios)
    r, r_plain, r_groups = lag_ratios(c, jack, segments)
    d = np.concatenate([c[:1], r])
    d_plain = np.concatenate([c[:1], r_plain])
    jd = np.concatenate([jack[:, :1], r_groups], axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        c0 = np.where(c[0] > 0, c[0], np.nan)
        # lag 0: the bins of a q row scatter by their own speckle statistics around one value
        row_sd = np.array([np.nanstd(row) if np.isfinite(row).sum() > 2 else np.nan for row in c[0]])
    err0 = np.broadcast_to(row_sd[:, None], c.shape[1:])

    def ratio(m):
        return np.concatenate([m[:1], m[1:] / m[:1]])

    def errors(pred):
        e = lag_map_errors(jd, n_pix, pred)
        e[0] = err0
        return e

    def resid(x, err):
        r = (d - ratio(maps(full_of(x)))) / err
        return r[ok]

    x0 = np.clip(full0[free], lo_full[free] + 1e-12, hi_full[free] - 1e-12)
    err = errors(np.zeros_like(d))
    ok = np.isfinite(d) & np.isfinite(err) & (err > 0)
    if ok.sum() < len(free) + 5:
        raise ShearcorrError(f"only {int(ok.sum())} usable (lag, bin) values for the steady fit; use more frames or fewer bins")
    for k in range(3):
        sol = least_squares(resid, x0, bounds=(lo_full[free], hi_full[free]), args=(err,), x_scale=xs_full[free],
                            diff_step=1e-4, xtol=1e-10, ftol=1e-10, max_nfev=max_nfev)
        x0 = sol.x
        if k < 2:
            err = errors(ratio(maps(full_of(x0))))
            ok = np.isfinite(d) & np.isfinite(err) & (err > 0)
    v = full_of(sol.x)
    pred = maps(v)
    r = resid(sol.x, err)
    chi2, dof = float(np.sum(r**2)), int(r.size - len(free))
    # Jacobian (weighted) at the solution, by central differences
    J = np.empty((r.size, len(free)))
    for j in range(len(free)):
        h = 1e-4 * xs_full[free][j]
        xp, xm = sol.x.copy(), sol.x.copy()
        xp[j] += h
        xm[j] -= h
        J[:, j] = (resid(xp, err) - resid(xm, err)) / (2 * h)
    H = np.linalg.pinv(J.T @ J)
    if 4 in free and sol.x[free.index(4)] <= 1e-6:
        # R_s at its bound 0: the model's R_s derivative vanishes there (B - 1 ~ R_s^4), and the inverse of its
        # vanishing curvature (measured: std 16-31 for R_s = 0) would also leak into the others; R_s is held
        # for the linear covariance and gets the one-sided error below
        keep = [i for i in range(len(free)) if i != free.index(4)]
        H = np.zeros((len(free), len(free)))
        H[np.ix_(keep, keep)] = np.linalg.pinv(J[:, keep].T @ J[:, keep])
    G = jack.shape[0]
    dev = np.stack([((jd[g] - d_plain) / err)[ok] for g in range(G)])  # (G, n): weighted perturbations
    dth = -(dev @ J) @ H  # (G, k): delta of the parameters when group g is removed
    dth = np.nan_to_num(dth)
    cov = (G - 1.0) / G * (dth - dth.mean(0)).T @ (dth - dth.mean(0))
    std_jk = np.sqrt(np.clip(np.diag(cov), 0, None))
    std_nom = np.sqrt(np.clip(np.diag(H), 0, None) * max(chi2 / max(dof, 1), 1.0))
    names = [STEADY_PARAMS[i] for i in free]
    if 4 in free:  # R_s near 0: the baseline grows as R_s^4, the linear error vanishes; one-sided instead
        j = free.index(4)
        with np.errstate(invalid="ignore", divide="ignore"):
            infl = float(np.nanmedian(np.where(np.arange(len(free)) != j, std_jk / std_nom, np.nan)))
        std_jk[j] = max(std_jk[j], _one_sided_rs(resid, sol.x, j, err, chi2, hi_full[4]) * max(infl, 1.0))
        # the covariance carries the same R_s error: its row and column scaled (correlations kept)
        sc = np.ones(len(free))
        sc[j] = std_jk[j] / np.sqrt(cov[j, j]) if cov[j, j] > 0 else 0.0
        cov = cov * np.outer(sc, sc)
        cov[j, j] = std_jk[j] ** 2
    rs_gradient = None
    if normalization == "time" and 4 not in free:
        # R_s held (measured elsewhere, e.g. on the q-row means): how the fitted parameters follow it,
        # d theta / d R_s = -H J^T d r / d R_s (linear, the others refitted), for the propagation of its error
        h = 2e-3
        vp, vm = v.copy(), v.copy()
        vp[4], vm[4] = min(v[4] + h, RS_MAX), max(v[4] - h, 0.0)
        if vp[4] > vm[4]:
            drs = ((d - ratio(maps(vp))) / err)[ok] - ((d - ratio(maps(vm))) / err)[ok]
            rs_gradient = dict(zip([STEADY_PARAMS[i] for i in free], (-(H @ (J.T @ drs)) / (vp[4] - vm[4])).tolist()))
    values = {n: float(v[i]) for i, n in enumerate(STEADY_PARAMS)}
    std = {n: 0.0 for n in STEADY_PARAMS}
    nom = {n: 0.0 for n in STEADY_PARAMS}
    for j, n in enumerate(names):
        std[n], nom[n] = float(std_jk[j]), float(std_nom[j])
    return SteadyFit(values=values, std=std, std_nominal=nom, free=names, cov=cov, tau_ref=tau_ref, lags=lags,
                     prediction=pred, errors=np.concatenate([err[:1], err[1:] * c0[None]]), chi2=chi2, dof=dof,
                     info={"beam_size": L, "normalization": normalization, "intensity": intensity,
                           "n_frames": n_frames, "time_mean_variance": var_mean(v), "n_groups": int(G),
                           "success": bool(sol.success),
                           "jackknife_deltas": dict(zip(names, dth.T.tolist())),  # per group of origins (linear)
                           "nfev": int(sol.nfev), "n_values": int(r.size), "table_rs": table.rs,
                           "rs_gradient": rs_gradient,
                           "ratio_bias_correction": "thin-ring segments" if segments is not None else "groups of origins"},
                     linear={"gain": -(H @ J.T), "ok": ok, "err": err})
