"""``shearcorr reproduce``: the paper end to end, written up as report.md.

Modules: ``pipeline`` (the stages and :func:`reproduce`), ``diagnostics`` (R_s identifiability, Monte
Carlo against the analytic engine), ``render`` (the typed report data and its markdown).
"""

from .pipeline import FULL, QUICK, ReproduceConfig, reproduce

__all__ = ["reproduce", "ReproduceConfig", "QUICK", "FULL"]
