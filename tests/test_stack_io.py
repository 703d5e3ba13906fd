"""Real files in: lazy stacks (HDF5 incl. bitshuffle/LZ4, Eiger master blocks, Zarr, .npy, TIFF),
detector flags and NeXus pixel masks, implausible masks, damaged chunks, the APS 8-ID-I q map."""

import numpy as np
import pytest

from shearcorr.errors import ShearcorrError
from shearcorr.experiment.frames import open_stack, read_frame
from shearcorr.experiment.pair import load_pair, make_pair

h5py = pytest.importorskip("h5py")


def test_compressed_eiger_stack_reads_lazily_and_masks_flags(tmp_path):
    hdf5plugin = pytest.importorskip("hdf5plugin")
    data = np.random.default_rng(0).poisson(5, (6, 20, 24)).astype(np.uint32)
    data[:, 5, :] = 2**32 - 1  # a module gap
    with h5py.File(tmp_path / "s.h5", "w") as fh:
        fh.create_dataset("entry/data/data", data=data, chunks=(1, 20, 24), **hdf5plugin.Bitshuffle(nelems=0, cname="lz4"))
        pm = np.zeros((20, 24), np.uint32)
        pm[0, 0] = 4  # a dead pixel flagged by the detector
        fh["entry/instrument/detector/pixel_mask"] = pm
    st = open_stack(tmp_path / "s.h5")
    assert (st.n_frames, st.frame_shape, st.dataset) == (6, (20, 24), "/entry/data/data")
    np.testing.assert_array_equal(st.read(2, 4), data[2:4])
    assert st.detector_mask().sum() == 20 * 24 - 1
    assert np.isnan(read_frame(tmp_path / "s.h5", frame_index=1)[5]).all()  # flags become NaN in float frames
    pair = load_pair(tmp_path / "s.h5", tmp_path / "s.h5", frame_index=0, frame_index_after=3)
    assert pair.n_flagged["pixel_mask"] == 1 and pair.n_flagged["detector_flag"] == 24
    assert not pair.valid[5].any() and not pair.valid[0, 0]


def test_eiger_master_blocks_and_shape_mismatch(tmp_path):
    a, b = np.ones((3, 8, 9), np.uint16), 2 * np.ones((2, 8, 9), np.uint16)
    with h5py.File(tmp_path / "m.h5", "w") as fh:
        fh["entry/data/data_000001"] = a
        fh["entry/data/data_000002"] = b
    st = open_stack(tmp_path / "m.h5")
    assert st.n_frames == 5
    np.testing.assert_array_equal(st.read(2, 4)[:, 0, 0], [1, 2])
    with h5py.File(tmp_path / "bad.h5", "w") as fh:
        fh["entry/data/data_000001"] = a
        fh["entry/data/data_000002"] = np.ones((2, 8, 10), np.uint16)
    with pytest.raises(ShearcorrError, match="frames of different shapes"):
        open_stack(tmp_path / "bad.h5")
    with h5py.File(tmp_path / "d1.h5", "w") as fh:
        fh["entry/data/data"] = a
    with h5py.File(tmp_path / "x_master.h5", "w") as fh:  # the second data file was not copied
        fh["entry/data/data_000001"] = h5py.ExternalLink("d1.h5", "/entry/data/data")
        fh["entry/data/data_000002"] = h5py.ExternalLink("x_data_000002.h5", "/entry/data/data")
        fh["entry/data/data_000003"] = h5py.ExternalLink("d1.h5", "/entry/data/data")
    with pytest.raises(ShearcorrError, match="data_000002 links to x_data_000002.h5:/entry/data/data, which cannot"):
        open_stack(tmp_path / "x_master.h5")  # before: block 3 silently became frames 3-5
    assert open_stack(tmp_path / "x_master.h5", "/entry/data/data_000001").n_frames == 3


def test_damaged_compressed_chunk_is_one_line(tmp_path):
    data = np.random.default_rng(1).poisson(50, (4, 64, 64)).astype(np.uint32)
    with h5py.File(tmp_path / "c.h5", "w") as fh:
        ds = fh.create_dataset("entry/data/data", data=data, chunks=(1, 64, 64), compression="gzip")
        off = ds.id.get_chunk_info(2).byte_offset
    raw = bytearray((tmp_path / "c.h5").read_bytes())
    raw[off + 10:off + 400] = bytes(390)
    (tmp_path / "c.h5").write_bytes(bytes(raw))
    st = open_stack(tmp_path / "c.h5")
    st.read(0, 2)
    with pytest.raises(ShearcorrError, match="cannot read frames 2..2 of .*damaged") as exc:
        st.read(2, 3)
    assert "\n" not in str(exc.value)


def test_other_stack_formats(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    zarr = pytest.importorskip("zarr")
    data = np.arange(3 * 4 * 5, dtype=np.uint16).reshape(3, 4, 5)
    np.save(tmp_path / "s.npy", data)
    z = zarr.open(str(tmp_path / "s.zarr"), mode="w", shape=data.shape, chunks=(1, 4, 5), dtype=data.dtype)
    z[:] = data
    tifffile.imwrite(tmp_path / "s.tif", data, photometric="minisblack")
    for name in ("s.npy", "s.zarr", "s.tif"):
        st = open_stack(tmp_path / name)
        assert st.n_frames == 3
        np.testing.assert_array_equal(st.read(1, 3), data[1:3])
    with tifffile.TiffWriter(tmp_path / "mixed.tif") as tw:
        tw.write(data[0], photometric="minisblack")
        tw.write(np.zeros((4, 6), np.uint16), photometric="minisblack")
    with pytest.raises(ShearcorrError, match="different shapes"):
        open_stack(tmp_path / "mixed.tif")


def test_sentinels_in_arrays_and_implausible_masks(tmp_path):
    b = np.full((10, 10), 7, np.uint32)
    a = b.copy()
    a[2, :] = 2**32 - 1
    pair = make_pair(b, a)
    assert pair.n_flagged["detector_flag"] == 10 and not pair.valid[2].any()
    pyfai = np.zeros((10, 10), np.uint8)
    pyfai[0, :5] = 1  # 1 = masked (pyFAI), 5 % of the pixels
    np.save(tmp_path / "m.npy", pyfai)
    np.save(tmp_path / "f.npy", b)
    with pytest.raises(ShearcorrError, match="keeps only 5.0 % .*--mask-convention masked"):
        load_pair(tmp_path / "f.npy", tmp_path / "f.npy", mask=tmp_path / "m.npy")
    ok = load_pair(tmp_path / "f.npy", tmp_path / "f.npy", mask=tmp_path / "m.npy", mask_convention="masked")
    assert ok.valid.sum() == 95


def _aps_file(path, shape=(32, 40)):
    with h5py.File(path, "w") as fh:
        q = fh.create_group("xpcs/qmap")
        m = np.ones(shape, np.int32)
        m[:, :3] = 0
        q["mask"] = m
        q["beam_center_x"], q["beam_center_y"] = 20.5, 15.0
        q["detector_distance"], q["pixel_size"], q["energy"] = 5.0, 75e-6, 10.0
    return m.astype(bool)


def test_aps_qmap_geometry_and_mask(tmp_path):
    import json

    from shearcorr.experiment.geometry import flat_detector
    from shearcorr.experiment.geometryfile import load_geometry
    from shearcorr.experiment.nexus import aps_geometry, is_aps_file

    mask = _aps_file(tmp_path / "r.hdf")
    assert is_aps_file(tmp_path / "r.hdf")
    geo, m = aps_geometry(tmp_path / "r.hdf", (32, 40), particle_radius_nm=10.0, beam_size_nm=8000.0)
    ref = flat_detector((32, 40), (20.5, 15.0), 75e-6, 5.0, energy_kev=10.0, particle_radius_nm=10.0, beam_size_nm=8000.0)
    np.testing.assert_allclose(geo.q_nm, ref.q_nm)
    np.testing.assert_allclose(geo.phi, ref.phi)
    # APS azimuth: phi = -atan2(row - bcy, col - bcx)
    rows, cols = np.mgrid[0:32, 0:40]
    np.testing.assert_allclose(np.exp(1j * geo.phi), np.exp(-1j * np.arctan2(rows - 15.0, cols - 20.5)), atol=1e-12)
    assert np.array_equal(m, mask)
    (tmp_path / "g.json").write_text(json.dumps({"aps_qmap": "r.hdf", "particle_radius_nm": 10, "beam_size_um": 8}))
    g2 = load_geometry(tmp_path / "g.json", (32, 40))
    assert g2.info["type"] == "aps_qmap"
    with pytest.raises(ShearcorrError, match="APS q map of .* is 32 x 40 but the frames are 30 x 40"):
        load_geometry(tmp_path / "g.json", (30, 40))


def test_aps_raw_metadata_file_gives_the_geometry(tmp_path):
    """An 8-ID-I raw ``*_metadata.hdf`` has no q map: the geometry comes from the NeXus detector, the beam centre
    moved by the detector's translation since the direct beam was recorded (here 0.15 mm = 2 pixels of 75 um in x,
    -0.3 mm = -4 pixels in y), lengths in their units; a q-map group without scalars takes them from there too."""
    import json

    from shearcorr.experiment.geometry import flat_detector
    from shearcorr.experiment.geometryfile import load_geometry
    from shearcorr.experiment.nexus import aps_geometry, aps_qmap, is_aps_file

    def write(path, qmap_mask=None):
        with h5py.File(path, "w") as fh:
            d = fh.create_group("entry/instrument/detector_1")
            d["beam_center_x"], d["beam_center_y"] = 18.5, 20.0
            d["distance"] = 5.0
            d["x_pixel_size"], d["y_pixel_size"] = 75e-6, 75e-6
            d["beam_center_position_x"], d["position_x"] = -0.23, -0.08  # mm
            d["beam_center_position_y"], d["position_y"] = 0.17, -0.13
            for k in ("beam_center_position_x", "position_x", "beam_center_position_y", "position_y"):
                d[k].attrs["units"] = "mm"
            fh["entry/instrument/incident_beam/incident_energy"] = 10000.0
            fh["entry/instrument/incident_beam/incident_energy"].attrs["units"] = "eV"
            if qmap_mask is not None:
                fh["qmap/mask"] = qmap_mask
        return path

    raw = write(tmp_path / "A001_metadata.hdf")
    assert is_aps_file(raw)
    qm = aps_qmap(raw)
    assert qm["mask"] is None and qm["group"] is None
    np.testing.assert_allclose(qm["beam_center_px"], [20.5, 16.0], atol=1e-9)
    assert qm["energy_kev"] == pytest.approx(10.0) and qm["distance_m"] == 5.0
    geo, mask = aps_geometry(raw, (32, 40), particle_radius_nm=10.0, beam_size_nm=8000.0)
    ref = flat_detector((32, 40), (20.5, 16.0), 75e-6, 5.0, energy_kev=10.0, particle_radius_nm=10.0, beam_size_nm=8000.0)
    np.testing.assert_allclose(geo.q_nm, ref.q_nm, rtol=1e-9)
    np.testing.assert_allclose(geo.phi, ref.phi, atol=1e-9)
    assert mask is None and geo.info["aps_mask"] is False
    (tmp_path / "g.json").write_text(json.dumps({"aps_qmap": raw.name, "particle_radius_nm": 10, "beam_size_um": 8}))
    assert load_geometry(tmp_path / "g.json", (30, 40)).info["aps_sources"]["distance"].endswith("detector_1/distance")
    m = np.ones((32, 40), np.int32)
    m[:, :3] = 0
    qm = aps_qmap(write(tmp_path / "q.hdf", qmap_mask=m))
    assert qm["group"] == "/qmap" and np.array_equal(qm["mask"], m.astype(bool))
    np.testing.assert_allclose(qm["beam_center_px"], [20.5, 16.0], atol=1e-9)
    with h5py.File(tmp_path / "bad.hdf", "w") as fh:
        fh["entry/instrument/detector_1/distance"] = 5.0
    with pytest.raises(ShearcorrError, match=r"no pixel size \(/entry/instrument/detector_1/x_pixel_size\)"):
        aps_qmap(tmp_path / "bad.hdf")
    with h5py.File(tmp_path / "bad.hdf", "a") as fh:
        fh["entry/instrument/detector_1/x_pixel_size"] = 75.0
        fh["entry/instrument/detector_1/x_pixel_size"].attrs["units"] = "furlong"
    with pytest.raises(ShearcorrError, match="is in 'furlong'; shearcorr reads m, mm, um or nm"):
        aps_qmap(tmp_path / "bad.hdf")


def test_beam_stop_zeros_in_a_stack_without_a_mask_are_masked():
    """Frames whose beam stop, arm and module gaps read 0, given without a mask: the zeros entered the bins as data.
    The stack's sampled frames now find them (pair.shadow_mask): exactly the renderer's masked pixels here, with a
    warning; a dim stack (0.05 photons per pixel) loses no pixel. A low-count stack (0.4 photons per pixel at
    q R0 = 0.5) sums more frames until they are bright enough: 8 of them left the shadow unfound."""
    from shearcorr.params import SystemParams
    from shearcorr.experiment.pair import shadow_mask
    from shearcorr.stack.analysis import _flagged_pixels, _valid_mask
    from shearcorr.stack.plan import as_source
    from shearcorr.stack.synth import steady_stack

    p = SystemParams(n_l2=150, rs=0.0, d2=1.0, gamma_l=10.0)
    for counts, shadowed in ((10.0, True), (0.05, False)):
        st = steady_stack(p, 12, shear_rate=0.01, diffusion=0.2, shape=(96, 96), dq=(2 * np.pi / 800) / 2.5, seed=1,
                          counts=counts)
        frames = np.where(st.mask[None], st.frames, 0)
        valid, counts_by_reason, notes = _valid_mask(as_source(frames), st.geometry, 0, 12, None, "valid", None)
        if shadowed:
            assert np.array_equal(valid, st.mask) and counts_by_reason["shadow"] == (~st.mask).sum()
            assert len(notes) == 1 and "read (almost) no counts in the sum of 12 sampled frames" in notes[0]
        else:
            assert valid.all() and notes == []
    st = steady_stack(p, 96, shear_rate=0.01, diffusion=0.2, shape=(96, 96), dq=(2 * np.pi / 800) / 2.5, seed=2,
                      counts=0.4)
    frames = as_source(np.where(st.mask[None], st.frames, 0))
    valid, counts_by_reason, notes = _valid_mask(frames, st.geometry, 0, 96, None, "valid", None)
    assert counts_by_reason["shadow"] > 0.9 * (~st.mask).sum() and not (~valid & st.mask).any()
    assert "in the sum of 96 sampled frames" in notes[0]
    _, total, n_summed = _flagged_pixels(frames, 0, 96, n_max=8)
    assert n_summed == 8 and not shadow_mask(total, np.ones_like(st.mask), st.geometry.qr0,
                                             st.geometry.speckle_px(st.mask)).any()


def _rigaku_words(frames, *, first_frame=0, module_offset=False):
    """Encode dense frames (k, 512, 1024) as Rigaku 64-bit events (frame << 40 | index << 16 | count)."""
    t, idx = np.nonzero(frames.reshape(len(frames), -1))
    counts = frames.reshape(len(frames), -1)[t, idx].astype(np.uint64)
    index = idx.astype(np.uint64) + (np.uint64(1 << 20) if module_offset else np.uint64(0))
    return ((t.astype(np.uint64) + np.uint64(first_frame)) << np.uint64(40)) | (index << np.uint64(16)) | counts


def test_rigaku_500k_events_read_as_frames(tmp_path):
    """Sparse 64-bit events (APS 8-ID-I): frames, pixel positions and counts exactly as encoded, read lazily."""
    frames = np.random.default_rng(1).poisson(0.05, (5, 512, 1024)).astype(np.uint16)
    frames[3, 7, 1000] = 4095  # the largest 12-bit count
    _rigaku_words(frames).astype("<u8").tofile(tmp_path / "A001_00001.bin")
    st = open_stack(tmp_path / "A001_00001.bin")
    assert (st.n_frames, st.frame_shape, st.dtype, st.kind) == (5, (512, 1024), np.uint16, "rigaku-500k")
    np.testing.assert_array_equal(st.read(1, 4), frames[1:4])
    np.testing.assert_array_equal(read_frame(tmp_path / "A001_00001.bin", frame_index=3), frames[3])
    empty = frames.copy()
    empty[2] = 0  # a frame without events in the middle still counts
    _rigaku_words(empty).astype("<u8").tofile(tmp_path / "gap.bin")
    st = open_stack(tmp_path / "gap.bin")
    assert st.n_frames == 5 and not st.read(2, 3).any()
    np.testing.assert_array_equal(st.read(0, 5), empty)


def test_rigaku_3m_modules_are_placed_with_flagged_gaps(tmp_path):
    """Six module files .bin.000-.bin.005: files 5, 0, 4, 1, 3, 2 fill the places row-major; gaps are flagged."""
    from shearcorr.experiment.rigaku import GAP_3M, MODULE_ORDER_3M

    rng = np.random.default_rng(2)
    mods = {k: rng.poisson(0.02, (3, 512, 1024)).astype(np.uint16) for k in range(6)}
    for k, m in mods.items():
        m[:, 0, 0] = k + 1  # a tag per module file
        _rigaku_words(m, module_offset=k % 2 == 1).astype("<u8").tofile(tmp_path / f"B_00001.bin.00{k}")
    st = open_stack(tmp_path / "B_00001.bin.003")
    assert (st.n_frames, st.frame_shape) == (3, (1676, 2100))
    f = st.read(0, 3)
    for place, k in enumerate(MODULE_ORDER_3M):
        r, c = divmod(place, 2)
        y0, x0 = r * (512 + GAP_3M[0]), c * (1024 + GAP_3M[1])
        np.testing.assert_array_equal(f[:, y0:y0 + 512, x0:x0 + 1024], mods[k])
    assert (f[:, 512:582] == 2**16 - 1).all() and (f[:, :, 1024:1076] == 2**16 - 1).all()
    assert np.isnan(read_frame(tmp_path / "B_00001.bin.000", frame_index=0)[600, 1050])  # gaps are detector flags
    (tmp_path / "B_00001.bin.004").unlink()
    with pytest.raises(ShearcorrError, match=r"lacks B_00001.bin.004"):
        open_stack(tmp_path / "B_00001.bin.000")


def test_damaged_rigaku_files_are_one_line(tmp_path):
    frames = np.random.default_rng(3).poisson(0.05, (3, 512, 1024)).astype(np.uint16)
    words = _rigaku_words(frames).astype("<u8")
    (tmp_path / "short.bin").write_bytes(words.tobytes()[:-3])
    with pytest.raises(ShearcorrError, match="not a multiple of 8"):
        open_stack(tmp_path / "short.bin")
    shuffled = words.copy()
    shuffled[:10] = words[-10:]  # events of the last frame before the first frame's
    shuffled.tofile(tmp_path / "order.bin")
    with pytest.raises(ShearcorrError, match="not in frame order"):
        open_stack(tmp_path / "order.bin").read(0, 3)
    bad = words.copy()
    bad[5] |= np.uint64(600_000) << np.uint64(16)  # an index beyond the 512 x 1024 module
    bad.tofile(tmp_path / "index.bin")
    with pytest.raises(ShearcorrError, match="beyond the 512 x 1024 module"):
        open_stack(tmp_path / "index.bin").read(0, 1)


def _imm_bytes(frames, *, sparse):
    """Encode frames (k, rows, cols) as IMM: a 1024-byte header per frame (compression at byte 4, rows 108,
    cols 112, bytes 116, dlen 152), then rows x cols uint16 or dlen int32 indices + dlen uint16 counts."""
    import struct

    out = bytearray()
    for f in frames:
        head = bytearray(1024)
        flat = f.ravel()
        idx = np.flatnonzero(flat)
        struct.pack_into("<i", head, 4, 6 if sparse else 0)
        struct.pack_into("<iii", head, 108, f.shape[0], f.shape[1], 2)
        struct.pack_into("<I", head, 152, idx.size if sparse else flat.size)
        out += head
        out += (idx.astype("<i4").tobytes() + flat[idx].astype("<u2").tobytes()) if sparse else flat.astype("<u2").tobytes()
    return bytes(out)


def test_imm_dense_and_sparse_frames(tmp_path):
    """APS's legacy IMM: dense and sparse (compression 6) frames read back exactly; damage is one line."""
    frames = np.random.default_rng(4).poisson(0.3, (4, 30, 40)).astype(np.uint16)
    frames[2] = 0  # a sparse frame without events
    for sparse in (False, True):
        path = tmp_path / f"A_{int(sparse)}_00001-00004.imm"
        path.write_bytes(_imm_bytes(frames, sparse=sparse))
        st = open_stack(path)
        assert (st.n_frames, st.frame_shape, st.dtype) == (4, (30, 40), np.uint16)
        np.testing.assert_array_equal(st.read(1, 4), frames[1:4])
        np.testing.assert_array_equal(read_frame(path, frame_index=3), frames[3])
    data = _imm_bytes(frames, sparse=True)
    (tmp_path / "cut.imm").write_bytes(data[:-5])
    with pytest.raises(ShearcorrError, match="frame 3 runs past the end"):
        open_stack(tmp_path / "cut.imm")
    other = np.zeros((1, 30, 41), np.uint16)
    (tmp_path / "mixed.imm").write_bytes(_imm_bytes(frames, sparse=False) + _imm_bytes(other, sparse=False))
    with pytest.raises(ShearcorrError, match="frame 4 is 30 x 41"):
        open_stack(tmp_path / "mixed.imm")


def test_a_folder_of_single_frame_files_is_a_stack_in_natural_order(tmp_path):
    """One TIFF per frame, as cameras and Pilatus series write them: img_2 comes before img_10."""
    import pickle

    tifffile = pytest.importorskip("tifffile")
    frames = np.random.default_rng(5).poisson(3, (12, 16, 20)).astype(np.int32)
    frames[:, 4, :] = -1  # Pilatus gap value: masked as negative
    folder = tmp_path / "series"
    folder.mkdir()
    for k, f in enumerate(frames):
        tifffile.imwrite(folder / f"img_{k + 1}.tif", f)
    (folder / ".img_0.tif").write_bytes(b"")  # a hidden leftover is ignored
    st = open_stack(folder)
    assert (st.n_frames, st.frame_shape, st.dtype, st.kind) == (12, (16, 20), np.int32, "files")
    np.testing.assert_array_equal(st.read(8, 11), frames[8:11])  # img_9, img_10, img_11
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(st)).read(11, 12), frames[11:12])
    tifffile.imwrite(folder / "img_13.tif", np.zeros((16, 21), np.int32))
    with pytest.raises(ShearcorrError, match="img_13.tif holds a 16 x 21 int32 frame"):
        open_stack(folder).read(12, 13)
    np.save(folder / "extra.npy", frames[0])
    with pytest.raises(ShearcorrError, match="mixes frame files of the kinds .npy, .tif"):
        open_stack(folder)
    st = open_stack(folder / "img_*.tif")  # a pattern picks one series out of a mixed folder
    assert st.n_frames == 13 and np.array_equal(st.read(1, 2), frames[1:2])
