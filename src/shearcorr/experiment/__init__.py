"""Experiment: two detector frames + geometry -> g(q, phi) -> flow direction -> gamma L, D2, R_s.

Public API: :func:`analyze` (the whole analysis of one pair), :func:`analyze_series` (several pairs
with one flow direction), :func:`render_pair` / :func:`write_synth` (synthetic frame pairs with
known truth), and the building blocks in the sub-modules ``frames``, ``geometry``,
``correlation``, ``flow``, ``model``, ``inference``, ``series``.
"""

from .analysis import analyze
from .series import analyze_series
from .synth import render_pair, write_synth

__all__ = ["analyze", "analyze_series", "render_pair", "write_synth"]
