"""Numba kernels of the brute-force Monte Carlo engine (paper eq. 1 on a polar grid).

The hot loop is ``particles x n_q x n_theta`` complex exponentials per configuration. It is done as:

* per angle theta: the projection ``t_i = (x_i cos(theta) + y_i sin(theta)) / (2 pi)`` in float64
  (positions in units of r0, so ``q t_i`` is the phase ``q . r_i`` in *turns*);
* per q: ``s = q t_i - rint(q t_i)`` in float64 -- an exact reduction of the phase to [-1/2, 1/2]
  turns (the phase itself reaches ~3000 rad on the paper's grid, so reducing in float32 would lose
  ~1e-4 rad) -- then ``cos(2 pi s)``, ``sin(2 pi s)`` in float32 by quadrant reduction and Taylor
  polynomials (:func:`cis_turn32`, max error 1.2e-7), which LLVM vectorises;
* the sums ``sum_i w_i cos``, ``sum_i w_i sin`` with ``w_i(q) = V_i F(q R_i)`` (eq. 1-2) in float32.

The weights use a float64 form factor (:func:`form_factor64`, polynomial sin/cos, |error| < 1e-15)
so that polydisperse weights cost little next to the phases. The resulting intensity agrees with a
float64 ``numpy.exp`` sum to ~1e-6 relative to the mean intensity (tests/test_kernels.py).

All kernels use ``error_model="numpy"``: Python's ZeroDivisionError check on float division would
otherwise block vectorisation of the form-factor loops (no division here can have a zero divisor).

Every (q, theta) point is computed by one thread, with arithmetic that does not depend on how many
threads run, and configurations are accumulated in their fixed order, so results are identical for
any ``numba.set_num_threads``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

__all__ = [
    "cis_turn32",
    "cis_turn64",
    "form_factor64",
    "particle_weights",
    "intensity_map",
    "chunk_intensities",
    "accumulate_chunk",
    "amplitude_kernel",
    "N_MOMENTS",
]

#: Streamed moments per grid point: sums of a = I I', b = I, c = I', a^2, b^2, c^2, a b, a c.
N_MOMENTS = 8

_TWO_PI = 2.0 * math.pi
_INV_TWO_PI = 1.0 / _TWO_PI
_VOL = 4.0 * math.pi / 3.0

# fastmath flags: everything but 'reassoc' for the float64 reductions (keeps rint/subtract exact),
# everything for the float32 sums (lets LLVM vectorise the reductions over particles).
_FM_SAFE = {"nnan", "ninf", "nsz", "arcp", "contract", "afn"}
_FM_FAST = True


# Near-minimax polynomials for sin(x), cos(x) on |x| <= pi/2 (least squares on 4001 Chebyshev nodes,
# coefficients rounded to float32; truncation error 3.4e-9 and 2.2e-10 in float64 arithmetic).
_S1, _S3, _S5, _S7, _S9 = (1.0, -0.16666647791862488, 0.00833289884030819, -0.00019800862355623394,
                           2.590422809589654e-06)
_C0, _C2, _C4, _C6, _C8, _C10 = (1.0, -0.5, 0.04166663438081741, -0.0013888360699638724,
                                 2.4760132873780094e-05, -2.6051014856420807e-07)


@njit(fastmath=_FM_FAST, error_model="numpy", cache=True)
def cis_turn32(s):
    """(cos(2 pi s), sin(2 pi s)) in float32 for s in [-1/2, 1/2] (turns).

    Reflection s -> sign(s)/2 - s for |s| > 1/4 (exact in float32; flips the sign of cos, keeps sin)
    brings x = 2 pi s into [-pi/2, pi/2], then degree-9 / degree-10 polynomials. Branch-free (the
    conditionals compile to selects), so the loop over particles vectorises; max error 2e-7,
    rms 4e-8, no bias.
    """
    far = abs(s) > np.float32(0.25)
    r = (math.copysign(np.float32(0.5), s) - s) if far else s
    x = r * np.float32(_TWO_PI)
    x2 = x * x
    sn = x * (np.float32(_S1) + x2 * (np.float32(_S3) + x2 * (np.float32(_S5) + x2 * (
        np.float32(_S7) + x2 * np.float32(_S9)))))
    cs = np.float32(_C0) + x2 * (np.float32(_C2) + x2 * (np.float32(_C4) + x2 * (np.float32(_C6) + x2 * (
        np.float32(_C8) + x2 * np.float32(_C10)))))
    return (-cs if far else cs), sn


@njit(fastmath=_FM_SAFE, error_model="numpy", cache=True)
def cis_turn64(s):
    """(cos(2 pi s), sin(2 pi s)) in float64 for any s (turns); |error| < 2e-16 after reduction."""
    s = s - np.floor(s + 0.5)
    k = np.floor(s * 4.0 + 0.5)
    x = (s - 0.25 * k) * _TWO_PI
    x2 = x * x
    sp = x * (1.0 + x2 * (-1.0 / 6.0 + x2 * (1.0 / 120.0 + x2 * (-1.0 / 5040.0 + x2 * (1.0 / 362880.0 + x2 * (
        -1.0 / 39916800.0 + x2 * (1.0 / 6227020800.0 + x2 * (-1.0 / 1307674368000.0))))))))
    cp = 1.0 + x2 * (-0.5 + x2 * (1.0 / 24.0 + x2 * (-1.0 / 720.0 + x2 * (1.0 / 40320.0 + x2 * (
        -1.0 / 3628800.0 + x2 * (1.0 / 479001600.0 + x2 * (-1.0 / 87178291200.0 + x2 * (
            1.0 / 20922789888000.0))))))))
    ki = np.int64(k) & 3
    swap = (ki & 1) == 1
    sa = cp if swap else sp
    ca = sp if swap else cp
    sn = -sa if ki >= 2 else sa
    cs = -ca if (ki == 1 or ki == 2) else ca
    return cs, sn


@njit(fastmath=_FM_SAFE, error_model="numpy", cache=True)
def form_factor64(x):
    """Sphere form-factor amplitude F(x) = 3 (sin x - x cos x) / x^3 (eq. 2), float64.

    Same definition and small-x series as :func:`shearcorr.physics.form_factor` (series below
    |x| = 0.1), with the polynomial sin/cos of :func:`cis_turn64`.
    """
    small = abs(x) < 0.1
    x2 = x * x
    series = 1.0 + x2 * (-0.1 + x2 * (1.0 / 280.0 + x2 * (-1.0 / 15120.0 + x2 * (1.0 / 1330560.0))))
    xs = 1.0 if small else x  # branch-free (selects), so loops over particles vectorise
    c, s = cis_turn64(xs * _INV_TWO_PI)
    closed = 3.0 * (s - xs * c) / (xs * xs * xs)
    return series if small else closed


@njit(fastmath=_FM_SAFE, error_model="numpy", cache=True)
def particle_weights(q, radius, out):
    """Fill ``out[iq, i] = V_i F(q_iq R_i)`` (float32), V = 4 pi R^3 / 3 (units r0^3)."""
    for iq in range(q.size):
        qq = q[iq]
        for i in range(radius.size):
            r = radius[i]
            out[iq, i] = np.float32(_VOL * r * r * r * form_factor64(qq * r))


@njit(fastmath=_FM_FAST, error_model="numpy", cache=True)
def _amplitude_sums(t, w, qq, n, buf):
    """(sum_i w_i cos(2 pi q t_i), sum_i w_i sin(2 pi q t_i)) over i < n, float32 accumulation.

    ``w`` must be a contiguous 1-D array (a unit-step slice is fine): indexing a larger array with
    an offset would defeat vectorisation (negative-index wraparound checks).

    Two loops so that each vectorises at its natural width: the exact float64 reduction of the
    phase to [-1/2, 1/2] turns into the float32 scratch ``buf``, then the float32 sin/cos and sums.
    """
    for i in range(n):
        p = qq * t[i]
        buf[i] = np.float32(p - np.floor(p + 0.5))
    re = np.float32(0.0)
    im = np.float32(0.0)
    for i in range(n):
        c, sn = cis_turn32(buf[i])
        re += w[i] * c
        im += w[i] * sn
    return re, im


@njit(fastmath=_FM_SAFE, error_model="numpy", cache=True)
def _project(x, y, ct, st, out, n):
    for i in range(n):
        out[i] = (x[i] * ct + y[i] * st) * _INV_TWO_PI


@njit(fastmath=_FM_SAFE, error_model="numpy", cache=True)
def _weights(q, radius, mono, wq, out):
    """out[iq, i] = V_i F(q_iq R_i); with ``mono`` copy the precomputed row values ``wq``."""
    if mono:
        for iq in range(q.size):
            for i in range(radius.size):
                out[iq, i] = wq[iq]
    else:
        particle_weights(q, radius, out)


@njit(fastmath=_FM_SAFE, error_model="numpy", cache=True)
def _map_column(q, ct, st, x, y, w, inv_s, t, buf, out, j):
    """Fill column ``j`` of ``out`` (n_q, n_theta) with eq. 1 at angle (ct, st) = (cos, sin) theta_j."""
    n = x.size
    _project(x, y, ct, st, t, n)
    for iq in range(q.size):
        re, im = _amplitude_sums(t, w[iq], q[iq], n, buf)
        out[iq, j] = (np.float64(re) * re + np.float64(im) * im) * inv_s


@njit(parallel=True, fastmath=_FM_SAFE, error_model="numpy", cache=True)
def intensity_map(q, cos_t, sin_t, x, y, radius, inv_s):
    r"""One configuration's intensity on the polar grid (eq. 1), shape (n_q, n_theta), float64.

    I(q, theta) = |sum_i V_i F(q R_i) exp(-i q . r_i)|^2 * inv_s, with q . r = q (x cos + y sin);
    ``x, y, radius`` are the scattering (in-window) particles, ``inv_s`` = 1 / sum_i V_i^2 (or 0).
    Parallel over theta; per point the same arithmetic as :func:`chunk_intensities`.
    """
    nq, nt, n = q.size, cos_t.size, x.size
    w = np.empty((nq, n), dtype=np.float32)
    particle_weights(q, radius, w)
    out = np.empty((nq, nt))
    for j in prange(nt):
        t = np.empty(n)
        buf = np.empty(n, dtype=np.float32)
        _map_column(q, cos_t[j], sin_t[j], x, y, w, inv_s, t, buf, out, j)
    return out


@njit(fastmath=_FM_SAFE, error_model="numpy", cache=True)
def _mono_weights(q, radius, mono):
    """V F(q R) per q for equal radii (``mono``; else zeros): the weights shared by all particles."""
    wq = np.zeros(q.size, dtype=np.float32)
    if mono and radius.size > 0:
        r = radius[0]
        for iq in range(q.size):
            wq[iq] = np.float32(_VOL * r * r * r * form_factor64(q[iq] * r))
    return wq


@njit(parallel=True, fastmath=_FM_SAFE, error_model="numpy", cache=True)
def chunk_intensities(q, cos_t, sin_t, x, y, radius, off, inv_s, mono):
    """Intensity maps (eq. 1) of a chunk of configurations, shape (m, n_q, n_theta), float64.

    Configuration ``c`` scatters from particles ``off[c]:off[c+1]`` of the flat arrays ``x, y,
    radius``; ``inv_s[c]`` = 1 / sum V^2 over them (0 for an empty window, giving I = 0).
    ``mono``: all radii equal ``radius[0]`` (F evaluated once per q). Parallel over maps (one launch
    for the before and after maps of a whole chunk):
    each map is computed by one thread with the arithmetic of :func:`intensity_map`, so the values
    do not depend on the number of threads.
    """
    nq, nt, m = q.size, cos_t.size, off.size - 1
    out = np.empty((m, nq, nt))
    wq = _mono_weights(q, radius, mono)
    for c in prange(m):
        o0, o1 = off[c], off[c + 1]
        n = o1 - o0
        w = np.empty((nq, n), dtype=np.float32)
        _weights(q, radius[o0:o1], mono, wq, w)
        t = np.empty(n)
        buf = np.empty(n, dtype=np.float32)
        xc, yc = x[o0:o1], y[o0:o1]
        for j in range(nt):
            _map_column(q, cos_t[j], sin_t[j], xc, yc, w, inv_s[c], t, buf, out[c], j)
    return out


@njit(error_model="numpy", cache=True)
def accumulate_chunk(ib, ia, first, configs, n_blocks, acc, blk):
    """Add a chunk of intensity maps to the streamed sums of the g estimator (eq. 4).

    ``ib[c]``, ``ia[c]`` (n_q, n_theta) are the maps before / after the move of configuration
    ``first + c``. ``acc[k, iq, j]`` (k < 8) gets sums of a = I I', b = I, c = I', a^2, b^2, c^2,
    a b, a c; ``blk[mb, k, iq, j]`` (k < 3) gets sums of a, b, c over the configurations of the
    contiguous block ``mb = index * n_blocks // configs`` (jackknife errors of g(q), g(theta)).
    Serial (it is ~1 % of the work, and a parallel launch costs more than that on a busy machine);
    configurations are added in order.
    """
    m, nq, nt = ib.shape
    for iq in range(nq):
        for c in range(m):
            mb = ((first + c) * n_blocks) // configs
            for j in range(nt):
                b = ib[c, iq, j]
                cc = ia[c, iq, j]
                a = b * cc
                acc[0, iq, j] += a
                acc[1, iq, j] += b
                acc[2, iq, j] += cc
                acc[3, iq, j] += a * a
                acc[4, iq, j] += b * b
                acc[5, iq, j] += cc * cc
                acc[6, iq, j] += a * b
                acc[7, iq, j] += a * cc
                blk[mb, 0, iq, j] += a
                blk[mb, 1, iq, j] += b
                blk[mb, 2, iq, j] += cc


_QBLOCK = 256  # q-points per parallel task in amplitude_kernel


@njit(parallel=True, fastmath=_FM_SAFE, error_model="numpy", cache=True)
def amplitude_kernel(qx, qy, x, y, radius, mono):
    """A(q) = sum_i V_i F(|q| R_i) exp(-i q . r_i) for flat q-vector arrays; complex128.

    ``mono``: all radii equal to ``radius[0]`` -- F is then evaluated once per q-point.
    """
    nqp, n = qx.size, x.size
    out = np.empty(nqp, dtype=np.complex128)
    xt = x * _INV_TWO_PI
    yt = y * _INV_TWO_PI
    vol = _VOL * radius ** 3
    nblock = (nqp + _QBLOCK - 1) // _QBLOCK
    for bidx in prange(nblock):
        w = np.empty(n, dtype=np.float32)
        t = np.empty(n)
        buf = np.empty(n, dtype=np.float32)
        for p in range(bidx * _QBLOCK, min(nqp, (bidx + 1) * _QBLOCK)):
            qm = math.sqrt(qx[p] * qx[p] + qy[p] * qy[p])
            if mono:
                w0 = np.float32(vol[0] * form_factor64(qm * radius[0]))
                for i in range(n):
                    w[i] = w0
            else:
                for i in range(n):
                    w[i] = np.float32(vol[i] * form_factor64(qm * radius[i]))
            for i in range(n):
                t[i] = qx[p] * xt[i] + qy[p] * yt[i]
            re, im = _amplitude_sums(t, w, 1.0, n, buf)
            out[p] = complex(re, -im)  # e^{-i q.r}: imaginary part is -sum w sin
    return out
