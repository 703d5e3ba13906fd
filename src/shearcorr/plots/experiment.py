"""Figures of the frame-pair analysis: frames with mask, C(q, theta) map, g(theta) and g(q) with the fit.

Every function takes data and ``ax=None`` and returns the Axes; :func:`save_figures` writes the PNGs.
"""

from __future__ import annotations

import numpy as np

from ..plots import require_matplotlib

__all__ = ["frame_with_mask", "correlation_map", "g_theta", "g_q", "flow_series", "save_figures", "log_axis_labels"]


def frame_with_mask(frame, valid, ax=None, title=""):
    """Log-scaled frame (row 0 at the top) with masked pixels in grey."""
    plt = require_matplotlib()
    ax = ax or plt.figure(figsize=(5, 4.5)).gca()
    img = np.ma.masked_where(~valid, np.log10(np.maximum(frame, 0) + 1))
    cmap = plt.get_cmap("viridis").with_extremes(bad="0.6")
    im = ax.imshow(img, origin="upper", cmap=cmap, interpolation="nearest")
    ax.figure.colorbar(im, ax=ax, label="log10(counts + 1)")
    ax.set(title=title, xlabel="column", ylabel="row")
    return ax


def correlation_map(cm, ax=None):
    """(C - 1)/beta on (theta from flow, q R0) bins."""
    plt = require_matplotlib()
    ax = ax or plt.figure(figsize=(6, 4.5)).gca()
    y = np.ma.masked_invalid(np.where(cm.ok, cm.y, np.nan))
    im = ax.pcolormesh(np.degrees(cm.phi_edges), cm.q_edges, y, cmap="magma", vmin=-0.1, vmax=1.0, shading="flat")
    ax.set_yscale("log")
    ax.figure.colorbar(im, ax=ax, label="(C - 1) / beta")
    ax.set(xlabel="theta from flow (deg)", ylabel="q R0", title="pair correlation C(q, theta)")
    return ax


def _profile(cm, model_y, axis, ax):
    """Data (mean of (C - 1)/beta over the other axis, :meth:`CorrelationMap.g_phi` / ``g_q``, with
    errors) and the fitted model's mean over the same usable bins."""
    plt = require_matplotlib()
    ax = ax or plt.figure(figsize=(6, 4)).gca()
    m, s = cm.g_phi() if axis == 0 else cm.g_q()
    x = np.degrees(cm.phi) if axis == 0 else cm.q
    n = cm.ok.sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        fit = np.where(cm.ok, model_y, 0).sum(axis=axis) / n
    ax.errorbar(x, (m - 1.0) / cm.beta, s / cm.beta, fmt="o", ms=3, label="data")
    ax.plot(x, fit, "-", label="fit")
    ax.legend()
    return ax


def g_theta(cm, model_y, ax=None):
    """g(theta) - 1 = mean over q of (C - 1)/beta, data with errors and the fitted model."""
    ax = _profile(cm, model_y, 0, ax)
    ax.set(xlabel="theta from flow (deg)", ylabel="g(theta) - 1 (normalised)")
    return ax


def g_q(cm, model_y, ax=None):
    """g(q) - 1 = mean over theta of (C - 1)/beta, data with errors and the fitted model."""
    ax = _profile(cm, model_y, 1, ax)
    ax.set(xscale="log", xlabel="q R0", ylabel="g(q) - 1 (normalised)")
    log_axis_labels(ax.xaxis, float(np.min(cm.q)), float(np.max(cm.q)))
    return ax


def log_axis_labels(axis, lo: float, hi: float) -> None:
    """Plain-number labels on a log axis spanning [lo, hi]: 1-2-3-5 steps within about a decade, 1-2-5
    within two and a half, decades beyond, and no labelled minor ticks (matplotlib's "2x10^-1, 3x10^-1"
    minor labels overlap on short ranges)."""
    from matplotlib import ticker

    decades = float(np.log10(hi / lo)) if hi > lo > 0 else 1.0
    subs = (1.0, 2.0, 3.0, 5.0) if decades <= 1.2 else (1.0, 2.0, 5.0) if decades <= 2.5 else (1.0,)
    axis.set_major_locator(ticker.LogLocator(base=10.0, subs=subs))
    axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(ticker.NullFormatter())


def flow_series(joint, ax=None):
    """Flow angle of every pair fitted alone (deg, +- std) and the joint value with its std band
    (``joint``: the :class:`~shearcorr.experiment.results.JointFlow` of a series, with ``per_pair``)."""
    plt = require_matplotlib()
    ax = ax or plt.figure(figsize=(6, 4)).gca()
    v = joint.value + np.asarray(joint.residuals)
    ax.errorbar(joint.pairs_used or np.arange(len(joint.per_pair)), v, [p.std for p in joint.per_pair], fmt="o", ms=4,
                label="each pair alone")
    ax.axhspan(joint.value - joint.std, joint.value + joint.std, color="C1", alpha=0.3)
    ax.axhline(joint.value, color="C1", label=f"joint {joint.value:.1f} +- {joint.std:.1f} deg")
    ax.set(xlabel="pair", ylabel="flow angle (deg, detector azimuth)", title=f"chi2_red = {joint.chi2_red:.2f}")
    ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    ax.legend()
    return ax


def save_figures(folder, pair, geo, cm, model_y, result) -> list:
    """Write frames.png, correlation_map.png, g_theta.png, g_q.png into ``folder`` (``result``: the
    :class:`~shearcorr.experiment.results.PairAnalysis`)."""
    plt = require_matplotlib()
    names = []
    fig, axs = plt.subplots(1, 2, figsize=(11, 4.5))
    frame_with_mask(pair.before, pair.valid, axs[0], "before")
    frame_with_mask(pair.after, pair.valid, axs[1], "after")
    fl = result.flow_angle_deg.value
    for ax in axs:
        ny, nx = pair.before.shape
        c = result.inputs.get("beam_center_px") or [nx / 2, ny / 2]
        r = 0.45 * min(nx, ny)
        ax.plot([c[0] - r * np.cos(np.radians(fl)), c[0] + r * np.cos(np.radians(fl))],
                [c[1] + r * np.sin(np.radians(fl)), c[1] - r * np.sin(np.radians(fl))], "w--", lw=1, label="flow")
    axs[0].legend(loc="upper right")
    fig.tight_layout()
    for name, fn in (("frames.png", None), ("correlation_map.png", correlation_map), ("g_theta.png", g_theta), ("g_q.png", g_q)):
        if fn is not None:
            fig = plt.figure(figsize=(6, 4.5))
            ax = fig.gca()
            fn(cm, ax=ax) if fn is correlation_map else fn(cm, model_y, ax=ax)
            fig.tight_layout()
        fig.savefig(f"{folder}/{name}", dpi=90)
        plt.close(fig)
        names.append(name)
    return names
