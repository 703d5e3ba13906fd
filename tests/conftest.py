"""Shared test set-up: headless matplotlib, a small grid, and the chi^2 helper used by physics tests."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")

import numpy as np
import pytest

from shearcorr.params import QGrid


@pytest.fixture
def small_grid() -> QGrid:
    """A coarse polar grid (20 q log-spaced in [0.5, 5], 21 theta in [0, pi]) for fast tests."""
    return QGrid.log(0.5, 5.0, 20, 21)


def chi2_per_dof(a: np.ndarray, b: np.ndarray, err: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean of ((a - b) / err)^2 over the points in ``mask`` (all points by default)."""
    r = (np.asarray(a) - np.asarray(b)) / np.asarray(err)
    if mask is not None:
        r = r[mask]
    return float(np.mean(r**2))
