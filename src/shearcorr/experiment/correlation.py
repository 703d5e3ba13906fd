r"""Two frames -> the polar correlation map C(q, phi), its standard errors, and the speckle contrast.

Per polar bin b (q-range x azimuth-range, azimuth folded by I(q) = I(-q), i.e. phi mod pi):

.. math:: C_b = \frac{\langle i_1 i_2\rangle_b}{\langle i_1\rangle_b\,\langle i_2\rangle_b},
          \qquad i_j(\mathbf q) = \frac{n_j(\mathbf q)}{\bar n_j(|q|)}

with :math:`\bar n_j` the mean of frame j over a thin ring (4 rings per analysis q bin), so that the
isotropic form-factor fall-off inside a bin does not weight the average. Poisson noise is independent
between the frames, so :math:`\langle n_1 n_2\rangle` needs no shot-noise correction.

Errors. Pixels within one speckle (size ~ 2 pi / L in q) and mirror pixels q, -q (Friedel: the
same speckle, independent shot noise) are correlated. With the linearised influence
:math:`u_p = i_1 i_2/(m_1 m_2) - C\,i_1/m_1 - C\,i_2/m_2` of each pixel,
:math:`\mathrm{Var}(C_b) = \mathrm{Var}(u)\,a_b / n_b` where the correlation area
:math:`a_b = \sum_{\ell} \rho_u(\ell) + \sum_{\ell} \rho_u^{\rm mirror}(\ell)` is *measured* from the
data: the autocorrelation of the standardised u over pixel lags within ~1.5 speckle sizes, plus the
cross-correlation with the point-reflected frame, pooled over each q row. N_eff = n_b / a_b is the
number of independent speckles in the bin.

Contrast. For photon counts of a partially coherent speckle pattern,
:math:`\langle i^2\rangle = 1 + \beta + 1/\bar n`, so per bin
:math:`\beta_b = \langle i^2\rangle/\langle i\rangle^2 - 1 - \langle 1/\bar n\rangle` and the frame's
beta is the inverse-variance mean over bins. This self-calibrated beta also contains the finite-N
reduction 1 - sum w^4 / (sum w^2)^2 of the pattern's contrast, which is what makes (C - 1)/beta
comparable with the model (docs/experiment.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import ShearcorrError

__all__ = ["CorrelationMap", "correlation_map", "q_bin_edges"]


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

    @property
    def y(self) -> np.ndarray:
        """Normalised correlation (C - 1) / beta, to compare with the model's pair correlation."""
        return (self.C - 1.0) / self.beta

    @property
    def ok(self) -> np.ndarray:
        """Bins with a usable estimate (finite C and error, >= 5 independent speckles)."""
        return np.isfinite(self.C) & np.isfinite(self.C_err) & (self.C_err > 0) & (self.n_eff >= 5)

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
    if covered.sum() < 100:
        raise ShearcorrError(f"only {int(covered.sum())} valid pixels fall in q R0 in [{lo:.3g}, {hi:.3g}]; the geometry puts "
                             f"the q range outside the frame (frame covers [{qv.min():.3g}, {qv.max():.3g}])")
    return np.geomspace(lo, hi, int(n_q) + 1)


def _bincount(idx, w, n):
    return np.bincount(idx, weights=w, minlength=n)[:n]


def _lag_sums(z, idx_map, n_bins, K, other=None):
    """For each bin, sum over lags |dx|,|dy| <= K of sum_p z_p * other_{p+lag} (other defaults to z)."""
    other = z if other is None else other
    ny, nx = z.shape
    tot = np.zeros(n_bins)
    for dy in range(-K, K + 1):
        for dx in range(-K, K + 1):
            ys, yd = (slice(0, ny - dy), slice(dy, ny)) if dy >= 0 else (slice(-dy, ny), slice(0, ny + dy))
            xs, xd = (slice(0, nx - dx), slice(dx, nx)) if dx >= 0 else (slice(-dx, nx), slice(0, nx + dx))
            prod = z[ys, xs] * other[yd, xd]
            ib = idx_map[ys, xs]
            sel = (ib >= 0) & (prod != 0)
            tot += _bincount(ib[sel], prod[sel], n_bins)
    return tot


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


def correlation_map(before, after, valid, qr0, phi, q_edges, n_phi=36, *, phi_offset=0.0, contrast=None,
                    photon_counts=True, speckle_px=None, beam_center=None, area=None) -> CorrelationMap:
    """Compute C(q, phi) with errors and the contrast from two frames.

    Parameters
    ----------
    before, after : ndarray (ny, nx)
        Frames in photon counts (masked pixels are ignored).
    valid : bool ndarray
        True = valid pixel.
    qr0, phi : ndarray
        Dimensionless q R0 and azimuth (rad, APS convention) per pixel.
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
    """
    q_edges = np.asarray(q_edges, dtype=np.float64)
    n_q = q_edges.size - 1
    nb = n_q * n_phi
    inq = valid & (qr0 >= q_edges[0]) & (qr0 < q_edges[-1])
    qb = np.clip(np.searchsorted(q_edges, qr0, side="right") - 1, 0, n_q - 1)
    r_sel = qb[inq]
    n_ring = _bincount(r_sel, None, n_q)
    ring_I = []
    for frame in (before, after):
        with np.errstate(invalid="ignore", divide="ignore"):
            ring_I.append(_bincount(r_sel, frame[inq], n_q) / n_ring)
    good_ring = (n_ring > 0) & (ring_I[0] > 0) & (ring_I[1] > 0)
    use = inq.copy()
    use[inq] = good_ring[r_sel]
    if use.sum() < 100:
        raise ShearcorrError("fewer than 100 valid pixels with photons in the q range; the frames are empty or the geometry is wrong")
    ang = np.mod(phi - phi_offset, np.pi)
    pb = np.clip((ang / (np.pi / n_phi)).astype(int), 0, n_phi - 1)
    idx = np.where(use, qb * n_phi + pb, -1)
    sel = idx[use]
    rr = qb[use]
    i1 = before[use] / ring_I[0][rr]
    i2 = after[use] / ring_I[1][rr]
    inv_n = (1.0 / ring_I[0][rr], 1.0 / ring_I[1][rr])
    n = _bincount(sel, None, nb)
    with np.errstate(invalid="ignore", divide="ignore"):
        S = lambda w: _bincount(sel, w, nb) / n  # noqa: E731
        m1, m2, p = S(i1), S(i2), S(i1 * i2)
        C = p / (m1 * m2)
        a, b, c = 1 / (m1 * m2), C / m1, C / m2
        # per-pixel (co)variances of P = i1 i2, X = i1, Y = i2 in each bin
        vp, vx, vy = S((i1 * i2) ** 2) - p * p, S(i1 * i1) - m1 * m1, S(i2 * i2) - m2 * m2
        cpx, cpy, cxy = S(i1 * i1 * i2) - p * m1, S(i1 * i2 * i2) - p * m2, p - m1 * m2
        var_u = np.maximum(a * a * vp + b * b * vx + c * c * vy - 2 * a * b * cpx - 2 * a * c * cpy + 2 * b * c * cxy, 0)
        # second-order (ratio-estimator) bias of C per independent speckle, removed below with 1/N_eff
        bias1 = C * (vx / m1**2 + vy / m2**2 + cxy / (m1 * m2) - cpx / (p * m1) - cpy / (p * m2))
        # influence map u = i1 i2/(m1 m2) - C i1/m1 - C i2/m2, centred on its q-row mean (a bin-mean
        # centring would erase the correlation of bins a few speckles wide), scaled by the bin's sd
        u = a[sel] * i1 * i2 - b[sel] * i1 - c[sel] * i2
        urow = _bincount(rr, u, n_q) / _bincount(rr, None, n_q)
        sd = np.sqrt(var_u)
        z = np.zeros(before.shape)
        z[use] = np.where(sd[sel] > 0, (u - urow[rr]) / sd[sel], 0.0)
    idx_map = idx.reshape(before.shape)
    K = int(np.clip(np.ceil(1.5 * (speckle_px or 2.0)), 1, 12))
    if beam_center is None:
        flat = np.argmin(np.where(np.isfinite(qr0), qr0, np.inf))
        beam_center = (flat % before.shape[1], flat // before.shape[1])
    rowsum = lambda v: np.repeat(v.reshape(n_q, n_phi).sum(axis=1), n_phi)  # noqa: E731
    if area is None:
        zz = _bincount(sel, z[use] ** 2, nb)
        auto = _lag_sums(z, idx_map, nb, K)
        mirror = _lag_sums(z, idx_map, nb, K, other=_mirror(z, beam_center))
        # pool the correlation area over each q row (per-bin sums are noisy)
        with np.errstate(invalid="ignore", divide="ignore"):
            area = np.clip((rowsum(auto) + rowsum(mirror)) / rowsum(zz), 1.0, None)
    else:
        area = np.repeat(np.asarray(area, dtype=np.float64), n_phi)
    with np.errstate(invalid="ignore", divide="ignore"):
        n_eff = n / area
        C_err = np.sqrt(var_u * area / n)
    # contrast per frame from its own speckle statistics, per q row (rows hold many speckles; the
    # weights are the numbers of independent speckles, not the noisy per-row variances, which would
    # favour low estimates)
    betas, berrs = [], []
    rsel = rr
    nrow = _bincount(rsel, None, n_q)
    area_row = area.reshape(n_q, n_phi)[:, 0]
    for iv, invn in ((i1, inv_n[0]), (i2, inv_n[1])):
        with np.errstate(invalid="ignore", divide="ignore"):
            R = lambda w: _bincount(rsel, w, n_q) / nrow  # noqa: E731
            mi, mii = R(iv), R(iv * iv)
            bb = mii / mi**2 - 1 - (R(invn) if photon_counts else 0.0)
            wr = nrow / area_row
        ok = np.isfinite(bb) & np.isfinite(wr) & (wr >= 10)
        if not ok.any():
            raise ShearcorrError("cannot estimate the speckle contrast (no q ring has enough speckles); give --contrast")
        w = wr[ok]
        mean = float(np.sum(w * bb[ok]) / w.sum())
        betas.append(mean)
        berrs.append(float(np.sqrt(np.sum(w**2 * (bb[ok] - mean) ** 2)) / w.sum()) if ok.sum() > 2 else abs(mean))
    # remove the ratio bias with the number of independent *intensity* speckles: the intensity
    # correlation area is ~2 speckle_px^2 (speckle + Friedel mirror) times the speckle share of the
    # pixel variance (the u-field area above is smaller: products decorrelate faster)
    spx2 = float(speckle_px or 2.0) ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        bmean = max(0.5 * (betas[0] + betas[1]), 1e-3)
        pois = _bincount(rr, inv_n[0], n_q) / nrow if photon_counts else np.zeros(n_q)
        area_i = 1.0 + (2.0 * spx2 - 1.0) * bmean / (bmean + pois)
        C = C - bias1 * np.repeat(area_i, n_phi) / n
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
    empty = n == 0
    C[empty] = np.nan
    phi_edges = np.linspace(0, np.pi, n_phi + 1)
    return CorrelationMap(
        q=np.sqrt(q_edges[:-1] * q_edges[1:]), phi=0.5 * (phi_edges[:-1] + phi_edges[1:]), q_edges=q_edges,
        phi_edges=phi_edges, C=C.reshape(shape), C_err=C_err.reshape(shape), n_pix=n.reshape(shape),
        n_eff=n_eff.reshape(shape), beta=float(beta), beta_err=float(beta_err), beta_frames=tuple(betas),
        ring_q=np.sqrt(q_edges[:-1] * q_edges[1:]), ring_I=tuple(ring_I), phi_offset=float(phi_offset),
        info={"lag_window_px": K, "beam_center_px": [float(beam_center[0]), float(beam_center[1])],
              "correlation_area_px": area.reshape(shape)[:, 0].tolist(), "beta_frames_err": berrs,
              "contrast_given": contrast is not None})
