r"""Numba kernels of a partially coherent beam: one coherent amplitude per beam mode (docs/theory.md).

A beam described by coherent modes k with weights nu_k and fields a_k(r) (:mod:`shearcorr.forward.modes`)
scatters :math:`I = \sum_k \nu_k |\sum_i a_k(\mathbf r_i) V_i F(qR_i) e^{-i\mathbf q\cdot\mathbf r_i}|^2 / S`.
These kernels evaluate it with the phase reduction, float32 sums and thread layout of
:mod:`shearcorr.forward.kernels` (results identical for any number of threads).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from .kernels import (_FM_FAST, _FM_SAFE, _INV_TWO_PI, _QBLOCK, _VOL, _amplitude_sums, _map_column, _mono_weights,
                      _weights, cis_turn32, form_factor64)

__all__ = ["chunk_intensities_modes", "amplitude_kernel_weighted", "intensity_kernel_modes"]


@njit(parallel=True, fastmath=_FM_SAFE, error_model="numpy", cache=True)
def chunk_intensities_modes(q, cos_t, sin_t, x, y, radius, amps, nu, off, inv_s, mono):
    r"""Partially coherent intensity maps of a chunk of configurations, shape (m, n_q, n_theta).

    :math:`I = \sum_k \nu_k |\sum_i a_{ki} V_i F(qR_i) e^{-i\mathbf q\cdot\mathbf r_i}|^2\,/S`: one coherent
    amplitude per beam mode k (``amps[k, i]``: the mode's field at particle i, float32), weighted by
    the mode weights ``nu`` (float64). Otherwise as :func:`chunk_intensities` (configuration ``c``
    scatters from particles ``off[c]:off[c+1]``; one thread per map, modes summed in order, so the
    values do not depend on the number of threads).
    """
    nq, nt, m = q.size, cos_t.size, off.size - 1
    nm = nu.size
    out = np.zeros((m, nq, nt))
    wq = _mono_weights(q, radius, mono)
    for c in prange(m):
        o0, o1 = off[c], off[c + 1]
        n = o1 - o0
        w0 = np.empty((nq, n), dtype=np.float32)
        _weights(q, radius[o0:o1], mono, wq, w0)
        w = np.empty((nq, n), dtype=np.float32)
        t = np.empty(n)
        buf = np.empty(n, dtype=np.float32)
        xc, yc = x[o0:o1], y[o0:o1]
        one = np.empty((nq, nt))
        for k in range(nm):
            for iq in range(nq):
                for i in range(n):
                    w[iq, i] = w0[iq, i] * amps[k, o0 + i]
            for j in range(nt):
                _map_column(q, cos_t[j], sin_t[j], xc, yc, w, inv_s[c], t, buf, one, j)
            for iq in range(nq):
                for j in range(nt):
                    out[c, iq, j] += nu[k] * one[iq, j]
    return out


@njit(parallel=True, fastmath=_FM_SAFE, error_model="numpy", cache=True)
def amplitude_kernel_weighted(qx, qy, x, y, radius, weight):
    """A(q) = sum_i weight_i V_i F(|q| R_i) exp(-i q . r_i) for flat q-vector arrays; complex128.

    As :func:`amplitude_kernel` with a per-particle real factor (the beam mode's field at the particle).
    """
    nqp, n = qx.size, x.size
    out = np.empty(nqp, dtype=np.complex128)
    xt = x * _INV_TWO_PI
    yt = y * _INV_TWO_PI
    vol = _VOL * radius**3 * weight
    nblock = (nqp + _QBLOCK - 1) // _QBLOCK
    for bidx in prange(nblock):
        w = np.empty(n, dtype=np.float32)
        t = np.empty(n)
        buf = np.empty(n, dtype=np.float32)
        for p in range(bidx * _QBLOCK, min(nqp, (bidx + 1) * _QBLOCK)):
            qm = math.sqrt(qx[p] * qx[p] + qy[p] * qy[p])
            for i in range(n):
                w[i] = np.float32(vol[i] * form_factor64(qm * radius[i]))
            for i in range(n):
                t[i] = qx[p] * xt[i] + qy[p] * yt[i]
            re, im = _amplitude_sums(t, w, 1.0, n, buf)
            out[p] = complex(re, -im)
    return out


@njit(fastmath=_FM_FAST, error_model="numpy", cache=True)
def _cis_turns(t, n, buf, cs, sn):
    """cs, sn = cos, sin(2 pi t_i) (float32), phases reduced exactly as in :func:`_amplitude_sums`."""
    for i in range(n):
        p = t[i]
        buf[i] = np.float32(p - np.floor(p + 0.5))
    for i in range(n):
        cs[i], sn[i] = cis_turn32(buf[i])


@njit(fastmath=_FM_FAST, error_model="numpy", cache=True)
def _mode_sums(f, a, cs, sn, n, wk):
    """(sum_i f_i a_i cs_i, sum_i f_i a_i sn_i), float32 accumulation (``a``: one mode's row)."""
    for i in range(n):
        wk[i] = np.float32(f[i] * a[i])
    re = np.float32(0.0)
    im = np.float32(0.0)
    for i in range(n):
        re += wk[i] * cs[i]
        im += wk[i] * sn[i]
    return re, im


@njit(parallel=True, fastmath=_FM_SAFE, error_model="numpy", cache=True)
def intensity_kernel_modes(qx, qy, x, y, radius, amps, nu):
    """I(q) = sum_k nu_k |sum_i amps[k, i] V_i F(|q| R_i) exp(-i q . r_i)|^2 for flat q-vector arrays.

    Every beam mode of :func:`amplitude_kernel_weighted` at once: the phases and form factors of a
    q-point are computed once and shared by the modes (``amps`` float64 (n_modes, n), ``nu`` float64
    (n_modes,)); float64 result, the modes summed in order (thread-count independent).
    """
    nqp, n, nm = qx.size, x.size, nu.size
    out = np.empty(nqp)
    xt = x * _INV_TWO_PI
    yt = y * _INV_TWO_PI
    vol = _VOL * radius**3
    nblock = (nqp + _QBLOCK - 1) // _QBLOCK
    for bidx in prange(nblock):
        f = np.empty(n)
        t = np.empty(n)
        buf = np.empty(n, dtype=np.float32)
        cs = np.empty(n, dtype=np.float32)
        sn = np.empty(n, dtype=np.float32)
        wk = np.empty(n, dtype=np.float32)
        for p in range(bidx * _QBLOCK, min(nqp, (bidx + 1) * _QBLOCK)):
            qm = math.sqrt(qx[p] * qx[p] + qy[p] * qy[p])
            for i in range(n):
                f[i] = vol[i] * form_factor64(qm * radius[i])
            for i in range(n):
                t[i] = qx[p] * xt[i] + qy[p] * yt[i]
            _cis_turns(t, n, buf, cs, sn)
            acc = 0.0
            for k in range(nm):
                re, im = _mode_sums(f, amps[k], cs, sn, n, wk)
                acc += nu[k] * (np.float64(re) * re + np.float64(im) * im)
            out[p] = acc
    return out
