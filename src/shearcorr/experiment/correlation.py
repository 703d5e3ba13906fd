r"""Two frames -> the polar correlation map C(q, phi), its standard errors, and the speckle contrast.

Per polar bin b (q-range x azimuth-range, azimuth folded by I(q) = I(-q), i.e. phi mod pi), with
each frame divided by its mean over a thin ring (``N_SUB_RING`` rings per q bin; the static,
isotropic intensity P(q)/S, so the form-factor fall-off inside a bin does not weight the average):

.. math:: i_j(\mathbf q) = \frac{n_j(\mathbf q)}{\bar n_j(|q|)},\qquad
          C_b - 1 = \langle (i_1 - 1)(i_2 - 1)\rangle_b

The centring uses the *ring* mean, which holds ~n_phi times more speckles than a bin. The textbook
bin ratio :math:`\langle i_1 i_2\rangle_b/(\langle i_1\rangle_b\langle i_2\rangle_b)` centres on
the bin's own means: with M independent speckles per bin (halved by the Friedel mirror q, -q in
the same folded bin) it is biased low by ~(1 + C)/M, i.e. 20-30 % of C - 1 in bins of 10-30
speckles, and by a different fraction where the strip is narrow -- this was the gamma L bias
(docs/experiment.md, "Bias ladder"). The ring mean leaves a bias of order m_t = 1/M_t, M_t the
independent speckles of the thin ring (a few tens in the lowest rows of a 512^2 frame), which is
removed to first order (docs/theory.md 7.12): with c the bin's C - 1, c_t the thin ring's mean of u
and beta_r the row's speckle variance,

.. math:: E[C_b - 1] = c + m_t\,[\bar c_t (1 + c) - 2c(1 + \beta_r)],\qquad
          E[\hat\beta_r] = \beta_r - (1 + \beta_r)\,(m_t\beta_r + \langle 1/(n_t\bar n)\rangle)

(Gaussian fields, any number of modes; n_t pixels of the thin ring, nbar its mean count). Both are
subtracted. m_t comes from the frames' own intensity covariance (direct and Friedel mirror) summed over
the pixel pairs of the thin ring (:func:`_thin_ring_share`). Poisson noise is independent between the
frames, so :math:`\langle n_1 n_2\rangle` needs no shot-noise correction. Requirement: the static
intensity is isotropic (true for a dilute dispersion; an anisotropic static pattern needs the ratio
estimator).

Errors. Pixels within one speckle (size ~ 2 pi / L in q) and mirror pixels q, -q (Friedel: the
same speckle, independent shot noise) are correlated. With u_p = (i_1 - 1)(i_2 - 1),
:math:`\mathrm{Var}(C_b) = \mathrm{Var}_b(u)\,a / n_b` where the correlation area
:math:`a = \sum_{\ell} \rho_u(\ell) + \sum_{\ell} \rho_u^{\rm mirror}(\ell)` is *measured* from
the data, per q row: the autocorrelation of the standardised u summed over pixel lags within
~1.5 speckle sizes (a box filter), plus its cross-correlation with the point-reflected frame.
N_eff = n_b / a is the number of independent speckles in the bin.

Contrast. For photon counts of a partially coherent speckle pattern,
:math:`\langle (i - 1)^2\rangle = \beta + \langle 1/\bar n\rangle`, so per q row
:math:`\beta_r = \langle (i-1)^2\rangle_r - \langle 1/\bar n\rangle_r` and the frame's beta is the
mean over rows weighted by their numbers of independent speckles. This self-calibrated beta also
contains the finite-N reduction 1 - sum w^4 / (sum w^2)^2 of the pattern's contrast, which is what
makes (C - 1)/beta comparable with the model (docs/experiment.md). The frames' speckle moments per row
(contrast, fourth cumulant) and the variance law of the bins built on them are in :mod:`.specklestats`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import ShearcorrError
from .specklestats import frame_contrast, pooled_k4, speckle_cumulants, variance_law

__all__ = ["CorrelationMap", "correlation_map", "q_bin_edges"]

#: Thin rings per q bin used to normalise the frames (removes the form-factor slope inside a bin).
N_SUB_RING = 4
#: Fewest valid pixels with photons a map needs (and a q range must cover).
MIN_PIXELS = 100
#: A bin is usable when it holds at least this many independent speckles (n_pix / correlation area).
MIN_BIN_SPECKLES = 5
#: Speckle size (pixels) assumed when the caller gives none.
DEFAULT_SPECKLE_PX = 2.0
#: The correlation area sums the autocorrelation of u over lags up to this many speckle sizes ...
#: (2.1 and 5.7 below: the windows validated with 1.5 and 4 when speckle_px came out sqrt(2) too large;
#: issue 14 corrected speckle_px, these keep the same windows in pixels)
LAG_SPECKLES = 2.1
#: ... and at most this many pixels (the box filter's half width).
MAX_LAG_PX = 12
#: u is centred on its local mean over a window of +- this many speckle sizes (~11 speckles across).
CENTRING_SPECKLES = 5.7


@dataclass
class CorrelationMap:
    """C(q, phi) on polar bins, shape (n_q, n_phi); q dimensionless (q R0), phi in rad over [0, pi).

    ``phi`` is the detector azimuth minus ``phi_offset`` (mod pi); with the flow angle as offset it
    is theta, the angle from the flow. NaN marks bins without valid pixels.
    """

    q: np.ndarray
    phi: np.ndarray
    q_edges: np.ndarray
    phi_edges: np.ndarray
    C: np.ndarray
    C_err: np.ndarray
    n_pix: np.ndarray
    n_eff: np.ndarray
    beta: float
    beta_err: float
    beta_frames: tuple
    ring_q: np.ndarray
    ring_I: tuple
    phi_offset: float = 0.0
    info: dict = field(default_factory=dict)
    var_u: np.ndarray | None = None  # per-bin variance of u over pixels
    area: np.ndarray | None = None  # correlation area per bin (pixels)
    var_d: np.ndarray | None = None  # (n_q, 2): per-row <d^2> of each frame (speckle + Poisson)
    k4: np.ndarray | None = None  # (n_q,): the frames' speckle fourth cumulant per row (pooled shape, errors())

    @property
    def y(self) -> np.ndarray:
        """Normalised correlation (C - 1) / beta, to compare with the model's pair correlation."""
        return (self.C - 1.0) / self.beta

    @property
    def ok(self) -> np.ndarray:
        """Bins with a usable estimate (finite C and error, >= ``MIN_BIN_SPECKLES`` independent speckles)."""
        return np.isfinite(self.C) & np.isfinite(self.C_err) & (self.C_err > 0) & (self.n_eff >= MIN_BIN_SPECKLES)

    def errors(self, c_pred: np.ndarray) -> np.ndarray:
        r"""Standard errors of C for a *predicted* correlation c = C - 1 per bin (shape (n_q, n_phi)).

        The per-pixel variance of u = (i_1 - 1)(i_2 - 1) grows with the correlation. With d = delta + nu
        (speckle and Poisson parts, independent),

        .. math:: \mathrm{Var}(u) = V_r + c^2 + \kappa_4(\delta_1, \delta_1, \delta_2, \delta_2),\qquad
                  V_r = \langle d_1^2\rangle_r\langle d_2^2\rangle_r

        (V_r measured on the frames, exact at c = 0). For intensities of Gaussian fields (any number of
        coherent modes, pixels: sums of such modes) that decorrelate by the same |mu|^2 = y = c/beta, the
        joint fourth cumulant is the sum over the six cycles through (1, 1, 2, 2) of the products of the
        field correlations: :math:`\kappa_4(1122) = \kappa_4(1111)\,(4y + 2y^2)/6` (coherent speckle, beta = 1:
        Var u = 1 + 4c + 3c^2), with :math:`\kappa_4(1111)` the frames' own fourth cumulant of the speckle,
        measured per row from factorial moments of the counts (free of Poisson noise) with its shape pooled
        over the frame (``k4``; :func:`.specklestats.variance_law`; docs/experiment.md, "The D2 bias of one pair"). Then
        :math:`\sigma_b = \sqrt{\mathrm{Var}_b(u)\,a_r/n_b}`. Nothing in it depends on the bins' own scatter:
        a law regressed on the bins' variances (the earlier kappa_r c^2, still used where ``k4`` is None, e.g.
        maps built by the stack module) gives larger errors to rows whose strip fluctuated high (the variance
        and the mean of u fluctuate together), i.e. weights correlated with the data: +6 % in D2 at
        gamma L = 27, 3.1 pixels per speckle. Errors taken from each bin's own variance pull a fit towards low
        correlation the same way (+5 % in gamma L at 10-30 speckles per bin).
        """
        ok = self.ok
        c = np.asarray(c_pred, dtype=np.float64)
        V = self.var_d[:, 0] * self.var_d[:, 1]
        if self.k4 is not None:
            with np.errstate(invalid="ignore", divide="ignore"):
                return np.sqrt(variance_law(V, c, self.beta, self.k4) * self.area / self.n_pix)
        c2 = np.where(ok, c**2, 0.0)
        v = np.where(ok, self.var_u, 0.0)
        w = np.where(ok, self.n_eff, 0.0)
        # kappa_r by weighted least squares through V_r (the stack module's maps carry no k4)
        s2 = (w * c2 * c2).sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            kap = np.where(s2 > 0, (w * c2 * (v - V[:, None])).sum(1) / s2, 0.0)
            kap = np.clip(np.nan_to_num(kap), 0.0, None)
            return np.sqrt((V[:, None] + kap[:, None] * c**2) * self.area / self.n_pix)

    def g_q(self):
        """Mean of C over phi per q (unweighted over usable bins, as the paper's g(q)), and its error."""
        return _masked_mean(self.C, self.C_err, self.ok, axis=1)

    def g_phi(self):
        """Mean of C over q per phi bin, and its error."""
        return _masked_mean(self.C, self.C_err, self.ok, axis=0)


def _masked_mean(v, e, ok, axis):
    n = ok.sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        m = np.where(ok, v, 0).sum(axis=axis) / n
        s = np.sqrt(np.where(ok, e**2, 0).sum(axis=axis)) / n
    return m, s


def q_bin_edges(qr0: np.ndarray, valid: np.ndarray, n_q: int, q_min=None, q_max=None) -> np.ndarray:
    """``n_q + 1`` log-spaced edges (q R0) between q_min and q_max (default: the valid pixels' range)."""
    qv = qr0[valid & (qr0 > 0)]
    if qv.size == 0:
        raise ShearcorrError("no valid pixel has q > 0; check the beam centre and the mask")
    lo = float(qv.min()) if q_min is None else float(q_min)
    hi = float(qv.max()) if q_max is None else float(q_max)
    if q_min is not None and q_max is not None and (q_max <= qv.min() or q_min >= qv.max()):
        raise ShearcorrError(f"the q range [{q_min:g}, {q_max:g}] (q R0) is outside the frame, which covers q R0 in "
                             f"[{qv.min():.3g}, {qv.max():.3g}]; check the geometry (distance, pixel size, radius)")
    if not (0 < lo < hi):
        raise ShearcorrError(f"empty q range: q_min = {lo:g}, q_max = {hi:g} (q R0)")
    covered = (qv >= lo) & (qv <= hi)
    if covered.sum() < MIN_PIXELS:
        raise ShearcorrError(f"only {int(covered.sum())} valid pixels fall in q R0 in [{lo:.3g}, {hi:.3g}]; the geometry puts "
                             f"the q range outside the frame (frame covers [{qv.min():.3g}, {qv.max():.3g}])")
    return np.geomspace(lo, hi, int(n_q) + 1)


def _bincount(idx, w, n):
    return np.bincount(idx, weights=w, minlength=n)[:n]


def _box_sum(z: np.ndarray, K: int) -> np.ndarray:
    """Sum of z over the (2K+1)^2 pixel window around every pixel (zeros outside the frame)."""
    from scipy.ndimage import uniform_filter

    return uniform_filter(z, size=2 * K + 1, mode="constant") * (2 * K + 1) ** 2


def _mirror(a: np.ndarray, center) -> np.ndarray:
    """Point reflection of a 2-D array about ``center`` = (col, row), nearest pixel; 0 outside."""
    ny, nx = a.shape
    cx, cy = center
    rows = np.rint(2 * cy - np.arange(ny)).astype(int)
    cols = np.rint(2 * cx - np.arange(nx)).astype(int)
    out = np.zeros_like(a)
    rv, cv = (rows >= 0) & (rows < ny), (cols >= 0) & (cols < nx)
    out[np.ix_(rv, cv)] = a[np.ix_(rows[rv], cols[cv])]
    return out


@dataclass
class _Pixels:
    """The pixels a map uses, their q row, thin ring and normalised deviations d = i - 1 per frame."""

    use: np.ndarray  # bool (ny, nx)
    row: np.ndarray  # q row of each used pixel
    ring: np.ndarray  # thin ring of each used pixel
    ring_I: tuple  # mean intensity per thin ring, per frame
    d1: np.ndarray
    d2: np.ndarray


def _normalised_pixels(pair, qr0, q_edges) -> _Pixels:
    """Divide each frame by its mean over thin rings (``N_SUB_RING`` per q bin, equal in log q)."""
    n_q = q_edges.size - 1
    inq = pair.valid & (qr0 >= q_edges[0]) & (qr0 < q_edges[-1])
    qsel = qr0[inq]
    r_sel = np.clip(np.searchsorted(q_edges, qsel, side="right") - 1, 0, n_q - 1)
    lq = np.log(q_edges)
    frac = (np.log(qsel) - lq[r_sel]) / (lq[r_sel + 1] - lq[r_sel])
    t_sel = r_sel * N_SUB_RING + np.clip((frac * N_SUB_RING).astype(int), 0, N_SUB_RING - 1)
    nt = n_q * N_SUB_RING
    n_thin = _bincount(t_sel, None, nt)
    thin_I = []
    for frame in (pair.before, pair.after):
        with np.errstate(invalid="ignore", divide="ignore"):
            thin_I.append(_bincount(t_sel, frame[inq].astype(np.float64), nt) / n_thin)
    good = (n_thin > 0) & (thin_I[0] > 0) & (thin_I[1] > 0)
    keep = good[t_sel]
    use = inq.copy()
    use[inq] = keep
    if use.sum() < MIN_PIXELS:
        raise ShearcorrError(f"fewer than {MIN_PIXELS} valid pixels with photons in the q range; the frames are empty or "
                             "the geometry is wrong")
    rr, tt = r_sel[keep], t_sel[keep]
    return _Pixels(use, rr, tt, tuple(thin_I), pair.before[use] / thin_I[0][tt] - 1.0, pair.after[use] / thin_I[1][tt] - 1.0)


def _lag_window(speckle_px) -> int:
    """Half width (pixels) of the lag window of the correlation sums."""
    return int(np.clip(np.ceil(LAG_SPECKLES * (speckle_px or DEFAULT_SPECKLE_PX)), 1, MAX_LAG_PX))


def _beam_center(qr0, beam_center):
    """(col, row) of q = 0: the given one, else the pixel of least q."""
    if beam_center is not None:
        return beam_center
    flat = int(np.argmin(np.where(np.isfinite(qr0), qr0, np.inf)))
    return (flat % qr0.shape[1], flat // qr0.shape[1])


def _correlation_area(px: _Pixels, u, var_u_bin, sel, n_q, speckle_px, beam_center):
    """Correlation area per q row (pixels): lag sums of the standardised u, direct and Friedel mirror."""
    from scipy.ndimage import uniform_filter

    shape = px.use.shape
    K = _lag_window(speckle_px)
    # standardised u, centred on a local mean over a window of ~8 speckles (a bin-mean centring
    # erases the correlation of bins a few speckles wide, a row-mean centring adds the strip's
    # large-scale structure to every lag); the pooled lag sums per row are box filters of z
    W = 2 * int(np.ceil(CENTRING_SPECKLES * (speckle_px or DEFAULT_SPECKLE_PX))) + 1
    ufull = np.zeros(shape)
    ufull[px.use] = u
    wfull = px.use.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        uloc = (uniform_filter(ufull, W, mode="constant") / uniform_filter(wfull, W, mode="constant"))[px.use]
        sd = np.sqrt(var_u_bin)[sel]
    z = np.zeros(shape)
    z[px.use] = np.where(sd > 0, (u - uloc) / np.where(sd > 0, sd, 1.0), 0.0)
    zu = z[px.use]
    auto = _bincount(px.row, zu * _box_sum(z, K)[px.use], n_q)
    mirror = _bincount(px.row, zu * _box_sum(_mirror(z, beam_center), K)[px.use], n_q)
    zz = _bincount(px.row, zu * zu, n_q)
    with np.errstate(invalid="ignore", divide="ignore"):
        area_row = np.clip((auto + mirror) / zz, 1.0, None)
    info = {"lag_window_px": K, "centring_window_px": W,
            "beam_center_px": [float(beam_center[0]), float(beam_center[1])]}
    return area_row, info


#: Pixels per thin ring (about) that sample its pixel-pair sum in :func:`_thin_ring_share`.
SHARE_SAMPLES = 64


def _thin_ring_share(px: _Pixels, nt, mu2, pois, K: int, beam_center) -> np.ndarray:
    r"""Per thin ring t, :math:`m_t = n_t^{-2}\sum_{p, p' \in t} A(p' - p)`: the variance of the ring's mean of the
    speckle over the speckle's variance, i.e. 1 / (independent speckles of the ring).

    A is the speckle's normalised intensity covariance at a pixel offset (A(0) = 1) plus its covariance with the
    Friedel mirror pixel (same thin ring), for offsets up to K pixels on each axis, measured on both frames with FFTs
    (off-diagonal: free of Poisson noise), each pixel weighted by the inverse of its row's total variance. The pairs of
    each ring are counted on about ``SHARE_SAMPLES`` of its pixels. ``nt``: pixels per thin ring (n_q * N_SUB_RING,);
    ``mu2``, ``pois``: per frame, per row, the speckle variance and the Poisson variance <1/nbar>. Returns m_t over the
    thin rings, shape of ``nt`` (NaN where a ring has no pixel).
    """
    from scipy import fft

    use = px.use
    rows_any, cols_any = np.flatnonzero(use.any(axis=1)), np.flatnonzero(use.any(axis=0))
    y0, y1, x0, x1 = rows_any[0], rows_any[-1] + 1, cols_any[0], cols_any[-1] + 1
    shape = (y1 - y0 + K, x1 - x0 + K)
    fshape = tuple(fft.next_fast_len(n, real=True) for n in shape)
    # one weight per row for both frames: the inverse of the row's total variance (speckle + Poisson)
    m2 = np.clip(np.nan_to_num(0.5 * (mu2[0] + mu2[1])), 0.0, None)
    with np.errstate(invalid="ignore", divide="ignore"):
        w = np.nan_to_num(1.0 / (m2 + np.nan_to_num(0.5 * (pois[0] + pois[1]))))[px.row]

    def spectra(vals):  # the image and its Friedel mirror, cropped, in Fourier space (float32: sums of ~1e6 terms)
        full = np.zeros(use.shape, dtype=np.float32)
        full[use] = vals
        return fft.rfft2(full[y0:y1, x0:x1], fshape), fft.rfft2(_mirror(full, beam_center)[y0:y1, x0:x1], fshape)

    fv, fvm = spectra(w * np.sqrt(m2[px.row]))
    sd = sm = 0.0
    for d in (px.d1, px.d2):
        fz, fzm = spectra(w * d)
        sd, sm = sd + np.conj(fz) * fz, sm + np.conj(fz) * fzm
    # sum_p a_p b_{p + delta} = irfft2(conj(A) B)[delta]
    num_d, num_m = fft.irfft2(sd, fshape), fft.irfft2(sm, fshape)
    den_d, den_m = (2.0 * fft.irfft2(np.conj(fv) * f, fshape) for f in (fv, fvm))
    dy, dx = (a.ravel() for a in np.mgrid[-K:K + 1, -K:K + 1])
    with np.errstate(invalid="ignore", divide="ignore"):
        A = np.nan_to_num(num_d[dy, dx] / den_d[dy, dx])
        Am = np.nan_to_num(num_m[dy, dx] / den_m[dy, dx])
    A[(dy == 0) & (dx == 0)] = 1.0  # the pixel itself: the speckle variance (its lag-0 product holds the Poisson noise)
    # the thin rings' pixel pairs at each offset, on a sample of every ring's pixels; labels padded by K (-1 outside)
    ny, nx = use.shape
    label = np.full((ny + 2 * K, nx + 2 * K), -1, dtype=np.int32)
    label[K:K + ny, K:K + nx][use] = px.ring
    n_rings = nt.size
    # about SHARE_SAMPLES pixels per ring, spread over it (a fixed low-discrepancy sequence: no randomness)
    pick = np.flatnonzero(np.mod(np.arange(px.ring.size) * 0.6180339887498949, 1.0) * nt[px.ring] < SHARE_SAMPLES)
    yy, xx = np.nonzero(use)
    ys, xs, ts = yy[pick] + K, xx[pick] + K, px.ring[pick].astype(np.int32)
    cx, cy = beam_center
    ym, xm = np.rint(2 * cy - yy[pick]).astype(np.int64) + K, np.rint(2 * cx - xx[pick]).astype(np.int64) + K
    far = (ym < K) | (ym >= ny + K) | (xm < K) | (xm >= nx + K)  # mirror pixel off the frame: no mirror pairs counted
    ym[far], xm[far] = K, K  # any index inside; masked below
    flat = label.ravel()
    off = (dy * label.shape[1] + dx).astype(np.int64)
    direct = flat[(ys * label.shape[1] + xs)[:, None] + off] == ts[:, None]
    mirror = flat[(ym * label.shape[1] + xm)[:, None] - off] == ts[:, None]
    mirror[far] = False
    per_pixel = direct @ A + mirror @ Am
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.bincount(ts, per_pixel, n_rings) / np.bincount(ts, None, n_rings) / nt


def correlation_map(pair, geometry, q_edges, n_phi=36, *, phi_offset=0.0, contrast=None, photon_counts=True,
                    speckle_px=None, beam_center=None, area=None, ring_share=None) -> CorrelationMap:
    """Compute C(q, phi) with errors and the contrast from two frames (module docstring).

    Parameters
    ----------
    pair : FramePair
        The two frames in photon counts and the mask (True = valid); masked pixels are ignored.
    geometry : DetectorGeometry
        Per-pixel q R0 (``qr0``) and azimuth ``phi`` (rad, APS convention).
    q_edges : ndarray
        Edges of the q bins (q R0).
    n_phi : int
        Number of azimuth bins over [0, pi) (the map is folded by I(q) = I(-q)).
    phi_offset : float
        Subtracted from phi before binning (the flow angle: bins are then theta from the flow).
    contrast : float, optional
        Speckle contrast beta if known; else estimated from the frames.
    photon_counts : bool
        Frames are photon counts (apply the Poisson term 1/n in the contrast estimate).
    speckle_px : float, optional
        Speckle size (first zero of the intensity autocorrelation) in pixels, sets the lag window.
    beam_center : (col, row), optional
        Pixel position of q = 0 for the mirror (Friedel) correlation; default the minimum of q.
    area : ndarray (n_q,), optional
        Correlation area per q row (pixels) from an earlier call on the same frames and q bins;
        skips its measurement (the area does not depend on the azimuth offset).
    ring_share : ndarray (n_q * N_SUB_RING,), optional
        The thin rings' m_t (``info["thin_ring_share"]``) from an earlier call on the same frames and q bins; skips
        its measurement (:func:`_thin_ring_share`).
    """
    qr0, phi = geometry.qr0, geometry.phi
    beam_center = _beam_center(qr0, beam_center)
    q_edges = np.asarray(q_edges, dtype=np.float64)
    n_q = q_edges.size - 1
    nb = n_q * n_phi
    px = _normalised_pixels(pair, qr0, q_edges)
    ang = np.mod(phi[px.use] - phi_offset, np.pi)
    pb = np.clip((ang / (np.pi / n_phi)).astype(int), 0, n_phi - 1)
    sel = px.row * n_phi + pb
    u = px.d1 * px.d2
    n = _bincount(sel, None, nb)
    nrow = _bincount(px.row, None, n_q)
    with np.errstate(invalid="ignore", divide="ignore"):
        cm1 = _bincount(sel, u, nb) / n
        var_u = np.maximum(_bincount(sel, u * u, nb) / n - cm1**2, 0.0)
    if area is None:
        area_row, info_k = _correlation_area(px, u, var_u, sel, n_q, speckle_px, beam_center)
    else:
        area_row, info_k = np.asarray(area, dtype=np.float64), {}
    nbars = [thin[px.ring] for thin in px.ring_I]
    cumulants = [speckle_cumulants(d, nbar, px.row, nrow, n_q, photon_counts) for d, nbar in zip((px.d1, px.d2), nbars)]
    with np.errstate(invalid="ignore", divide="ignore"):
        pois = [_bincount(px.row, 1.0 / nbar, n_q) / nrow if photon_counts else np.zeros(n_q) for nbar in nbars]
    n_ring = _bincount(px.ring, None, n_q * N_SUB_RING)
    if ring_share is None:
        ring_share = _thin_ring_share(px, n_ring, [c[0] for c in cumulants], pois, _lag_window(speckle_px), beam_center)
    # the ring centring's first-order bias, in every bin and in each frame's contrast (module docstring)
    m_p = np.nan_to_num(np.asarray(ring_share, dtype=np.float64)[px.ring])
    nt = n_ring[px.ring]
    with np.errstate(invalid="ignore", divide="ignore"):
        u_ring = (_bincount(px.ring, u, n_ring.size) / n_ring)[px.ring]
        mu2 = np.clip(np.nan_to_num(0.5 * (cumulants[0][0] + cumulants[1][0])), 0.0, None)[px.row]
        c_b = cm1[sel]
        cm1 = cm1 - _bincount(sel, m_p * (u_ring * (1.0 + c_b) - 2.0 * c_b * (1.0 + mu2)), nb) / n
        m_row = _bincount(px.row, m_p, n_q) / nrow
        centring = [(m_row, _bincount(px.row, 1.0 / (nt * nbar), n_q) / nrow if photon_counts else 0.0) for nbar in nbars]
    area_b = np.repeat(area_row, n_phi)
    with np.errstate(invalid="ignore", divide="ignore"):
        n_eff = n / area_b
        C_err = np.sqrt(var_u * area_b / n)
        C = 1.0 + cm1
    frames = [frame_contrast(d, nbar, px.row, nrow, area_row, n_q, photon_counts, centring=cen)
              for d, nbar, cen in zip((px.d1, px.d2), nbars, centring)]
    betas, berrs, var_d = [f[0] for f in frames], [f[1] for f in frames], [f[2] for f in frames]
    k4, k4_shape = pooled_k4(cumulants, nrow, area_row)
    if contrast is None:
        beta = 0.5 * (betas[0] + betas[1])
        beta_err = 0.5 * float(np.hypot(*berrs))
        if not beta > 0:
            raise ShearcorrError(f"the frames show no speckle (estimated contrast {beta:.3g}); give --contrast or check the data")
    else:
        beta, beta_err = float(contrast), 0.0
        if not (0 < beta <= 1):
            raise ShearcorrError(f"contrast must be in (0, 1], got {contrast}")
    shape = (n_q, n_phi)
    C[n == 0] = np.nan
    phi_edges = np.linspace(0, np.pi, n_phi + 1)
    ring_I = tuple(t.reshape(n_q, N_SUB_RING).mean(axis=1) for t in px.ring_I)
    return CorrelationMap(
        q=np.sqrt(q_edges[:-1] * q_edges[1:]), phi=0.5 * (phi_edges[:-1] + phi_edges[1:]), q_edges=q_edges,
        phi_edges=phi_edges, C=C.reshape(shape), C_err=C_err.reshape(shape), n_pix=n.reshape(shape),
        n_eff=n_eff.reshape(shape), beta=float(beta), beta_err=float(beta_err), beta_frames=tuple(betas),
        ring_q=np.sqrt(q_edges[:-1] * q_edges[1:]), ring_I=ring_I, phi_offset=float(phi_offset),
        info=dict(info_k, correlation_area_px=area_row.tolist(), beta_frames_err=berrs, contrast_given=contrast is not None,
                  estimator="ring-centred product <(i1-1)(i2-1)>_b, its centring bias removed", speckle_k4_shape=k4_shape,
                  thin_ring_share=np.asarray(ring_share, dtype=np.float64).tolist()),
        var_u=var_u.reshape(shape), area=area_b.reshape(shape), var_d=np.stack(var_d, axis=1), k4=k4)
