"""Figures of the forward model: the paper's Figs. 1-3.

Every plotting function takes data and ``ax=None`` (or ``fig=None`` for multi-panel figures) and
returns the Axes; ``save_fig1`` / ``save_fig2`` / ``save_fig3`` compute what they need and write a PNG.
Polar maps are drawn in (q_x, q_y) with q on a linear radial scale, completed to the full circle
with I(q, theta + pi) = I(q, theta) (eq. 1 is even in q).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import ShearcorrError
from ..files import atomic_file
from ..params import QGrid, SystemParams
from ..plots import require_matplotlib

__all__ = [
    "FIG1_PARAMS",
    "FIG2_PARAMS",
    "FIG3_BASELINE",
    "FIG3_SWEEPS",
    "plot_polar_map",
    "plot_configuration",
    "fig1",
    "fig2",
    "fig3_data",
    "fig3",
    "plot_g_q",
    "plot_g_theta",
    "save_fig1",
    "save_fig2",
    "save_fig3",
]

#: Paper Fig. 1 caption: (nL^2, R_s, D_2, gamma L) = (150, 0, 0.5, 30).
FIG1_PARAMS = SystemParams(150, 0.0, 0.5, 30.0)
#: Paper Fig. 2 caption: (150, 0, 0.5, 10).
FIG2_PARAMS = SystemParams(150, 0.0, 0.5, 10.0)
#: Paper Fig. 3 baseline (150, 0, 1, 10) (black line).
FIG3_BASELINE = SystemParams(150, 0.0, 1.0, 10.0)
#: Values swept one at a time around the baseline (the paper does not list its values).
FIG3_SWEEPS = {"rs": (0.0, 0.1, 0.2, 0.3), "d2": (0.5, 1.0, 2.0, 3.0), "gamma_l": (5.0, 10.0, 20.0, 30.0)}
_LABELS = {"rs": r"$R_s$", "d2": r"$D_2$", "gamma_l": r"$\gamma L$"}
_DEFAULT_MC_CONFIGS = 20000  # the paper's Fig. 2 average


def _full_circle(values: np.ndarray, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Extend (n_q, n_theta) data on [0, pi] to the full circle with I(theta + pi) = I(theta)."""
    span = theta[-1] - theta[0]
    if np.isclose(span, np.pi) and theta.size > 1:
        th = np.concatenate([theta, theta[1:] + np.pi])
        return np.concatenate([values, values[:, 1:]], axis=1), th
    return values, theta


def plot_polar_map(values, q, theta, ax=None, *, log: bool = False, vmin=None, vmax=None, cmap: str = "viridis",
                   title: str | None = None, colorbar: bool = True, label: str | None = None):
    """Draw data on the polar grid as a map in (q_x, q_y) = q (cos theta, sin theta), q linear.

    Parameters
    ----------
    values : array of shape (n_q, n_theta)
    q, theta : 1-D arrays (1/r0, rad)
    ax : matplotlib Axes, optional
    log : bool
        Logarithmic colour scale (for intensities, which span decades); non-positive values are
        clipped to ``vmin`` (default max / 1e4).
    vmin, vmax, cmap, title, colorbar, label
        Colour limits, colour map, panel title, whether to add a colour bar and its label.

    Returns
    -------
    matplotlib Axes
    """
    plt = require_matplotlib()
    from matplotlib.colors import LogNorm

    values = np.asarray(values, dtype=float)
    q, theta = np.asarray(q, dtype=float), np.asarray(theta, dtype=float)
    if values.shape != (q.size, theta.size):
        raise ShearcorrError(f"values have shape {values.shape}, expected {(q.size, theta.size)} from q and theta")
    if ax is None:
        _, ax = plt.subplots(figsize=(4.2, 3.6))
    vals, th = _full_circle(values, theta)
    qx, qy = q[:, None] * np.cos(th)[None, :], q[:, None] * np.sin(th)[None, :]
    if log:
        top = float(np.nanmax(vals)) if vmax is None else vmax
        low = top * 1e-4 if vmin is None else vmin
        norm = LogNorm(vmin=low, vmax=top)
        vals = np.clip(vals, low, None)
        mesh = ax.pcolormesh(qx, qy, vals, shading="gouraud", cmap=cmap, norm=norm, rasterized=True)
    else:
        mesh = ax.pcolormesh(qx, qy, vals, shading="gouraud", cmap=cmap, vmin=vmin, vmax=vmax, rasterized=True)
    ax.set_aspect("equal")
    ax.set_xlabel(r"$q_x\ (1/R_0)$")
    ax.set_ylabel(r"$q_y\ (1/R_0)$")
    if title:
        ax.set_title(title, fontsize=10)
    if colorbar:
        cb = ax.figure.colorbar(mesh, ax=ax, fraction=0.046, pad=0.04)
        if label:
            cb.set_label(label)
    return ax


def plot_configuration(config, ax=None, *, title: str | None = None):
    """Fig. 1(a): particles before (blue) and after (red) the move, with the beam window frame.

    Parameters
    ----------
    config : shearcorr.forward.montecarlo.Configuration
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib Axes
    """
    plt = require_matplotlib()
    from matplotlib.patches import Rectangle

    if ax is None:
        _, ax = plt.subplots(figsize=(4, 4))
    big = config.beam_size
    ax.scatter(config.x, config.y, s=4, c="tab:blue", label=r"$S$", linewidths=0)
    ax.scatter(config.x_after, config.y_after, s=4, c="tab:red", label=r"$\Gamma(S)$", linewidths=0)
    ax.add_patch(Rectangle((-big / 2, -big / 2), big, big, fill=False, ec="k", lw=1.5))
    ax.set_xlim(-big, big)
    ax.set_ylim(-big, big)
    ax.set_aspect("equal")
    ax.set_xlabel(r"$x\ (R_0)$")
    ax.set_ylabel(r"$y\ (R_0)$")
    ax.legend(loc="upper right", fontsize=8, markerscale=2, framealpha=0.9)
    if title:
        ax.set_title(title, fontsize=10)
    return ax


def fig1(config, grid: QGrid | None = None, fig=None):
    """Paper Fig. 1: (a) one configuration before/after, (b) I, (c) I', (d) I I' as polar maps.

    Parameters
    ----------
    config : shearcorr.forward.montecarlo.Configuration
    grid : QGrid, default the paper's 100 x 101 grid
    fig : matplotlib Figure, optional

    Returns
    -------
    ndarray of 4 Axes
    """
    from ..forward.montecarlo import intensity_pair

    plt = require_matplotlib()
    grid = QGrid() if grid is None else grid
    i_b, i_a = intensity_pair(config, grid)
    if fig is None:
        fig = plt.figure(figsize=(11, 9.5))
    axes = np.array(fig.subplots(2, 2)).ravel()
    plot_configuration(config, axes[0], title=r"(a) $S$ and $\Gamma(S)$; frame: beam")
    top = max(float(i_b.max()), float(i_a.max()))
    plot_polar_map(i_b, grid.q, grid.theta, axes[1], log=True, vmax=top, title=r"(b) $I(\mathbf{q}; S)$")
    plot_polar_map(i_a, grid.q, grid.theta, axes[2], log=True, vmax=top, title=r"(c) $I(\mathbf{q}; \Gamma(S))$")
    prod = i_b * i_a
    plot_polar_map(prod, grid.q, grid.theta, axes[3], log=True, title=r"(d) $I(\mathbf{q}; S)\,I(\mathbf{q}; \Gamma(S))$")
    fig.tight_layout()
    return axes


def _param_text(attrs) -> str:
    return (rf"$(nL^2, R_s, D_2, \gamma L) = ({attrs['n_l2']:g}, {attrs['rs']:g}, {attrs['d2']:g}, "
            rf"{attrs['gamma_l']:g})$")


def fig2(result, fig=None):
    """Paper Fig. 2: (a) averaged I, (b) g(q, theta), (c) eq. 5, as polar maps with q linear.

    Parameters
    ----------
    result : xarray.Dataset from :func:`shearcorr.forward.simulate`
    fig : matplotlib Figure, optional

    Returns
    -------
    ndarray of 3 Axes
    """
    from ..physics import g_theory
    from ..result import params_from_attrs

    plt = require_matplotlib()
    params = params_from_attrs(result.attrs)  # a file without the parameters: one-line error, not a KeyError
    q, theta = result["q"].values, result["theta"].values
    g = result["g"].values
    g5 = g_theory(q, theta, params.d2, params.gamma_l)
    if fig is None:
        fig = plt.figure(figsize=(14, 4.4))
    axes = np.array(fig.subplots(1, 3)).ravel()
    plot_polar_map(result["I"].values, q, theta, axes[0], log=True, title=r"(a) $\langle I(\mathbf{q})\rangle$")
    lo, hi = 1.0, max(2.0, float(np.nanmax(g)))
    engine = result.attrs.get("engine", "?")
    n = result.attrs.get("configs", 0)
    tag = f"{engine}, {n} configs" if engine == "mc" else engine
    plot_polar_map(g, q, theta, axes[1], vmin=lo, vmax=hi, cmap="magma", title=rf"(b) $g(\mathbf{{q}})$ ({tag})")
    plot_polar_map(g5, q, theta, axes[2], vmin=lo, vmax=hi, cmap="magma", title="(c) eq. 5")
    fig.suptitle(_param_text(params.to_dict()), fontsize=10)
    fig.tight_layout()
    return axes


def fig3_data(*, engine: str = "analytic", configs: int | None = None, seed=0, grid: QGrid | None = None,
              baseline: SystemParams = FIG3_BASELINE, sweeps: dict[str, Sequence[float]] | None = None,
              progress: bool = False) -> dict[str, list]:
    """Results for Fig. 3: for each swept parameter, one result per value (others at the baseline).

    Parameters
    ----------
    engine : {"analytic", "mc"}
        Passed to :func:`shearcorr.forward.simulate`.
    configs : int, optional
        Monte Carlo configurations per parameter set (engine "mc"; default 20000).
    seed : int
        Seed of every Monte Carlo run.
    grid : QGrid, default the paper's grid
    baseline : SystemParams, default (150, 0, 1, 10)
    sweeps : dict name -> values, default :data:`FIG3_SWEEPS`

    Returns
    -------
    dict mapping "rs", "d2", "gamma_l" to lists of result Datasets (in the order of the values).
    """
    from dataclasses import replace

    from ..forward import simulate

    sweeps = FIG3_SWEEPS if sweeps is None else sweeps
    if engine == "mc" and configs is None:
        configs = _DEFAULT_MC_CONFIGS
    out: dict[str, list] = {}
    cache: dict[tuple, object] = {}
    for name, values in sweeps.items():
        out[name] = []
        for v in values:
            p = replace(baseline, **{name: float(v)})
            key = (p.n_l2, p.rs, p.d2, p.gamma_l, p.displacement)
            if key not in cache:
                cache[key] = simulate(p, grid, engine=engine, configs=configs, seed=seed, progress=progress)
            out[name].append(cache[key])
    return out


def _sweep_lines(results, name, baseline, ax, x_of, y_var, err_var):
    import matplotlib as mpl

    cmap = mpl.colormaps["viridis"]
    base_value = float(getattr(baseline, name))
    n_other = sum(float(r.attrs[name]) != base_value for r in results)
    k = 0
    for r in results:
        value = float(r.attrs[name])
        is_base = value == base_value
        if is_base:
            color = "k"
        else:
            color = cmap(k / max(1, n_other - 1) * 0.9)
            k += 1
        x, y = x_of(r), r[y_var].values
        ax.plot(x, y, color=color, lw=2.0 if is_base else 1.4, label=f"{_LABELS.get(name, name)} = {value:g}",
                zorder=3 if is_base else 2)
        if err_var in r and np.any(np.isfinite(r[err_var].values)) and np.any(r[err_var].values > 0):
            e = r[err_var].values
            ax.fill_between(x, y - e, y + e, color=color, alpha=0.2, lw=0)
    ax.legend(fontsize=7, frameon=False)


def plot_g_q(results, name: str, ax=None, *, baseline: SystemParams = FIG3_BASELINE):
    """g(q) curves of a one-parameter sweep (baseline in black), q on a log axis; returns the Axes."""
    plt = require_matplotlib()
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 3.4))
    _sweep_lines(results, name, baseline, ax, lambda r: r["q"].values, "g_q", "g_q_err")
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    ax.set_xscale("log")
    ticks = [t for t in (0.5, 1.0, 2.0, 5.0) if results[0]["q"].values[0] <= t <= results[0]["q"].values[-1]]
    ax.set_xticks(ticks)
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(r"$q\ (1/R_0)$")
    ax.set_ylabel(r"$g(q)$")
    return ax


def plot_g_theta(results, name: str, ax=None, *, baseline: SystemParams = FIG3_BASELINE):
    """g(theta) curves of a one-parameter sweep (baseline in black), theta in units of pi."""
    plt = require_matplotlib()
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 3.4))
    _sweep_lines(results, name, baseline, ax, lambda r: r["theta"].values / np.pi, "g_theta", "g_theta_err")
    ax.set_xlabel(r"$\theta\ (\pi)$")
    ax.set_ylabel(r"$g(\theta)$")
    ax.set_xlim(0, 1)
    return ax


def fig3(data: dict[str, list], fig=None, *, baseline: SystemParams = FIG3_BASELINE):
    """Paper Fig. 3: g(q) (left) and g(theta) (right) for sweeps of R_s, D_2, gamma L (rows).

    Parameters
    ----------
    data : dict from :func:`fig3_data`
    fig : matplotlib Figure, optional

    Returns
    -------
    ndarray of Axes, shape (n_sweeps, 2)
    """
    plt = require_matplotlib()
    names = list(data)
    if fig is None:
        fig = plt.figure(figsize=(10, 3.2 * len(names)))
    axes = np.array(fig.subplots(len(names), 2)).reshape(len(names), 2)
    letters = "abcdefghijkl"
    for row, name in enumerate(names):
        plot_g_q(data[name], name, axes[row, 0], baseline=baseline)
        plot_g_theta(data[name], name, axes[row, 1], baseline=baseline)
        axes[row, 0].set_title(f"({letters[2 * row]}) vary {_LABELS.get(name, name)}", fontsize=10)
        axes[row, 1].set_title(f"({letters[2 * row + 1]}) vary {_LABELS.get(name, name)}", fontsize=10)
    first = data[names[0]][0].attrs
    fig.suptitle(rf"baseline $(nL^2, R_s, D_2, \gamma L) = ({baseline.n_l2:g}, {baseline.rs:g}, {baseline.d2:g}, "
                 rf"{baseline.gamma_l:g})$, engine {first.get('engine', '?')}", fontsize=10)
    fig.tight_layout()
    return axes


def _save(fig, path) -> Path:
    """Write ``fig`` as PNG to ``path`` atomically (:func:`shearcorr.files.atomic_file`) and close it."""
    path = Path(path)
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=130, format="png")
    require_matplotlib().close(fig)
    return path


def save_fig1(path, params: SystemParams = FIG1_PARAMS, seed=0, grid: QGrid | None = None) -> Path:
    """Write Fig. 1 (configuration ``seed``, index 0 of the Monte Carlo stream) to a PNG; returns the path."""
    from ..forward.montecarlo import sample_configuration

    plt = require_matplotlib()
    fig = plt.figure(figsize=(11, 9.5))
    fig1(sample_configuration(params, seed), grid, fig=fig)
    fig.suptitle(_param_text(params.to_dict()) + f", seed {seed}", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def save_fig2(path, params: SystemParams = FIG2_PARAMS, *, engine: str = "analytic", configs: int | None = None,
              seed=0, grid: QGrid | None = None, result=None, progress: bool = False) -> Path:
    """Write Fig. 2 to a PNG, from ``result`` if given, else from :func:`shearcorr.forward.simulate`.

    ``configs`` defaults to 20000 (the paper's average) for ``engine="mc"``.
    """
    plt = require_matplotlib()
    if result is None:
        from ..forward import simulate

        if engine == "mc" and configs is None:
            configs = _DEFAULT_MC_CONFIGS
        result = simulate(params, grid, engine=engine, configs=configs, seed=seed, progress=progress)
    fig = plt.figure(figsize=(14, 4.4))
    fig2(result, fig=fig)
    return _save(fig, path)


def save_fig3(path, *, engine: str = "analytic", configs: int | None = None, seed=0, grid: QGrid | None = None,
              data: dict | None = None, progress: bool = False) -> Path:
    """Write Fig. 3 to a PNG (sweeps from :func:`fig3_data` unless ``data`` is given)."""
    plt = require_matplotlib()
    if data is None:
        data = fig3_data(engine=engine, configs=configs, seed=seed, grid=grid, progress=progress)
    fig = plt.figure(figsize=(10, 3.2 * len(data)))
    fig3(data, fig=fig)
    return _save(fig, path)
