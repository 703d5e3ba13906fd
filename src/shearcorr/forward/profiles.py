r"""Smooth beam footprints (Gaussian, measured): illumination levels and pair transfers on a grid.

Used by :mod:`.beamengine` (theory: ``docs/theory.md`` section 7). A particle at r is illuminated with
intensity u(r) in [0, 1]; the normalisation S = sum u V^2 couples the Laplace variables to u, so the
pair term needs the pair density :math:`f(\mathbf r) = a(\mathbf r) a(\mathbf r + \Delta)` split by
illumination level: with Chebyshev nodes :math:`u_c` in [0, 1] and their Lagrange polynomials
:math:`\ell_c`, :math:`e^{-xu} \approx \sum_c \ell_c(u) e^{-x u_c}` and

.. math:: Q_{cd}(k) = \iint f_c(\mathbf r) f_d(\mathbf r')\,M(\mathbf r - \mathbf r')\,e^{ik(y - y')}\,
          d\mathbf r\,d\mathbf r',\qquad f_c = f\,\ell_c(u)

(1-2 geometry, :meth:`ProfileGrid.transfer_12`); in the 1-3 geometry the shift is the depth-dependent
t and :math:`\Gamma_{(ca),(db)} = \iint f_{ca} f_{db} M` at Chebyshev nodes :math:`t_a`
(:meth:`ProfileGrid.transfer_13`). Cross-correlations by zero-padded FFT on a grid over the
simulation box. The transit
shift is applied exactly (the profile is evaluated at shifted points, not Taylor-expanded).
M multiplies the cross-correlation on the lag grid (any M: pixels at any angle to the flow).
"""

from __future__ import annotations

import numpy as np

from ..beam import FWHM_PER_SIGMA, Beam
from .slits import _lagrange

__all__ = ["ProfileGrid", "level_rule", "chebyshev_levels"]

def level_rule(u: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss rule (nodes, weights summing to 1) for the distribution of the values ``u`` (equal
    weights), by the Stieltjes procedure and the Golub-Welsch eigenproblem: exact for polynomials
    of degree < 2n in u, so the Laplace factors exp(-x u) are integrated to ~(x/4)^(2n)/(2n)!."""
    u = np.asarray(u, dtype=np.float64).ravel()
    w = np.full(u.size, 1.0 / u.size)
    a, b = np.zeros(n), np.zeros(n)
    p_prev, p = np.zeros_like(u), np.ones_like(u)
    nrm_prev = 1.0
    for k in range(n):
        nrm = np.sum(w * p * p)
        a[k] = np.sum(w * u * p * p) / nrm
        if k:
            b[k] = nrm / nrm_prev
        p_prev, p = p, (u - a[k]) * p - (b[k] * p_prev if k else 0.0)
        nrm_prev = nrm
        if nrm < 1e-300:
            n = k
            break
    J = np.diag(a[:n]) + np.diag(np.sqrt(b[1:n]), 1) + np.diag(np.sqrt(b[1:n]), -1)
    nodes, vecs = np.linalg.eigh(J)
    return np.clip(nodes, 0.0, 1.0), vecs[0] ** 2


def chebyshev_levels(n: int) -> np.ndarray:
    """n Chebyshev (first kind) nodes on [0, 1], decreasing."""
    return 0.5 + 0.5 * np.cos(np.pi * (np.arange(n) + 0.5) / n)


class ProfileGrid:
    """The footprint of a smooth beam sampled on an n x n cell-centred grid over the box [-B, B]^2.

    Parameters
    ----------
    beam : Beam (gaussian or measured, resolved)
    B : float
        Box half-width (R0).
    n : int, optional
        Grid points per axis (default: cells of at most sigma/6 of the narrowest Gaussian axis or the
        measured profile's step, at least 128, at most 512).
    """

    def __init__(self, beam: Beam, B: float, n: int | None = None):
        self.beam, self.B = beam, float(B)
        if n is None:
            if beam.profile == "gaussian":
                scale = min(beam.size) / FWHM_PER_SIGMA / 6.0
            else:
                scale = min(beam.profile_step)
            n = int(2 ** np.ceil(np.log2(max(128, 2.0 * B / scale))))
            n = min(n, 512)
        self.n = int(n)
        self.h = 2.0 * self.B / self.n
        self.x = -self.B + self.h * (np.arange(self.n) + 0.5)
        self.X, self.Y = np.meshgrid(self.x, self.x, indexing="xy")  # rows: y, columns: x
        self.u = beam.intensity(self.X, self.Y)
        self.a = np.sqrt(self.u)
        self.ubar = float(self.u.mean())
        N = 2 * self.n
        self.lag = np.fft.fftfreq(N, d=1.0 / N) * self.h
        self._svd = {}

    def levels(self, n: int = 16):
        """Gauss rule for the illumination level u over the box (nodes, weights)."""
        return level_rule(self.u, n)

    def _transfer_grid(self, M, key):
        """M on the lag grid (rows rho_y, columns rho_x), cached per key; None when M = 1."""
        if M is None:
            return None
        if key not in self._svd:
            RX, RY = np.meshgrid(self.lag, self.lag, indexing="xy")
            self._svd[key] = np.asarray(M(RX, RY), dtype=np.float64)
        return self._svd[key]

    @staticmethod
    def _corr_x_marginal(Fc, Fd, Mg):
        r""":math:`\sum_{\rho_x} M(\rho)\,C_{cd}(\rho)` as a function of :math:`\rho_y` (C: the cross-correlation
        :math:`\sum_r f_c(r + \rho) f_d(r)`, by the correlation theorem)."""
        P = Fc * np.conj(Fd)
        n = Mg.shape[1] if Mg is not None else 2 * (P.shape[1] - 1)
        if Mg is None:
            return np.real(np.fft.ifft(P[:, 0]))  # sum over rho_x: the kappa_x = 0 column
        return np.sum(Mg * np.fft.irfft2(P, s=(P.shape[0], n)), axis=1)

    def _fft(self, f):
        return np.fft.rfft2(f, s=(2 * self.n, 2 * self.n))

    def _levels(self, u_nodes):
        n = len(u_nodes)
        if n == 1:
            return np.ones(self.u.shape + (1,))
        return _lagrange(2.0 * self.u.ravel() - 1.0, n).reshape(self.u.shape + (n,))

    def _pair_d(self, fs, Mg) -> np.ndarray:
        """D_ij(rho_y) = h^3 sum_rho_x M C_ij for the functions ``fs``; shape (n, n, N)."""
        Fs = [self._fft(f) for f in fs]
        n = len(Fs)
        D = np.zeros((n, n, 2 * self.n))
        rev = (-np.arange(2 * self.n)) % (2 * self.n)
        for c in range(n):
            for d in range(c, n):
                D[c, d] = self._corr_x_marginal(Fs[c], Fs[d], Mg) * self.h**3
                if d != c:
                    D[d, c] = D[c, d][rev]  # C_dc(rho) = C_cd(-rho), M even
        return D

    def _d_12(self, M, gamma, u_nodes, key):
        r"""D_cd(rho_y; gamma) of the pair densities :math:`f_c = a(\mathbf r)\,a(x + \gamma y, y)\,\ell_c(u)`.

        Gaussian footprints: the shift is a Taylor series, :math:`a(x + \gamma y) = \sum_{m\le 3}
        (\gamma y)^m \partial_x^m a / m!` (analytic derivatives; remainder (gamma y / 2 sigma)^4 / 24, below
        3e-5 relative for gamma L <= 40), so :math:`D = \sum_{m, m'} \gamma^{m + m'} D_{(cm)(dm')}`, tabulated
        once per instrument and levels: a fit or a dataset then costs no FFT per call. Measured
        footprints: evaluated at the shifted points for every gamma.
        """
        Mg = self._transfer_grid(M, key if key is not None else id(M))
        Lc = self._levels(u_nodes)
        nc = Lc.shape[-1]
        if self.beam.profile != "gaussian":
            f = self.a * self.beam.amplitude(self.X + gamma * self.Y, self.Y)
            return self._pair_d([f * Lc[..., c] for c in range(nc)], Mg)
        tkey = ("taylor12", key if key is not None else id(M), tuple(np.round(u_nodes, 12)))
        if tkey not in self._svd:
            sx = self.beam.size[0] / FWHM_PER_SIGMA
            t = self.X / (2.0 * sx * sx)  # d/dx ln a = -x / (2 sigma^2)
            c2 = 1.0 / (2.0 * sx * sx)
            derivs = [np.ones_like(t), -t, t * t - c2, -(t**3) + 3.0 * c2 * t]  # (d^m a / dx^m) / a
            fact = (1.0, 1.0, 2.0, 6.0)
            fs = [self.u * (self.Y**m) * derivs[m] / fact[m] * Lc[..., c] for c in range(nc) for m in range(4)]
            self._svd[tkey] = self._pair_d(fs, Mg).reshape(nc, 4, nc, 4, -1)
        Dt = self._svd[tkey]
        g = gamma ** np.arange(4)
        return np.einsum("cmdnr,m,n->cdr", Dt, g, g)

    def transfer_12(self, M, k, gamma: float, u_nodes, key=None) -> np.ndarray:
        r""":math:`\mathrm{Re}\,Q_{cd}(k)/(4B^2)^2` for :math:`f_c = a(\mathbf r)\,a(x + \gamma y, y)\,\ell_c(u)`;
        shape k.shape + (n_c, n_c), symmetric in (c, d) (only the real part enters the pair term,
        whose other factor is symmetric)."""
        D = self._d_12(M, gamma, u_nodes, key)
        nc = D.shape[0]
        k = np.asarray(k, dtype=np.float64)
        Q = (np.cos(k.ravel()[:, None] * self.lag[None, :]) @ D.reshape(nc * nc, -1).T) * self.h  # real part
        return Q.reshape(k.shape + (nc, nc)) / (4.0 * self.B**2) ** 2

    def transfer_13(self, M, t_nodes, u_nodes, key=None) -> np.ndarray:
        r""":math:`\Gamma_{(ca),(db)}/(4B^2)^2` for :math:`f_{ca} = a(\mathbf r)\,a(x + t_a, y)\,\ell_c(u)`,
        shape (n_c n_t, n_c n_t), index c * n_t + a."""
        L = self._levels(u_nodes)
        Fs = []
        for c in range(L.shape[-1]):
            for t in t_nodes:
                Fs.append(self._fft(self.a * self.beam.amplitude(self.X + t, self.Y) * L[..., c]))
        Mg = self._transfer_grid(M, key if key is not None else id(M))
        m = len(Fs)
        G = np.zeros((m, m))
        for i in range(m):
            for j in range(i, m):
                G[i, j] = G[j, i] = np.sum(self._corr_x_marginal(Fs[i], Fs[j], Mg)) * self.h**4
        return G / (4.0 * self.B**2) ** 2
