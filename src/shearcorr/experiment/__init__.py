"""Experiment: two detector frames + geometry -> g(q, phi) -> flow direction -> gamma L, D2, R_s.

Public API: :func:`analyze` (the whole analysis), :func:`render_pair` / :func:`write_synth`
(synthetic frame pairs with known truth), and the building blocks in the sub-modules
``frames``, ``geometry``, ``correlation``, ``flow``, ``model``, ``inference``.
"""

from .analysis import analyze
from .synth import render_pair, write_synth

__all__ = ["analyze", "render_pair", "write_synth"]
