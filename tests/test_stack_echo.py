"""Echo mode helpers: the period (frames or time stamps) and its refusals, the amplitude sweep."""

import numpy as np
import pytest

from shearcorr.errors import ShearcorrError
from shearcorr.stack.echo import EchoAnalysis, amplitude_sweep, echo_period, ratio_errors


def test_echo_period_from_frames_and_time_stamps():
    assert echo_period(96, 8) == 8
    t = np.arange(96) * 0.01
    assert echo_period(96, times=t, period_s=0.08) == 8
    with pytest.raises(ShearcorrError, match="does not divide the 96 frames"):
        echo_period(96, 7)
    with pytest.raises(ShearcorrError, match="whole number of frames"):
        echo_period(96, times=t, period_s=0.075)
    with pytest.raises(ShearcorrError, match="95 values but the analysis has 96 frames"):
        echo_period(96, times=t[:95], period_s=0.08)
    jitter = t.copy()
    jitter[5] += 0.004
    with pytest.raises(ShearcorrError, match="not evenly spaced"):
        echo_period(96, times=jitter, period_s=0.08)
    with pytest.raises(ShearcorrError, match="fewer than 2 cycles"):
        echo_period(8, 8)


def test_ratio_errors_shrink_with_the_shared_speckle():
    s0 = np.full((1, 2, 2), 0.01)
    c0 = np.full((1, 2, 2), 0.3)
    d2 = np.full((1, 2, 2), 0.4)
    free = ratio_errors(s0, c0, d2, np.zeros((1, 2, 2)))
    np.testing.assert_allclose(free, 0.01 / 0.3)  # rho = 0: the c = 0 law over the lag-0 map
    shared = ratio_errors(s0, c0, d2, np.full((1, 2, 2), 1.0))
    np.testing.assert_allclose(shared, 0.01 * np.sqrt(1 - 0.75**2) / 0.3)  # rho = r c0 / <d^2> = 0.75


def test_amplitude_sweep_sorts_by_amplitude_and_checks_lengths():
    def fake(d, g):
        return EchoAnalysis(period=8, n_cycles=10, per_cycle={}, per_lag={}, d2_irreversible=(d, 0.1 * d),
                            gamma_l_residual=(g, 0.5), flow_angle=0.0, maps=np.zeros((1, 1, 1)), errors=np.zeros((1, 1, 1)))

    sw = amplitude_sweep([fake(1.0, 2.0), fake(0.2, 0.0), fake(0.5, 0.5)], [0.1, 0.01, 0.03])
    np.testing.assert_allclose(sw["strain_amplitude"], [0.01, 0.03, 0.1])
    np.testing.assert_allclose(sw["d2_irreversible"], [0.2, 0.5, 1.0])
    with pytest.raises(ShearcorrError, match="one strain amplitude per file"):
        amplitude_sweep([fake(1.0, 0.0)], [0.1, 0.2])
