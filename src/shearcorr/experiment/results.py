"""Typed results of the frame analysis: one pair (:class:`PairAnalysis`) and a series (:class:`SeriesResult`).

Each record's ``to_dict()`` is the JSON the CLI writes (``result.json``, ``series.json``; docs/experiment.md
lists the keys users parse) and ``to_json()`` its strict text (NaN and infinities as ``null``). Arrays
that belong to the analysis but not to the JSON (the correlation map, the fitted model on the bins) are
attributes outside ``to_dict()``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from ..files import JSONRecord

__all__ = ["Estimate", "Length", "RsEstimate", "FlowAngle", "Contrast", "ChiSquare", "PairAnalysis", "JointFlow",
           "SeriesResult", "FLOW_CONVENTION", "RS_NOTE"]

#: How the flow angle is reported (written into every result).
FLOW_CONVENTION = ("detector azimuth of the flow axis, counter-clockwise from +x (columns), image displayed with "
                   "row 0 at the top; defined modulo 180")
#: Why R_s from one pair is mostly its prior.
RS_NOTE = "a single pair barely constrains R_s (docs/experiment.md)"


class Estimate(NamedTuple):
    """A value and its standard error (JSON: ``[value, std]``)."""

    value: float
    std: float


@dataclass(frozen=True)
class Length(JSONRecord):
    """A length in units of the particle radius R0 with its std, also reported in nm."""

    value: float
    std: float
    nm_per_r0: float

    def to_dict(self) -> dict:
        return {"value": float(self.value), "std": float(self.std), "unit": "R0",
                "value_nm": float(self.value) * self.nm_per_r0, "std_nm": float(self.std) * self.nm_per_r0}


@dataclass(frozen=True)
class RsEstimate(JSONRecord):
    """R_s and its std; ``constrained`` False when the std is the prior's (None for the GPR)."""

    value: float
    std: float
    constrained: bool | None

    def to_dict(self) -> dict:
        return {"value": float(self.value), "std": float(self.std), "constrained": self.constrained, "note": RS_NOTE}


@dataclass(frozen=True)
class FlowAngle(JSONRecord):
    """Flow direction in degrees (detector azimuth), fixed by the user or fitted; the strip start value."""

    value: float
    std: float
    fixed: bool
    strip_estimate: tuple | None

    def to_dict(self) -> dict:
        return {"value": float(self.value), "std": float(self.std), "convention": FLOW_CONVENTION,
                "fixed": self.fixed, "strip_estimate": self.strip_estimate}


@dataclass(frozen=True)
class Contrast(JSONRecord):
    """Speckle contrast beta: fitted value, the frames' self-calibrated estimate, and whether it was given."""

    value: float
    std: float
    estimate: float
    estimate_std: float
    frames: tuple
    given: bool

    def to_dict(self) -> dict:
        return {"value": self.value, "std": self.std, "estimate": self.estimate, "estimate_std": self.estimate_std,
                "frames": list(self.frames), "given": self.given}


@dataclass(frozen=True)
class ChiSquare(JSONRecord):
    """chi^2 of the fit over ``n_bins`` usable bins, its degrees of freedom and chi^2 / dof."""

    chi2: float
    dof: int
    reduced: float
    n_bins: int

    def to_dict(self) -> dict:
        return {"chi2": self.chi2, "dof": self.dof, "reduced": self.reduced, "n_bins": self.n_bins}


@dataclass(frozen=True)
class PairAnalysis(JSONRecord):
    """Result of :func:`shearcorr.experiment.analyze` for one frame pair.

    Attributes
    ----------
    gamma_l, d2 : Length
        The reported method's values (the direct fit unless ``method="gpr"``).
    rs : RsEstimate
    flow_angle_deg : FlowAngle
    contrast : Contrast
    chi2 : ChiSquare
        Of the direct fit.
    methods : dict
        ``"fit"``: :class:`~.inference.PairFit`; ``"gpr"``: :class:`~.inference.GPRPrediction`;
        ``"model"``: :class:`~.inference.ModelPrediction` (a ``shearcorr train`` model).
    inputs, geometry, provenance : dict
        Where the frames came from, the geometry in physical units, how the result was made.
    warnings : tuple of str
        What the numbers do not mean (:mod:`.checks`): a parameter at a bound of the fit, an undefined
        flow direction (reported as NaN), a q range clipped to the model's domain, sub-pixel speckles.
    correlation_map : CorrelationMap
        The map binned in theta from the flow (not in the JSON).
    model_y : ndarray (n_q, n_phi)
        The fitted pair model on the same bins (not in the JSON).
    """

    gamma_l: Length
    d2: Length
    rs: RsEstimate
    flow_angle_deg: FlowAngle
    contrast: Contrast
    chi2: ChiSquare
    methods: dict
    inputs: dict
    geometry: dict
    provenance: dict
    warnings: tuple = ()
    correlation_map: object = field(default=None, repr=False, compare=False)
    model_y: np.ndarray | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict:
        return {"gamma_l": self.gamma_l.to_dict(), "d2": self.d2.to_dict(), "rs": self.rs.to_dict(),
                "flow_angle_deg": self.flow_angle_deg.to_dict(), "contrast": self.contrast.to_dict(),
                "chi2": self.chi2.to_dict(), "methods": {k: v.to_dict() for k, v in self.methods.items()},
                "inputs": dict(self.inputs), "geometry": dict(self.geometry), "provenance": dict(self.provenance),
                "warnings": list(self.warnings)}


@dataclass(frozen=True)
class JointFlow(JSONRecord):
    """The flow angle of a series (deg): fixed by the user, or the inverse-variance mean of the pairs.

    For a joint estimate: ``chi2``, ``dof``, ``chi2_red`` of the pairs about it, their ``residuals``
    (deg, on the axis), each pair's own estimate ``per_pair`` and which pairs were used.
    """

    value: float
    std: float
    fixed: bool = False
    chi2: float = float("nan")
    dof: int = 0
    chi2_red: float = float("nan")
    residuals: tuple = ()
    per_pair: tuple = ()  # Estimate per used pair
    pairs_used: tuple = ()

    def to_dict(self) -> dict:
        if self.fixed:
            return {"value": float(self.value), "std": float(self.std), "fixed": True}
        return {"value": self.value, "std": self.std, "chi2": self.chi2, "dof": self.dof, "chi2_red": self.chi2_red,
                "residuals": list(self.residuals), "per_pair": [{"value": v, "std": s} for v, s in self.per_pair],
                "pairs_used": list(self.pairs_used), "fixed": False}


@dataclass(frozen=True)
class SeriesResult(JSONRecord):
    """Result of :func:`shearcorr.experiment.analyze_series`: the joint flow and every pair fitted at it."""

    flow: JointFlow
    pairs: tuple  # PairAnalysis per pair, in order
    provenance: dict

    @staticmethod
    def folder(k: int) -> str:
        """Sub-folder of pair ``k`` in the series output."""
        return f"pair_{k:03d}"

    def to_dict(self) -> dict:
        return {"flow_angle_deg": dict(self.flow.to_dict(), convention=FLOW_CONVENTION),
                "pairs": [{"folder": self.folder(k), "gamma_l": r.gamma_l.to_dict(), "d2": r.d2.to_dict(),
                           "rs": r.rs.to_dict(), "contrast": {"value": r.contrast.value, "std": r.contrast.std},
                           "chi2": r.chi2.to_dict(), "inputs": dict(r.inputs)} for k, r in enumerate(self.pairs)],
                "provenance": dict(self.provenance)}
