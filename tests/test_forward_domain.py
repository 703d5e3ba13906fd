"""The analytic engine's validated domain (forward/domain.py): every input outside it is refused in one
line naming the limit; inputs inside keep working; memory is estimated before anything is allocated.

The limits themselves were measured against brute-force Monte Carlo (benchmarks/bench_domain.py, table
in docs/theory.md section 8); here the cases of issue 14 are checked to be refused, the edges of the
domain to be accepted, and the engine's answer outside to be really wrong (the reason for the refusal).
"""

import numpy as np
import pytest

from shearcorr.errors import ShearcorrError
from shearcorr.forward import simulate
from shearcorr.forward.analytic import ensemble_arrays
from shearcorr.forward.domain import (BOX_SIGMAS, GAMMA_MAX, N_L2_RANGE, Q_MAX_R0, RS_MAX, WINDOW_EPS_MAX,
                                      analytic_bytes, analytic_q_min, check_analytic, check_box, max_d2)
from shearcorr.memory import available_bytes, format_bytes, require
from shearcorr.params import QGrid, SystemParams

GRID = QGrid.log(0.5, 5.0, 6, 7)


@pytest.mark.parametrize("params, grid, needle", [
    # issue 14: gamma_l 1e5 gave g up to 599 (brute force 1.01), 1e4 gave 4.4 at pi/2 (1.05)
    (SystemParams(150, 0.0, 1.0, 1e5), GRID, "gamma_l = 100000 is outside"),
    (SystemParams(150, 0.0, 1.0, 1e4), GRID, "gamma_l <= 0.9 x beam_size"),
    # rs = 1 gave 1.19 / 1.92 (brute force 3.9-4.5 / 6.7-7.3)
    (SystemParams(150, 1.0, 1.0, 10), GRID, "rs = 1 is outside"),
    # q 1e-6..1e-3 gave g 1.985, I = 1 (brute force 1.005, I ~ 150); a 10 R0 beam gave g 1.49 (1.18)
    (SystemParams(150, 0.0, 1.0, 10), QGrid.log(1e-6, 1e-3, 5, 5), "neglected window terms"),
    (SystemParams(150, 0.0, 0.1, 0.1, beam_size=10), GRID, "neglected window terms"),
    # q_max 1e300 wrote NaN with exit 0
    (SystemParams(150, 0.0, 1.0, 10), QGrid(np.array([0.5, 1e300]), np.array([0.0])), "q R0 <= 60"),
    # steps out of the box, too few or too many particles
    (SystemParams(150, 0.0, 1e6, 10), GRID, "out of the simulated box"),
    (SystemParams(1e300, 0.0, 1.0, 10), GRID, r"n_l2 = 1e\+300 is outside"),
    (SystemParams(2, 0.0, 1.0, 10), GRID, "n_l2 = 2 is outside"),
])
def test_outside_the_domain_is_refused_in_one_line(params, grid, needle):
    for call in (lambda: ensemble_arrays(params, grid), lambda: simulate(params, grid)):
        with pytest.raises(ShearcorrError, match=needle) as exc:
            call()
        assert "\n" not in str(exc.value) and "docs/theory.md" in str(exc.value)


def test_the_edges_of_the_domain_are_accepted():
    L = 800.0
    n_l2 = 150.0
    q_min = analytic_q_min(SystemParams(n_l2, 0, 1, 10))
    assert n_l2 / (q_min * L / 2) ** 2 == pytest.approx(WINDOW_EPS_MAX)
    edge = [SystemParams(n_l2, RS_MAX, 1.0, 10), SystemParams(n_l2, 0.1, 1.0, 0.999 * GAMMA_MAX * L),
            SystemParams(N_L2_RANGE[0], 0.1, 1.0, 10), SystemParams(n_l2, 0.1, 0.999 * max_d2(SystemParams(n_l2, 0.1, 0, 10)), 10)]
    for p in edge:
        check_analytic(p, GRID)
    check_analytic(SystemParams(n_l2, 0.1, 1, 10), QGrid.log(1.0001 * q_min, Q_MAX_R0, 5, 5))
    _, g, _ = ensemble_arrays(SystemParams(n_l2, 0.1, 1.0, 0.999 * GAMMA_MAX * L), GRID)
    assert np.all(np.isfinite(g)) and np.all(g >= 1.0 - 1e-9) and np.all(g < 2.0)


def test_box_rule_is_shared_with_monte_carlo_and_names_the_margin():
    p = SystemParams(150, 0.0, 100.0, 10)  # 6 stds = 600 R0 > margin (L/2)(1 - gamma) = 395 R0
    with pytest.raises(ShearcorrError, match=r"margin \(L/2\)\(1 - gamma_l/L\) = 395 R0"):
        check_box(p)
    with pytest.raises(ShearcorrError, match="out of the simulated box"):
        simulate(p, GRID, engine="mc", configs=10, seed=0)
    se = SystemParams(150, 0.3, 1.0, 10, displacement="stokes-einstein")
    assert max_d2(se) == pytest.approx(0.5 * 800 * (1 - 10 / 800) / (BOX_SIGMAS * np.exp(0.45)))


def test_outside_the_domain_the_engine_would_be_wrong():
    """Why the refusal: without it the engine's arithmetic gives g far above any physical value
    (g <= 2 for a Gaussian speckle pair up to finite-N corrections; brute force gives 1.01 here)."""
    from shearcorr.forward.analytic import _moments, default_resolution

    p = SystemParams(150, 0.0, 1.0, 1e5)
    nr, nl = default_resolution(p, 5.0)
    EI, EII = _moments(p, GRID.q, GRID.theta, nr, nl, True, True)
    assert np.max(EII / EI[:, None] ** 2) > 10.0


def test_simulate_refuses_configs_for_the_exact_engine():
    with pytest.raises(ShearcorrError, match="configs applies to engine 'mc' only"):
        simulate(SystemParams(150, 0, 1, 10), GRID, configs=100)


def test_memory_is_estimated_before_allocating(monkeypatch):
    # the paper's grid needs megabytes; a 1e9 x 101 grid (issue 14: OOM-killed) is refused with the numbers
    assert analytic_bytes(SystemParams(150, 0.3, 1, 10), QGrid()) < 200 * 1024**2
    with pytest.raises(ShearcorrError, match=r"a grid of 1000000000 q x 101 theta needs about .* of memory, .* are available"):
        QGrid.log(0.5, 5.0, 1_000_000_000, 101)
    avail = available_bytes()
    assert avail is None or avail > 0
    big = QGrid.log(0.5, 5.0, 400, 400)
    monkeypatch.setattr("shearcorr.memory.available_bytes", lambda: 10 * 1024**2)
    with pytest.raises(ShearcorrError, match="the analytic engine on a 400 x 400 grid needs about"):
        check_analytic(SystemParams(150, 0.1, 1, 10), big)
    require(1024, "a kilobyte", "never")  # what fits passes
    assert format_bytes(1.5 * 1024**3) == "1.5 GiB" and format_bytes(12) == "12 B"
