"""Frame stacks: time-resolved rearrangements at detector scale (docs/stacks.md).

Public API: :func:`analyze_stack` (steady shear, two-time maps, oscillatory echoes of one stack),
:func:`analyze_sweep` (echoes of several files against the strain amplitude), the synthetic stacks
of :mod:`.synth`, and the building blocks: :mod:`.plan` (bins), :mod:`.engine` (GEMM lag
correlations), :mod:`.twotime` (+ :mod:`.twotimefit`), :mod:`.steady`, :mod:`.echo`, :mod:`.templates` (the pair model on a
table), :mod:`.fitting` (amortized fits), :mod:`.output`.
"""

from __future__ import annotations

__all__ = ["analyze_stack", "analyze_sweep", "StackResult"]


def __getattr__(name):
    if name in ("analyze_stack", "StackResult"):
        from . import analysis

        return getattr(analysis, name)
    if name == "analyze_sweep":
        from .sweep import analyze_sweep

        return analyze_sweep
    raise AttributeError(f"module 'shearcorr.stack' has no attribute {name!r}")
