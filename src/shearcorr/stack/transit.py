r"""Particles shared by two frames of a sheared, flowing sample: their number and their coherent sum.

Lengths in R0, the beam window :math:`W = [-L/2, L/2]^2` (the paper's coherent square beam), y uniform
over it, a particle at (x, y) moved to :math:`(x + \nu L + \gamma y + \delta_x, y + \delta_y)` between
the frames (:math:`\nu L = v\tau` the transit of the beam centre, :math:`\gamma = \dot\gamma\tau`).
Integrating x over the window, a particle at height y is in W at both times with probability
(:math:`s = y/L \in [-1/2, 1/2]`, non-affine steps aside)

.. math:: w(s) = \max\big(0,\ 1 - |\nu + \gamma s|\big),

the *shared weight*. Its mean is the shared fraction :math:`f = \langle w\rangle_s`
(:func:`overlap_fraction`), and the coherent (pair) term of the shared particles is the Fourier
transform of w over the beam height, with :math:`k = q_x\gamma L` (the phase :math:`q_x\gamma y` of the
shear; the common phase :math:`q_x\nu L` of the transit drops out of the modulus):

.. math:: K(k;\nu,\gamma) = \int_{-1/2}^{1/2} w(s)\,e^{iks}\,ds,\qquad \text{coherent term} \propto |K|^2.

Without transit (:math:`\nu = 0`) the weight :math:`1 - \gamma|s|` is even: its transform is the
ensemble engine's :math:`\mathrm{sinc}\,x\,(1 - \gamma/2) + \tfrac{\gamma}{4}\mathrm{sinc}^2(x/2)`
(x = k/2, :mod:`shearcorr.forward.window`): shearing particles out at both y edges narrows the
sheared height, so the sinc^2 strip is a little wider than that of a uniform height. With transit
(:math:`|\nu| \ge \gamma/2`) the weight is linear, :math:`1 - \nu - \gamma s`: the whole height is
sampled uniformly (the odd tilt adds only :math:`(\gamma/2)^2\,\mathrm{sinc}'^2 x`), so the strip has the
width of a uniform height. Scaling the engine's transit-free term by :math:`(f/f_0)^2` (the amplitude
only) keeps the narrow height of the transit-free case: the strip reads wider by a relative
:math:`\gamma/16` in x (small-x curvature), so the shear rate read high by up to that much at the
longest lag (:func:`transit_shape_correction` gives the difference; measured on the steady study's
stacks, gamma <= 0.05: -0.06 % on the fitted shear rate).

Other footprints (:class:`Footprint`, the geometry's beam; the 1-2 plane). A particle at (x, y) scatters with
the field amplitude :math:`A = \sqrt{I_b}` of the footprint there, so the shared weight of a particle at height y
is :math:`W(y) = \int A(x, y)\,A(x + \nu L + \gamma y, y)\,dx` and the coherent fraction and transform are

.. math:: f_c = \frac{\int W(y)\,dy}{\int\!\!\int I_b},\qquad K(k) = \frac{\int W(y)\,e^{iky/L}\,dy}{\int\!\!\int I_b},

while the baseline (the covariance of the summed intensities, particle by particle) weights a shared particle by
the intensities at both places: :math:`f_b = \int\!\!\int I_b(x, y) I_b(x + \nu L + \gamma y, y) / \int\!\!\int I_b^2`.
For slits A = I_b = 1 inside and both are the window's overlap above (rectangular slits: width s_x along the flow,
height s_y). For a Gaussian of FWHM L (sigma = L/2.355) without shear :math:`f_c = e^{-(\nu L)^2/8\sigma^2}` and
:math:`f_b = e^{-(\nu L)^2/4\sigma^2}`: at a transit of L/2, f_c = 0.84 against 0.5 for the square of side L --
the square's overlap read a Gaussian beam's transit ~3x too slow. Smooth footprints are integrated numerically
on a grid over their extent (:meth:`shearcorr.beam.Beam.half_extent`).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ..errors import ShearcorrError

__all__ = ["overlap_fraction", "shared_transform", "transit_shape_correction", "Footprint", "footprint", "N_Y",
           "N_THETA_CELL", "K_STEP", "MEAN_ABS"]

#: Points of the y average in the overlap fraction.
N_Y = 257
#: Azimuth points per cell of the model's sub-grid in the cell averages of the transit correction.
N_THETA_CELL = 8
#: Step (rad) of the k grid on which |K|^2 is tabulated and interpolated (linearly; |K|^2 varies on
#: the scale 2 pi of its sinc, so the interpolation error is ~1e-5 of the term).
K_STEP = 0.02
#: Grid of the numerical overlaps of smooth footprints: points along the flow and across it.
N_FX, N_FY = 256, 96
#: sqrt(2/pi): mean |step| of a unit Gaussian.
MEAN_ABS = float(np.sqrt(2.0 / np.pi))


def overlap_fraction(shift, gamma, beam_size: float) -> np.ndarray:
    r"""Fraction of the particles in the window [-L/2, L/2]^2 that are still inside after the move
    x -> x + shift + gamma y (uniform density, y uniform over the window):
    :math:`\langle\max(0, 1 - |s + \gamma y|/L)\rangle_y`. Broadcasts over ``shift`` and ``gamma``."""
    L = float(beam_size)
    y = (np.arange(N_Y) + 0.5) / N_Y * L - L / 2
    s = np.asarray(shift, dtype=np.float64)[..., None] + np.asarray(gamma, dtype=np.float64)[..., None] * y
    return np.clip(1.0 - np.abs(s) / L, 0.0, None).mean(axis=-1)


def shared_transform(k, nu: float, gamma: float) -> np.ndarray:
    r"""The transform of the shared weight (module docstring),
    :math:`K(k;\nu,\gamma) = \int_{-1/2}^{1/2} \max(0, 1 - |\nu + \gamma s|)\,e^{iks}\,ds` (complex, the
    shape of ``k``), exactly: w is linear between its kink (s = -nu/gamma) and the points where it
    reaches 0; on a piece [c - h, c + h] with w = a + b (s - c),
    :math:`\int = e^{ikc}\,2h\,[a\,\mathrm{sinc}(kh) + i\,b\,h\,j_1(kh)]`, j_1(z) = (sin z - z cos z)/z^2
    the spherical Bessel function.

    Parameters
    ----------
    k : array
        :math:`q_x\gamma L` (rad): the shear phase across the whole beam height.
    nu : float
        Transit of the beam centre over the lag in units of L (:math:`v\tau/L`).
    gamma : float
        Strain over the lag (:math:`\dot\gamma\tau`).
    """
    from scipy.special import spherical_jn

    k = np.asarray(k, dtype=np.float64)
    nu, gamma = float(nu), float(gamma)
    pts = [-0.5, 0.5]
    if gamma != 0.0:
        for c in (-nu / gamma, (1.0 - nu) / gamma, (-1.0 - nu) / gamma):
            if -0.5 < c < 0.5:
                pts.append(c)
    pts = np.sort(np.array(pts))
    out = np.zeros(k.shape, dtype=np.complex128)
    for lo, hi in zip(pts[:-1], pts[1:]):
        if hi - lo <= 0:
            continue
        c, h = 0.5 * (lo + hi), 0.5 * (hi - lo)
        sign = 1.0 if nu + gamma * c >= 0 else -1.0
        a = 1.0 - sign * (nu + gamma * c)
        if a <= 0:  # the piece where nothing is shared
            continue
        b = -sign * gamma
        out += np.exp(1j * k * c) * (2 * h) * (a * np.sinc(k * h / np.pi) + 1j * b * h * spherical_jn(1, k * h))
    return out


class Footprint:
    r"""Shared weights of a beam footprint under transit and shear (module docstring; the 1-2 plane).

    ``beam`` None is the paper's square of side ``beam_size``. Slits use the closed forms, smooth profiles
    (``gaussian``, ``measured``) a grid of :data:`N_FX` x :data:`N_FY` points over their extent.
    """

    def __init__(self, beam=None, beam_size: float = 800.0):
        self.L = float(beam_size)
        b = None if beam is None else beam.resolved(self.L)
        if b is not None and b.plane != "1-2":
            raise ShearcorrError("the steady stack model covers the 1-2 plane only (beam plane "
                                 f"{b.plane!r}): analyse the frames as pairs (analyze) or in the twotime or echo mode")
        self.beam = b
        if b is None or b.is_slit:
            self.slit = (self.L, self.L) if b is None else (float(b.size[0]), float(b.size[1]))
            return
        self.slit = None
        hx, hy = b.half_extent()
        self.x = ((np.arange(N_FX) + 0.5) / N_FX - 0.5) * 2.0 * hx
        self.y = ((np.arange(N_FY) + 0.5) / N_FY - 0.5) * 2.0 * hy
        self.amp = b.amplitude(self.x[None, :], self.y[:, None])  # (N_FY, N_FX)
        self.norm_c = float((self.amp**2).sum())
        self.norm_b = float((self.amp**4).sum())

    @property
    def reach(self) -> float:
        """Transit (R0) beyond which no particle is shared: the slit's width along the flow, the smooth
        footprint's full extent."""
        return self.slit[0] if self.slit is not None else float(2.0 * self.x[-1] + (self.x[1] - self.x[0]))

    @property
    def effective_area(self) -> float:
        r""":math:`(\int u\,dA)^2/\int u^2\,dA` (R0^2), u the footprint intensity: the area whose particle number
        has the variance of the footprint-weighted number (a slit: its area)."""
        if self.slit is not None:
            return self.slit[0] * self.slit[1]
        cell = (self.x[1] - self.x[0]) * (self.y[1] - self.y[0])
        return cell * self.norm_c**2 / self.norm_b

    @property
    def renewal_length(self) -> float:
        r"""Transit (R0) that renews the beam content once: :math:`\ell = 2\int_0^\infty f_c(u, 0)\,du`
        (the square of side L: L; a Gaussian of FWHM w: :math:`2\sqrt{2\pi}\sigma` = 2.13 w)."""
        if self.slit is not None:
            return self.slit[0]
        u = np.linspace(0.0, self.reach, 257)
        return float(2.0 * np.trapezoid(self.fractions(u, 0.0 * u)[0], u))

    def _moved(self, shift: float, gamma: float) -> np.ndarray:
        return self.beam.amplitude(self.x[None, :] + shift + gamma * self.y[:, None], self.y[:, None])

    def fractions(self, shift, gamma):
        """(f_c, f_b): the coherent and the baseline shared fractions for transits ``shift`` (R0) and strains
        ``gamma`` (broadcast together)."""
        shift, gamma = np.broadcast_arrays(np.asarray(shift, dtype=np.float64), np.asarray(gamma, dtype=np.float64))
        if self.slit is not None:
            sx, sy = self.slit
            y = (np.arange(N_Y) + 0.5) / N_Y * sy - sy / 2
            f = np.clip(1.0 - np.abs(shift[..., None] + gamma[..., None] * y) / sx, 0.0, None).mean(axis=-1)
            return f, f
        fc, fb = np.empty(shift.shape), np.empty(shift.shape)
        for i in np.ndindex(shift.shape):
            m = self._moved(float(shift[i]), float(gamma[i]))
            fc[i] = float((self.amp * m).sum()) / self.norm_c
            fb[i] = float((self.amp**2 * m**2).sum()) / self.norm_b
        return fc, fb

    def transform(self, k, shift: float, gamma: float) -> np.ndarray:
        r"""K(k) for one transit ``shift`` (R0) and strain ``gamma``, :math:`k = q_x\gamma L` (the shear phase across
        the length L): complex, the shape of ``k``, K(0) = f_c."""
        k = np.asarray(k, dtype=np.float64)
        if self.slit is not None:
            sx, sy = self.slit
            return shared_transform(k * sy / self.L, shift / sx, gamma * sy / sx)
        W = (self.amp * self._moved(float(shift), float(gamma))).sum(axis=1) / self.norm_c  # (N_FY,)
        return np.exp(1j * k[..., None] * (self.y / self.L)) @ W

    def step_keep(self, d2):
        """Fraction of the baseline's shared particles kept after non-affine steps of std ``d2`` (R0, per axis):
        slits (1 - d2 sqrt(2/pi)/s_x)(1 - d2 sqrt(2/pi)/s_y); smooth footprints 1 (their loss is second order,
        ~d2^2/(4 sigma^2) per axis: < 1e-3 for d2 < 0.03 sigma)."""
        d2 = np.asarray(d2, dtype=np.float64)
        if self.slit is None:
            return np.ones_like(d2)
        sx, sy = self.slit
        return (1.0 - d2 * MEAN_ABS / sx) * (1.0 - d2 * MEAN_ABS / sy)


@lru_cache(maxsize=16)
def footprint(beam, beam_size: float) -> Footprint:
    """The :class:`Footprint` of a model's ``beam`` and ``beam_size`` (cached)."""
    return Footprint(beam, beam_size)


def transit_shape_correction(model, phi0: float, gamma_l, d2, transit_l, weights) -> np.ndarray:
    r"""What transit adds to the pair model's coherent term beyond its amplitude, bin by bin.

    The steady model's coherent term is :math:`T\,y + \Delta` with :math:`T = (f/f_0)^2` and

    .. math:: \Delta = e^{-q^2D_2^2}\,\big(|K(k;\nu,\gamma)|^2 - T\,|K(k;0,\gamma)|^2\big),
              \quad k = q\cos\theta\,\gamma L,

    so that the sum carries the shared weight of the transit (module docstring) in place of the
    transit-free one; :math:`\Delta = 0` at q = 0 and without transit. Averaged over the model's
    sub-grid cells (:data:`N_THETA_CELL` azimuths per cell, its q sub-points) with the pixel
    ``weights`` (:func:`.templates.pixel_weights`, normalised per bin).

    Parameters
    ----------
    model : BinnedPairModel
        Bins (``q_sub``, ``phi_sub``, ``n_q``, ``sq``, ``n_phi``, ``sp``), ``beam_size`` L (R0) and ``beam``
        (its :class:`Footprint`).
    phi0 : float
        Flow angle (rad, detector azimuth).
    gamma_l, d2, transit_l : arrays (n,)
        gamma L (R0), D2 (R0, per axis) and the transit v tau (R0) of every lag.
    weights : ndarray (n_q, sq, n_phi, sp) or None

    Returns
    -------
    ndarray (n, n_q, n_phi)
    """
    from .templates import _normalised_weights

    L = float(model.beam_size)
    gl = np.atleast_1d(np.asarray(gamma_l, dtype=np.float64))
    dd = np.broadcast_to(np.asarray(d2, dtype=np.float64), gl.shape)
    tr = np.broadcast_to(np.asarray(transit_l, dtype=np.float64), gl.shape)
    w = _normalised_weights(model, weights)  # (n_q, sq, n_phi, sp)
    width = np.pi / (model.n_phi * model.sp)
    off = ((np.arange(N_THETA_CELL) + 0.5) / N_THETA_CELL - 0.5) * width
    theta = (np.asarray(model.phi_sub, dtype=np.float64) - float(phi0))[:, None] + off[None, :]  # (n_phi*sp, n_o)
    q = np.asarray(model.q_sub, dtype=np.float64)
    qx = q[:, None, None] * np.cos(theta)[None]  # (n_q*sq, n_phi*sp, n_o)
    out = np.zeros((gl.size, model.n_q, model.n_phi))
    fp = footprint(getattr(model, "beam", None), L)
    f = fp.fractions(tr, gl / L)[0]
    f0 = fp.fractions(0.0 * tr, gl / L)[0]
    for i in range(gl.size):
        if tr[i] == 0.0 or gl[i] == 0.0:
            continue
        g = gl[i] / L
        k = np.abs(qx) * gl[i]
        T = (f[i] / f0[i]) ** 2
        # |K|^2 is even in k (W is real): tabulated on [0, k_max] and interpolated
        kk = np.arange(0.0, float(k.max()) + 2 * K_STEP, K_STEP)
        diff = np.abs(fp.transform(kk, tr[i], g)) ** 2 - T * np.abs(fp.transform(kk, 0.0, g)) ** 2
        cell = np.interp(k, kk, diff).mean(axis=-1) * np.exp(-(q * dd[i]) ** 2)[:, None]  # (n_q*sq, n_phi*sp)
        out[i] = np.einsum("qipj,qipj->qp", cell.reshape(model.n_q, model.sq, model.n_phi, model.sp), w)
    return out
