"""The stack correlation engine against brute force: lag sums (both normalisations, flux, groups,
tilings, executors), pixel variances, two-time Gram maps; and its one-line refusals."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from shearcorr.errors import ShearcorrError
from shearcorr.stack.engine import lag_sums
from shearcorr.stack.plan import make_plan
from shearcorr.stack.twotime import twotime_maps


def _toy(T=40, ny=40, nx=36, seed=0):
    """Speckle-like counts (gamma intensities with a common static part), a polar geometry."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:ny, 0:nx]
    cx, cy = (nx - 1) / 2, (ny - 1) / 2
    qr0 = np.hypot(xx - cx, yy - cy) * 0.05
    phi = np.arctan2(-(yy - cy), xx - cx)
    static = rng.gamma(2, 5, (ny, nx))
    lam = (0.6 * static + 0.4 * rng.gamma(2, 5, (T, ny, nx))) * (1 + 0.2 * np.sin(0.3 * np.arange(T)))[:, None, None]
    stack = rng.poisson(lam).astype(np.uint16)
    valid = np.ones((ny, nx), bool)
    valid[7, :] = False
    plan = make_plan(valid, qr0, phi, np.geomspace(0.2, 0.9, 4), 5)
    return stack, plan


def _brute(stack, plan, lags, s0, s1, norm, flux=None):
    """<d_t d_t+lag> per bin over all origins, with the exact normaliser; lag 0 minus shot noise."""
    X = stack[s0:s1].reshape(s1 - s0, -1)[:, plan.index].astype(float)
    f = np.ones(stack.shape[0]) if flux is None else flux
    ring = plan.pix_ring
    npr = np.bincount(ring, minlength=plan.n_rings)
    if norm == "time":
        Xs = X / f[s0:s1, None]
        N = np.broadcast_to(np.mean([np.bincount(ring, Xs[t], plan.n_rings) / npr for t in range(len(X))], axis=0),
                            (len(X), plan.n_rings))
    else:
        Xs = X
        N = np.array([np.bincount(ring, X[t], plan.n_rings) / npr for t in range(len(X))])
    d = Xs / N[:, ring] - 1
    binof = plan.seg_bin[np.repeat(np.arange(plan.n_seg), plan.n_pix_seg)]
    npx = np.bincount(binof, minlength=plan.n_bins)
    out = []
    for lag in lags:
        u = (d[: len(d) - lag] * d[lag:]).sum(axis=0)
        c = np.bincount(binof, u, plan.n_bins) / (npx * (len(d) - lag))
        if lag == 0:
            sc = f[s0:s1, None] if norm == "time" else 1.0
            c -= np.bincount(binof, (X / (sc * N[:, ring]) ** 2).sum(0), plan.n_bins) / (npx * len(d))
        out.append(c.reshape(plan.n_q, plan.n_phi))
    return np.array(out)


@pytest.mark.parametrize("norm", ["time", "frame"])
@pytest.mark.parametrize("lags", [[0, 1, 2, 5, 9], [0, 6, 12]])  # dense (sgemm band) and sparse (echo) paths
def test_lag_sums_match_brute_force(norm, lags):
    stack, plan = _toy()
    ref = _brute(stack, plan, lags, 2, 38, norm)
    for tile, task in ((4, 7), (64, 256)):
        L = lag_sums(stack, plan, lags, start=2, stop=38, groups=5, normalization=norm, tile=tile, task_frames=task)
        np.testing.assert_allclose(L.correlation(), ref, atol=2e-6)
        assert L.pairs.sum(axis=0).tolist() == [36 - lag for lag in lags]


def test_flux_and_jackknife_and_executor_identity():
    stack, plan = _toy()
    flux = 1 + 0.2 * np.sin(0.3 * np.arange(stack.shape[0]))
    L = lag_sums(stack, plan, [0, 1, 3], normalization="time", flux=flux, groups=4)
    np.testing.assert_allclose(L.correlation(), _brute(stack, plan, [0, 1, 3], 0, 40, "time", flux), atol=2e-6)
    # with the full stack's normaliser, the jackknife map without group g is the map of the other groups' origins
    J = L.jackknife(renormalise=False)
    np.testing.assert_allclose(J[1], L.correlation(groups=[0, 2, 3]), atol=1e-12)
    with ThreadPoolExecutor(2) as ex:
        E = lag_sums(stack, plan, [0, 1, 3], normalization="time", flux=flux, groups=4, executor=ex, task_frames=16)
    S = lag_sums(stack, plan, [0, 1, 3], normalization="time", flux=flux, groups=4, task_frames=16)
    assert np.array_equal(E.sums, S.sums)  # same work units, same reduction order: identical numbers


def _brute_deleted(stack, plan, lags, edges, g, flux):
    """The estimate without the origins of group g, normalised ("time") by the ring means of the frames outside g."""
    T = stack.shape[0]
    X = stack.reshape(T, -1)[:, plan.index].astype(float) / flux[:, None]
    ring = plan.pix_ring
    npr = np.bincount(ring, minlength=plan.n_rings)
    out_g = np.r_[0:edges[g], edges[g + 1]:T]
    N = np.mean([np.bincount(ring, X[t], plan.n_rings) / npr for t in out_g], axis=0)[ring]
    d = X / N - 1
    binof = plan.seg_bin[np.repeat(np.arange(plan.n_seg), plan.n_pix_seg)]
    npx = np.bincount(binof, minlength=plan.n_bins)
    res = []
    for lag in lags:
        o = np.array([t for t in out_g if t + lag < T])
        c = np.bincount(binof, (d[o] * d[o + lag]).sum(0), plan.n_bins) / (npx * o.size)
        if lag == 0:
            c -= np.bincount(binof, (X[o] / flux[o, None] / N**2).sum(0), plan.n_bins) / (npx * o.size)
        res.append(c.reshape(plan.n_q, plan.n_phi))
    return np.array(res)


def test_jackknife_renormalises_the_deleted_sample():
    """Issue 11: each delete-one-group map is the estimate of the remaining origins *with their own* time-averaged
    ring means (the full estimate is normalised by all frames, so a bright group's products and normaliser rise
    together); the full stack's normaliser (the former jackknife) differs from it by far more than rounding."""
    stack, plan = _toy()
    T = stack.shape[0]
    flux = 1 + 0.2 * np.sin(0.3 * np.arange(T))
    lags = [0, 1, 3]
    L = lag_sums(stack, plan, lags, normalization="time", flux=flux, groups=4, tile=8, task_frames=16)
    J, J_old = L.jackknife(), L.jackknife(renormalise=False)
    for g in range(4):
        ref = _brute_deleted(stack, plan, lags, L.group_edges, g, flux)
        np.testing.assert_allclose(J[g], ref, atol=2e-6)
        assert np.nanmax(np.abs(J_old[g] - ref)) > 100 * 2e-6
    # the frame normalisation has no global normaliser: both jackknives agree
    F = lag_sums(stack, plan, lags, normalization="frame", groups=4)
    assert np.array_equal(F.jackknife(), F.jackknife(renormalise=False))


def test_pixel_variance_of_products():
    stack, plan = _toy(T=24)
    L = lag_sums(stack, plan, [0, 4], normalization="frame", squares=True)
    X = stack.reshape(24, -1)[:, plan.index].astype(float)
    ring = plan.pix_ring
    N = np.array([np.bincount(ring, X[t], plan.n_rings) / np.bincount(ring, minlength=plan.n_rings) for t in range(24)])
    d = X / N[:, ring] - 1
    binof = plan.seg_bin[np.repeat(np.arange(plan.n_seg), plan.n_pix_seg)]
    u = d[:20] * d[4:]
    ref = np.array([u[:, binof == b].var() for b in range(plan.n_bins)]).reshape(plan.n_q, plan.n_phi)
    np.testing.assert_allclose(L.pixel_variance()[1], ref, rtol=1e-5, atol=1e-7)


def test_twotime_maps_match_brute_force():
    stack, plan = _toy(T=30)
    tt = twotime_maps(stack, plan, start=1, stop=29, n_bins=6, selected=[3], task_frames=9)
    X = stack[1:29].reshape(28, -1)[:, plan.index].astype(float)
    ring = plan.pix_ring
    N = np.array([np.bincount(ring, X[t], plan.n_rings) / np.bincount(ring, minlength=plan.n_rings) for t in range(28)])
    d = X / N[:, ring] - 1
    binof = plan.seg_bin[np.repeat(np.arange(plan.n_seg), plan.n_pix_seg)]
    npx = np.bincount(binof, minlength=plan.n_bins)
    e = tt.edges - 1
    for k, l in ((0, 0), (1, 4), (5, 2)):
        pairs = [(a, b) for a in range(e[k], e[k + 1]) for b in range(e[l], e[l + 1]) if a != b]
        ref = sum(np.bincount(binof, d[a] * d[b], plan.n_bins) for a, b in pairs) / (npx * len(pairs))
        np.testing.assert_allclose(tt.C[k, l], ref.reshape(plan.n_q, plan.n_phi), atol=2e-6)
    sel = binof == 2
    c2 = d[:, sel] @ d[:, sel].T / sel.sum()
    off = ~np.eye(28, dtype=bool)
    np.testing.assert_allclose(tt.selected[3][off], c2[off], atol=2e-6)


def test_engine_refusals():
    stack, plan = _toy(T=10)
    with pytest.raises(ShearcorrError, match="shorter than the lag window"):
        lag_sums(stack, plan, np.arange(12))
    with pytest.raises(ShearcorrError, match="flux has 3 values"):
        lag_sums(stack, plan, [0, 1], flux=[1, 2, 3])
    with pytest.raises(ShearcorrError, match="outside the stack"):
        lag_sums(stack, plan, [0, 1], start=5, stop=20)
    with pytest.raises(ShearcorrError, match="frames are"):
        lag_sums(stack[:, :-1], plan, [0, 1])


@pytest.mark.slow
def test_process_pool_gives_identical_numbers(tmp_path):
    """Work units are fixed frame ranges reduced in order: a process pool changes nothing (the file is
    opened in each worker by its path)."""
    from shearcorr.experiment.frames import open_stack
    from shearcorr.parallel import local_pool

    stack, plan = _toy(T=50)
    np.save(tmp_path / "s.npy", stack)
    src = open_stack(tmp_path / "s.npy")
    ref = lag_sums(src, plan, np.arange(6), groups=5, task_frames=12)
    pool = local_pool(2)
    try:
        par = lag_sums(src, plan, np.arange(6), groups=5, task_frames=12, executor=pool)
    finally:
        pool.shutdown()
    assert np.array_equal(ref.sums, par.sums) and np.array_equal(ref.poisson, par.poisson)


def test_dask_array_source_gives_identical_numbers():
    da = pytest.importorskip("dask.array")
    stack, plan = _toy(T=30)
    ref = lag_sums(stack, plan, [0, 1, 4], groups=3, normalization="time", task_frames=8)
    lazy = lag_sums(da.from_array(stack, chunks=(5, -1, -1)), plan, [0, 1, 4], groups=3, normalization="time",
                    task_frames=8)
    assert np.array_equal(ref.sums, lazy.sums)


@pytest.mark.parametrize("dtype", [np.uint16, np.int32, np.float32])
@pytest.mark.parametrize("norm", ["time", "frame"])
def test_loader_matches_numpy(dtype, norm):
    """The raster-order loader (slab read, segment placement, fused normaliser) against a NumPy gather:
    flagged values (sentinel 2^n - 1, negative, NaN) replaced by the ring mean, d = n / N_ring - 1."""
    from shearcorr.stack.normalize import SLAB, Normalization, load_frames
    from shearcorr.stack.plan import as_source

    stack, plan = _toy(T=SLAB + 5)
    raster, rank, seg = plan.raster_order()
    assert np.array_equal(raster[rank], plan.index) and np.all(np.diff(raster) > 0)
    assert np.array_equal(seg[rank], np.repeat(np.arange(plan.n_seg), plan.n_pix_seg))
    s = stack.astype(dtype)
    flat = s.reshape(s.shape[0], -1)
    if np.issubdtype(dtype, np.integer):
        flat[3, plan.index[:7]] = np.iinfo(dtype).max
        if np.issubdtype(dtype, np.signedinteger):
            flat[SLAB + 1, plan.index[50]] = -2
    else:
        flat[3, plan.index[:7]] = np.nan
    ref = np.full(plan.n_rings, 9.0)
    x, Q, bad, psum = load_frames(as_source(s), plan, Normalization(norm, ref if norm == "time" else None), 0, s.shape[0])
    raw = flat[:, plan.index].astype(np.float64)
    flagged = ~np.isfinite(raw) | (raw < 0)
    if np.issubdtype(dtype, np.integer):
        flagged |= raw >= np.iinfo(dtype).max
    assert bad.tolist() == flagged.sum(axis=1).tolist() and bad[3] == 7
    ring = plan.pix_ring
    npr = np.bincount(ring, minlength=plan.n_rings)
    good = np.where(flagged, 0.0, raw)
    if norm == "frame":
        nring = np.array([np.bincount(ring, good[t], plan.n_rings) / np.bincount(ring, ~flagged[t], plan.n_rings)
                          for t in range(len(raw))])
    else:
        nring = np.broadcast_to(ref, (len(raw), plan.n_rings))
    filled = np.where(flagged, nring[:, ring], raw)
    if norm == "frame":  # the frame's ring mean after the fill
        nring = np.array([np.bincount(ring, filled[t], plan.n_rings) / npr for t in range(len(raw))])
    np.testing.assert_allclose(x, filled / nring[:, ring] - 1, rtol=0, atol=2e-6)
    np.testing.assert_allclose(psum, filled.sum(axis=0), rtol=1e-6)
    seg_of = np.repeat(np.arange(plan.n_seg), plan.n_pix_seg)
    np.testing.assert_allclose(Q, [np.bincount(seg_of, filled[t], plan.n_seg) for t in range(len(raw))], rtol=1e-6)
