r"""The semi-analytic ensemble engine for a general beam (footprint, coherence, geometry, detector).

Generalises :mod:`.analytic` (``docs/theory.md`` section 7). A particle of the box [-B, B]^2 is lit
with intensity u before and u' after the move; the per-configuration normalisation is
:math:`S = \sum_i u_i V_i^2` (the paper's :math:`\sum m V^2` for a uniform footprint). With
:math:`\bar u = E[u]`, :math:`b = 1/(N\bar u)` and the Laplace variables of :mod:`.analytic`,

.. math::

    E[I] &= \int d\tau\,\varphi(\tau, 0)^{N-1} E\big[\tfrac{u}{\bar u} F^2 v\,e^{-bv\tau u}\big] \\
    E[II'] &= \iint d\tau\,d\upsilon\,\Big[\tfrac1N\beta\varphi^{N-1}
              + \tfrac{N-1}{N}\big(\alpha\alpha' + \kappa_2\big)\varphi^{N-2}\Big]

with :math:`\varphi = E[e^{-bv(\tau u + \upsilon u')}]`, :math:`\alpha = E[\tfrac{u}{\bar u}F^2v e^{\dots}]`,
:math:`\beta = E[\tfrac{uu'}{\bar u^2}F^4v^2e^{\dots}]` over *illumination levels* (u, u') and radius
nodes, and the pair term :math:`\kappa_2 = \sum_{ab} Z_{ab}(\mathbf q) H_{ab}(q)`: a quadratic form over
a basis of pair functions (Laplace level :math:`u_a`, radius weights :math:`V_{ja}`),
:math:`H_{ab} = \iint w\,\varphi^{N-2}\rho_a\rho_b`, :math:`\rho_a = \sum_j Y_j V_{ja} e^{-bv_j(\tau+\upsilon)u_a}`,
and :math:`Z_{ab}` the pair transfer of the beam (coherence, pixels) per particle, over :math:`\bar u^2`.

* Slit footprints: levels u, u' in {0, 1} (exact four-state marks), one pair level u = 1; Z from
  :mod:`.slits` (1-2: coherent pair phase with edges plus the transfer of the bulk; 1-3: exact in the
  gap displacement t).
* Smooth footprints: u' = u in the normalisation (the transit changes S by O((Delta/w)^2) ~ 1e-4,
  docs/theory.md), so every scalar depends on sigma = tau + upsilon only and the Laplace integral is
  1-D, :math:`\iint d\tau d\upsilon f(\tau + \upsilon) = \int \sigma f(\sigma) d\sigma`; the pair basis is
  split by illumination level (Chebyshev nodes in u, :mod:`.profiles`).
* Stokes-Einstein: the displacement std depends on R; the pair functions are interpolated between
  Chebyshev nodes in ln s (the radius weights V carry the interpolation matrix), as in :mod:`.analytic`.
"""

from __future__ import annotations

import numpy as np

from ..beam import FWHM_PER_SIGMA, Beam
from ..pixels import transfer
from ..errors import ShearcorrError
from ..physics import displacement_std, form_factor
from .analytic import SE_CHEB_MAX, SE_CHEB_MIN, SE_CHEB_PER_LN_S, SE_WEIGHT_TOL
from .quadrature import laplace_nodes, log_s_nodes, radius_nodes
from . import slits
from .profiles import ProfileGrid, chebyshev_levels

__all__ = ["beam_moments", "max_step", "BEAM_ERROR_BOUND", "ROOM_SIGMAS"]

#: Documented bound of the model error of g for non-paper beams (docs/theory.md section 7).
BEAM_ERROR_BOUND = 5e-4
#: The simulation box holds the footprint, the shear's reach and this many of the largest step std.
ROOM_SIGMAS = 8.0
#: Illumination-level Gauss nodes of smooth footprints.
N_LEVELS = 16
#: Chebyshev pair levels of smooth footprints for rs = 0, 0 < rs <= 0.15 and rs > 0.15 (docs/theory.md 7.2:
#: against 12 levels, at n_l2 = 30 -- the hardest --, 4 levels give 2e-6 at rs = 0.15, 5 give 7e-8; 8 give 2.4e-5 at rs = 0.3).
N_PAIR_LEVELS = ((0.0, 4), (0.15, 5), (np.inf, 8))
#: Displacements are clipped at this fraction of the smallest footprint width in the edge formulas.
S_MAX_FRACTION = 0.05
#: A measured footprint is taken to vary over this many of its samples (nodes in the 1-3 shift).
MEASURED_SCALE_STEPS = 4


#: Cache of the beam's precomputable pieces (bulk transfers, Psi tables, profile grids), keyed by the beam,
#: the pixel response and the flow angle: a fit or a dataset at one instrument computes them once.
_CACHE: dict = {}
_CACHE_SIZE = 24


#: Cache of the Laplace range (:func:`_tau_max_marginal`), separate so that a fit over R_s does not evict the above.
_TAU_CACHE: dict = {}


def _cached(key, make, cache=None, size=_CACHE_SIZE):
    cache = _CACHE if cache is None else cache
    if key not in cache:
        if len(cache) >= size:
            cache.pop(next(iter(cache)))
        cache[key] = make()
    return cache[key]


def _s_nodes(s, Y, n_cheb=None):
    """Chebyshev nodes in ln s over the radius nodes that carry weight (as in :mod:`.analytic`) and the
    interpolation matrix; returns (s nodes, P (n_cheb, n_radius))."""
    sig, P = log_s_nodes(np.log(np.maximum(s, 1e-300)), Y.max(axis=0), SE_CHEB_PER_LN_S, SE_CHEB_MIN, SE_CHEB_MAX,
                         SE_WEIGHT_TOL, n_cheb)
    return np.exp(sig), P


def _tau_max(N, one_minus_phi_at):
    """Upper end of the Laplace range: where phi^(N-2) < 1e-17 (at least 40)."""
    t = np.geomspace(40.0, 1e9, 200)
    ok = (N - 2) * np.log1p(-np.minimum(one_minus_phi_at(t), 1.0 - 1e-15)) < np.log(1e-17)
    return float(t[np.argmax(ok)]) if ok.any() else 1e9


def _tau_max_marginal(N, bv, lam, lu, lw):
    r""":func:`_tau_max` of :math:`1 - \varphi(\tau, 0) = \sum_{u>0} \sum_j \lambda_j W_{uj}(1 - e^{-b v_j \tau u})`,
    with :math:`W_{uj}` the weight of the level *before* u summed over the levels after (``lw`` summed over
    the rows of equal ``lu``). It depends on the beam, the radius nodes and N only (for slits the split
    of p_in into p10 + p11 drops out), so it is cached on these (W rounded to 1e-12 relative): a fit
    computes it once per instrument."""
    us = np.unique(lu[lu > 0])
    W = np.stack([lam * lw[lu == u].sum(axis=0) for u in us]) if us.size else np.zeros((0, bv.size))
    key = ("tau_max", int(N), bv.tobytes(), us.tobytes(), np.round(W, 12).tobytes())

    def make():
        return _tau_max(N, lambda t: np.einsum("uj,ujt->t", W, -np.expm1(
            -bv[None, :, None] * us[:, None, None] * np.asarray(t)[None, None, :])))

    return _cached(key, make, _TAU_CACHE, 64)


class _Beam:
    """Everything the moments need from the beam for one parameter set (see module docstring)."""

    def __init__(self, params, q, theta, beam: Beam, M, s, Y, n_pair_levels=None, mkey=None):
        self.mkey = mkey
        L = params.beam_size
        self.beam = beam = beam.resolved(L)
        self.gamma = params.gamma_l / beam.shear_length(L)
        self.B = B = self._box(beam, L, s)
        self.N = int(round(params.n_l2 * (2.0 * B) ** 2 / L**2))
        if self.N < 2:
            raise ShearcorrError(f"n_l2 = {params.n_l2:g} leaves fewer than 2 particles in the box; increase n_l2")
        qx = q[:, None] * np.cos(theta)[None, :]
        qy = q[:, None] * np.sin(theta)[None, :]
        uniform = params.displacement == "uniform" or params.rs == 0 or params.d2 == 0
        if beam.is_slit:
            self.diag = False
            self._slits(params, q, qx, qy, beam, M, s, Y, uniform)
        else:
            self.diag = True
            self._smooth(params, q, qx, qy, beam, M, s, Y, uniform, n_pair_levels)

    def _box(self, beam, L, s) -> float:
        """Half-width of the box [-B, B]^2 (:meth:`shearcorr.beam.Beam.box_half_width`). The displacements must
        not carry particles across it: slits (the paper's N in [-L, L]^2) refuse them; a smooth footprint's box
        grows to its extent plus the reach plus L/4 (at fixed density its moments do not depend on B: 2e-8 on
        g between margins L/4 and L, Gaussian FWHM L, gamma L 30, D2 2)."""
        hx, hy = beam.half_extent()
        smax = float(np.max(s)) if np.size(s) else 0.0
        if beam.plane == "1-3":
            reach = abs(self.gamma) * (0.5 * beam.gap + abs(beam.zero_velocity)) + ROOM_SIGMAS * smax
        else:
            reach = abs(self.gamma) * hy + ROOM_SIGMAS * smax
        B = beam.box_half_width(L)
        if max(hx, hy) + reach < B:
            return B
        if not beam.is_slit:
            return max(hx, hy) + reach + 0.25 * float(L)
        raise ShearcorrError(f"the displacements (up to {reach:.3g} R0) carry particles across the simulation box "
                             f"of half-width {B:.4g} R0; use a smaller gamma_l or d2")

    # ------------------------------------------------------------------ slits
    def _slits(self, params, q, qx, qy, beam, M, s, Y, uniform):
        Lx, Ly = beam.size
        B = self.B
        s = np.minimum(s, S_MAX_FRACTION * min(Lx, Ly))
        p_in = Lx * Ly / (4.0 * B * B)
        self.ubar = p_in
        g = self.gamma
        if beam.plane == "1-2":
            p11 = slits.rect_pair_phase(0.0, 0.0, s, g, Lx, Ly, B)
        else:
            p11 = np.array([np.real(slits.GapDisplacement(g, beam.gap, beam.zero_velocity, sj).phase(
                0.0, lambda t: np.maximum(Lx - np.abs(t), 0.0))) * slits.gap_z_factor(0.0, sj, Ly) / (4 * B * B)
                for sj in np.atleast_1d(s)])
        p11 = np.broadcast_to(p11, s.shape)
        self.lev_u = np.array([0.0, 1.0, 0.0, 1.0])
        self.lev_up = np.array([0.0, 0.0, 1.0, 1.0])
        self.lev_w = np.stack([1.0 - 2 * p_in + p11, p_in - p11, p_in - p11, p11])  # (4, nz)
        self.u_a = np.array([1.0])
        ub2 = p_in * p_in
        if beam.plane == "1-2":
            kabs = np.abs(qx) * g
            if uniform:
                s0 = float(s[0])
                # K = slits.rect_pair_phase(qx, qy, s0, ...), keeping its bulk factor B0 (even in q_x)
                B0 = slits.rect_bulk(qx * g, g, Lx, Ly, B)
                K = (B0 * np.exp(-0.5 * (qx * qx + qy * qy) * s0 * s0)
                     + slits.rect_edge_correction(qx, qy, s0, g, Lx, Ly, B))
                if M is None:
                    Z = K**2
                else:
                    Qb, ce = self._bulk_transfer(M, kabs, Lx, Ly)
                    G = np.exp(-0.5 * (q[:, None] * s0) ** 2)
                    Z = ce * K**2 + G**2 * (Qb - ce * B0**2)
                self.V, self.Z = None, (Z / ub2)[..., None, None]
            else:
                sig, P = _s_nodes(s, Y)
                C = slits.rect_edge_correction(qx[..., None], qy[..., None], sig, g, Lx, Ly, B)
                B0 = slits.rect_bulk(kabs, g, Lx, Ly, B)
                coef = np.concatenate([B0[..., None], C], axis=-1)  # (nq, nt, 1 + nc)
                G = np.exp(-0.5 * (q[:, None] * s[None, :]) ** 2)  # (nq, nz)
                self.V = np.concatenate([G[..., None], np.broadcast_to(P.T[None], (q.size,) + P.T.shape)], axis=-1)
                Z = coef[..., :, None] * coef[..., None, :]
                if M is not None:
                    Qb, ce = self._bulk_transfer(M, kabs, Lx, Ly)
                    Z = ce * Z
                    Z[..., 0, 0] += Qb - ce * B0**2
                self.Z = Z / ub2
        else:  # 1-3
            if uniform:
                sig, P = np.array([float(s[0])]), None
            else:
                sig, P = _s_nodes(s, Y)
            disps = [slits.GapDisplacement(g, beam.gap, beam.zero_velocity, sc) for sc in sig]
            cache = lambda make: _cached(("psi13", self.mkey, Lx, Ly, B), make)  # noqa: E731
            Qx = slits.gap_transfer_13(M, qx, disps, Lx, Ly, B, psi_cache=cache)
            az = np.stack([slits.gap_z_factor(qy, sc, Ly) for sc in sig], axis=-1)  # (nq, nt, nc)
            self.Z = np.real(Qx) * az[..., :, None] * az[..., None, :] / ub2
            self.V = None if P is None else np.broadcast_to(P.T[None], (q.size,) + P.T.shape)
            self.u_a = np.ones(len(sig))

    def _bulk_transfer(self, M, kabs, Lx, Ly):
        """Pair transfer Q(k) of the s = 0 bulk under M (:class:`.slits.BulkTransfer12`, cached per instrument)
        and the bulk contrast c_e = Q(0) / B(0)^2 that scales the edge terms (docs/theory.md 7.3)."""
        g, B = self.gamma, self.B
        bt = _cached(("bulk12", self.mkey, Lx, Ly, B), lambda: slits.BulkTransfer12(M, Lx, Ly, B))
        return bt(kabs, g), float(bt(np.zeros(1), g)[0] / slits.rect_bulk(0.0, g, Lx, Ly, B) ** 2)

    # ------------------------------------------------------------------ smooth
    def _smooth(self, params, q, qx, qy, beam, M, s, Y, uniform, n_pair_levels):
        grid = _cached(("grid", beam.key(), self.B), lambda: ProfileGrid(beam, self.B))
        self.ubar = grid.ubar
        lu, lw = grid.levels(N_LEVELS)
        self.lev_u, self.lev_up, self.lev_w = lu, lu, lw[:, None] * np.ones((1, s.size))
        nc = n_pair_levels or next(n for rs_max, n in N_PAIR_LEVELS if params.rs <= rs_max)
        u_nodes = chebyshev_levels(nc)
        ub2 = self.ubar**2
        g = self.gamma
        if beam.plane == "1-2":
            kabs = np.abs(qx) * g
            Q = np.real(_tabulate(lambda k: grid.transfer_12(M, k, g, u_nodes, key=self.mkey), kabs, trailing=(nc, nc)))
            if uniform:
                G2 = np.exp(-(q[:, None] * float(s[0])) ** 2)
                self.Z, self.V = G2[..., None, None] * Q / ub2, None
            else:
                G = np.exp(-0.5 * (q[:, None] * s[None, :]) ** 2)
                self.Z, self.V = Q / ub2, np.repeat(G[..., None], nc, axis=-1)
            self.u_a = u_nodes
        else:
            sig, P = (np.array([float(s[0])]), None) if uniform else _s_nodes(s, Y)
            disps = [slits.GapDisplacement(g, beam.gap, beam.zero_velocity, sc) for sc in sig]
            lo = min(d.cuts[0] for d in disps)
            hi = max(d.cuts[-1] for d in disps)
            # the footprint varies on its rms width (Gaussian) or a few of its samples (measured): Chebyshev
            # nodes in the shift t, more when the shift range is a larger fraction of that scale
            scale = min(beam.size) / FWHM_PER_SIGMA if beam.profile == "gaussian" else MEASURED_SCALE_STEPS * min(beam.profile_step)
            n_t = int(np.clip(np.ceil(3 + 6 * (hi - lo) / scale), 3, 10))
            c = np.cos(np.pi * (np.arange(n_t) + 0.5) / n_t)
            t_nodes = 0.5 * (lo + hi) + 0.5 * (hi - lo) * c
            Gam = grid.transfer_13(M, t_nodes, u_nodes, key=self.mkey).reshape(nc, n_t, nc, n_t)
            Pt = np.stack([_lagrange_phase(d, qx, lo, hi, n_t) for d in disps], axis=-2)  # (nq, nt, ns, n_t)
            # Z_{(s c),(s' d)} = sum_ab Gam[c a d b] P[s a] P*[s' b] e^{-qz^2 (s^2 + s'^2)/2}
            Z = np.einsum("cadb,...sa,...rb->...scrd", Gam, Pt, np.conj(Pt))
            ez = np.exp(-0.5 * (qy[..., None] * sig) ** 2)  # (nq, nt, ns)
            Z = np.real(Z) * ez[..., :, None, None, None] * ez[..., None, None, :, None]
            ns = sig.size
            self.Z = Z.reshape(qx.shape + (ns * nc, ns * nc)) / ub2
            self.u_a = np.tile(u_nodes, ns)
            self.V = None if P is None else np.repeat(P.T, nc, axis=1)[None].repeat(q.size, axis=0)


def _lagrange_phase(d, qx, lo, hi, n_t):
    """P_a(q_x) = int p(t) l_a(t) e^{i q_x t} dt for Chebyshev nodes on [lo, hi]; shape qx.shape + (n_t,)."""
    L = slits._lagrange((2.0 * d.t - lo - hi) / (hi - lo), n_t)
    return (np.exp(1j * np.asarray(qx)[..., None] * d.t) * d.w) @ L


def _tabulate(fun, k, trailing=()):
    """fun on the distinct values of k (rounded to 1e-12 relative), broadcast back to k.shape."""
    kr = np.round(np.asarray(k, dtype=np.float64), 12)
    uniq, inv = np.unique(kr, return_inverse=True)
    vals = np.asarray(fun(uniq))
    return vals.reshape((uniq.size,) + tuple(trailing))[inv.reshape(kr.shape)]


def max_step(beam: Beam, beam_size: float) -> float:
    """Largest per-axis non-affine step std (R0; the largest over the radius nodes) that the box of ``beam`` holds
    without shear: (B - the footprint's largest half extent) / ROOM_SIGMAS (``_Beam._box`` at gamma = 0; a smooth
    footprint's box grows beyond it when needed)."""
    b = beam.resolved(beam_size)
    return (b.box_half_width(beam_size) - max(b.half_extent())) / ROOM_SIGMAS


def beam_moments(params, q, theta, beam: Beam, *, pixel=None, flow_angle: float = 0.0, n_radius: int,
                 n_laplace: int, finite_n: bool = True, n_pair_levels: int | None = None):
    """E[I] (n_q,) and E[I I'] (n_q, n_theta) for a general beam (module docstring)."""
    z, lam = radius_nodes(params.rs, n_radius)
    R = params.r0 * np.exp(z)
    v6 = np.exp(6.0 * z)
    v = v6 / np.dot(lam, v6)
    F2 = form_factor(q[:, None] * R[None, :]) ** 2
    Y = F2 * (lam * v)
    s = displacement_std(R, params.d2, params.displacement, params.r0)
    M = transfer(beam.resolved(params.beam_size), pixel, flow_angle)
    mkey = (beam.resolved(params.beam_size).key(), None if pixel is None else (pixel.col, pixel.row, pixel.psf_sigma_px),
            round(float(flow_angle), 12) if pixel is not None else 0.0)
    bm = _Beam(params, q, theta, beam, M, s, Y, n_pair_levels, mkey)
    N, ubar = bm.N, bm.ubar
    lu, lup, lw = bm.lev_u, bm.lev_up, bm.lev_w  # (nl,), (nl,), (nl, nz)
    V = bm.V
    YV = Y[..., None] if V is None else Y[..., None] * V  # (nq, nz, na)
    if not finite_n:
        EI = Y @ np.sum(lw * lu[:, None], axis=0) / ubar
        rho0 = YV.sum(axis=1)  # (nq, na)
        kk = np.einsum("qtab,qa,qb->qt", bm.Z, rho0, rho0)
        return EI, EI[:, None] ** 2 + kk
    b = 1.0 / (N * ubar)
    bv = b * v
    lamw = lam[None, :] * lw  # (nl, nz)

    tmax = _tau_max_marginal(N, bv, lam, lu, lw)
    tau, om = laplace_nodes(n_laplace, tmax)
    wu = lw * (lu / ubar)[:, None]  # (nl, nz) level weights of alpha
    wb = lw * (lu * lup / ubar**2)[:, None]  # of beta
    # E[I]: phi(tau, 0)
    d1 = -np.expm1(-bv[None, :, None] * lu[:, None, None] * tau[None, None, :])  # (nl, nz, nt)
    phi1 = -np.einsum("lj,ljt->t", lamw, d1)
    w1 = om * np.exp((N - 1) * np.log1p(phi1))
    EI = Y @ (np.einsum("lj,ljt->jt", wu, 1.0 - d1) @ w1)
    if bm.diag:  # 1-D in sigma = tau + upsilon; weight sigma
        sig, W = tau, om * tau
        dd = -np.expm1(-bv[None, :, None] * lu[:, None, None] * sig[None, None, :])  # (nl, nz, ns)
        ee = 1.0 - dd
        log_phi = np.log1p(-np.einsum("lj,ljs->s", lamw, dd))
        wN1, wN2 = W * np.exp((N - 1) * log_phi), W * np.exp((N - 2) * log_phi)
        al = Y @ np.einsum("lj,ljs->js", wu, ee)
        be = (Y * F2 * v) @ np.einsum("lj,ljs->js", wb, ee)
        EII = (be @ wN1) / N + (N - 1) / N * ((al * al) @ wN2)
        na = bm.u_a.size
        rho = np.empty((q.size, na, sig.size))
        for a in range(na):
            ea = np.exp(-bv[:, None] * bm.u_a[a] * sig[None, :])  # (nz, ns)
            rho[:, a] = YV[:, :, 0 if V is None else a] @ ea
        H = np.einsum("qas,qbs->qab", rho * wN2, rho)
    else:  # slits: four-state marks, product grid in (tau, upsilon), one pair level u = u' = 1
        p_in = ubar
        p11 = lw[3]  # (nz,)
        p10 = p_in - p11
        E1, D1 = 1.0 - d1[1], d1[1]  # level (1, 0): exp(-b v tau), (nz, nt)
        sig = (tau[:, None] + tau[None, :]).ravel()
        E2 = np.exp(-bv[:, None] * sig[None, :])
        D2 = -np.expm1(-bv[:, None] * sig[None, :])
        a1 = (lam * p10) @ D1
        log_phi = np.log1p(-((a1[:, None] + a1[None, :]).ravel() + (lam * p11) @ D2))
        W = (om[:, None] * om[None, :]).ravel()
        wN1, wN2 = W * np.exp((N - 1) * log_phi), W * np.exp((N - 2) * log_phi)
        beta = (Y * F2 * (p11 * v)) @ (E2 @ wN1) / p_in**2
        nl = tau.size
        alpha = ((Y * p10) @ E1)[:, :, None] / p_in + (((Y * p11) @ E2) / p_in).reshape(-1, nl, nl)
        aa = np.einsum("qac,qca,ac->q", alpha, alpha, wN2.reshape(nl, nl))
        EII = beta / N + (N - 1) / N * aa
        if YV.shape[-1] == 1:
            rho = Y @ E2 if V is None else YV[..., 0] @ E2
            H = ((rho**2) @ wN2)[:, None, None]
        else:
            Mzz = (E2 * wN2) @ E2.T
            H = np.einsum("qja,qjb->qab", YV, np.einsum("jk,qkb->qjb", Mzz, YV))
    kk = np.einsum("qtab,qab->qt", bm.Z, H)
    return EI, EII[:, None] + (N - 1) / N * kk
