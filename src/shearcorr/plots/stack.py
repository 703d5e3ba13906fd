"""Figures of the stack analyses: steady (gamma L and MSD vs lag, lag maps), two-time (C(t1, t2), gamma L
and D2 maps, the ramp from the first time bin), echo (per cycle, per lag) and amplitude sweeps.

Every function takes data and ``ax=None`` and returns the Axes; :func:`save_figures` writes the PNGs
of a :class:`shearcorr.stack.analysis.StackResult`.
"""

from __future__ import annotations

import numpy as np

from . import require_matplotlib

__all__ = ["steady_gamma", "steady_msd", "lag_maps", "twotime_c2", "twotime_map", "twotime_ramp", "echo_cycles",
           "echo_lags", "amplitude_sweep", "save_figures"]


def _ax(ax, size=(6, 4)):
    plt = require_matplotlib()
    return ax or plt.figure(figsize=size).gca()


def steady_gamma(analysis, ax=None):
    """gamma L per lag (each lag fitted alone, jackknife errors) and the fitted shear rate line."""
    ax = _ax(ax)
    f, pl = analysis.fit, analysis.per_lag
    lags = f.lags[1:]
    ax.errorbar(lags, pl["gamma_l"], pl["gamma_l_std"], fmt="o", ms=4, label="each lag")
    sr, s = f.values["shear_rate"], f.std["shear_rate"]
    ax.plot(lags, f.gamma_l(lags), "-", label=f"shear rate {sr:.4g} +- {s:.2g} per frame")
    ax.set(xlabel="lag (frames)", ylabel="gamma L (R0)", title="affine strain x beam size")
    ax.legend()
    return ax


def steady_msd(analysis, ax=None):
    """Non-affine MSD D2^2 per lag (log-log) and the fitted power law."""
    ax = _ax(ax)
    f, pl = analysis.fit, analysis.per_lag
    lags = f.lags[1:]
    ax.errorbar(lags, pl["d2"] ** 2, 2 * pl["d2"] * pl["d2_std"], fmt="o", ms=4, label="each lag")
    v, s = f.values, f.std
    ax.plot(lags, f.d2(lags) ** 2, "-", label=f"D = {v['diffusion']:.3g} +- {s['diffusion']:.2g} R0^2/frame, "
            f"alpha = {v['exponent']:.2f} +- {s['exponent']:.2f}")
    ax.set(xscale="log", yscale="log", xlabel="lag (frames)", ylabel="D2^2 (R0^2)", title="non-affine MSD per axis")
    ax.legend()
    return ax


def lag_maps(analysis, plan, lags=None, fig=None):
    """C - 1 of a few lags (data and model) on (azimuth, q) bins."""
    plt = require_matplotlib()
    f = analysis.fit
    lags = [int(v) for v in (lags or np.unique(np.round(np.geomspace(1, f.lags[-1], 3))))]
    fig = fig or plt.figure(figsize=(4 * len(lags), 6))
    vmax = float(np.nanmax(analysis.c[1]))
    for j, lag in enumerate(lags):
        for r, (data, title) in enumerate(((analysis.c[lag], "data"), (f.prediction[lag], "model"))):
            ax = fig.add_subplot(2, len(lags), r * len(lags) + j + 1)
            im = ax.pcolormesh(np.degrees(plan.phi_edges), plan.q_edges, np.ma.masked_invalid(data), vmin=0, vmax=vmax,
                               cmap="magma", shading="flat")
            ax.set(yscale="log", title=f"{title}, lag {lag}", xlabel="azimuth (deg)", ylabel="q R0")
    fig.colorbar(im, ax=fig.axes, label="C - 1")
    return fig


def twotime_c2(c2, times=None, ax=None, title="C(t1, t2) - 1"):
    """A two-time map (square array), t1 along x, t2 along y."""
    ax = _ax(ax, (5, 4.5))
    n = c2.shape[0]
    t = np.arange(n) if times is None else times
    im = ax.imshow(c2, origin="lower", cmap="viridis", extent=(t[0], t[-1], t[0], t[-1]))
    ax.figure.colorbar(im, ax=ax)
    ax.set(xlabel="t1 (frames)", ylabel="t2 (frames)", title=title)
    return ax


def twotime_map(values, times, ax=None, title=""):
    """gamma L(t1, t2) or D2(t1, t2) on the time-bin grid."""
    ax = _ax(ax, (5, 4.5))
    im = ax.imshow(np.ma.masked_invalid(values), origin="lower", cmap="cividis",
                   extent=(times[0], times[-1], times[0], times[-1]))
    ax.figure.colorbar(im, ax=ax, label="R0")
    ax.set(xlabel="t1 (frames)", ylabel="t2 (frames)", title=title)
    return ax


def twotime_ramp(analysis, ax=None):
    """gamma L and D2 between the first time bin and every later one (a start-up ramp)."""
    ax = _ax(ax)
    t = analysis.times[1:]
    ax.errorbar(t, analysis.gamma_l[0, 1:], analysis.gamma_l_std[0, 1:], fmt="o", ms=3, label="gamma L (R0)")
    ax.errorbar(t, analysis.d2[0, 1:], analysis.d2_std[0, 1:], fmt="s", ms=3, label="D2 (R0)")
    ax.set(xlabel="t2 (frames)", ylabel="from the first time bin", title="start-up: strain and non-affine motion")
    ax.legend()
    return ax


def echo_cycles(analysis, ax=None):
    """Irreversible D2 and residual gamma L of every cycle (echo with the next cycle)."""
    ax = _ax(ax)
    pc = analysis.per_cycle
    ax.errorbar(pc["cycle"], pc["d2"], pc["d2_std"], fmt="o", ms=3, label="D2 irreversible (R0)")
    ax.errorbar(pc["cycle"], pc["gamma_l"], pc["gamma_l_std"], fmt="s", ms=3, label="gamma L residual (R0)")
    d, s = analysis.d2_irreversible
    ax.axhspan(d - s, d + s, color="C0", alpha=0.25)
    ax.set(xlabel="cycle", ylabel="per cycle (R0)", title=f"echoes, period {analysis.period} frames")
    ax.legend()
    return ax


def echo_lags(analysis, ax=None):
    """D2^2 of echoes k cycles apart and k D_irr^2."""
    ax = _ax(ax)
    pl = analysis.per_lag
    k = np.asarray(pl["k"], dtype=float)
    ax.errorbar(k, pl["d2"] ** 2, 2 * pl["d2"] * pl["d2_std"], fmt="o", label="echo k cycles apart")
    d = analysis.d2_irreversible[0]
    ax.plot(k, k * d * d, "-", label=f"k D_irr^2, D_irr = {d:.3g} +- {analysis.d2_irreversible[1]:.2g} R0")
    ax.set(xlabel="k (cycles)", ylabel="D2^2 (R0^2)")
    ax.legend()
    return ax


def amplitude_sweep(sweep, ax=None):
    """Irreversible displacement per cycle against the strain amplitude (several files)."""
    ax = _ax(ax)
    ax.errorbar(sweep["strain_amplitude"], sweep["d2_irreversible"], sweep["d2_irreversible_std"], fmt="o-",
                label="D2 irreversible per cycle")
    ax.errorbar(sweep["strain_amplitude"], sweep["gamma_l_residual"], sweep["gamma_l_residual_std"], fmt="s--",
                label="gamma L residual per cycle")
    ax.set(xlabel="strain amplitude", ylabel="R0 per cycle", title="echo: irreversibility vs amplitude")
    ax.legend()
    return ax


def save_figures(folder, result) -> list:
    """Write the PNGs of a stack result into ``folder``; returns the file names."""
    plt = require_matplotlib()
    a = result.analysis
    figs = []
    if result.mode == "steady":
        figs = [("gamma_l.png", steady_gamma(a).figure), ("msd.png", steady_msd(a).figure),
                ("lag_maps.png", lag_maps(a, result.plan))]
    elif result.mode == "twotime":
        figs = [("gamma_l_map.png", twotime_map(a.gamma_l, a.times, title="gamma L(t1, t2)").figure),
                ("d2_map.png", twotime_map(a.d2, a.times, title="D2(t1, t2)").figure),
                ("ramp.png", twotime_ramp(a).figure)]
        for lab, c2 in sorted(a.maps.selected.items())[:3]:
            figs.append((f"c2_{lab:05d}.png", twotime_c2(c2, title=f"C(t1, t2) - 1, bin {lab}").figure))
    else:
        figs = [("echo_cycles.png", echo_cycles(a).figure), ("echo_lags.png", echo_lags(a).figure)]
    names = []
    for name, fig in figs:
        if name != "lag_maps.png":  # that one has a shared colour bar
            fig.tight_layout()
        fig.savefig(f"{folder}/{name}", dpi=90)
        plt.close(fig)
        names.append(name)
    return names
