"""One driver per dataset store (data/lock.py): the lock, its holder's name, its release, and the
check that stops a driver whose store was replaced behind its back."""

import json
import os
import shutil

import pytest

from shearcorr.data.lock import StoreLock, holder, lock_path
from shearcorr.errors import ShearcorrError


def test_a_second_lock_is_refused_with_the_holder_named(tmp_path):
    store = tmp_path / "s.zarr"
    with StoreLock() as first:
        first.acquire(store)
        info = json.loads(lock_path(store).read_text())
        assert info["pid"] == os.getpid() and lock_path(store).name == ".s.zarr.shearcorr-lock"
        # flock locks belong to an open file, so a second lock in this same process conflicts like another driver
        with pytest.raises(ShearcorrError, match=rf"s.zarr is being written by another shearcorr run \(pid {os.getpid()} on host"):
            StoreLock().acquire(store)
        first.acquire(store)  # re-acquiring one's own lock is a no-op
    assert not lock_path(store).exists()  # released and deleted on exit
    lock_path(store).write_text('{"pid": 1, "host": "h"}')  # left by a killed driver: blocks nobody
    with StoreLock() as again:
        again.acquire(store)
        assert str(os.getpid()) in holder(store)
    assert not lock_path(store).exists()


def test_a_replaced_store_stops_the_driver(tmp_path):
    store = tmp_path / "s.zarr"
    store.mkdir()
    with StoreLock() as lock:
        lock.acquire(store)
        lock.bind(store)
        lock.check(store)
        new = tmp_path / ".new"
        new.mkdir()  # someone built another store aside and renamed it into place (as atomic_folder does)
        store.rename(tmp_path / ".old")
        new.rename(store)
        with pytest.raises(ShearcorrError, match="was replaced or removed while this run was writing it"):
            lock.check(store)
        shutil.rmtree(store)
        with pytest.raises(ShearcorrError, match="was replaced or removed"):
            lock.check(store)


def test_generate_holds_the_lock(tmp_path, monkeypatch):
    """The driver refuses to start on a store another driver holds - before any work or change."""
    from shearcorr.data import generate
    from shearcorr.params import QGrid

    store = tmp_path / "s.zarr"
    with StoreLock() as other:
        other.acquire(store)
        with pytest.raises(ShearcorrError, match="is being written by another shearcorr run"):
            generate(store, n=4, grid=QGrid.log(0.5, 5, 4, 5), overwrite=True, progress=False)
    assert not store.exists()
