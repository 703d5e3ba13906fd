"""Output safety: checks before work, atomic files and folders, umask permissions, strict JSON."""

import json
import os
import stat

import numpy as np
import pytest

from shearcorr.errors import ShearcorrError
from shearcorr.files import (atomic_file, atomic_folder, check_output_file, check_output_folder, json_text,
                             write_json)


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    yield 0o027
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_atomic_file_follows_the_umask_and_replaces_only_when_complete(tmp_path, umask_027):
    path = tmp_path / "out.txt"
    with atomic_file(path) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".txt" and tmp != path
        tmp.write_text("one")
        assert not path.exists()  # nothing at the target until the block succeeds
    assert path.read_text() == "one" and _mode(path) == 0o640  # 0666 & ~027, not mkstemp's 0600
    with pytest.raises(RuntimeError), atomic_file(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash while writing")
    assert path.read_text() == "one"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]  # the temporary is gone


def test_atomic_folder_publishes_whole_or_not_at_all(tmp_path, umask_027):
    out = tmp_path / "res"
    with atomic_folder(out) as tmp:
        (tmp / "a.json").write_text("{}")
        assert not out.exists()
    assert (out / "a.json").is_file() and _mode(out) == 0o750  # 0777 & ~027, not mkdtemp's 0700
    with pytest.raises(RuntimeError), atomic_folder(out, overwrite=True) as tmp:
        (tmp / "b.json").write_text("{}")
        raise RuntimeError("crash")
    assert sorted(p.name for p in out.iterdir()) == ["a.json"]
    with atomic_folder(out, overwrite=True) as tmp:
        (tmp / "c.json").write_text("{}")
    assert sorted(p.name for p in out.iterdir()) == ["c.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["res"]  # no temporary or old copy left


def test_checks_refuse_before_any_work(tmp_path):
    with pytest.raises(ShearcorrError, match="does not exist; create it first"):
        check_output_file(tmp_path / "no" / "x.nc")
    with pytest.raises(ShearcorrError, match=r"should end in \.nc or \.h5"):
        check_output_file(tmp_path / "x.txt", suffixes=(".nc", ".h5"))
    (tmp_path / "x.nc").write_text("old")
    with pytest.raises(ShearcorrError, match="exists"):
        check_output_file(tmp_path / "x.nc")
    assert check_output_file(tmp_path / "x.nc", overwrite=True) == tmp_path / "x.nc"
    with pytest.raises(ShearcorrError, match="is a folder"):
        check_output_file(tmp_path, overwrite=True)
    with pytest.raises(ShearcorrError, match="is a file"):
        check_output_folder(tmp_path / "x.nc")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "f").write_text("")
    with pytest.raises(ShearcorrError, match="not empty"):
        check_output_folder(tmp_path / "full")
    assert check_output_folder(tmp_path / "full", overwrite=True).is_dir()
    (tmp_path / "empty").mkdir()
    assert check_output_folder(tmp_path / "empty") == tmp_path / "empty"


def test_strict_json(tmp_path):
    obj = {"a": np.float64(np.nan), "b": [np.inf, 1.5, np.int64(3)], "c": (1, 2), "d": np.arange(3),
           "e": {"f": -np.inf}}
    text = json_text(obj)
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"a": None, "b": [None, 1.5, 3], "c": [1, 2], "d": [0, 1, 2], "e": {"f": None}}
    path = write_json(tmp_path / "r.json", obj)
    assert json.loads(path.read_text()) == json.loads(text)
    with pytest.raises(TypeError):
        json_text({"x": object()})


# ----------------------------------------------------------------------------------- issue 14
def test_writability_is_tried_not_guessed(tmp_path):
    """A folder that cannot be written (read-only file system, or root on /sys) is refused before any
    work: os.access says yes to root, so the check creates and deletes a probe file."""
    import errno

    from shearcorr.files import check_parent

    assert check_parent(tmp_path / "x.nc") == tmp_path / "x.nc"
    assert list(tmp_path.iterdir()) == []  # the probe is gone
    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        can_write = os.access(locked, os.W_OK) and _creates(locked)
        if can_write:  # root ignores permission bits: use a kernel folder nobody may write
            locked = "/sys" if os.path.isdir("/sys") and not _creates("/sys") else None
        if locked is None:
            pytest.skip("no unwritable folder available")
        with pytest.raises(ShearcorrError, match="cannot write into folder"):
            check_output_file(os.path.join(locked, "x.nc"))
    finally:
        (tmp_path / "ro").chmod(0o755)
    assert errno.ENOSPC in __import__("shearcorr.files", fromlist=["WRITE_ERRNOS"]).WRITE_ERRNOS


def _creates(folder) -> bool:
    try:
        p = os.path.join(folder, ".probe-test")
        with open(p, "w"):
            pass
        os.unlink(p)
        return True
    except OSError:
        return False


def test_write_errors_are_one_line_and_keep_the_old_output(tmp_path):
    import errno

    from shearcorr.files import is_write_error, write_error

    path = tmp_path / "out.txt"
    path.write_text("old")
    for code, needle in ((errno.ENOSPC, "disk is full"), (errno.EFBIG, "file-size limit"), (errno.EROFS, "read-only")):
        with pytest.raises(ShearcorrError, match=needle) as exc, atomic_file(path) as tmp:
            tmp.write_text("new, half")
            raise OSError(code, os.strerror(code), str(tmp))
        assert "unchanged" in str(exc.value) and "\n" not in str(exc.value)
    assert path.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]
    # HDF5 writes the errno only into its message
    h5 = OSError("Can't write data (file write failed: time = x, errno = 28, error message = 'No space left')")
    assert is_write_error(h5) and "disk is full" in str(write_error(h5, path))
    assert not is_write_error(ValueError("errno = 28"))
    out = tmp_path / "res"
    with pytest.raises(ShearcorrError, match="disk is full"), atomic_folder(out) as tmp:
        raise OSError(errno.ENOSPC, "No space left on device")
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_stale_temporaries_of_dead_runs_are_removed_only_ours(tmp_path):
    """Temporaries are named .<name>.shearcorr-<pid>@<host>.*; the next write of <name> removes those
    of processes that no longer exist on this host, and nothing else."""
    import subprocess
    import sys

    from shearcorr.files import clean_stale, temp_prefix

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    mine = temp_prefix("out.nc")  # this (live) process
    host = mine.split("@")[1].split(".")[0]
    stale_file = tmp_path / f".out.nc.shearcorr-{dead_pid}@{host}.abc123.tmp.nc"
    stale_dir = tmp_path / f".out.nc.shearcorr-{dead_pid}@{host}.old.xyz"
    live = tmp_path / f"{mine}live.tmp.nc"
    other_host = tmp_path / f".out.nc.shearcorr-{dead_pid}@elsewhere.abc.tmp.nc"
    other_name = tmp_path / f".other.nc.shearcorr-{dead_pid}@{host}.abc.tmp.nc"
    foreign = tmp_path / ".out.nc.abc123.tmp.nc"  # no pid: not provably ours
    stale_file.write_text("x")
    stale_dir.mkdir()
    (stale_dir / "x").write_text("y")
    for f in (live, other_host, other_name, foreign):
        f.write_text("keep")
    assert sorted(p.name for p in clean_stale(tmp_path, "out.nc")) == sorted([stale_file.name, stale_dir.name])
    assert all(f.exists() for f in (live, other_host, other_name, foreign))
    stale_file.write_text("x")
    with atomic_file(tmp_path / "out.nc") as tmp:  # a write of the same output cleans up first
        assert tmp.name.startswith(mine)
        tmp.write_text("new")
    assert not stale_file.exists() and (tmp_path / "out.nc").read_text() == "new"


def test_disk_full_in_a_child_process_is_one_line_and_keeps_the_output(tmp_path):
    """A real failing write: RLIMIT_FSIZE (ulimit -f) makes write() fail with EFBIG in a child process
    (Python ignores SIGXFSZ), with no root or tmpfs needed. The existing output stays untouched."""
    import subprocess
    import sys

    resource = pytest.importorskip("resource")
    path = tmp_path / "out.bin"
    path.write_bytes(b"old" * 10)
    code = ("import sys; from shearcorr.files import atomic_file\n"
            "from shearcorr.errors import ShearcorrError\n"
            f"try:\n    with atomic_file({str(path)!r}) as tmp:\n        tmp.write_bytes(b'x' * 200_000)\n"
            "except ShearcorrError as e:\n    print(e); sys.exit(2)\n")

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, 50_000))

    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, preexec_fn=limit, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "file-size limit" in proc.stdout and "unchanged" in proc.stdout
    assert path.read_bytes() == b"old" * 10 and sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]
