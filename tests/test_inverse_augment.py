"""Noise-aware training inputs (shearcorr.inverse.augment): draws of the profiles as an N-configuration
estimate gives them, checked against independent Monte Carlo replicas of the same parameter set."""

import numpy as np
import pytest
from conftest import generate_with

from shearcorr.data import open_dataset
from shearcorr.errors import ShearcorrError
from shearcorr.forward.montecarlo import replicas
from shearcorr.inverse.augment import noisy_profiles
from shearcorr.params import PARAM_NAMES, QGrid, SystemParams

GRID = QGrid.log(0.5, 3.0, 10, 13)
N = 128


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("aug") / "s.zarr"
    generate_with(path, n=3, seed=4, grid=GRID, engine="analytic", progress=False)
    return open_dataset(path, load=True)


def test_draws_match_monte_carlo_replicas(store):
    """Over 60 draws (seeds) and 60 Monte Carlo replicas of N = 128 configurations, the g(theta) and g(q)
    profiles of sample 0 agree: per-point std ratio within [0.75, 1.33] (median over the profile; the
    sample std of 60 values is known to ~9 %), and the mean difference within 4 standard errors per
    point on average (the O(1/N) bias included in the draws, absent from the exact profile)."""
    p = SystemParams(*(float(store[k].values[0]) for k in PARAM_NAMES))
    draws = np.array([noisy_profiles(store, [0], N, seed=s)[0] for s in range(60)])
    g, _ = replicas(p, GRID, N, 60, seed=3)
    mc = np.concatenate([g.mean(axis=1), g.mean(axis=2)], axis=1)
    ratio = np.median(draws.std(axis=0, ddof=1) / mc.std(axis=0, ddof=1))
    assert 0.75 < ratio < 1.33, ratio
    se = np.sqrt(draws.var(axis=0, ddof=1) / 60 + mc.var(axis=0, ddof=1) / 60)
    assert np.mean(np.abs(draws.mean(axis=0) - mc.mean(axis=0)) / se) < 1.6  # |z| of a normal averages 0.8
    exact = np.concatenate([store["g_theta"].values[0], store["g_q"].values[0]])
    assert np.mean(mc.mean(axis=0) - exact) < 0  # the estimator's bias is real (negative on average)


def test_draws_are_seeded_per_sample_and_refusals(store):
    a = noisy_profiles(store, [0, 1, 2], 300, seed=7)
    b = noisy_profiles(store, [2, 0], 300, seed=7)
    assert np.array_equal(a[2], b[0]) and np.array_equal(a[0], b[1])
    assert not np.array_equal(a, noisy_profiles(store, [0, 1, 2], 300, seed=8))
    with pytest.raises(ShearcorrError, match="configs of the training noise"):
        noisy_profiles(store, [0], 1.0)
    with pytest.raises(ShearcorrError, match="full map g"):
        noisy_profiles(store.drop_vars("g"), [0], 300)
