r"""The model of what one frame pair measures, on the data's own polar bins.

A single pair, averaged over the many speckles of a bin, estimates (docs/experiment.md)

.. math:: y(q,\theta) = \frac{C - 1}{\beta}
   = \frac{|\sum_i m_i m_i' w_i^2 c_i|^2 - \sum_i m_i m_i' w_i^4 |c_i|^2}{P P' - \ldots}

for *its own* particles: the bin normalisation removes the configuration's P/S, so the ensemble's
finite-N baseline (configuration-to-configuration fluctuations of P/S) is absent. From the ensemble
engine (:func:`shearcorr.analytic.ensemble_arrays`) the matching quantity is

.. math:: y_{\rm model} = \frac{g(q,\theta) - B(q)}{A(q) - B(q)}

with A = g at gamma_l = d2 = 0 (perfect correlation: what the self-calibrated beta measures) and
B = g with the particles decorrelated (d2 = 25 R0, c = 0: the baseline). For a monodisperse
dispersion A - 1 = 1 - <1/N>, B = 1 and y_model -> eq. 5 - 1 with window-edge corrections.
The model is averaged over each bin on a sub-grid (``n_sub_q`` x ``n_sub_phi`` points), because
sinc^2 varies across an angular bin at large q gamma L.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..errors import ShearcorrError
from ..params import QGrid, SystemParams

__all__ = ["BinnedPairModel", "ensemble_g", "D_DECORRELATED"]

#: Non-affine displacement (R0) used to decorrelate the pair for the baseline B(q).
D_DECORRELATED = 25.0


def ensemble_g(params: SystemParams, q, theta) -> np.ndarray:
    """Ensemble g(q, theta) from the analytic engine (shape (len(q), len(theta)))."""
    from ..analytic import ensemble_arrays

    return ensemble_arrays(params, QGrid(np.asarray(q, float), np.asarray(theta, float)))[1]


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
        Sub-grid points per bin.
    """

    def __init__(self, q_edges, phi_edges, *, n_l2=150.0, displacement="uniform", beam_size=800.0,
                 n_sub_q=2, n_sub_phi=4):
        self.q_edges = np.asarray(q_edges, float)
        self.phi_edges = np.asarray(phi_edges, float)
        self.n_q, self.n_phi = self.q_edges.size - 1, self.phi_edges.size - 1
        self.sq, self.sp = int(n_sub_q), int(n_sub_phi)
        lq = np.log(self.q_edges)
        fq = (np.arange(self.sq) + 0.5) / self.sq
        self.q_sub = np.exp((lq[:-1, None] + np.diff(lq)[:, None] * fq[None, :]).ravel())
        fp = (np.arange(self.sp) + 0.5) / self.sp
        self.phi_sub = (self.phi_edges[:-1, None] + np.diff(self.phi_edges)[:, None] * fp[None, :]).ravel()
        self.n_l2, self.displacement, self.beam_size = float(n_l2), displacement, float(beam_size)
        self._ab: dict = {}
        self.calls = 0

    def params(self, gamma_l, d2, rs) -> SystemParams:
        return SystemParams(n_l2=self.n_l2, rs=max(float(rs), 0.0), d2=max(float(d2), 0.0),
                            gamma_l=max(float(gamma_l), 0.0), displacement=self.displacement, beam_size=self.beam_size)

    def _a_b(self, p: SystemParams):
        key = round(p.rs, 12)
        if key not in self._ab:
            a = ensemble_g(replace(p, gamma_l=0.0, d2=0.0), self.q_sub, [0.0])[:, 0]
            b = ensemble_g(replace(p, gamma_l=0.0, d2=D_DECORRELATED), self.q_sub, [0.0])[:, 0]
            if np.any(a - b <= 0):
                raise ShearcorrError("the ensemble model has no correlation amplitude (A <= B); check n_l2 and the q range")
            if len(self._ab) > 64:
                self._ab.clear()
            self._ab[key] = (a, b)
        return self._ab[key]

    def y(self, gamma_l, d2, rs, phi0=0.0) -> np.ndarray:
        """Bin-averaged y_model, shape (n_q, n_phi); theta = phi - phi0."""
        p = self.params(gamma_l, d2, rs)
        g = ensemble_g(p, self.q_sub, self.phi_sub - phi0)
        self.calls += 1
        a, b = self._a_b(p)
        y = (g - b[:, None]) / (a - b)[:, None]
        return y.reshape(self.n_q, self.sq, self.n_phi, self.sp).mean(axis=(1, 3))
