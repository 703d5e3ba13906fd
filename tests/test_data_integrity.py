"""Dataset stores: per-sample checksums verified on read and on resume, layout checks (issue 14)."""

import json
import shutil

import numpy as np
import pytest
from conftest import assert_same_data, generate_with

from shearcorr.data import dataset_info, format_info, open_dataset
from shearcorr.data.integrity import digests
from shearcorr.errors import ShearcorrError
from shearcorr.params import QGrid

GRID = QGrid.log(0.5, 5.0, 6, 7)
KW = dict(n=12, seed=4, grid=GRID, chunk_size=4, progress=False)


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    path = tmp_path_factory.mktemp("integrity") / "clean.zarr"
    generate_with(path, workers=1, **KW)
    return path


def _copy(clean, tmp_path):
    path = tmp_path / "s.zarr"
    shutil.copytree(clean, path)
    return path


def _chunk_files(path, var):
    return sorted(f for f in (path / var).rglob("*") if f.is_file() and f.name not in ("zarr.json", ".zarray", ".zattrs"))


def _attr(path, key, value):
    meta = json.loads((path / "zarr.json").read_text())
    meta["attributes"][key] = value
    (path / "zarr.json").write_text(json.dumps(meta))


def test_every_sample_has_its_checksum(clean):
    ds = open_dataset(clean, load=True)
    rows = np.column_stack([ds[p].values for p in ("n_l2", "rs", "d2", "gamma_l")])
    data = {k: ds[k].values for k in ("g", "g_q", "g_theta")}
    np.testing.assert_array_equal(digests(rows, data), ds["checksum"].values)
    assert len(set(ds["checksum"].values.tolist())) == 12  # one per sample
    info = dataset_info(clean)
    assert info["integrity"] == {"verified": 12, "checksummed": True, "damaged": []}
    assert "12 finished samples checksums verified" in format_info(info)


def test_a_flipped_bit_is_refused_on_read_and_recomputed_on_resume(clean, tmp_path):
    path = _copy(clean, tmp_path)
    chunk = _chunk_files(path, "g")[1]  # samples 4..7
    raw = bytearray(chunk.read_bytes())
    raw[len(raw) // 2] ^= 0x08
    chunk.write_bytes(bytes(raw))
    with pytest.raises(ShearcorrError, match=r"samples 4\.\.7 are damaged .*run the generating 'shearcorr dataset' command again"):
        open_dataset(path)
    assert "DAMAGED" in format_info(dataset_info(path))
    generate_with(path, workers=1, **KW)  # resume: the damaged chunk is recomputed, bit for bit
    assert_same_data(open_dataset(path), open_dataset(clean))


def test_a_flipped_parameter_bit_is_detected_too(clean, tmp_path):
    path = _copy(clean, tmp_path)
    chunk = _chunk_files(path, "gamma_l")[2]
    raw = bytearray(chunk.read_bytes())
    raw[-3] ^= 0x01
    chunk.write_bytes(bytes(raw))
    with pytest.raises(ShearcorrError, match=r"samples 8\.\.11 are damaged"):
        open_dataset(path)
    generate_with(path, workers=1, **KW)
    assert_same_data(open_dataset(path), open_dataset(clean))


def test_a_garbage_chunk_is_one_line_and_repaired(clean, tmp_path):
    path = _copy(clean, tmp_path)
    partial = _chunk_files(path, "g")[0].with_suffix("." + "ab" * 16 + ".partial")
    partial.write_bytes(b"half a chunk")  # Zarr's temporary, left by a driver killed while writing
    _chunk_files(path, "g_theta")[2].write_bytes(b"garbage" * 7)
    with pytest.raises(ShearcorrError, match=r"samples 8\.\.11 are damaged \(unreadable"):
        open_dataset(path)
    _chunk_files(path, "done")[0].write_bytes(b"\x00garbage")  # the done flags of chunk 0 as well
    generate_with(path, workers=1, **KW)
    assert_same_data(open_dataset(path), open_dataset(clean))
    assert not partial.exists()  # removed by the resume, which holds the lock


@pytest.mark.parametrize("edit, needle", [
    (lambda p: _attr(p, "design", "{not json"), "design attribute is not a JSON object"),
    (lambda p: _attr(p, "design", "[1, 2]"), "design attribute is not a JSON object"),
    (lambda p: _attr(p, "chunk_size", "abc"), "chunk_size attribute is 'abc'"),
    (lambda p: _attr(p, "chunk_size", 0), "chunk_size attribute is 0"),
    (lambda p: shutil.rmtree(p / "rs"), "no variable 'rs'"),
])
def test_a_damaged_layout_is_one_line(clean, tmp_path, edit, needle):
    path = _copy(clean, tmp_path)
    edit(path)
    with pytest.raises(ShearcorrError, match=needle) as exc:
        open_dataset(path)
    assert "\n" not in str(exc.value) and "regenerate it" in str(exc.value)
    with pytest.raises(ShearcorrError, match=needle):
        generate_with(path, workers=1, **KW)


def test_a_variable_on_the_wrong_dimension_is_refused(clean, tmp_path):
    import xarray as xr

    ds = open_dataset(clean, load=True)
    bad = ds.drop_vars("g_theta").assign(g_theta=(("sample", "q"), ds["g_q"].values))
    path = tmp_path / "bad.zarr"
    bad.to_zarr(path, consolidated=False)
    with pytest.raises(ShearcorrError, match=r"g_theta has dims \('sample', 'q'\), expected \('sample', 'theta'\)"):
        open_dataset(path)
    # a hand-made store whose g_theta is not the mean of its g (no checksums to catch it)
    edited = ds.drop_vars("checksum").assign(g_theta=ds["g_theta"] * 1.3)
    path = tmp_path / "edited.zarr"
    edited.to_zarr(path, consolidated=False)
    with pytest.raises(ShearcorrError, match="not the means of g"):
        open_dataset(path)
    assert isinstance(xr.open_zarr(path, consolidated=False), xr.Dataset)  # the file itself is fine
