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
