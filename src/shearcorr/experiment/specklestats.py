r"""Speckle statistics of one frame per q row, and the variance law of a correlation-map bin.

A frame of photon counts n = nbar (1 + delta) + Poisson noise, divided by its thin-ring mean nbar (d = n/nbar - 1),
holds per q row r the speckle's variance :math:`\mu_{2,r} = \langle\delta^2\rangle_r` (the contrast beta) and its fourth
cumulant :math:`\kappa_{4,r}`. Both are read without the Poisson noise from factorial moments of the counts
(:func:`speckle_cumulants`). They set

* the contrast beta of the frame (:func:`frame_contrast`, :math:`\langle d^2\rangle_r - \langle 1/\bar n\rangle_r`
  averaged over the rows by their independent speckles);
* the variance law of the bins of :class:`.correlation.CorrelationMap` (:func:`variance_law`): the per-pixel variance of
  u = d_1 d_2 at a predicted correlation c, with :math:`\kappa_4` of the two frames pooled over the rows
  (:func:`pooled_k4`) so that no row's weight follows its own fluctuation (docs/theory.md 7.10; docs/experiment.md,
  "The D2 bias of one pair").

Shapes: per-pixel arrays are 1-D over the used pixels of :func:`.correlation.correlation_map`; per-row arrays (n_q,).
"""

from __future__ import annotations

import numpy as np

from ..errors import ShearcorrError

__all__ = ["MIN_ROW_SPECKLES", "speckle_cumulants", "frame_contrast", "pooled_k4", "variance_law"]

#: A q row enters the contrast estimate (and the pooled fourth cumulant) when it holds at least this many
#: independent speckles.
MIN_ROW_SPECKLES = 10


def _row_sum(row, w, n_q):
    return np.bincount(row, weights=w, minlength=n_q)[:n_q]


def speckle_cumulants(d, nbar, row, nrow, n_q, photon_counts=True):
    r"""Per q row the speckle's variance and fourth cumulant of one frame, free of Poisson noise.

    For counts n ~ Poisson(nbar (1 + delta)), the factorial moments are the intensity's moments,
    :math:`f_k = \langle n(n-1)\cdots(n-k+1)/\bar n^k\rangle = \langle(1 + \delta)^k\rangle`, so (with
    :math:`\langle\delta\rangle = 0`)

    .. math:: \mu_2 = f_2 - 1,\qquad \mu_4 = f_4 - 4f_3 + 6f_2 - 3,\qquad \kappa_4 = \mu_4 - 3\mu_2^2.

    Without photon counts the moments of d are used.

    Parameters
    ----------
    d : ndarray (n_pix,)
        Normalised deviations n / nbar - 1 of the used pixels (dimensionless).
    nbar : ndarray (n_pix,)
        Each pixel's thin-ring mean count nbar (photons).
    row : ndarray of int (n_pix,)
        The q row of each pixel.
    nrow : ndarray (n_q,)
        Pixels per row.
    n_q : int
        Number of q rows.
    photon_counts : bool
        The frames are photon counts (factorial moments remove the Poisson noise).

    Returns
    -------
    mu2, kappa4 : ndarray (n_q,)
        The speckle variance (the row's contrast) and fourth cumulant.
    """
    x = d + 1.0
    with np.errstate(invalid="ignore", divide="ignore"):
        if photon_counts:
            n = x * nbar
            f = [_row_sum(row, np.prod([(n - j) / nbar for j in range(k)], axis=0), n_q) / nrow for k in (2, 3, 4)]
        else:
            f = [_row_sum(row, x**k, n_q) / nrow for k in (2, 3, 4)]
        mu2 = f[0] - 1.0
        mu4 = f[2] - 4.0 * f[1] + 6.0 * f[0] - 3.0
    return mu2, mu4 - 3.0 * mu2**2


def frame_contrast(d, nbar, row, nrow, area_row, n_q, photon_counts=True, centring=None):
    r"""One frame's speckle contrast :math:`\beta = \sum_r w_r \beta_r / \sum_r w_r`, its error and the rows' variances.

    Per row :math:`\beta_r = \langle d^2\rangle_r - \langle 1/\bar n\rangle_r` (speckle + Poisson, the Poisson part
    removed when ``photon_counts``), weighted by the rows' independent speckles :math:`w_r = n_r / a_r` (not by the
    noisy per-row variances, which would favour low estimates); rows with :math:`w_r <` ``MIN_ROW_SPECKLES`` are
    left out. Arguments as :func:`speckle_cumulants`; ``area_row`` (n_q,) is the correlation area per row (pixels).
    ``centring`` = (m_r, p_r), per row the mean of the pixels' thin-ring shares m_t and of 1/(n_t nbar): the centring
    on the thin-ring mean lowers :math:`\beta_r` by :math:`(1 + \beta_r)(m_r\beta_r + p_r)`, which is added back
    (:mod:`.correlation`).

    Returns
    -------
    beta : float
        The contrast (dimensionless).
    beta_err : float
        Its standard error from the rows' scatter (|beta| with fewer than three rows).
    var_d : ndarray (n_q,)
        :math:`\langle d^2\rangle_r` (speckle + Poisson), the frame's factor of the law's V_r.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        pois = _row_sum(row, 1.0 / nbar, n_q) / nrow if photon_counts else 0.0
        var_d = _row_sum(row, d * d, n_q) / nrow
        bb = var_d - pois
        if centring is not None:
            bb = bb + (1.0 + bb) * (bb * centring[0] + centring[1])
        wr = nrow / area_row
    ok = np.isfinite(bb) & np.isfinite(wr) & (wr >= MIN_ROW_SPECKLES)
    if not ok.any():
        raise ShearcorrError("cannot estimate the speckle contrast (no q ring has enough speckles); give --contrast")
    w = wr[ok]
    mean = float(np.sum(w * bb[ok]) / w.sum())
    err = float(np.sqrt(np.sum(w**2 * (bb[ok] - mean) ** 2)) / w.sum()) if ok.sum() > 2 else abs(mean)
    return mean, err, var_d


def pooled_k4(cumulants, nrow, area_row):
    r"""The two frames' joint speckle fourth cumulant :math:`\kappa_4(1111)` per q row, its shape pooled over the frame.

    The shape :math:`g = \sum w_r \kappa_{4,r} / \sum w_r \mu_{2,r}^2` over both frames and the rows with at least
    ``MIN_ROW_SPECKLES`` independent speckles (:math:`w_r = n_r / a_r`) is applied to each row's variances,
    :math:`\kappa_{4,r} = g\,\mu_{2,r}^{(1)}\mu_{2,r}^{(2)}`, so that no row's value follows its own fluctuation.
    Coherent speckle g = 6, M equal modes 6/M; pixel integration lowers it.

    Parameters
    ----------
    cumulants : sequence of two (mu2, kappa4)
        :func:`speckle_cumulants` of the two frames, each (n_q,).
    nrow, area_row : ndarray (n_q,)
        Pixels and correlation area (pixels) per row.

    Returns
    -------
    k4 : ndarray (n_q,)
        :math:`g\,\mu_{2,r}^{(1)}\mu_{2,r}^{(2)}` (negative variances clipped to 0).
    g : float
        The pooled shape (>= 0).
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        wr = nrow / area_row
    num = den = 0.0
    for mu2, k4 in cumulants:
        ok = np.isfinite(mu2) & np.isfinite(k4) & np.isfinite(wr) & (wr >= MIN_ROW_SPECKLES)
        num += float(np.sum(wr[ok] * k4[ok]))
        den += float(np.sum(wr[ok] * mu2[ok] ** 2))
    g = max(num / den, 0.0) if den > 0 else 0.0
    m1, m2 = (np.clip(np.nan_to_num(c[0]), 0.0, None) for c in cumulants)
    return g * m1 * m2, g


def variance_law(V, c, beta, k4):
    r"""Per-pixel variance of u = d_1 d_2 at the predicted correlation c = C - 1 (docs/theory.md 7.10).

    With d = delta + nu (speckle and Poisson parts, independent) and intensities of Gaussian fields (any number of
    coherent modes, integrating pixels: sums of such modes) decorrelating by the same :math:`|\mu|^2 = y = c/\beta`,

    .. math:: \mathrm{Var}(u) = V_r + c^2 + \kappa_{4,r}\,(4y + 2y^2)/6,\qquad V_r = \langle d_1^2\rangle_r
              \langle d_2^2\rangle_r

    (the joint cumulant :math:`\kappa_4(1122)` is the sum over the six cycles through (1, 1, 2, 2) of products of
    the field correlations; coherent speckle, beta = 1: Var u = 1 + 4c + 3c^2). Exact at c = 0 whatever the
    statistics; never below V_r.

    Parameters
    ----------
    V : ndarray (n_q,)
        :math:`V_r`, measured on the frames.
    c : ndarray (n_q, n_phi)
        Predicted C - 1 per bin.
    beta : float
        The contrast.
    k4 : ndarray (n_q,)
        :func:`pooled_k4`.

    Returns
    -------
    ndarray (n_q, n_phi)
    """
    y = c / beta
    var = V[:, None] + c**2 + k4[:, None] * (4.0 * y + 2.0 * y**2) / 6.0
    with np.errstate(invalid="ignore"):
        return np.maximum(var, V[:, None])
