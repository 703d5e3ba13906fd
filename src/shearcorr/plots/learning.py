"""Figures of the inversion (paper Figs. 4-7): SVD, PDDF/ACF, LML landscapes, parity plots.

Every function takes data (plain arrays or the result objects of :mod:`shearcorr.inverse.features`) and
``ax=None``; it returns the Axes (or the Figure for the multi-panel 3-D Fig. 5).
"""

from __future__ import annotations

import numpy as np

from ..plots import require_matplotlib

__all__ = ["plot_singular_values", "plot_singular_vectors", "figure_svd_space", "plot_pddf_acf", "plot_lml",
           "plot_parity", "LABELS"]

LABELS = {"n_l2": r"$nL^2$", "rs": r"$R_s$", "d2": r"$D_2$", "gamma_l": r"$\gamma L$"}


def _ax(ax):
    plt = require_matplotlib()
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 3.6))
    return ax


def _room_for_labels(ax) -> None:
    """Twin axes and colour bars put labels between panels: let the figure make room for them
    (constrained layout) unless its maker chose a layout; otherwise a panel's right-hand label lands on
    the next panel's ticks (the ACF label of Fig. 6a, the colour-bar label next to sigma)."""
    fig = ax.figure
    if fig.get_layout_engine() is None:
        fig.set_layout_engine("constrained")


def plot_singular_values(singular_values, *, top: int = 3, ax=None):
    """Fig. 4a: singular value vs rank (log scale), the top ``top`` circled in red."""
    ax = _ax(ax)
    s = np.asarray(singular_values)
    rank = np.arange(1, s.size + 1)
    ax.semilogy(rank, s, "k.-", ms=3, lw=0.8)
    ax.scatter(rank[:top], s[:top], s=80, facecolors="none", edgecolors="r", zorder=3)
    ax.set_xlabel("singular value rank (SVR)")
    ax.set_ylabel(r"singular value $\Sigma$")
    return ax


def plot_singular_vectors(vectors, theta, *, ax=None):
    """Fig. 4b: the first singular vectors V1, V2, V3 against theta."""
    ax = _ax(ax)
    for i, v in enumerate(np.atleast_2d(vectors)):
        ax.plot(np.asarray(theta), v, label=f"V{i + 1}")
    ax.set_xlabel(r"$\theta$ (rad)")
    ax.set_ylabel("singular vector")
    ax.legend(frameon=False)
    return ax


def figure_svd_space(projections, params: dict, *, max_points: int = 3000, seed: int = 0):
    """Fig. 5: samples in (FV0, FV1, FV2) space, one 3-D panel per parameter, coloured by its value."""
    plt = require_matplotlib()
    proj = np.asarray(projections)
    idx = np.arange(proj.shape[0])
    if idx.size > max_points:
        idx = np.sort(np.random.default_rng(seed).choice(idx, max_points, replace=False))
    fig = plt.figure(figsize=(4.6 * len(params), 3.8))
    for i, (name, values) in enumerate(params.items()):
        ax = fig.add_subplot(1, len(params), i + 1, projection="3d")
        sc = ax.scatter(proj[idx, 0], proj[idx, 1], proj[idx, 2], c=np.asarray(values)[idx], s=2, cmap="viridis")
        ax.set_xlabel("FV0")
        ax.set_ylabel("FV1")
        ax.set_zlabel("FV2", labelpad=6)
        ax.set_title(LABELS.get(name, name))
        # the z axis (ticks and the FV2 label) is drawn on the right: the colour bar goes below, where
        # it hides nothing (on the right it covered the FV2 label)
        fig.colorbar(sc, ax=ax, orientation="horizontal", shrink=0.6, pad=0.12, fraction=0.05)
    fig.tight_layout()
    return fig


def plot_pddf_acf(stats, *, ax=None):
    """Fig. 6a: PDDF p(z) (left axis) and ACF C_mu(z) of each target (right axis)."""
    ax = _ax(ax)
    _room_for_labels(ax)
    ax.plot(stats.z, stats.pddf, "k-", label="p(z)")
    ax.set_xlabel(r"pair distance $z$")
    ax.set_ylabel(r"PDDF $p(z)$")
    ax2 = ax.twinx()
    for name, c in stats.acf.items():
        ax2.plot(stats.z, c, "--", label=f"ACF {LABELS.get(name, name)}")
    ax2.axhline(0, color="0.7", lw=0.5)
    ax2.set_ylabel(r"ACF $C_\mu(z)$")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, frameon=False, fontsize=8)
    return ax


def plot_lml(l_values, sigma_values, lml, *, optimum=None, title: str = "", ax=None, levels: int = 30):
    """Figs. 6b-d: LML contour over (l, sigma) (log axes), the optimum marked with a red star.

    Values far below the maximum are clipped (max - 5 |max| or max - 1e4) so the contours show the peak.
    """
    ax = _ax(ax)
    _room_for_labels(ax)
    z = np.asarray(lml, dtype=np.float64)
    top = np.nanmax(z)
    floor = top - max(1e4, 0.0) if not np.isfinite(top) else top - min(1e4, 5 * abs(top) + 50)
    z = np.clip(z, floor, None)
    L, S = np.meshgrid(np.asarray(l_values), np.asarray(sigma_values), indexing="ij")
    cs = ax.contourf(L, S, z, levels=levels, cmap="viridis")
    ax.figure.colorbar(cs, ax=ax, label="LML (log marginal likelihood)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    if optimum is not None:
        ax.plot([optimum[0]], [optimum[1]], "r*", ms=12, mec="w")
    ax.set_xlabel(r"$l$ (squared length, paper convention)")
    ax.set_ylabel(r"$\sigma$")
    if title:
        ax.set_title(title)
    return ax


def plot_parity(true, mean, std=None, *, name: str = "", err: float | None = None, ax=None, max_points: int = 2000):
    """Fig. 7: predicted vs true with 1-sigma error bars, the diagonal, and Err in the corner."""
    ax = _ax(ax)
    t, m = np.asarray(true), np.asarray(mean)
    idx = np.arange(t.size)
    if idx.size > max_points:
        idx = np.sort(np.random.default_rng(0).choice(idx, max_points, replace=False))
    ax.errorbar(t[idx], m[idx], yerr=None if std is None else np.asarray(std)[idx], fmt=".", ms=3, lw=0.5,
                alpha=0.6, color="C0", ecolor="0.6")
    lo, hi = float(min(t.min(), m.min())), float(max(t.max(), m.max()))
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    label = LABELS.get(name, name)
    ax.set_xlabel(f"{label} (reference)")
    ax.set_ylabel(f"{label} (GPR)")
    if err is not None:
        ax.text(0.05, 0.92, f"Err = {100 * err:.1f} %", transform=ax.transAxes)
    return ax
