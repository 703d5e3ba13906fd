r"""Several frame pairs with one flow direction: a joint flow angle, then every pair at that angle.

One pair cannot place the flow direction better than its own ~n_l2 particles allow: even an
observer who knows every particle's displacement gets :math:`\sigma \approx \sqrt{12}\,D_2/(\gamma L
\sqrt N)` (:func:`.synth.flow_oracle`, docs/experiment.md). The flow direction is set by the shear
cell and is the same for every shear step of a series, so the pairs of a series measure it jointly.
The non-affine steps of different pairs are independent, so are their flow errors, and the joint
estimate is the inverse-variance mean on the axis (angles modulo pi):

.. math:: \hat\phi = \frac{\sum_k \phi_k/\sigma_k^2}{\sum_k 1/\sigma_k^2},\qquad
          \sigma_{\hat\phi} = \Big(\sum_k \sigma_k^{-2}\Big)^{-1/2}\max\big(1, \sqrt{\chi^2/(K-1)}\big)

with every :math:`\phi_k` unwrapped to within 90 deg of the current mean, and
:math:`\chi^2 = \sum_k (\phi_k - \hat\phi)^2/\sigma_k^2` (its Birge ratio inflates the std when the pairs
disagree more than their errors allow). Each pair is then fitted again with the flow fixed at
:math:`\hat\phi`. The joint angle's own uncertainty does not enter gamma L and D2: y is even in
theta about the flow axis, so its derivative in the flow angle is odd and orthogonal to the even
derivatives in gamma L and D2 at the solution (no first-order correlation).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._version import __version__
from ..choices import check_choice
from ..errors import ShearcorrError
from ..files import atomic_folder, check_output_folder, json_text
from .analysis import AnalysisOptions, analyze
from .results import Estimate, JointFlow, SeriesResult

__all__ = ["combine_flow", "analyze_series", "series_pairs", "PairFrames"]

#: Passes of the unwrapping about the current mean in :func:`combine_flow` (it converges in one or two).
UNWRAP_PASSES = 5


def combine_flow(angles_deg, stds_deg) -> JointFlow:
    """Joint flow angle (deg, in [-90, 90)) of several pairs; see the module docstring.

    Returns a :class:`~.results.JointFlow` with ``value``, ``std``, ``chi2``, ``dof``, ``chi2_red`` and
    ``residuals`` (deg, each pair minus the joint value, on the axis).
    """
    a = np.asarray(angles_deg, dtype=np.float64)
    s = np.asarray(stds_deg, dtype=np.float64)
    if a.ndim != 1 or a.size == 0 or a.shape != s.shape:
        raise ShearcorrError("combine_flow needs one angle and one std per pair")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(s)) and np.all(s > 0)):
        raise ShearcorrError("every pair needs a finite flow angle and a positive std; was the flow fixed in a pair?")
    w = 1.0 / s**2
    mean = float(a[np.argmin(s)])
    for _ in range(UNWRAP_PASSES):  # unwrap about the current mean
        d = (a - mean + 90.0) % 180.0 - 90.0
        new = mean + float(np.sum(w * d) / np.sum(w))
        if abs(new - mean) < 1e-10:
            break
        mean = new
    d = (a - mean + 90.0) % 180.0 - 90.0
    chi2 = float(np.sum(w * d**2))
    dof = a.size - 1
    red = chi2 / dof if dof > 0 else float("nan")
    std = float(np.sqrt(1.0 / np.sum(w)) * (max(1.0, np.sqrt(red)) if dof > 0 else 1.0))
    return JointFlow(value=float((mean + 90.0) % 180.0 - 90.0), std=std, chi2=chi2, dof=int(dof), chi2_red=red,
                     residuals=tuple(float(v) for v in d))


@dataclass(frozen=True)
class PairFrames:
    """One pair of a series: the frames (paths or 2-D arrays) and, for stack files, their indices."""

    before: Any
    after: Any
    frame_index: int | None = None
    frame_index_after: int | None = None


def series_pairs(frames, pairing="consecutive", frame_indices=None) -> list[PairFrames]:
    """The pairs of a series.

    ``frames``: file paths or 2-D arrays in time order, or one stack file with ``frame_indices``
    (its frames, in order). ``pairing``: ``"consecutive"`` (0-1, 1-2, ...: one shear step each) or
    ``"disjoint"`` (0-1, 2-3, ...: independent pairs).
    """
    check_choice("pairing", pairing)
    frames = list(frames)
    if frame_indices is not None:
        if len(frames) != 1:
            raise ShearcorrError("frame indices select frames of one stack file; give exactly one file with --frames")
        items = [(frames[0], int(i)) for i in frame_indices]
    else:
        items = [(f, None) for f in frames]
    if len(items) < 2:
        raise ShearcorrError(f"a series needs at least 2 frames, got {len(items)}")
    if pairing == "disjoint" and len(items) % 2:
        raise ShearcorrError(f"disjoint pairing needs an even number of frames, got {len(items)}")
    step = 1 if pairing == "consecutive" else 2
    return [PairFrames(items[k][0], items[k + 1][0], items[k][1], items[k + 1][1])
            for k in range(0, len(items) - 1, step)]


def _joint_flow(pairs, geometry, options: AnalysisOptions) -> JointFlow:
    """Each pair fitted alone with a free flow (direct fit only, no plots), then :func:`combine_flow`."""
    first = options.replace(method="fit", model=None, plots=False, flow_angle_deg=None)
    per = [analyze(p.before, p.after, geometry, options=first, frame_index=p.frame_index,
                   frame_index_after=p.frame_index_after).flow_angle_deg for p in pairs]
    use = [k for k, f in enumerate(per) if np.isfinite(f.value) and np.isfinite(f.std) and f.std > 0]
    if not use:
        raise ShearcorrError("no pair of the series gives a flow angle with a finite, positive std; fix it with --flow-angle")
    joint = combine_flow([per[k].value for k in use], [per[k].std for k in use])
    return JointFlow(**{**joint.__dict__, "per_pair": tuple(Estimate(per[k].value, per[k].std) for k in use),
                        "pairs_used": tuple(use), "fixed": False})


def analyze_series(pairs, geometry, output=None, *, options: AnalysisOptions | None = None,
                   overwrite: bool = False) -> SeriesResult:
    """Analyse several pairs that share one flow direction; return (and write) the series result.

    Parameters
    ----------
    pairs : list of PairFrames
        The pairs (see :func:`series_pairs`).
    geometry : path or DetectorGeometry
        The common geometry.
    output : path, optional
        Folder to create: ``series.json``, ``flow.png`` and one ``pair_NNN/`` folder per pair (the
        output of :func:`.analysis.analyze` with the flow fixed at the joint angle). Written in a
        temporary folder next to it and renamed at the end.
    options : AnalysisOptions, optional
        Common options of every pair; a given ``flow_angle_deg`` skips the joint estimate and is fixed
        in every pair. GPR and model methods run once per pair, in the second pass.
    overwrite : bool
        Replace an existing non-empty output folder.
    """
    t0 = time.perf_counter()
    pairs = list(pairs)
    if not pairs:
        raise ShearcorrError("a series needs at least one pair")
    options = AnalysisOptions() if options is None else options
    out = None if output is None else check_output_folder(output, overwrite=overwrite)
    if options.flow_angle_deg is None:
        joint = _joint_flow(pairs, geometry, options)
    else:
        joint = JointFlow(value=float(options.flow_angle_deg), std=0.0, fixed=True)
    fixed = options.replace(flow_angle_deg=joint.value)
    with contextlib.ExitStack() as stack:
        tmp = None if out is None else stack.enter_context(atomic_folder(out, overwrite=overwrite))
        results = tuple(analyze(p.before, p.after, geometry, None if tmp is None else tmp / SeriesResult.folder(k),
                                options=fixed, frame_index=p.frame_index, frame_index_after=p.frame_index_after)
                        for k, p in enumerate(pairs))
        provenance = {"shearcorr_version": __version__, "n_pairs": len(pairs), "time_s": round(time.perf_counter() - t0, 3),
                      "joint_flow": "inverse-variance mean of the free-flow fits (docs/experiment.md, 'Several pairs')"}
        result = SeriesResult(flow=joint, pairs=results, provenance=provenance)
        if tmp is not None:
            (tmp / "series.json").write_text(json_text(result.to_dict(), indent=2) + "\n")
            if options.plots and not joint.fixed:
                from ..plots.experiment import flow_series

                fig = flow_series(joint).figure
                fig.savefig(tmp / "flow.png", dpi=110)
                fig.clf()
    return result
