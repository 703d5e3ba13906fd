"""Every enumerated option of shearcorr, declared once.

:data:`CHOICES` drives both the validation of the Python API (:func:`check_choice`, one-line
:class:`~shearcorr.errors.ShearcorrError`) and the command line (``choices=CHOICES[kind]``), so the
two can never disagree. This module imports nothing heavy (no numpy): the CLI builds its parsers
from it before any computation is imported.
"""

from __future__ import annotations

from .errors import ShearcorrError

__all__ = ["CHOICES", "check_choice"]

#: Option kind -> the allowed values, default first where there is a default.
CHOICES: dict[str, tuple[str, ...]] = {
    # forward model (docs/theory.md)
    "engine": ("analytic", "mc"),
    "displacement": ("uniform", "stokes-einstein"),
    "parameter": ("n_l2", "rs", "d2", "gamma_l"),
    # datasets (docs/datasets.md)
    "design": ("uniform", "lhs", "sobol"),
    # inversion (docs/inversion.md)
    "model": ("ard", "paper"),
    "feature": ("g_theta", "g_q", "both", "svd"),
    "optimizer": ("grid", "sklearn"),
    "transform": ("none", "log"),
    "observable": ("g", "g_theta", "g_q"),
    "estimator": ("symmetric", "before", "pooled"),
    # experiment (docs/experiment.md)
    "method": ("fit", "gpr", "both"),
    "pairing": ("consecutive", "disjoint"),
    "mask_convention": ("valid", "masked"),
    "q_unit": ("1/nm", "1/angstrom"),
    "phi_unit": ("rad", "deg"),
    "azimuth_convention": ("aps", "pyfai"),
    "frame_format": ("npy", "h5"),
    # the instrument (docs/theory.md section 7, docs/experiment.md "Describe your beamline")
    "beam_profile": ("square", "rectangular", "gaussian", "measured"),
    "plane": ("1-2", "1-3"),
    # frame stacks (docs/stacks.md)
    "stack_mode": ("steady", "twotime", "echo"),
    "normalization": ("time", "frame"),
    "protocol": ("steady", "startup", "oscillatory"),
    "compression": ("lz4", "gzip", "none"),
    "intensity": ("detector", "volume"),
    # figures of the forward model
    "figure": ("fig1", "fig2", "fig3", "all"),
}


def check_choice(kind: str, value, *, what: str | None = None) -> str:
    """Return ``value`` if it is one of ``CHOICES[kind]``, else raise a one-line ShearcorrError.

    Parameters
    ----------
    kind : str
        A key of :data:`CHOICES`.
    value : object
        The value to check.
    what : str, optional
        How the option is named in the message (default ``kind``).
    """
    options = CHOICES[kind]
    if not isinstance(value, str) or value not in options:
        raise ShearcorrError(f"{what or kind} must be one of {', '.join(options)}, got {value!r}")
    return value
