"""What ``analyze`` refuses and what it flags: no number that does not mean what it says.

Refused before any work (one-line :class:`~shearcorr.errors.ShearcorrError`):

* options out of range (:func:`validate_options`): bin counts, a flow angle that is not a finite
  angle, n_l2 outside the model's validated range, contrast, saturation, q limits;
* more bins than the valid pixels can fill (:func:`check_bins`, at least :data:`MIN_PIXELS_PER_BIN`
  pixels per bin), and speckles the frame cannot hold (:func:`check_speckle`: fewer than
  :data:`MIN_SPECKLES_ACROSS` across the smaller side - also what keeps the smoothing windows of the
  correlation map bounded);
* a q range the user asked for outside the pair model's validated domain (:func:`model_q_range`:
  the analytic engine's, :mod:`shearcorr.forward.domain`).

Flagged in the result (``warnings`` of :class:`~.results.PairAnalysis`) and on stderr:

* the default q range clipped to the model's domain;
* a fitted parameter at a bound of the fit (:func:`fit_warnings`): its value and std are not a
  measurement;
* a flow direction that the pair does not define (no measurable shear, e.g. identical frames): its
  value is reported as NaN (JSON ``null``);
* speckles smaller than a pixel (the model ignores pixel integration).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..errors import ShearcorrError
from ..forward.domain import GAMMA_MAX, N_L2_RANGE, Q_MAX_R0, analytic_q_min, check_box, max_d2
from ..memory import require
from ..params import SystemParams, finite_float

__all__ = ["validate_options", "check_render", "check_gain", "shot_noise_gain", "gain_warning", "check_bins", "cache_folder", "gpr_box", "check_speckle", "model_q_range", "fit_bounds", "fit_warnings",
           "flow_defined", "MAX_N_Q", "MAX_N_PHI", "MIN_N_PHI", "MIN_PIXELS_PER_BIN", "MIN_SPECKLES_ACROSS",
           "MAX_FLOW_DEG", "FLOW_SIGNIFICANCE"]

#: Largest number of q bins and of azimuth bins, fewest azimuth bins (the flow needs 45 deg resolution).
MAX_N_Q, MAX_N_PHI, MIN_N_PHI = 256, 720, 4
#: Fewest valid pixels per (q, phi) bin on average (a usable bin needs >= 5 independent speckles).
MIN_PIXELS_PER_BIN = 25
#: Fewest speckles across the smaller side of the frame.
MIN_SPECKLES_ACROSS = 16
#: A flow angle is a detector azimuth in degrees within +-MAX_FLOW_DEG (it is defined modulo 180).
MAX_FLOW_DEG = 360.0
#: The flow direction is defined when gamma L exceeds this many of its standard errors.
FLOW_SIGNIFICANCE = 2.0
#: Relative distance to a bound below which a fitted parameter counts as "at the bound".
AT_BOUND_RTOL = 1e-3
#: Fit bounds of gamma L and D2 (R0) before the domain caps them.
GAMMA_FIT_MAX, D2_FIT_MAX = 80.0, 6.0


def _whole(name: str, value, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not lo <= value <= hi:
        raise ShearcorrError(f"{name} must be a whole number in [{lo}, {hi}], got {value!r}")


def validate_options(opt) -> None:
    """Refuse :class:`~.analysis.AnalysisOptions` whose values cannot give a meaningful analysis."""
    _whole("n_q (--n-q)", opt.n_q, 1, MAX_N_Q)
    _whole("n_phi (--n-phi)", opt.n_phi, MIN_N_PHI, MAX_N_PHI)
    _whole("seed", opt.seed, 0, 2**63 - 1)
    if opt.flow_angle_deg is not None:
        a = finite_float("flow angle (--flow-angle, degrees)", opt.flow_angle_deg)
        if abs(a) > MAX_FLOW_DEG:
            raise ShearcorrError(f"flow angle must be in [-{MAX_FLOW_DEG:g}, {MAX_FLOW_DEG:g}] degrees (it is defined "
                                 f"modulo 180), got {a:g}")
    n_l2 = finite_float("n_l2 (--n-l2)", opt.n_l2)
    lo, hi = N_L2_RANGE
    if not lo <= n_l2 <= hi:
        raise ShearcorrError(f"n_l2 (--n-l2) must be in [{lo:g}, {hi:g}] (the model's validated range), got {n_l2:g}")
    if opt.contrast is not None:
        c = finite_float("contrast (--contrast)", opt.contrast)
        if not 0 < c <= 1:
            raise ShearcorrError(f"contrast (--contrast) must be in (0, 1], got {c:g}")
    if opt.saturation is not None and not finite_float("saturation (--saturation)", opt.saturation) > 0:
        raise ShearcorrError(f"saturation (--saturation) must be a positive count, got {opt.saturation!r}")
    for name in ("q_min", "q_max"):
        v = getattr(opt, name)
        if v is not None and not finite_float(f"{name} (--{name.replace('_', '-')})", v) > 0:
            raise ShearcorrError(f"{name} (--{name.replace('_', '-')}) must be > 0 (q R0), got {v!r}")
    if opt.q_min is not None and opt.q_max is not None and not float(opt.q_min) < float(opt.q_max):
        raise ShearcorrError(f"need q_min < q_max, got {opt.q_min:g} and {opt.q_max:g}")
    check_gain(opt.gain)
    if not opt.photon_counts and float(opt.gain) != 1.0:
        raise ShearcorrError("--gain converts detector counts to photons; it has no meaning with --not-photon-counts "
                             "(drop one of them)")


def check_gain(gain) -> float:
    """The detector gain (counts per photon) as a float > 0, else a one-line error."""
    g = finite_float("gain (--gain, detector counts per photon)", gain)
    if not g > 0:
        raise ShearcorrError(f"gain (--gain) must be > 0 detector counts per photon, got {gain!r}")
    return g


def check_bins(n_q: int, n_phi: int, n_valid: int) -> None:
    """Refuse more (q, phi) bins than the valid pixels can fill."""
    if n_q * n_phi * MIN_PIXELS_PER_BIN > n_valid:
        raise ShearcorrError(f"{n_q} x {n_phi} = {n_q * n_phi} bins for {n_valid} valid pixels leave fewer than "
                             f"{MIN_PIXELS_PER_BIN} pixels per bin; use fewer bins (--n-q, --n-phi)")


def check_speckle(speckle_px: float, shape) -> list[str]:
    """Refuse speckles too large for the frame (beam size or geometry wrong); flag sub-pixel speckles."""
    side = min(shape)
    if not math.isfinite(speckle_px) or speckle_px * MIN_SPECKLES_ACROSS > side:
        raise ShearcorrError(f"the geometry gives speckles of {speckle_px:.3g} pixels, more than 1/{MIN_SPECKLES_ACROSS} "
                             f"of the {shape[0]} x {shape[1]} frame; check beam_size_um, distance_m, pixel_size_m and "
                             "wavelength in the geometry")
    if speckle_px < 1.0:
        return [f"speckles ({speckle_px:.2g} px) are smaller than a pixel: the contrast is low and the model ignores "
                "pixel integration"]
    return []


#: Fraction of valid pixels with non-integer values above which frames read as photon counts get a warning.
NON_INTEGER_FRACTION = 0.01


def counts_warning(frames, valid, photon_counts: bool) -> list[str]:
    """A warning when frames analysed as photon counts hold non-integer values (simulated intensities,
    flat-field corrected or rescaled data): the contrast's Poisson term 1/n then does not apply."""
    if not photon_counts:
        return []
    idx = np.flatnonzero(valid)
    idx = idx[:: max(1, 2 * idx.size // 200_000)]  # a sample of the valid pixels, the same in every frame
    v = np.concatenate([np.asarray(f).ravel()[idx] for f in frames])
    frac = float(np.mean(v != np.round(v))) if v.size else 0.0
    if frac <= NON_INTEGER_FRACTION:
        return []
    return [f"{100 * frac:.0f} % of the valid pixels hold non-integer values, but the frames are analysed as photon "
            "counts (Poisson term in the contrast); if they are intensities in other units, give --not-photon-counts"]


#: Thin q rings of the shot-noise measurement and fewest pixels in a ring used; a measured gain is named when it is
#: farther than GAIN_TOLERANCE (relative) and GAIN_SIGNIFICANCE standard errors from the gain assumed, and the shot
#: noise (measured or assumed, the larger) is at least GAIN_MIN_SHARE of the pixel variance in the faintest ring
#: (else g is an extrapolation).
GAIN_RINGS, GAIN_MIN_PIXELS, GAIN_TOLERANCE, GAIN_SIGNIFICANCE, GAIN_MIN_SHARE = 48, 50, 0.25, 4.0, 1.0 / 3.0
#: A measured gain below this many counts per photon is read as frames without shot noise (intensities).
GAIN_NONE = 0.2


def _variance_law(rows):
    """Weighted least squares of V = g mu + beta mu^2 over rows (mu, V, weight): (g, beta)."""
    X = np.stack([rows[:, 0], rows[:, 0] ** 2], axis=1)
    A = X.T @ (X * rows[:, 2:3])
    return np.linalg.solve(A, X.T @ (rows[:, 2] * rows[:, 1]))


def shot_noise_gain(frames, valid, qr0) -> dict | None:
    r"""Detector counts per photon g, measured from the frames' own statistics (the variance-mean law of
    speckle with shot noise, as in X-ray speckle visibility spectroscopy).

    In a thin q ring (:data:`GAIN_RINGS` log-spaced rings over the valid pixels' q) the pixel values of a frame
    have mean :math:`\mu` and variance

    .. math:: V = g\,\mu + \beta\,\mu^2

    (Poisson noise of photons counted g at a time, plus speckle of contrast :math:`\beta`; g = 1 for a
    photon-counting detector). A weighted least-squares fit over the rings of every frame (weights
    :math:`n_r/V_r^2`, n_r pixels) gives g and beta; their standard errors come from a delete-one-ring
    jackknife, which also carries the ring-to-ring scatter of the contrast. g is determined where the shot noise
    is a good part of the variance (:math:`g/(g + \beta\mu)` in the faintest ring, mean ``mu_min``), i.e.
    where the Poisson term of the contrast matters; with many counts per pixel everywhere g is an extrapolation to
    mu = 0 that a slight q dependence of beta biases. Read noise (a constant added to V) is not in the law:
    it reads as extra shot noise (docs/experiment.md: small for X-rays; a free constant costs g 10-30x its precision).

    Returns a dict (``gain``, ``std``, ``beta``, ``mu_min``), or None with fewer than 4 usable rings.
    """
    valid = np.asarray(valid, dtype=bool)
    q = np.asarray(qr0, dtype=np.float64)[valid]
    if q.size < 4 * GAIN_MIN_PIXELS or not q.min() > 0:
        return None
    edges = np.geomspace(q.min(), q.max() * (1.0 + 1e-9), GAIN_RINGS + 1)
    ring = np.clip(np.searchsorted(edges, q, side="right") - 1, 0, GAIN_RINGS - 1)
    n = np.bincount(ring, minlength=GAIN_RINGS).astype(np.float64)
    rows = []
    for f in frames:
        v = np.asarray(f, dtype=np.float64)[valid]
        with np.errstate(invalid="ignore", divide="ignore"):
            mu = np.bincount(ring, v, GAIN_RINGS) / n
            var = np.bincount(ring, (v - mu[ring]) ** 2, GAIN_RINGS) / (n - 1.0)
        ok = (n >= GAIN_MIN_PIXELS) & (mu > 0) & (var > 0)
        rows.append(np.stack([mu[ok], var[ok], n[ok] / var[ok] ** 2, np.flatnonzero(ok)], axis=1))
    m = np.vstack(rows)
    ids = np.unique(m[:, 3])
    if ids.size < 4:
        return None
    try:
        g, beta = _variance_law(m)
        jack = np.array([_variance_law(m[m[:, 3] != i]) for i in ids])
    except np.linalg.LinAlgError:
        return None
    sd = np.sqrt((ids.size - 1.0) / ids.size * ((jack - jack.mean(axis=0)) ** 2).sum(axis=0))
    return {"gain": float(g), "std": float(sd[0]), "beta": float(beta), "mu_min": float(m[:, 0].min())}


def gain_warning(frames, valid, qr0, gain: float, photon_counts: bool) -> list[str]:
    """A warning when the frames' shot noise is clearly not ``gain`` counts per photon (:func:`shot_noise_gain`;
    named only for a physical fit, 0 < beta <= 1, where the shot noise -- measured or assumed, whichever is
    larger -- is at least :data:`GAIN_MIN_SHARE` of the faintest ring's variance): frames in detector units
    (ADU of an integrating detector, counts scaled by a factor) or intensities without shot noise analysed as
    photon counts get a wrong Poisson term in the contrast, and gamma L and D2 come out biased
    (docs/experiment.md, "Detector counts per photon")."""
    if not photon_counts:
        return []
    m = shot_noise_gain(frames, valid, qr0)
    if m is None or not 0.0 < m["beta"] <= 1.0:
        return []
    shot = max(m["gain"], float(gain))
    if shot / (shot + m["beta"] * m["mu_min"]) < GAIN_MIN_SHARE:
        return []
    g, sd = m["gain"], m["std"]
    if abs(g / gain - 1.0) <= GAIN_TOLERANCE or abs(g - gain) <= GAIN_SIGNIFICANCE * sd:
        return []
    seen = (f"the frames' shot noise is {g:.3g} +- {sd:.2g} detector counts per photon (variance against mean over q "
            f"rings), but {gain:g} is assumed")
    if g < GAIN_NONE:
        return [seen + ": they hold (nearly) no shot noise, as intensities rounded to integers do; give "
                "--not-photon-counts"]
    return [seen + f": if the detector counts {g:.2g} per photon, give --gain {g:.2g}; if the frames are not photon "
            "counts at all, give --not-photon-counts"]


def _system(opt, beam_size: float, gamma_l: float = 0.0, d2: float = 0.0) -> SystemParams:
    return SystemParams(n_l2=opt.n_l2, rs=0.0, d2=d2, gamma_l=gamma_l, displacement=opt.displacement,
                        beam_size=beam_size)


def model_q_range(qr0: np.ndarray, valid: np.ndarray, opt, beam_size: float,
                  step_max: float | None = None) -> tuple[float | None, float | None, list[str]]:
    """The q limits (q R0) to bin: the user's (refused outside the model's validated domain) or the
    frame's, clipped to the domain with a warning. Returns (q_min, q_max, warnings); None = the frame's.
    ``step_max``: the general engine's box (a beam or pixels; :func:`shearcorr.forward.beamengine.max_step`)."""
    from .model import BASELINE_QD, baseline_d2_max

    # the engine's domain, and q large enough for the model's baseline B to be decorrelated with the
    # largest D2 the domain and the engine's box allow (.model.decorrelated_d2)
    system = _system(opt, beam_size)
    lo_dom = max(analytic_q_min(system), BASELINE_QD / baseline_d2_max(system, step_max))
    hi_dom = Q_MAX_R0
    qv = qr0[valid & (qr0 > 0)]
    if qv.size == 0:
        raise ShearcorrError("no valid pixel has q > 0; check the beam centre and the mask")
    if lo_dom >= hi_dom:
        raise ShearcorrError(f"no q is inside the model's validated domain for beam_size = {beam_size:.3g} R0 and "
                             f"n_l2 = {opt.n_l2:g} (q R0 >= {lo_dom:.3g} and <= {hi_dom:g}); check beam_size_um and "
                             "particle_radius_nm in the geometry")
    where = "outside the pair model's validated domain (docs/theory.md section 8)"
    notes = []
    q_min, q_max = opt.q_min, opt.q_max
    if q_min is not None and q_min < lo_dom:
        raise ShearcorrError(f"--q-min {q_min:g} is {where}: with beam_size = {beam_size:.4g} R0 and n_l2 = {opt.n_l2:g} "
                             f"use q R0 >= {lo_dom:.3g}")
    if q_max is not None and q_max > hi_dom:
        raise ShearcorrError(f"--q-max {q_max:g} is {where}: use q R0 <= {hi_dom:g}")
    if q_min is None and qv.min() < lo_dom:
        q_min = lo_dom
        notes.append(f"q R0 < {lo_dom:.3g} left out: outside the pair model's validated domain for beam_size = "
                     f"{beam_size:.4g} R0 and n_l2 = {opt.n_l2:g} (the frame reaches {qv.min():.3g})")
    if q_max is None and qv.max() > hi_dom:
        q_max = hi_dom
        notes.append(f"q R0 > {hi_dom:g} left out: outside the pair model's validated domain (the frame reaches {qv.max():.3g})")
    if notes and ((q_min is not None and q_min >= qv.max()) or (q_max is not None and q_max <= qv.min())):
        raise ShearcorrError(f"the frame covers q R0 in [{qv.min():.3g}, {qv.max():.3g}], all {where} (q R0 in "
                             f"[{lo_dom:.3g}, {hi_dom:g}] for this beam and n_l2); check the geometry")
    return q_min, q_max, notes


def fit_bounds(opt, beam_size: float) -> dict:
    """gamma_max and d2_max of the direct fit, capped so that every trial stays in the model's domain."""
    gamma_max = min(GAMMA_FIT_MAX, 0.999 * GAMMA_MAX * beam_size)
    d2_max = min(D2_FIT_MAX, 0.999 * max_d2(_system(opt, beam_size, gamma_l=gamma_max)))
    return {"gamma_max": gamma_max, "d2_max": d2_max}


def flow_defined(gamma_l: float, gamma_std: float) -> bool:
    """Whether a pair defines a flow direction: gamma L significantly above zero."""
    return bool(np.isfinite(gamma_l) and np.isfinite(gamma_std) and gamma_l > FLOW_SIGNIFICANCE * gamma_std
                and gamma_l > 0)


def fit_warnings(fit, bounds: dict, d2_min: float) -> list[str]:
    """Warnings for fitted parameters at a bound of the fit and for an undefined flow direction."""
    out = []
    limits = {"gamma_l": (0.0, bounds["gamma_max"]), "d2": (d2_min, bounds["d2_max"])}
    for name, (lo, hi) in limits.items():
        if name not in fit.free:
            continue
        v = getattr(fit, name).value
        span = hi - lo
        for side, b in (("lower", lo), ("upper", hi)):
            if abs(v - b) <= AT_BOUND_RTOL * span:
                out.append(f"{name} = {v:.4g} R0 is at the {side} bound of the fit ({b:.4g}): not a measurement - "
                           "check the geometry (beam size, q range) and the frames")
    if "flow" in fit.free and not flow_defined(fit.gamma_l.value, fit.gamma_l.std):
        out.append(f"the flow direction is undefined: no measurable shear (gamma_l = {fit.gamma_l.value:.3g} +- "
                   f"{fit.gamma_l.std:.2g} R0); the flow angle is reported as null")
    return out


#: Working memory of the renderer per pixel and frame (bytes): q, phi, q_x, q_y, the complex amplitude,
#: the intensity, the counts and the mask.
RENDER_BYTES_PER_PIXEL = 160


def check_render(params: SystemParams, counts, contrast, shape, n_frames: int) -> None:
    """Refuse a synthetic rendering that is not physical or does not fit in memory (before any work):
    particles sheared or displaced out of the simulated box, non-finite counts, a frame too large."""
    check_box(params)
    c = finite_float("counts (--counts)", counts)
    if not c > 0:
        raise ShearcorrError(f"counts must be > 0 (photons per pixel at q R0 = 0.5), got {c:g}")
    if not 0 < finite_float("contrast (--contrast)", contrast) <= 1:
        raise ShearcorrError(f"contrast must be in (0, 1], got {contrast}")
    ny, nx = (int(v) for v in shape)
    require(RENDER_BYTES_PER_PIXEL * ny * nx * max(int(n_frames), 2) / 2,
            f"rendering {n_frames} frames of {ny} x {nx} pixels", "use a smaller frame (--size)")


def cache_folder(cache_dir, default):
    """The cache folder of the geometry-specific GPR, created and tried before any work.

    A folder the user named (``--cache``) that cannot be written is refused (one line); the default
    one (``default()``) that cannot be written turns caching off, with a warning. Returns (folder or
    None, warnings).
    """
    from ..files import check_parent

    explicit = cache_dir is not None
    folder = Path(cache_dir) if explicit else Path(default())
    try:
        folder.mkdir(parents=True, exist_ok=True)
        check_parent(folder / "probe")
    except (OSError, ShearcorrError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        if explicit:
            raise ShearcorrError(f"the cache folder {folder} cannot be written ({why}); pass another --cache folder") from None
        return None, [f"the default cache folder {folder} cannot be written ({why}); the geometry-specific GPR is not cached"]
    return folder, []


def gpr_box(box, bounds: dict) -> tuple:
    """The GPR's (gamma L, D2, R_s) training box, capped by the fit bounds (the model's domain)."""
    (g0, g1), (d0, d1), rs = box
    return ((min(g0, 0.5 * bounds["gamma_max"]), min(g1, bounds["gamma_max"])),
            (min(d0, 0.5 * bounds["d2_max"]), min(d1, bounds["d2_max"])), rs)
