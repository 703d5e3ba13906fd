"""Validation of parameter objects and seeds: every bad value gives one clear error."""

import numpy as np
import pytest

from shearcorr.errors import ShearcorrError
from shearcorr.params import QGrid, SystemParams


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(n_l2=-5), "n_l2 must be > 0"),
        (dict(n_l2=0), "n_l2 must be > 0"),
        (dict(rs=-0.1), "rs must be >= 0"),
        (dict(d2=-1), "d2 must be >= 0"),
        (dict(gamma_l=-2), "gamma_l must be >= 0"),
        (dict(n_l2=float("nan")), "n_l2 must be finite"),
        (dict(rs="abc"), "rs must be a number"),
        (dict(displacement="brownian"), "displacement must be one of"),
        (dict(beam_size=0), "beam_size must be > 0"),
    ],
)
def test_bad_system_params(kwargs, match):
    base = dict(n_l2=150, rs=0.0, d2=1.0, gamma_l=10.0)
    base.update(kwargs)
    with pytest.raises(ShearcorrError, match=match):
        SystemParams(**base)


def test_system_params_derived_quantities():
    p = SystemParams(n_l2=150.4, rs=0.1, d2=1, gamma_l=10)
    assert p.n_particles == 602
    assert p.gamma == pytest.approx(10 / 800)
    assert p.to_dict()["displacement"] == "uniform"
    with pytest.raises(AttributeError):
        p.rs = 0.2  # frozen


def test_default_grid_is_the_papers():
    g = QGrid()
    assert g.shape == (100, 101)
    assert g.q[0] == pytest.approx(0.5) and g.q[-1] == pytest.approx(5.0)
    np.testing.assert_allclose(np.diff(np.log(g.q)), np.log(10) / 99)
    assert g.theta[-1] == pytest.approx(np.pi)
    assert not g.q.flags.writeable


@pytest.mark.parametrize(
    "q, theta, match",
    [
        ([], [0.0], "q grid is empty"),
        ([0.0, 1.0], [0.0], "finite and > 0"),
        ([-1.0], [0.0], "finite and > 0"),
        ([2.0, 1.0], [0.0], "strictly increasing"),
        ([1.0], [], "theta grid is empty"),
        ([1.0], [np.nan], "theta values must be finite"),
    ],
)
def test_bad_grids(q, theta, match):
    with pytest.raises(ShearcorrError, match=match):
        QGrid(q, theta)


def test_grid_log_constructor_and_equality():
    assert QGrid.log(0.5, 5, 100, 101) == QGrid()
    assert QGrid.log(0.5, 5, 10, 11) != QGrid()
    with pytest.raises(ShearcorrError, match="q_min"):
        QGrid.log(2.0, 1.0)
    with pytest.raises(ShearcorrError, match="n_q >= 1"):
        QGrid.log(0.5, 5, 0, 10)


def test_grid_comparison_tolerates_float32_and_names_the_largest_difference():
    """A grid stored as float32 by another code (relative differences ~6e-8) is the same grid; a real
    difference is refused with the grid point and the size of the largest difference."""
    g = QGrid()
    g32 = QGrid(g.q.astype(np.float32), g.theta.astype(np.float32))
    assert g32 == g and g.difference(g32) is None
    q = g.q.copy()
    q[37] *= 1.001
    msg = g.difference(QGrid(q, g.theta))
    assert "q[37]" in msg and "relative difference 0.001" in msg
    assert "theta" in g.difference(QGrid(g.q, g.theta + np.r_[np.zeros(100), 1e-3]))
    assert "100 q x 50 theta" in g.difference(QGrid(g.q, np.linspace(0, np.pi, 50)))
