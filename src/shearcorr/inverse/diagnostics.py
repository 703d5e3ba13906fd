r"""Diagnostics of a set of feature vectors: SVD (paper Sec. III B, Figs. 4-5), PDDF (eq. 7) and ACF (eq. 8).

:func:`svd_analysis` decomposes a feature matrix (one g(theta) per sample), :math:`F = U\Sigma V^T`, not
centred, as the paper; :func:`pddf_acf` gives the pair-distance distribution of the feature vectors and
the autocorrelation of the targets over that distance, which sets the scale of the GPR's length.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.distance import cdist

from ..errors import ShearcorrError

__all__ = ["SVDAnalysis", "svd_analysis", "PairStatistics", "pddf_acf"]


@dataclass(frozen=True)
class SVDAnalysis:
    """Result of :func:`svd_analysis` (paper Sec. III B, Figs. 4-5).

    Attributes
    ----------
    singular_values : ndarray (r,)
        Sigma, descending.
    vectors : ndarray (k, n_columns)
        The first k right singular vectors V_1..V_k (rows), sign-fixed.
    projections : ndarray (M, k)
        FV0..FV{k-1}: each sample projected on V_1..V_k, F V.
    explained : ndarray (r,)
        Sigma_i^2 / sum Sigma^2, the share of sum ||g||^2 carried by each vector.
    """

    singular_values: np.ndarray
    vectors: np.ndarray
    projections: np.ndarray
    explained: np.ndarray


def svd_analysis(F, *, k: int = 3) -> SVDAnalysis:
    r"""Singular value decomposition of a feature matrix, :math:`F = U\Sigma V^T` (not centred, as the paper).

    Parameters
    ----------
    F : array-like of shape (M, n)
        One g(theta) (or any feature row) per sample.
    k : int, default=3
        Number of leading singular vectors and projections to return.

    Returns
    -------
    SVDAnalysis
        Singular values, V_1..V_k, projections :math:`FV_j = F V_{j+1}` and explained shares.
        Signs are fixed (largest-magnitude entry of each V_j positive) so results are reproducible.
    """
    F = np.asarray(F, dtype=np.float64)
    if F.ndim != 2 or F.shape[0] < 1:
        raise ShearcorrError(f"SVD needs a 2-D matrix with at least one row, got shape {F.shape}")
    _, s, vt = np.linalg.svd(F, full_matrices=False)
    k = min(int(k), vt.shape[0])
    v = vt[:k].copy()
    sign = np.sign(v[np.arange(k), np.argmax(np.abs(v), axis=1)])
    sign[sign == 0] = 1.0
    v *= sign[:, None]
    return SVDAnalysis(singular_values=s, vectors=v, projections=F @ v.T, explained=s**2 / np.sum(s**2))


@dataclass(frozen=True)
class PairStatistics:
    """Result of :func:`pddf_acf`.

    Attributes
    ----------
    z : ndarray (n_bins,)
        Bin centres of the pair distance |x_i - x_j|.
    edges : ndarray (n_bins + 1,)
    pddf : ndarray (n_bins,)
        p(z) of eq. 7 as a density in z (distinct pairs i != j; see :func:`pddf_acf`).
    counts : ndarray (n_bins,)
        Number of unordered pairs i < j per bin.
    acf : dict of str to ndarray (n_bins,)
        C_mu(z) of eq. 8 per target (NaN in empty bins).
    self_weight : float
        Weight 1/M of the i = j terms of eq. 7, a delta at z = 0 not included in ``pddf``.
    """

    z: np.ndarray
    edges: np.ndarray
    pddf: np.ndarray
    counts: np.ndarray
    acf: dict
    self_weight: float


def pddf_acf(X, targets: dict | None = None, *, bins: int | np.ndarray = 100, block: int = 512) -> PairStatistics:
    r"""Pair distance distribution (eq. 7) of feature vectors and autocorrelation (eq. 8) of targets.

    PDDF, eq. 7, :math:`p(z) = M^{-2}\sum_{i,j}\delta(|x_i-x_j|-z)`, is estimated as a histogram density:
    for bin b of width :math:`\Delta_b`,

    .. math:: p_b = \frac{2\,N_b}{M^2\,\Delta_b},\qquad N_b = \#\{i<j : |x_i-x_j| \in b\}.

    The M self-pairs i = j of eq. 7 form a delta of weight 1/M at z = 0; it is reported as
    ``self_weight`` rather than smeared into the first bin, so :math:`\sum_b p_b\Delta_b = (M-1)/M`.

    ACF, eq. 8, :math:`C_\mu(z) = (\langle\mu(x)\mu(x+z)\rangle_x - \langle\mu\rangle^2)/(\langle\mu^2\rangle
    - \langle\mu\rangle^2)`. With scattered data there is no "x + z" on a lattice, so the pair average
    :math:`\langle\mu(x)\mu(x+z)\rangle_x` is estimated over all distinct pairs whose distance falls in bin b,

    .. math:: C_\mu(z_b) = \frac{N_b^{-1}\sum_{i<j,\,|x_i-x_j|\in b}\mu_i\mu_j - \bar\mu^2}{\overline{\mu^2} - \bar\mu^2},

    with :math:`\bar\mu`, :math:`\overline{\mu^2}` the means over all M samples (isotropic: only |z| is
    resolved). C -> 1 as z -> 0 for a smooth map x -> mu and C ~ 0 once pairs are uncorrelated; the
    distance where it decays sets the scale of the RBF length (the paper's use in Fig. 6a).

    Cost: M(M-1)/2 distances, computed in row blocks with :func:`scipy.spatial.distance.cdist` and
    binned with :func:`numpy.bincount` (6000 x 101 takes a few seconds, memory O(block x M)).

    Parameters
    ----------
    X : array-like of shape (M, d)
        Feature vectors.
    targets : dict of str to array-like of shape (M,), optional
        Targets mu for the ACF.
    bins : int or array-like, default=100
        Number of equal bins on [0, z_max] (z_max = the largest pair distance, found in a first pass)
        or explicit increasing bin edges.
    block : int, default=512
        Rows per block (memory/speed trade-off only; results do not depend on it).

    Returns
    -------
    PairStatistics
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] < 2:
        raise ShearcorrError(f"PDDF needs at least 2 feature vectors in a 2-D array, got shape {X.shape}")
    M = X.shape[0]
    targets = {} if targets is None else {k: np.asarray(v, dtype=np.float64) for k, v in targets.items()}
    for name, v in targets.items():
        if v.shape != (M,):
            raise ShearcorrError(f"target {name!r} has shape {v.shape}, expected ({M},)")

    def _blocks():
        for a in range(0, M - 1, block):
            b = min(a + block, M)
            d = cdist(X[a:b], X[a:])  # row i (global a+i) against columns j >= a
            i = np.arange(b - a)[:, None]
            j = np.arange(M - a)[None, :]
            mask = j > i
            yield a, d, mask

    if np.ndim(bins) == 0:
        zmax = max(float(d[m].max()) if m.any() else 0.0 for _, d, m in _blocks())
        zmax = zmax if zmax > 0 else 1.0
        edges = np.linspace(0.0, zmax * (1 + 1e-12), int(bins) + 1)
    else:
        edges = np.asarray(bins, dtype=np.float64)
        if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
            raise ShearcorrError("bins must be an int or strictly increasing bin edges")
    nb = edges.size - 1
    counts = np.zeros(nb)
    sums = {k: np.zeros(nb) for k in targets}
    for a, d, mask in _blocks():
        idx = np.searchsorted(edges, d, side="right") - 1
        ok = mask & (idx >= 0) & (idx < nb)
        ib = idx[ok]
        counts += np.bincount(ib, minlength=nb)
        if targets:
            ii, jj = np.nonzero(ok)
            for name, v in targets.items():
                prod = v[a + ii] * v[a + jj]
                sums[name] += np.bincount(ib, weights=prod, minlength=nb)
    width = np.diff(edges)
    pddf = 2.0 * counts / (M * M * width)
    acf = {}
    with np.errstate(invalid="ignore", divide="ignore"):
        for name, v in targets.items():
            mean, var = v.mean(), v.var()
            pair_mean = np.where(counts > 0, sums[name] / np.maximum(counts, 1), np.nan)
            acf[name] = (pair_mean - mean**2) / var if var > 0 else np.full(nb, np.nan)
    return PairStatistics(z=0.5 * (edges[1:] + edges[:-1]), edges=edges, pddf=pddf, counts=counts,
                          acf=acf, self_weight=1.0 / M)
