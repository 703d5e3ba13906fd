r"""The model of what one frame pair measures, on the data's own polar bins.

A single pair, averaged over the many speckles of a bin, estimates (docs/experiment.md)

.. math:: y(q,\theta) = \frac{C - 1}{\beta}
   = \frac{|\sum_i m_i m_i' w_i^2 c_i|^2 - \sum_i m_i m_i' w_i^4 |c_i|^2}{P P' - \ldots}

for *its own* particles: the bin normalisation removes the configuration's P/S, so the ensemble's
finite-N baseline (configuration-to-configuration fluctuations of P/S) is absent. From the ensemble
engine (:func:`shearcorr.forward.analytic.ensemble_arrays`) the matching quantity is

.. math:: y_{\rm model} = \frac{g(q,\theta) - B(q)}{A(q) - B(q)}

with A = g at gamma_l = d2 = 0 (perfect correlation: what the self-calibrated beta measures) and
B = g with the particles decorrelated (d2 = 25 R0, c = 0: the baseline). For a monodisperse
dispersion A - 1 = 1 - <1/N>, B = 1 and y_model -> eq. 5 - 1 with window-edge corrections.
The model is averaged over each bin on a sub-grid (``n_sub_q`` x ``n_sub_phi`` points), because
sinc^2 varies across an angular bin at large q gamma L.

The instrument (docs/theory.md section 7): with a ``beam`` (footprint, coherence, 1-2 / 1-3
geometry) and a ``pixel`` response (each pixel's footprint in q and the detector's point spread),
g, A and B come from the general engine, which convolves the coherent pair correlation with the
pixel: the pixel integration narrows the measured decorrelation like a smaller beam would, and is
*not* absorbed by the contrast estimate. The pixel response is oriented by the detector azimuth of
the flow, ``flow_angle``.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..errors import ShearcorrError
from ..params import QGrid, SystemParams

__all__ = ["BinnedPairModel", "ensemble_g", "configuration_samples", "D_DECORRELATED"]

#: Non-affine displacement (R0) used to decorrelate the pair for the baseline B(q) (at least; see
#: :func:`decorrelated_d2`), and the smallest q D2 it must reach (exp(-12.5) = 4e-6).
D_DECORRELATED = 25.0
BASELINE_QD = 5.0


def decorrelated_d2(params: SystemParams, q_min: float | None = None) -> float:
    """D2 of the baseline B: large enough that exp(-q^2 D2^2 / 2) <= exp(-BASELINE_QD^2 / 2) at ``q_min``
    (at least ``D_DECORRELATED``), at most what the engine's validated domain allows in this beam
    (:func:`shearcorr.forward.domain.max_d2`)."""
    from ..forward.domain import max_d2

    want = D_DECORRELATED if q_min is None else max(D_DECORRELATED, BASELINE_QD / float(q_min))
    return min(want, 0.999 * max_d2(replace(params, gamma_l=0.0)))


def ensemble_g(params: SystemParams, q, theta, *, beam=None, pixel=None, flow_angle: float = 0.0) -> np.ndarray:
    """Ensemble g(q, theta) from the analytic engine (shape (len(q), len(theta))); ``beam``, ``pixel`` and
    ``flow_angle`` as in :func:`shearcorr.forward.analytic.ensemble_arrays`."""
    from ..forward.analytic import ensemble_arrays

    return ensemble_arrays(params, QGrid(np.asarray(q, float), np.asarray(theta, float)), beam=beam, pixel=pixel,
                           flow_angle=flow_angle)[1]


class BinnedPairModel:
    """y_model averaged over the polar bins of a :class:`~.correlation.CorrelationMap`.

    Parameters
    ----------
    q_edges : ndarray
        q bin edges (q R0).
    phi_edges : ndarray
        Azimuth bin edges (rad) of the map.
    n_l2, displacement, beam_size : model constants (beam_size = L / R0).
    n_sub_q, n_sub_phi : int
        Sub-grid points per bin (2 x 4 is within 2e-3 of 4 x 16 at gamma L = 30, q R0 <= 1.3).
    n_theta_fine : int, optional
        Points of the periodic theta grid over [0, pi) (default twice the angular sub-grid).
    beam : shearcorr.beam.Beam, optional
        Beam footprint, coherence and scattering geometry (R0); None: the paper's.
    pixel : shearcorr.pixels.PixelResponse, optional
        Pixel footprint in q and point spread (:meth:`DetectorGeometry.pixel_response`); None: point pixels.
    flow_angle : float
        Detector azimuth of the flow (rad) used to orient the pixel response.
    """

    def __init__(self, q_edges, phi_edges, *, n_l2=150.0, displacement="uniform", beam_size=800.0,
                 n_sub_q=2, n_sub_phi=4, n_theta_fine=None, beam=None, pixel=None, flow_angle=0.0):
        self.q_edges = np.asarray(q_edges, float)
        self.phi_edges = np.asarray(phi_edges, float)
        self.n_q, self.n_phi = self.q_edges.size - 1, self.phi_edges.size - 1
        self.sq, self.sp = int(n_sub_q), int(n_sub_phi)
        lq = np.log(self.q_edges)
        fq = (np.arange(self.sq) + 0.5) / self.sq
        self.q_sub = np.exp((lq[:-1, None] + np.diff(lq)[:, None] * fq[None, :]).ravel())
        fp = (np.arange(self.sp) + 0.5) / self.sp
        self.phi_sub = (self.phi_edges[:-1, None] + np.diff(self.phi_edges)[:, None] * fp[None, :]).ravel()
        # periodic fine theta grid over [0, pi): y(theta) is evaluated there once per (gamma L, D2, R_s)
        # and linearly interpolated at phi_sub - phi0, so the flow angle costs no engine call
        self.n_fine = 2 * self.n_phi * self.sp if n_theta_fine is None else int(n_theta_fine)
        self.theta_fine = np.arange(self.n_fine) * (np.pi / self.n_fine)
        self.n_l2, self.displacement, self.beam_size = float(n_l2), displacement, float(beam_size)
        self.beam, self.pixel, self.flow_angle = beam, pixel, float(flow_angle)
        #: The instrument as JSON-able data (cache keys of models built on these bins).
        self.instrument_key = {"beam": None if beam is None else beam.key(),
                               "pixel": None if pixel is None else pixel.to_dict(),
                               "flow_angle": round(self.flow_angle, 9) if pixel is not None else None}
        self._ab: dict = {}
        self._fine: dict = {}
        self.calls = 0

    def params(self, gamma_l, d2, rs) -> SystemParams:
        return SystemParams(n_l2=self.n_l2, rs=max(float(rs), 0.0), d2=max(float(d2), 0.0),
                            gamma_l=max(float(gamma_l), 0.0), displacement=self.displacement, beam_size=self.beam_size)

    def _a_b(self, p: SystemParams):
        key = round(p.rs, 12)
        if key not in self._ab:
            a = self._g(replace(p, gamma_l=0.0, d2=0.0), [0.0])[:, 0]
            b = self._g(replace(p, gamma_l=0.0, d2=decorrelated_d2(p, self.q_sub.min())), [0.0])[:, 0]
            if np.any(a - b <= 0):
                raise ShearcorrError("the ensemble model has no correlation amplitude (A <= B); check n_l2 and the q range")
            if len(self._ab) > 64:
                self._ab.clear()
            self._ab[key] = (a, b)
        return self._ab[key]

    def _g(self, p: SystemParams, theta) -> np.ndarray:
        if self.beam is None and self.pixel is None:
            return ensemble_g(p, self.q_sub, theta)
        return ensemble_g(p, self.q_sub, theta, beam=self.beam, pixel=self.pixel, flow_angle=self.flow_angle)

    def y_fine(self, gamma_l, d2, rs) -> np.ndarray:
        """y_model on (q_sub, theta_fine), shape (n_q * n_sub_q, n_fine); cached per parameter set."""
        p = self.params(gamma_l, d2, rs)
        key = (p.gamma_l, p.d2, p.rs)
        if key not in self._fine:
            g = self._g(p, self.theta_fine)
            self.calls += 1
            a, b = self._a_b(p)
            if len(self._fine) > 16:
                self._fine.clear()
            self._fine[key] = (g - b[:, None]) / (a - b)[:, None]
        return self._fine[key]

    def y(self, gamma_l, d2, rs, phi0=0.0) -> np.ndarray:
        """Bin-averaged y_model, shape (n_q, n_phi); theta = phi - phi0."""
        yf = self.y_fine(gamma_l, d2, rs)
        t = np.mod(self.phi_sub - phi0, np.pi) * (self.n_fine / np.pi)
        i0 = np.floor(t).astype(int) % self.n_fine
        f = t - np.floor(t)
        y = yf[:, i0] * (1 - f) + yf[:, (i0 + 1) % self.n_fine] * f
        return y.reshape(self.n_q, self.sq, self.n_phi, self.sp).mean(axis=(1, 3))


def configuration_samples(model: BinnedPairModel, gamma_l, d2, rs, phi0=0.0, n_samples=48, seed=0) -> np.ndarray:
    r"""Bin-averaged pair correlation of ``n_samples`` single configurations (no speckle, no noise).

    A pair measures *its own* particles: with :math:`\Delta\mathbf r_i` the displacement of particle
    i (in the beam before and after, weight :math:`w_i^2 = V_i^2F(qR_i)^2`),

    .. math:: y_1(\mathbf q) = \frac{|\sum_i w_i^2 e^{-i\mathbf q\cdot\Delta\mathbf r_i}|^2
              - \sum_i w_i^4}{\sqrt{(P^2 - \sum w^4)(P'^2 - \sum w'^4)}}

    fluctuates around y_model with the finite sample of ~n_l2 positions and displacements (e.g. the
    sinc^2 width follows the sample variance of the y_i). The spread of these samples is the
    intrinsic uncertainty of a single pair, added to the speckle noise in the fit covariance.
    ``rs`` may be an array of one R_s per sample (to marginalise an unconstrained R_s over its
    prior: polydispersity weights particles by V^2 ~ R^6 and shrinks the effective number of
    scatterers, hence raises this spread). Configurations from
    :func:`shearcorr.forward.montecarlo.sample_configuration`. Returns shape
    (n_samples, n_q, n_phi).
    """
    from ..forward.montecarlo import sample_configuration
    from ..physics import form_factor, sphere_volume

    rs_k = np.broadcast_to(np.asarray(rs, dtype=np.float64), (int(n_samples),))
    qc = np.sqrt(model.q_edges[:-1] * model.q_edges[1:])  # bin centres in q, 2 points per bin in phi
    dphi = np.diff(model.phi_edges)
    phs = np.stack([model.phi_edges[:-1] + 0.25 * dphi, model.phi_edges[:-1] + 0.75 * dphi], axis=1).ravel() - phi0
    qx, qy = qc[:, None] * np.cos(phs)[None, :], qc[:, None] * np.sin(phs)[None, :]
    out = np.empty((int(n_samples), model.n_q, model.n_phi))
    for k in range(int(n_samples)):
        p = model.params(gamma_l, d2, rs_k[k])
        if model.beam is None or model.beam.is_paper(p.beam_size):
            cfg = sample_configuration(p, seed, index=k)
        else:
            from ..forward.beammc import beam_configuration

            cfg = beam_configuration(p, model.beam, seed, index=k)
        mb, ma = cfg.illumination_before, cfg.illumination_after
        both = (mb > 0) & (ma > 0)
        w2 = sphere_volume(cfg.radius)[None, :] ** 2 * form_factor(qc[:, None] * cfg.radius[None, :]) ** 2
        P, Pa = (w2 * mb).sum(1), (w2 * ma).sum(1)
        S4, S4a = (w2**2 * mb**2).sum(1), (w2**2 * ma**2).sum(1)
        wab = w2 * np.sqrt(mb * ma)  # = w2 on the paper's window (exactly)
        S4b = (wab**2 * both).sum(1)
        wb = wab[:, both]
        dx, dy = (cfg.x_after - cfg.x)[both], (cfg.y_after - cfg.y)[both]
        ph = np.exp(-1j * (qx[:, :, None] * dx + qy[:, :, None] * dy))
        s = np.matmul(ph, wb[:, :, None])[..., 0]
        y1 = (np.abs(s) ** 2 - S4b[:, None]) / np.sqrt((P**2 - S4) * (Pa**2 - S4a))[:, None]
        out[k] = y1.reshape(model.n_q, model.n_phi, 2).mean(axis=2)
    return out
