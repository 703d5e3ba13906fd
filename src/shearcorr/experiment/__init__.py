"""Experiment: two detector frames + geometry -> g(q, phi) -> flow direction -> gamma L, D2, R_s.

Public API: :func:`analyze` with :class:`AnalysisOptions` (the whole analysis of one pair, a typed
:class:`~.results.PairAnalysis`), :func:`analyze_series` (several pairs with one flow direction, a
:class:`~.results.SeriesResult`), :func:`render_pair` / :func:`write_synth` (synthetic frame pairs with
known truth), and the building blocks in the sub-modules ``frames``, ``geometry``, ``correlation``,
``specklestats``, ``flow``, ``model``, ``inference``, ``regression``, ``series``, ``results``.
"""

from .analysis import AnalysisOptions, analyze
from .series import PairFrames, analyze_series, series_pairs
from .synth import render_pair, write_synth

__all__ = ["analyze", "AnalysisOptions", "analyze_series", "series_pairs", "PairFrames", "render_pair", "write_synth"]
