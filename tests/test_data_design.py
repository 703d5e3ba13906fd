"""Parameter designs: paper defaults, stratification of LHS / Sobol', fixed values, seeding, validation."""

import json

import numpy as np
import pytest

from shearcorr.data.design import PAPER_RANGES, Design, make_design, sample_seed
from shearcorr.errors import ShearcorrError
from shearcorr.params import PARAM_NAMES


def _strata_counts(x, lo, hi, n):
    """How many of the values x fall in each of n equal strata of [lo, hi]."""
    k = np.clip(np.floor((x - lo) / (hi - lo) * n).astype(int), 0, n - 1)
    return np.bincount(k, minlength=n)


def test_uniform_defaults_are_the_papers_ranges():
    d = make_design(2000, 0)
    s = d.sample()
    assert d.ranges == PAPER_RANGES and d.fixed == {}
    for p, (lo, hi) in PAPER_RANGES.items():
        assert s[p].shape == (2000,) and s[p].dtype == np.float64
        assert lo <= s[p].min() and s[p].max() <= hi
        # uniform: mean within 4 standard errors, and both ends of the range are reached
        assert abs(s[p].mean() - (lo + hi) / 2) < 4 * (hi - lo) / np.sqrt(12 * 2000)
        assert s[p].min() < lo + 0.01 * (hi - lo) and s[p].max() > hi - 0.01 * (hi - lo)


def test_uniform_row_i_comes_from_spawned_stream_i():
    d = make_design(7, 5)
    rows = np.column_stack([d.sample()[p] for p in PARAM_NAMES])
    child = np.random.SeedSequence(5).spawn(7)[4]
    u = np.random.default_rng(child).random(4)
    lo = np.array([PAPER_RANGES[p][0] for p in PARAM_NAMES])
    hi = np.array([PAPER_RANGES[p][1] for p in PARAM_NAMES])
    np.testing.assert_array_equal(rows[4], lo + (hi - lo) * u)
    # a row does not depend on n, and sample_seed equals spawn(n)[i]
    np.testing.assert_array_equal(np.column_stack([make_design(30, 5).sample()[p] for p in PARAM_NAMES])[:7], rows)
    assert sample_seed(5, 4).generate_state(4).tolist() == child.generate_state(4).tolist()


@pytest.mark.parametrize("kind", ["lhs", "sobol"])
def test_quasi_random_designs_are_stratified(kind):
    n = 64
    d = make_design(n, 3, kind=kind, ranges={"rs": (0.0, 0.2)})
    s = d.sample()
    for p in PARAM_NAMES:
        lo, hi = d.ranges[p]
        # each 1-D projection: one point in each of n equal strata (LHS by construction; scrambled
        # Sobol' with n = 2^m is a (t, m, s)-net, whose 1-D projections are stratified the same way)
        np.testing.assert_array_equal(_strata_counts(s[p], lo, hi, n), np.ones(n, int))
    # a plain uniform design of the same size is almost never that even
    u = make_design(n, 3).sample()
    assert _strata_counts(u["d2"], 0.5, 3.0, n).max() > 1


def test_sobol_2d_projection_is_balanced():
    n = 64
    s = make_design(n, 1, kind="sobol").sample()
    # (d2, gamma_l) in an 8 x 8 grid of cells: 64 points, one per cell for a (0, m, 2)-net base-2 projection
    a = np.floor((s["n_l2"] - 100) / 100 * 8).astype(int)
    b = np.floor((s["rs"] - 0) / 0.3 * 8).astype(int)
    counts = np.bincount(a * 8 + b, minlength=64)
    assert counts.max() == 1


@pytest.mark.parametrize("kind", ["uniform", "lhs", "sobol"])
def test_fixed_values_are_respected(kind):
    d = make_design(32, 0, kind=kind, fixed={"rs": 0.05, "n_l2": 150}, ranges={"d2": (1.0, 2.0)})
    s = d.sample()
    assert np.all(s["rs"] == 0.05) and np.all(s["n_l2"] == 150.0)
    assert d.free == ("d2", "gamma_l")
    assert 1.0 <= s["d2"].min() and s["d2"].max() <= 2.0
    if kind != "uniform":
        np.testing.assert_array_equal(_strata_counts(s["d2"], 1.0, 2.0, 32), np.ones(32, int))


def test_fixing_a_parameter_keeps_the_other_uniform_draws():
    a = make_design(10, 2).sample()
    b = make_design(10, 2, fixed={"rs": 0.1}).sample()
    for p in ("n_l2", "d2", "gamma_l"):
        np.testing.assert_array_equal(a[p], b[p])


def test_all_fixed_and_degenerate_range():
    s = make_design(5, 0, kind="lhs", fixed=dict(n_l2=120, rs=0, d2=1, gamma_l=10)).sample()
    assert all(np.all(s[p] == v) for p, v in dict(n_l2=120, rs=0, d2=1, gamma_l=10).items())
    s = make_design(5, 0, ranges={"d2": (1.5, 1.5)}).sample()
    assert np.all(s["d2"] == 1.5)


@pytest.mark.parametrize("kind", ["uniform", "lhs", "sobol"])
def test_same_seed_same_design_other_seed_other_design(kind):
    a, b, c = (make_design(16, s, kind=kind).sample() for s in (4, 4, 5))
    np.testing.assert_array_equal(a["gamma_l"], b["gamma_l"])
    assert not np.array_equal(a["gamma_l"], c["gamma_l"])


def test_json_round_trip():
    d = make_design(12, 9, kind="sobol", ranges={"rs": (0, 0.1)}, fixed={"d2": 2.0})
    text = d.to_json()
    assert json.loads(text)["kind"] == "sobol" and json.loads(text)["fixed"] == {"d2": 2.0}
    assert Design.from_json(text) == d


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(ranges={"rs": (0.3, 0.1)}), "low 0.3 > high 0.1"),
        (dict(ranges={"d2": (-1.0, 2.0)}), "d2"),
        (dict(ranges={"gamma_l": (5.0, -1.0)}), "gamma_l"),
        (dict(ranges={"n_l2": (0.0, 100.0)}), "n_l2"),
        (dict(ranges={"rs": (0.0, 2.0)}), "rs"),
        (dict(ranges={"rs": (float("nan"), 0.1)}), "finite"),
        (dict(ranges={"d2": (1.0, float("inf"))}), "finite"),
        (dict(ranges={"rs": 0.2}), "LOW, HIGH|low, high"),
        (dict(fixed={"rs": -0.1}), "rs"),
        (dict(fixed={"gamma": 1.0}), "unknown parameter"),
        (dict(ranges={"rs": (0, 0.1)}, fixed={"rs": 0.1}), "both fixed and given a range"),
        (dict(kind="random"), "design must be one of"),
    ],
)
def test_bad_input_is_one_clear_line(kwargs, match):
    with pytest.raises(ShearcorrError, match=match) as info:
        make_design(10, 0, **kwargs)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("n, seed", [(0, 0), (-3, 0), (2.5, 0), (10, -1), (10, 1.5)])
def test_bad_n_or_seed(n, seed):
    with pytest.raises(ShearcorrError):
        make_design(n, seed)
