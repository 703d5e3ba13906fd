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

from dataclasses import dataclass, replace

import numpy as np

from ..errors import ShearcorrError
from ..params import QGrid, SystemParams
from .pairtransfer import amplitude_transfer, transfer_maps

__all__ = ["BinnedPairModel", "ensemble_g", "configuration_samples", "rs_levels", "profile_slope", "draw_configurations",
           "configuration_profiles", "configuration_maps", "ConfigurationDraws", "D_DECORRELATED"]

#: Non-affine displacement (R0) used to decorrelate the pair for the baseline B(q) (at least; see
#: :func:`decorrelated_d2`), and the smallest q D2 it must reach (exp(-12.5) = 4e-6).
D_DECORRELATED = 25.0
BASELINE_QD = 5.0


def decorrelated_d2(params: SystemParams, q_min: float | None = None, step_max: float | None = None) -> float:
    """D2 of the baseline B: large enough that exp(-q^2 D2^2 / 2) <= exp(-BASELINE_QD^2 / 2) at ``q_min``
    (at least ``D_DECORRELATED``), at most :func:`baseline_d2_max`."""
    want = D_DECORRELATED if q_min is None else max(D_DECORRELATED, BASELINE_QD / float(q_min))
    return min(want, baseline_d2_max(params, step_max))


def baseline_d2_max(params: SystemParams, step_max: float | None = None) -> float:
    """Largest D2 the baseline may use: what the engine's validated domain allows in this beam
    (:func:`shearcorr.forward.domain.max_d2`) and, for the general engine (a beam or pixels), what its box holds,
    ``step_max`` (:func:`shearcorr.forward.beamengine.max_step`) over the largest step of the radius nodes per unit
    D2 (:func:`step_scale`); 0.999 of the smaller."""
    from ..forward.domain import max_d2

    cap = max_d2(replace(params, gamma_l=0.0))
    if step_max is not None:
        cap = min(cap, step_max / step_scale(params))
    return 0.999 * cap


def engine_step_max(beam, pixel, beam_size: float) -> float | None:
    """The largest step std (R0) the box of the engine a model with this instrument uses holds: None for the paper's
    engine (no beam, no pixels), else :func:`shearcorr.forward.beamengine.max_step` of the beam (the paper's square
    slit when only pixels are given)."""
    if beam is None and pixel is None:
        return None
    from ..beam import Beam
    from ..forward.beamengine import max_step

    return max_step(Beam() if beam is None else beam, beam_size)


def step_scale(params: SystemParams) -> float:
    """Largest non-affine step std per unit D2 over the engine's radius nodes: 1 for uniform steps; for
    Stokes-Einstein steps sqrt(r0 / R) at the smallest node, z = x_lo r_s whatever the number of nodes
    (:func:`shearcorr.forward.quadrature.radius_range`)."""
    from ..forward.quadrature import radius_range
    from ..physics import displacement_std

    r_min = params.r0 * np.exp(radius_range(params.rs)[0] * params.rs)
    return float(displacement_std(r_min, 1.0, params.displacement, params.r0))


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
            b = self._g(replace(p, gamma_l=0.0, d2=decorrelated_d2(p, self.q_sub.min(), self.step_max)), [0.0])[:, 0]
            if np.any(a - b <= 0):
                raise ShearcorrError("the ensemble model has no correlation amplitude (A <= B); check n_l2 and the q range")
            if len(self._ab) > 64:
                self._ab.clear()
            self._ab[key] = (a, b)
        return self._ab[key]

    @property
    def step_max(self) -> float | None:
        """:func:`engine_step_max` of this model's instrument."""
        return engine_step_max(self.beam, self.pixel, self.beam_size)

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
    i (lit before and after, weight :math:`w_i^2 = V_i^2F(qR_i)^2\sqrt{u_iu_i'}`, u the footprint
    intensity),

    .. math:: y_1(\mathbf q) = \frac{|\sum_i w_i^2 e^{-i\mathbf q\cdot\Delta\mathbf r_i}|^2
              - \sum_i w_i^4}{\sqrt{(P^2 - \sum u^2 V^4F^4)(P'^2 - \sum u'^2 V^4F^4)}},
              \quad P = \sum_i u_i V_i^2 F^2(qR_i)

    for the paper's coherent beam and point pixels. With partial coherence (:attr:`shearcorr.beam.Beam.coherence`)
    or a pixel response (``model.pixel``) the pair (i, j) carries the amplitude transfer of the instrument,
    :math:`w_i^2 w_j^2 s_i s_j T(\mathbf r_i - \mathbf r_j) T(\mathbf r_i' - \mathbf r_j')` with :math:`T^2 = M` the
    pair transfer of the analytic engine (pairs farther apart than the coherence length, or than the inverse q-width
    of a pixel, do not interfere), and the normalisation is each frame's speckle variance
    (:mod:`.pairtransfer`); the mean of these maps over configurations is then the engine's y_model for that
    instrument. y_1 fluctuates around y_model with the finite sample of ~n_l2 positions and displacements (e.g. the
    sinc^2 width follows the sample variance of the y_i). The spread of these samples is the
    intrinsic uncertainty of a single pair, added to the speckle noise in the fit covariance.
    Polydispersity weights particles by V^2 ~ R^6 and shrinks the effective number of scatterers
    (:math:`N_{\rm eff} = N e^{-36 R_s^2}` for the log-normal without the form factor), so the spread
    grows steeply with R_s and its distribution has heavy tails (a few large particles dominate).
    ``rs`` may be an array of one R_s per sample (to marginalise an unconstrained R_s over its
    prior, :func:`rs_levels`).

    Configurations as in :func:`shearcorr.forward.beammc.draw_beam_chunk` (the paper's beam: the box
    [-L, L]^2 of :func:`shearcorr.forward.montecarlo.sample_configuration`), the samples of one R_s
    value drawn in chunks from child streams of ``seed`` (child i for the i-th distinct R_s); y_1 at
    the centre of each q bin and two azimuths per bin (:func:`_pair_power`, numba). Returns shape
    (n_samples, n_q, n_phi). The same as :func:`configuration_maps` of :func:`draw_configurations`; to
    select draws by their static profile first, use those with :func:`configuration_profiles`.
    """
    return configuration_maps(model, draw_configurations(model, gamma_l, d2, rs, n_samples, seed), phi0)


@dataclass(frozen=True)
class ConfigurationDraws:
    """Single configurations for :func:`configuration_samples`: (K, N) arrays of the positions before (x, y)
    and after (xa, ya) and the radii (R0), the R_s of each (K,), and the resolved beam (R0)."""

    x: np.ndarray
    y: np.ndarray
    radius: np.ndarray
    xa: np.ndarray
    ya: np.ndarray
    rs: np.ndarray
    beam: object

    def take(self, index) -> "ConfigurationDraws":
        """The draws ``index`` (an index array), in that order."""
        index = np.asarray(index)
        return ConfigurationDraws(self.x[index], self.y[index], self.radius[index], self.xa[index], self.ya[index],
                                  self.rs[index], self.beam)


def draw_configurations(model: BinnedPairModel, gamma_l, d2, rs, n_samples=48, seed=0) -> ConfigurationDraws:
    """The configurations of :func:`configuration_samples` (same arguments): the samples of one R_s value drawn
    in chunks of :func:`shearcorr.forward.beammc.draw_beam_chunk` from child streams of ``seed`` (child i for
    the i-th distinct R_s)."""
    from ..beam import Beam
    from ..forward.beammc import draw_beam_chunk
    from ..forward.montecarlo import CHUNK
    from ..rng import child_seed, seed_sequence

    n = int(n_samples)
    rs_k = np.broadcast_to(np.asarray(rs, dtype=np.float64), (n,))
    beam = (model.beam if model.beam is not None else Beam()).resolved(model.beam_size)
    root = seed_sequence(seed)
    levels, which = np.unique(rs_k, return_inverse=True)
    draws = [None] * n
    for li, level in enumerate(levels):
        idx = np.flatnonzero(which == li)
        p = model.params(gamma_l, d2, level)
        chunks = [draw_beam_chunk(p, beam, child_seed(root, li), j) for j in range(-(-idx.size // CHUNK))]
        arrays = [np.concatenate(a)[:idx.size] for a in zip(*chunks)]
        for m, k in enumerate(idx):
            draws[k] = [a[m] for a in arrays]
    x, y, radius, xa, ya = (np.stack(a) for a in zip(*draws))  # (K, N) each
    return ConfigurationDraws(x, y, radius, xa, ya, np.array(rs_k), beam)


def configuration_profiles(model: BinnedPairModel, draws: ConfigurationDraws) -> np.ndarray:
    r"""Each draw's static intensity profile :math:`\sqrt{P P'}`, P = sum_i u_i V_i^2 F^2(q R_i) over the particles
    before (P' after), at the centre of each q bin: what the ring means of a pair's two frames measure (the
    speckle averages out over a ring), any scale. Shape (K, n_q). Cheap next to :func:`configuration_maps`, so
    many draws can be screened by their profile (:func:`profile_slope`) before their maps are computed."""
    from ..physics import form_factor, sphere_volume

    qc = np.sqrt(model.q_edges[:-1] * model.q_edges[1:])
    mb, ma = draws.beam.intensity(draws.x, draws.y), draws.beam.intensity(draws.xa, draws.ya)
    lit = (mb > 0) | (ma > 0)  # form factors of the lit particles alone (flattened)
    ks, r = np.nonzero(lit)[0], draws.radius[lit]
    v2 = sphere_volume(r) ** 2
    n = draws.x.shape[0]
    out = np.empty((n, qc.size))
    for j, q in enumerate(qc):
        w2 = v2 * form_factor(q * r) ** 2
        out[:, j] = np.sqrt(np.bincount(ks, w2 * mb[lit], n) * np.bincount(ks, w2 * ma[lit], n))
    return out


def configuration_maps(model: BinnedPairModel, draws: ConfigurationDraws, phi0=0.0) -> np.ndarray:
    """y_1 of each draw on the model's bins, as :func:`configuration_samples`; shape (K, n_q, n_phi)."""
    from ..physics import form_factor, sphere_volume

    x, y, radius, xa, ya, beam = draws.x, draws.y, draws.radius, draws.xa, draws.ya, draws.beam
    n = x.shape[0]
    qc = np.sqrt(model.q_edges[:-1] * model.q_edges[1:])  # bin centres in q, 2 points per bin in phi
    dphi = np.diff(model.phi_edges)
    phs = np.stack([model.phi_edges[:-1] + 0.25 * dphi, model.phi_edges[:-1] + 0.75 * dphi], axis=1).ravel() - phi0
    mb, ma = beam.intensity(x, y), beam.intensity(xa, ya)
    lit = (mb > 0) | (ma > 0)  # only these scatter; form factors of the lit particles alone (flattened)
    ks = np.nonzero(lit)[0]
    w2 = sphere_volume(radius[lit])[:, None] ** 2 * form_factor(radius[lit][:, None] * qc) ** 2  # (n_lit, n_q)
    ub, ua = mb[lit][:, None], ma[lit][:, None]
    wab = w2 * np.sqrt(ub * ua)  # = w2 on the paper's window (exactly); 0 unless lit before and after

    def per_sample(v):  # sums over each sample's particles, (K, n_q)
        return np.stack([np.bincount(ks, weights=v[:, j], minlength=n) for j in range(v.shape[1])], axis=1)

    both = (mb[lit] > 0) & (ma[lit] > 0)
    T = amplitude_transfer(beam, model.pixel, model.flow_angle)
    if T is not None:  # partial coherence and / or pixels: the pair matrix of each configuration (pairtransfer)
        y1 = transfer_maps(T, qc, phs, x, y, xa, ya, ks, lit, both, w2, ub, ua, n)
        return y1.reshape(n, model.n_q, model.n_phi, 2).mean(axis=3)
    P, Pa, S4, S4a, S4b = (per_sample(v) for v in (w2 * ub, w2 * ua, (w2 * ub) ** 2, (w2 * ua) ** 2, wab**2))
    off = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(ks[both], minlength=n), out=off[1:])
    power = _pair_power(qc, np.cos(phs), np.sin(phs), (xa - x)[lit][both], (ya - y)[lit][both],
                        np.ascontiguousarray(wab[both].T, dtype=np.float32), off)  # (K, n_q, 2 n_phi)
    y1 = (power - S4b[..., None]) / np.sqrt((P**2 - S4) * (Pa**2 - S4a))[..., None]
    return y1.reshape(n, model.n_q, model.n_phi, 2).mean(axis=3)


def profile_slope(q, intensity) -> np.ndarray:
    r"""Guinier slope of an intensity profile: the least-squares slope of ln I against q^2 (R0^2).

    .. math:: s = \frac{\sum_j (x_j - \bar x)\ln I_j}{\sum_j (x_j - \bar x)^2},\quad x_j = (q_j R_0)^2

    For a dilute dispersion of spheres, I(q) ~ sum_i V_i^2 F^2(q R_i) ~ exp(-q^2 R_g^2 / 3) at small q,
    with R_g^2 = (3/5) sum V_i^2 R_i^2 / sum V_i^2: s ~ -R_g^2/3 measures the intensity-weighted size of the
    particles in the beam -- of *this* configuration, dominated (V^2 ~ R^6) by its largest particles, as the
    configuration term of a pair is (:func:`configuration_samples`). Beyond the Guinier range s is still a
    summary of the profile's fall; data and samples are reduced alike. The scale of I drops out.

    Parameters
    ----------
    q : array (n_q,)
        q R0 of the profile's points.
    intensity : array (..., n_q)
        Profiles (positive; any scale); leading axes are independent profiles.

    Returns
    -------
    ndarray (...)
        The slope per profile (R0^2).
    """
    x = np.asarray(q, float) ** 2
    x = x - x.mean()
    return np.log(np.asarray(intensity, float)) @ x / np.sum(x * x)


def rs_levels(n_samples: int, rs_max: float, n_levels: int = 16, lo: float = 0.0) -> np.ndarray:
    """R_s of each of ``n_samples`` configuration samples marginalising R_s over its prior U(lo, rs_max):
    ``min(n_levels, n_samples)`` stratified levels (mid-points of equal sub-intervals), the samples shared
    out as equally as they divide (level j holds samples floor(k m / n) = j). ``lo = rs_max``: R_s known."""
    n = int(n_samples)
    m = max(1, min(int(n_levels), n))
    return float(lo) + (np.floor(np.arange(n) * m / n) + 0.5) / m * (float(rs_max) - float(lo))


def _pair_power(q, cos_phi, sin_phi, dx, dy, w, off):
    """|sum_i w_i(q) e^{-i q . dr_i}|^2 for the particles ``off[k]:off[k+1]`` of each sample k (``w``:
    float32, shape (n_q, n_particles)); shape (K, n_q, n_phi). Phases reduced to [-1/2, 1/2] turns in
    float64, then :func:`shearcorr.forward.kernels.cis_turn32` and float32 sums (error ~1e-6). The numba
    kernel is compiled on first use (cached on disk), so importing this module does not import numba."""
    global _PAIR_POWER_KERNEL
    if _PAIR_POWER_KERNEL is None:
        _PAIR_POWER_KERNEL = _compile_pair_power()
    out = np.empty((off.size - 1, q.size, cos_phi.size))
    _PAIR_POWER_KERNEL(np.ascontiguousarray(q, dtype=np.float64), np.ascontiguousarray(cos_phi, dtype=np.float64),
                       np.ascontiguousarray(sin_phi, dtype=np.float64), np.ascontiguousarray(dx, dtype=np.float64),
                       np.ascontiguousarray(dy, dtype=np.float64), w, off, out)
    return out


_PAIR_POWER_KERNEL = None


def _compile_pair_power():
    import numba

    from ..forward.kernels import cis_turn32

    @numba.njit(cache=True, nogil=True, error_model="numpy", fastmath=True)
    def kernel(q, cphi, sphi, dx, dy, w, off, out):
        inv2pi = 1.0 / (2.0 * np.pi)
        n_k, n_q, n_p = off.size - 1, q.size, cphi.size
        for k in range(n_k):
            a, b = off[k], off[k + 1]
            t = np.empty(b - a)
            for j in range(n_p):
                for i in range(b - a):  # the phase q . dr in turns per unit q
                    t[i] = (cphi[j] * dx[a + i] + sphi[j] * dy[a + i]) * inv2pi
                for iq in range(n_q):
                    re = np.float32(0.0)
                    im = np.float32(0.0)
                    for i in range(b - a):
                        ph = q[iq] * t[i]
                        c, s = cis_turn32(np.float32(ph - np.rint(ph)))
                        re += w[iq, a + i] * c
                        im += w[iq, a + i] * s
                    out[k, iq, j] = float(re) * float(re) + float(im) * float(im)

    return kernel
