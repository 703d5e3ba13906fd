"""The paper's Err metric, interval coverage, z-scores and the seeded split."""

import numpy as np
import pytest

from shearcorr.errors import ShearcorrError
from shearcorr.inverse.evaluation import coverage, relative_error, split_indices, z_scores


def test_err_metric_on_known_inputs():
    assert relative_error([1.0, 2.0], [1.0, 2.0]) == 0.0
    # |1 - 2| / 2 = 0.5 and |4 - 3| / 4 = 0.25
    assert relative_error([1.0, 4.0], [2.0, 3.0]) == pytest.approx(0.375)
    # 0/0 counts 0; a negative prediction is clipped to 0 -> |0.1 - 0| / 0.1 = 1
    assert relative_error([0.0, 0.1], [0.0, -0.5]) == pytest.approx(0.5)
    assert relative_error([0.0], [0.2]) == pytest.approx(1.0)
    with pytest.raises(ShearcorrError):
        relative_error([1.0], [1.0, 2.0])


def test_coverage_and_split():
    t = np.zeros(4)
    assert coverage(t, [0.5, 1.5, 2.5, -0.5], np.ones(4), 0.95) == 0.75  # 1.96 sigma
    tr, te = split_indices(100, 0.3, seed=3)
    assert len(te) == 30 and len(np.intersect1d(tr, te)) == 0 and len(np.union1d(tr, te)) == 100
    np.testing.assert_array_equal(te, split_indices(100, 0.3, seed=3)[1])


def test_z_scores_of_a_calibrated_gaussian_have_unit_spread():
    rng = np.random.default_rng(17)
    std = rng.uniform(0.5, 2.0, 4000)
    true = rng.normal(0.0, std)
    z = z_scores(true, np.zeros_like(std), std)
    assert np.std(z) == pytest.approx(1.0, abs=0.05)  # 4000 draws: sd of the sample std ~ 0.011
    assert coverage(true, 0.0, std, 0.68) == pytest.approx(0.68, abs=0.03)
    assert np.std(z_scores(true, 0.0, 2 * std)) == pytest.approx(0.5, abs=0.03)  # over-estimated errors show
