"""Every figure of shearcorr. Functions take data and ``ax=None`` and return the matplotlib Axes.

matplotlib is an optional dependency (extra ``plot``); it is imported only when a plot is made.
Sub-modules: ``forward`` (paper Figs. 1-3), ``learning`` (Figs. 4-7), ``experiment`` (frame analysis).
"""


def require_matplotlib():
    """Import matplotlib.pyplot with the Agg backend, or fail with a one-line install hint."""
    from ..errors import ShearcorrError

    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:
        raise ShearcorrError("plotting needs matplotlib: pip install 'shearcorr[plot]'") from None
    return plt
