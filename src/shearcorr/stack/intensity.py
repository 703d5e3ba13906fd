r"""Frames as a detector records them: the baseline of the number of particles in the beam.

The paper's intensity (eq. 1) is divided by the scattering volume :math:`S = \sum_i u_i V_i^2` of its own
configuration (u the footprint intensity), so the number of particles in the beam cancels; the analytic engine,
and with it the steady model's baseline B - 1 (:class:`.steadyfit.Baseline`), follows it. A detector divides by
nothing: more particles in the beam scatter more photons. With the time normalisation
(:math:`d = I/\langle I\rangle - 1`) the relative fluctuation of the incoherent intensity
:math:`P = \sum_i u_i w_i^2`, :math:`w = V F(qR)`, then stays whole. For particles placed independently (a
Poisson field of density :math:`n_{L^2}/L^2`, independent radii) Campbell's theorem gives it exactly:

.. math:: B - 1 = \frac{\mathrm{Cov}(P, P')}{E[P]^2} = \frac{f_b}{n_{\rm eff}}\,\frac{E[w^4]}{E[w^2]^2},\qquad
          n_{\rm eff} = \frac{n_{L^2}}{L^2}\,\frac{(\int u\,dA)^2}{\int u^2\,dA},

f_b the baseline's shared fraction (:meth:`.transit.Footprint.fractions`; 1 at lag 0): :math:`1/n_{\rm eff}` at
R_s = 0 (the Poisson variance of the particle number), :math:`e^{36R_s^2}/n_{\rm eff}` at q -> 0. The amplitude
of the coherent part at lag 0 is exactly 1 (the field's fourth moment, :math:`E|A|^4 = 2E[P]^2 + \mathrm{Var}\,P`
for qL >> 1), where per-configuration normalised frames have the engine's A - B, close to
:math:`1 - \Delta B` with :math:`\Delta B \approx (1/n_{\rm eff})[2E[w^2V^2]/(E[w^2]E[V^2]) - E[V^4]/E[V^2]^2]`
(the delta method). The q-row means of the raw frames carry the same B - 1 under either normalisation of the maps
(:mod:`.rowbaseline`); normalising each frame by its own ring means (``normalization="frame"``, the default for
detector frames) divides the number out of the maps, as S does. Assumed: a dilute suspension (the particle
number's variance equals its mean; a structure factor S(0) != 1 would scale the number part and is not modelled)
and a constant incident flux (or one divided out). The measurement is in docs/stacks.md ("Frames as a detector
records them").
"""

from __future__ import annotations

import numpy as np

from ..forward.quadrature import radius_nodes
from ..physics import form_factor
from .transit import footprint

__all__ = ["detector_baseline", "N_RADIUS"]

#: Trapezoid nodes in ln R for the radius averages (converges geometrically; 401 resolves q R0 <= 10 at R_s 0.3).
N_RADIUS = 401


def detector_baseline(q, rs: float, n_l2: float, beam, beam_size: float) -> np.ndarray:
    r""":math:`B - 1 = E[w^4]/(n_{\rm eff}E[w^2]^2)` of frames as a detector records them, all particles shared
    (module docstring).

    Parameters
    ----------
    q : array-like
        q R0 (any shape).
    rs : float
        Log-normal width of the radii.
    n_l2 : float
        Particles per beam_size^2.
    beam, beam_size : the model's beam (None: the paper's square) and L (R0).

    Returns
    -------
    ndarray, the shape of ``q``.
    """
    q = np.asarray(q, dtype=np.float64)
    z, lam = radius_nodes(float(rs), 1 if rs == 0 else N_RADIUS)
    w2 = form_factor(q.reshape(-1, 1) * np.exp(z)[None, :]) ** 2 * np.exp(6.0 * z)[None, :]  # (V F)^2 / V0^2
    ratio = (w2 * w2) @ lam / (w2 @ lam) ** 2
    n_eff = float(n_l2) * footprint(beam, beam_size).effective_area / float(beam_size) ** 2
    return (ratio / n_eff).reshape(q.shape)
