"""Frames and masks: HDF5 stacks, TIFF, mask conventions, pixel flags (no physics)."""

import numpy as np
import pytest

from shearcorr.errors import ShearcorrError
from shearcorr.experiment.frames import read_frame, read_mask
from shearcorr.experiment.pair import load_pair, make_pair



def test_frames_hdf5_stack_and_errors(tmp_path):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "s.h5"
    with h5py.File(path, "w") as fh:
        fh["entry/data/data"] = np.arange(2 * 4 * 5).reshape(2, 4, 5)
    assert read_frame(path, "/entry/data/data", 1)[0, 0] == 20
    with pytest.raises(ShearcorrError, match="does not exist"):
        read_frame(path, "/entry/nothing", 0)
    with pytest.raises(ShearcorrError, match="--frame-index"):
        read_frame(path, "/entry/data/data")
    with pytest.raises(ShearcorrError, match="outside the stack"):
        read_frame(path, "/entry/data/data", 5)


def test_tiff_and_mask_conventions(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    tifffile.imwrite(tmp_path / "f.tif", a)
    np.testing.assert_array_equal(read_frame(tmp_path / "f.tif"), a)
    m = np.zeros((3, 4), np.uint8)
    m[0, 0] = 1
    np.save(tmp_path / "m.npy", m)
    assert read_mask(tmp_path / "m.npy", "valid").sum() == 1
    assert read_mask(tmp_path / "m.npy", "masked").sum() == 11


def test_pair_masks_bad_pixels_and_refuses_bad_input(tmp_path):
    b = np.ones((4, 4))
    a = np.ones((4, 4))
    b[0, 0], a[1, 1], b[2, 2] = np.nan, -1, 1e9
    pair = make_pair(b, a, saturation=1e6)
    assert not pair.valid[0, 0] and not pair.valid[1, 1] and not pair.valid[2, 2]
    assert pair.n_flagged == {"non_finite": 1, "negative": 1, "saturated": 1}
    with pytest.raises(ShearcorrError, match="different shapes"):
        make_pair(np.ones((4, 4)), np.ones((4, 5)))
    with pytest.raises(ShearcorrError, match="all 16 pixels are masked"):
        make_pair(b, a, mask=np.zeros((4, 4), bool))
    np.save(tmp_path / "x.npy", b)
    with pytest.raises(ShearcorrError, match="no such file"):
        load_pair(tmp_path / "x.npy", tmp_path / "missing.npy")
