"""One way to pass parallelism: an executor, built at the edge from a number of workers or a scheduler."""

import pytest

from shearcorr.errors import ShearcorrError
from shearcorr.parallel import executor_from, executor_workers


def _square(x):
    return x * x


def test_local_pool_runs_tasks_and_reports_its_size():
    with executor_from(workers=2) as ex:
        assert executor_workers(ex) == 2
        assert [f.result() for f in [ex.submit(_square, k) for k in range(4)]] == [0, 1, 4, 9]


def test_bad_requests_are_one_line_errors():
    with pytest.raises(ShearcorrError, match="workers must be a whole number >= 1"):
        with executor_from(workers=0):
            pass
    with pytest.raises(ShearcorrError, match="not both"):
        with executor_from(workers=1, scheduler="tcp://localhost:1"):
            pass
