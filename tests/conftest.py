"""Shared test set-up: headless matplotlib, a small grid, the chi^2 helper used by physics tests, and
dataset helpers (generation on a local pool of a given size, bit-for-bit comparison of stores)."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")

from pathlib import Path

import numpy as np
import pytest

from shearcorr.params import QGrid

#: Folder of the files written by the pre-refactor code (tests/data/README.md).
DATA = Path(__file__).parent / "data"


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


def generate_with(path, *, workers: int = 1, **kwargs):
    """:func:`shearcorr.data.generate` on a local pool of ``workers`` processes (closed afterwards)."""
    from shearcorr.data import generate
    from shearcorr.parallel import executor_from

    with executor_from(workers=workers) as executor:
        return generate(path, executor=executor, **kwargs)


def assert_same_data(a, b) -> None:
    """Same variables, coords and values, bit for bit (NaN == NaN); attrs other than chunk_size equal."""
    a, b = a.load(), b.load()
    assert set(a.variables) == set(b.variables)
    for name in a.variables:
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)
    strip = lambda attrs: {k: v for k, v in attrs.items() if k != "chunk_size"}  # noqa: E731
    assert strip(a.attrs) == strip(b.attrs)


def prior_dataset(n: int, seed: int):
    """``n`` analytic-engine samples from the paper's priors on a 10 q x 11 theta grid (in memory,
    dataset layout; parameters drawn with ``default_rng(seed)``)."""
    import xarray as xr

    from shearcorr.forward.analytic import ensemble_arrays
    from shearcorr.params import SystemParams

    grid = QGrid.log(0.5, 5.0, 10, 11)
    rng = np.random.default_rng(seed)
    p = {"n_l2": rng.uniform(100, 200, n), "rs": rng.uniform(0, 0.3, n), "d2": rng.uniform(0.5, 3, n),
         "gamma_l": rng.uniform(5, 30, n)}
    g = np.stack([ensemble_arrays(SystemParams(*(p[k][i] for k in p)), grid)[1] for i in range(n)])
    return xr.Dataset({"g": (("sample", "q", "theta"), g), "g_q": (("sample", "q"), g.mean(2)),
                       "g_theta": (("sample", "theta"), g.mean(1)), "done": ("sample", np.ones(n, bool)),
                       **{k: ("sample", v) for k, v in p.items()}},
                      coords={"q": grid.q, "theta": grid.theta}, attrs={"engine": "analytic", "seed": seed})


@pytest.fixture(scope="session")
def tiny_dataset():
    """60 analytic-engine samples on a 10 q x 11 theta grid (in memory, dataset layout)."""
    return prior_dataset(60, 0)
