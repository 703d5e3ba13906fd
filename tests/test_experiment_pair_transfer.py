"""The configuration term with partial coherence and pixels (experiment.pairtransfer): the pair matrix of one
configuration against the direct pair sum, and the mean of the single-configuration maps against the engine."""

import dataclasses

import numpy as np
import pytest

from shearcorr.beam import Beam
from shearcorr.experiment import pairtransfer
from shearcorr.experiment.model import BinnedPairModel, configuration_maps, draw_configurations
from shearcorr.physics import form_factor, sphere_volume
from shearcorr.pixels import PixelResponse, transfer

L = 800.0
Q_EDGES = np.geomspace(0.15, 1.2, 9)
PHI_EDGES = np.linspace(0, np.pi, 13)


def _pixel(px_per_speckle, angle=0.0, psf=0.0):
    dq = 2 * np.pi / L / px_per_speckle
    c, s = np.cos(angle), np.sin(angle)
    return PixelResponse((dq * c, dq * s), (dq * s, -dq * c), psf)


def _direct(model, d, k, phi0):
    """y_1 of draw k by the plain pair sum: sum_{i != j} w_i^2 w_j^2 s_i s_j T(r_ij) T(r'_ij) e^{-iq.(dr_i - dr_j)}
    over sqrt(V V'), V = sum_{i != j} W_i W_j T(r_ij)^2, with T = sqrt(M) of pixels.transfer (numpy, complex)."""
    M = transfer(d.beam, model.pixel, model.flow_angle)

    def T(rx, ry):
        return np.sqrt(M(rx, ry))  # T > 0 at these separations (the pixel sincs stay positive within the box)

    qc = np.sqrt(Q_EDGES[:-1] * Q_EDGES[1:])
    dphi = np.diff(PHI_EDGES)
    phs = np.stack([PHI_EDGES[:-1] + 0.25 * dphi, PHI_EDGES[:-1] + 0.75 * dphi], axis=1).ravel() - phi0
    x, y, xa, ya, r = d.x[k], d.y[k], d.xa[k], d.ya[k], d.radius[k]
    u, ua = d.beam.intensity(x, y), d.beam.intensity(xa, ya)
    w2 = sphere_volume(r)[:, None] ** 2 * form_factor(r[:, None] * qc) ** 2
    b, a = u > 0, ua > 0
    c = b & a

    def lag(xx, yy):
        return T(xx[:, None] - xx[None, :], yy[:, None] - yy[None, :])

    def var(xx, yy, W):
        m = lag(xx, yy) ** 2
        np.fill_diagonal(m, 0.0)
        return np.einsum("iq,ij,jq->q", W, m, W)

    V = var(x[b], y[b], w2[b] * u[b, None]) * var(xa[a], ya[a], w2[a] * ua[a, None])
    s = np.sqrt(u[c] * ua[c])
    K = lag(x[c], y[c]) * lag(xa[c], ya[c]) * np.outer(s, s)
    np.fill_diagonal(K, 0.0)
    out = np.empty((qc.size, phs.size))
    for j, ph in enumerate(phs):
        e = np.exp(-1j * np.outer(qc, np.cos(ph) * (xa - x)[c] + np.sin(ph) * (ya - y)[c])) * w2[c].T
        out[:, j] = np.real(np.einsum("qi,ij,qj->q", e, K, e.conj())) / np.sqrt(V)
    return out.reshape(qc.size, PHI_EDGES.size - 1, 2).mean(axis=2)


@pytest.mark.parametrize("beam, pixel", [(Beam("square", L, (0.3 * L, 0.5 * L)), None),
                                         (Beam("rectangular", (L, 0.7 * L), coherence_mix=[(0.7, np.inf, np.inf), (0.3, 60.0, 60.0)]),
                                          _pixel(2.2, 0.3, 0.4)),
                                         (None, _pixel(2.5, -0.2))])
def test_partially_coherent_configuration_maps_equal_the_direct_pair_sum(beam, pixel):
    model = BinnedPairModel(Q_EDGES, PHI_EDGES, beam_size=L, beam=beam, pixel=pixel, flow_angle=0.5)
    d = draw_configurations(model, 14.0, 1.1, 0.2, 3, seed=4)
    ys = configuration_maps(model, d, 0.5)
    for k in range(3):  # float32 phase sums (~1e-6) and the factor's residual (1e-3 of the trace, zero mean)
        ref = _direct(model, d, k, 0.5)
        assert np.abs(ys[k] - ref).max() < 1e-3 * np.abs(ref).max()


def test_coherent_point_pixels_pair_matrix_is_the_coherent_formula():
    model = BinnedPairModel(Q_EDGES, PHI_EDGES, beam_size=L)
    d = draw_configurations(model, 14.0, 1.1, 0.2, 3, seed=4)
    assert pairtransfer.amplitude_transfer(d.beam) is None
    ones = pairtransfer.AmplitudeTransfer(None, (), 0.0)  # T = 1: the general path must give the coherent formula
    for k in range(3):
        lit = (d.beam.intensity(d.x[k], d.y[k]) > 0) & (d.beam.intensity(d.xa[k], d.ya[k]) > 0)
        t = pairtransfer.lag_matrix(ones, d.x[k][lit], d.y[k][lit])
        coef, diag = pairtransfer.pair_modes(t, t, np.ones(lit.sum()))
        assert coef.shape[1] == 1 and np.allclose(diag, 1.0)


def test_transfer_matrix_is_the_transfer_at_the_separations():
    T = pairtransfer.amplitude_transfer(Beam("square", L, (300.0, 500.0)), _pixel(2.4, 0.2, 0.7), 0.4)
    rng = np.random.default_rng(1)
    x, y = rng.uniform(-L, L, 60), rng.uniform(-L, L, 60)
    np.testing.assert_allclose(T.matrix(x, y), T(x[:, None] - x[None, :], y[:, None] - y[None, :]), atol=1e-12)
    M = transfer(Beam("square", L, (300.0, 500.0)), _pixel(2.4, 0.2, 0.7), 0.4)
    np.testing.assert_allclose(T(x, y) ** 2, M(x, y), atol=1e-12)


@pytest.mark.parametrize("beam, pixel, old_off", [(Beam("square", L, (0.3 * L, 0.3 * L)), None, 0.3),
                                                  (None, _pixel(2.2), 0.05)])
def test_single_configurations_average_to_the_engine(beam, pixel, old_off):
    """The mean of single-configuration maps is the ensemble model y_model of the analytic engine with the same
    instrument (two independent computations). The coherent formula (the term before partial coherence and
    pixels entered it) misses it by > ``old_off``: the decorrelation width follows the coherence length and
    the pixel, not the slit alone."""
    gl, d2, phi0 = 15.0, 1.0, 0.3
    model = BinnedPairModel(Q_EDGES, PHI_EDGES, beam_size=L, beam=beam, pixel=pixel, flow_angle=phi0)
    d = draw_configurations(model, gl, d2, 0.0, 96, seed=11)
    mean = configuration_maps(model, d, phi0).mean(axis=0)
    y_model = model.y(gl, d2, 0.0, phi0)
    assert np.abs(mean - y_model).max() < 0.025
    old = dataclasses.replace(d, beam=Beam().resolved(L))  # the same particles under the coherent formula
    coherent = configuration_maps(BinnedPairModel(Q_EDGES, PHI_EDGES, beam_size=L), old, phi0).mean(axis=0)
    assert np.abs(coherent - y_model).max() > old_off


@pytest.mark.parametrize("beam, pixel", [(None, None), (Beam("square", L, (0.3 * L, 0.5 * L)), _pixel(2.2, 0.3, 0.4))])
def test_pointwise_configuration_map_is_the_binned_one(beam, pixel):
    """configuration_y1 (the pair's oracle at any q-vector, e.g. every pixel: bench_pair_errors) at the two points per
    bin of configuration_maps gives its maps; with partial coherence and pixels the coherent formula does not."""
    model = BinnedPairModel(Q_EDGES, PHI_EDGES, beam_size=L, beam=beam, pixel=pixel, flow_angle=0.5)
    d = draw_configurations(model, 14.0, 1.1, 0.2, 2, seed=5)
    ys = configuration_maps(model, d, 0.5)
    T = pairtransfer.amplitude_transfer(d.beam, pixel, 0.5)
    qc = np.sqrt(Q_EDGES[:-1] * Q_EDGES[1:])
    dphi = np.diff(PHI_EDGES)
    phs = np.stack([PHI_EDGES[:-1] + 0.25 * dphi, PHI_EDGES[:-1] + 0.75 * dphi], axis=1).ravel() - 0.5
    qq, pp = np.meshgrid(qc, phs, indexing="ij")
    for k in range(2):
        args = (d.x[k], d.y[k], d.xa[k], d.ya[k], d.radius[k], d.beam.intensity(d.x[k], d.y[k]),
                d.beam.intensity(d.xa[k], d.ya[k]))
        y1 = pairtransfer.configuration_y1(T, qq * np.cos(pp), qq * np.sin(pp), *args, chunk=50)
        y1 = y1.reshape(qc.size, PHI_EDGES.size - 1, 2).mean(axis=2)
        assert np.abs(y1 - ys[k]).max() < 2e-3 * np.abs(ys[k]).max()
        if T is not None:
            old = pairtransfer.configuration_y1(None, qq * np.cos(pp), qq * np.sin(pp), *args)
            assert np.abs(old.reshape(y1.shape[0], -1, 2).mean(axis=2) - ys[k]).max() > 0.05
