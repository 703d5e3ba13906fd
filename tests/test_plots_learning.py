"""Label layout of the inversion figures (issue 14: Fig. 6 labels overlapping, Fig. 5's FV2 label hidden,
g_q.png minor tick labels overlapping). The PNGs were rendered and inspected; these tests pin the
layout decisions that fixed them: no two text labels of a figure overlap."""

from types import SimpleNamespace

import numpy as np
import pytest

plt = pytest.importorskip("matplotlib.pyplot")


def _texts(fig):
    """(axes index, text, extent) of every visible axis label, title and tick label."""
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    out = []
    for i, ax in enumerate(fig.axes):
        texts = [ax.title]
        for k, (axis, ticks) in enumerate(((ax.xaxis, ax.get_xticklabels()), (ax.yaxis, ax.get_yticklabels()))):
            if axis.get_visible():
                lo, hi = sorted(axis.get_view_interval())
                texts += [axis.label] + [t for t in ticks if lo <= t.get_position()[k] <= hi]  # drawn ticks only
        out += [(i, t.get_text(), t.get_window_extent(r)) for t in texts if t.get_visible() and t.get_text()]
    return out


def _overlaps(fig):
    """Text of one panel (or colour bar) drawn over text of another."""
    items = _texts(fig)
    return [(a, b) for k, (i, a, ea) in enumerate(items) for j, b, eb in items[k + 1:] if i != j and ea.overlaps(eb)]


def test_fig6_panels_do_not_overlap():
    from shearcorr.plots import learning as pl

    z = np.linspace(0, 2.6, 60)
    stats = SimpleNamespace(z=z, pddf=np.exp(-z) * z * 4, acf={"rs": np.sin(3 * z), "d2": np.cos(z), "gamma_l": -z})
    l, s = np.geomspace(1e-4, 1e2, 8), np.geomspace(1e-6, 1, 8)
    L, S = np.meshgrid(l, s, indexing="ij")
    fig, ax = plt.subplots(1, 4, figsize=(19, 3.8))  # as reproduce makes it
    pl.plot_pddf_acf(stats, ax=ax[0])
    for k, t in enumerate(("rs", "d2", "gamma_l")):
        pl.plot_lml(l, s, -((np.log(L) + 4) ** 2 + (np.log(S) + 3) ** 2), optimum=(1e-2, 1e-1), title=pl.LABELS[t], ax=ax[k + 1])
    assert fig.get_layout_engine() is not None and _overlaps(fig) == []
    plt.close(fig)


def test_fig5_colour_bars_leave_the_fv2_label_visible():
    from shearcorr.plots import learning as pl

    rng = np.random.default_rng(0)
    fig = pl.figure_svd_space(rng.normal(size=(200, 3)), {n: rng.uniform(size=200) for n in ("rs", "d2")})
    bars = [a for a in fig.axes if a.get_label() == "<colorbar>"]
    assert len(bars) == 2 and all(b.get_position().height < b.get_position().width for b in bars)  # below, horizontal
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    for ax in (a for a in fig.axes if a.name == "3d"):
        zl = ax.zaxis.label.get_window_extent(r)
        assert not any(zl.overlaps(b.get_window_extent(r)) for b in bars)
    plt.close(fig)


def test_g_q_log_axis_labels_are_plain_and_minor_ticks_unlabelled():
    from matplotlib import ticker

    from shearcorr.plots.experiment import log_axis_labels

    fig, ax = plt.subplots()
    ax.set_xscale("log")
    ax.plot([0.15, 0.64], [1, 2])
    log_axis_labels(ax.xaxis, 0.15, 0.64)
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    assert set(labels) >= {"0.2", "0.3", "0.5"} and isinstance(ax.xaxis.get_minor_formatter(), ticker.NullFormatter)
    assert _overlaps(fig) == []
    plt.close(fig)
