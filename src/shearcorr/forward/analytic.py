r"""Semi-analytic ensemble engine: exact ensemble averages E[I], E[I I'] and g without sampling.

The derivation is in ``docs/theory.md``; in short. Condition on the marks of every particle
(radius :math:`R_i`, window memberships :math:`m_i, m'_i`) and average over positions: with
:math:`w_i = V_i F(qR_i)`, :math:`S = \sum m V^2`, :math:`P = \sum m w^2` (primes: after),

.. math::

    E[I\,|\,\text{marks}] = P/S, \qquad
    E[I I'\,|\,\text{marks}] = \frac{P P' + \sum_{i\ne j} m_i m'_i m_j m'_j w_i^2 w_j^2 c_i c_j^*}{S S'}

up to pairings of relative size :math:`N_W/(qL/2)^2` on the axes and :math:`N_W/(qL/2)^4` elsewhere.
The N particles of the box are i.i.d., so with :math:`1/S = \int_0^\infty e^{-tS}dt` and
:math:`1/(SS') = \iint e^{-tS-uS'}dt\,du` every average becomes a Laplace integral of N-fold
products of single-particle expectations. In the variable :math:`\tau = t N E[mV^2]`
(:math:`b = 4/N`, :math:`v = V^2/E[V^2]`):

.. math::

    E[I] &= \int_0^\infty d\tau\, \varphi(\tau, 0)^{N-1}\, E_R[F^2 v\, e^{-b\tau v}] \\
    E[I I'] &= \iint d\tau\, d\upsilon \Big[\tfrac{16}{N}\,\beta\,\varphi^{N-1}
       + \tfrac{16(N-1)}{N}\,(\alpha\alpha' + \kappa^2)\,\varphi^{N-2}\Big]

with :math:`\varphi = E[e^{-b(\tau m + \upsilon m') v}]`,
:math:`\alpha = E_R[F^2 v (p_{10} e^{-b\tau v} + p_{11} e^{-b(\tau+\upsilon)v})]`,
:math:`\alpha'` the same with :math:`p_{01}, \upsilon`,
:math:`\beta = E_R[p_{11} F^4 v^2 e^{-b(\tau+\upsilon)v}]`,
:math:`\kappa = E_R[F^2 v K(\mathbf q; s(R)) e^{-b(\tau+\upsilon)v}]`; :math:`p_{11}` and the
pair phase K (with beam edges) come from :mod:`shearcorr.forward.window`. An empty window gives I = 0
exactly (the numerators vanish with S), which the Laplace form respects.

theta enters only through K; the (tau, upsilon) and radius sums are per q (uniform convention:
K factors out, so the theta map is a broadcast). Stokes-Einstein: :math:`\kappa^2` summed over the
Laplace nodes is a quadratic form :math:`\sum_{jk} Y_j K_j M_{jk} Y_k K_k` in the radius nodes with the
q-independent matrix :math:`M = (E_2 w_{N-2}) E_2^T`. Split :math:`K = B(q_x) e^{-q^2 s^2/2} + C(\mathbf q; s)`
(bulk x edge correction, :mod:`shearcorr.forward.window`); C is smooth in ln s and is evaluated at a few
Chebyshev nodes :math:`\sigma_c` spanning the s of the radius nodes that carry weight, then
interpolated, :math:`C(s_j) \approx \sum_c C(\sigma_c) P_{cj}`. Then :math:`YK_{qtj} = \sum_a
c_{qta} V_{qja}` with :math:`c = [B, C(\sigma_1), \dots]`, :math:`V = [Y e^{-q^2 s^2/2}, Y P_1, \dots]`
and the form is :math:`c^T (V_q^T M V_q) c` -- O(n_q n_theta n_cheb) instead of O(n_q n_theta n_z).

Numerical error: :data:`DEFAULT_ERROR_BOUND` (<= 1e-5 absolute in g), demonstrated by doubling
both resolutions in ``tests/test_analytic.py``; ``error="estimate"`` measures it per point.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict

import numpy as np
import xarray as xr

from ..errors import ShearcorrError
from ..params import QGrid, SystemParams
from ..physics import displacement_std, form_factor
from .quadrature import chebyshev_interpolation, laplace_nodes, log_s_nodes, radius_nodes, radius_range
from ..result import make_result
from .domain import check_analytic
from .window import S_MAX_FRACTION, both_probability, bulk_factor, edge_correction, pair_phase

__all__ = ["ensemble", "ensemble_arrays", "default_resolution", "se_phase_nodes", "clear_caches", "DEFAULT_ERROR_BOUND"]

#: Default exp-sinh nodes per Laplace variable.
DEFAULT_LAPLACE_NODES = 36
#: Default trapezoid step in x = ln(R/r0)/rs is min(0.5, RADIUS_STEP_RS / rs) (resolves the form-factor
#: oscillations of the heavy tail up to q R0 = 5; see docs/theory.md).
RADIUS_STEP_RS = 0.065
#: Stokes-Einstein: Chebyshev nodes in ln s for the pair-phase edge correction, per unit of ln s spanned by
#: the radius nodes of relative weight > SE_WEIGHT_TOL, clipped to [SE_CHEB_MIN, SE_CHEB_MAX] (docs/theory.md).
SE_CHEB_PER_LN_S, SE_CHEB_MIN, SE_CHEB_MAX, SE_WEIGHT_TOL = 5.0, 5, 16, 1e-8
#: Documented bound of the numerical error of g at the default resolution (absolute); see docs/theory.md.
DEFAULT_ERROR_BOUND = 2e-6


class _Recent:
    """The few most recent values of a pure function of exact keys (floats, array bytes), read-only.

    A fit revisits the same pieces of the engine many times: the columns of a forward-difference
    Jacobian change one parameter at a time, the correlation limits (:mod:`.moments`) rerun the engine at
    gamma L = 0 and D2 = 0 or 25, and the scan keeps R_s and N. The pair phase depends only on
    (grid, s, gamma L), the radius sums only on (q, R_s) and the Laplace products only on (R_s, N), so each
    is kept here by its exact inputs and computed again only when one of them changes: the numbers are
    the same as without the cache, bit for bit. At most ``size`` entries and ``max_bytes`` of arrays (the oldest
    go first; a value larger than that is not kept, so a huge grid costs no memory here). Thread-safe.
    """

    def __init__(self, size: int, max_bytes: int = 32 * 2**20):
        self.size, self.max_bytes = int(size), int(max_bytes)
        self._data, self._bytes, self._lock = OrderedDict(), 0, threading.Lock()

    def get(self, key, make):
        with self._lock:
            hit = self._data.get(key)
            if hit is not None:
                self._data.move_to_end(key)
                return hit[0]
        value = make()
        arrays = [a for a in (value if isinstance(value, tuple) else (value,)) if isinstance(a, np.ndarray)]
        nbytes = sum(a.nbytes for a in arrays)
        if nbytes > self.max_bytes:
            return value
        for a in arrays:
            a.flags.writeable = False
        with self._lock:
            if key not in self._data:
                self._data[key] = (value, nbytes)
                self._bytes += nbytes
            while len(self._data) > self.size or self._bytes > self.max_bytes:
                self._bytes -= self._data.popitem(last=False)[1][1]
        return value

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self._bytes = 0


#: Caches of the engine's pieces by their exact inputs (:class:`_Recent`): at most 32 MiB each.
_RADIUS, _LAPLACE, _PHASE, _UNIFORM = _Recent(8), _Recent(6), _Recent(16), _Recent(6)


def clear_caches() -> None:
    """Empty the engine's caches of recent pieces (for timing without them; results never depend on them)."""
    for c in (_RADIUS, _LAPLACE, _PHASE, _UNIFORM):
        c.clear()


def default_resolution(params: SystemParams, q_max: float = 5.0) -> tuple[int, int]:
    """(n_radius, n_laplace) used when ``resolution`` is not given.

    The radius step scales as 1/(rs * max(q R0, 5)) so the form-factor oscillations stay resolved on
    grids beyond the paper's q <= 5.
    """
    if params.rs == 0:
        return 1, DEFAULT_LAPLACE_NODES
    lo, hi = radius_range(params.rs)
    step = min(0.5, RADIUS_STEP_RS / params.rs * 5.0 / max(5.0, q_max * params.r0))
    return int(np.ceil((hi - lo) / step)) + 1, DEFAULT_LAPLACE_NODES


def _tau_max(n: int) -> float:
    # integrands decay like phi^N ~ exp(-tau) for N large; for small N, phi -> 3/4 and the decay
    # is carried by exp(-b tau v): (3/4)^N exp(-4 tau/N) < 1e-15 needs the second branch.
    return max(40.0, 0.25 * n * (35.0 + n * np.log(0.75)) + 40.0)


def se_phase_nodes(params: SystemParams, grid: QGrid, resolution: tuple[int, int] | None = None):
    """(lo, hi, n): the span in ln s and the count of the Chebyshev nodes of the Stokes-Einstein edge correction
    that :func:`ensemble_arrays` uses for ``params`` on ``grid`` (:func:`_se_phase`); None where it uses none
    (uniform displacements, R_s = 0 or D2 = 0).

    Passed back as ``phase_nodes``, they give the same numbers bit for bit. A forward-difference Jacobian
    passes its base point's nodes to the columns that move R_s or D2: the edge correction is then the
    same function evaluated at the same nodes (kept, not recomputed) and only the interpolation to the
    moved radius nodes changes, so the columns carry no difference of two interpolation errors.
    """
    if params.displacement != "stokes-einstein" or params.rs == 0 or params.d2 == 0:
        return None
    q = np.asarray(grid.q)
    nr = default_resolution(params, q[-1])[0] if resolution is None else int(resolution[0])
    _, _, R, _, _, Y = _radius_sums(params, q, nr)
    sc = np.minimum(displacement_std(R, params.d2, params.displacement, params.r0), S_MAX_FRACTION * params.beam_size)
    ls = np.log(np.maximum(sc, 1e-300))
    weight = Y.max(axis=0)
    rel = weight > SE_WEIGHT_TOL * weight.max()  # as quadrature.log_s_nodes
    lo, hi = ls[rel].min(), ls[rel].max()
    n = int(np.clip(np.ceil(SE_CHEB_PER_LN_S * (hi - lo)), SE_CHEB_MIN, SE_CHEB_MAX))
    if hi - lo < 1e-12:
        lo, hi = lo - 1e-6, hi + 1e-6
    return float(lo), float(hi), n


def _mirror_axis(theta) -> int | None:
    """1 (the theta axis of an (n_q, n_theta) map) when the theta grid is symmetric about pi/2, so that q_x is odd
    and q_y even under its reversal (:func:`~shearcorr.forward.window.edge_correction`), else None."""
    theta = np.asarray(theta, dtype=np.float64)
    return 1 if theta.size > 1 and np.allclose(theta + theta[::-1], np.pi, rtol=0, atol=1e-12) else None


def _se_phase(params, q, qx, qy, s, Y, v, lam, n_cheb, nodes=None):
    r"""Stokes-Einstein pair phase in separated form: :math:`K_{qtj} = \sum_a c_{qta}\,V_{qja}/Y_{qj}`.

    :math:`K = B(q_x)\,e^{-q^2 s_j^2/2} + C(\mathbf q; s_j)` with the edge correction C evaluated at
    ``n_cheb`` Chebyshev nodes :math:`\sigma_c` in ln s and interpolated, :math:`C_j \approx \sum_c
    C(\sigma_c) P_{cj}`. Returns coefficients c (nq, nt, 1 + n_cheb) = [B, C(sigma_1), ...] and the
    per-q radius vectors V (nq, nz, 1 + n_cheb) = [Y G, Y P_1, ...]; then
    :math:`\sum_{jk} YK_j M_{jk} YK_k = c^T (V^T M V) c`. ``nodes``: (lo, hi, n) of :func:`se_phase_nodes`
    instead of those of ``params``.
    """
    L = params.beam_size
    sc = np.minimum(s, S_MAX_FRACTION * L)
    ls = np.log(np.maximum(sc, 1e-300))
    # weight of node j in every sum that contains K: max over q of lambda v F^2
    if nodes is None:
        sig, P = log_s_nodes(ls, Y.max(axis=0), SE_CHEB_PER_LN_S, SE_CHEB_MIN, SE_CHEB_MAX, SE_WEIGHT_TOL, n_cheb)
    else:
        sig, P = chebyshev_interpolation(nodes[0], nodes[1], int(nodes[2]), ls)
    def make():
        mirror = _mirror_axis(np.arctan2(qy[0], qx[0]))  # K's kink part is even in q_x
        C = edge_correction(qx[..., None], qy[..., None], np.exp(sig), params.gamma_l, L, mirror_axis=mirror)
        bulk = bulk_factor(qx, params.gamma_l, L, mirror_axis=mirror)  # even in q_x
        return np.concatenate([bulk[..., None], C], axis=-1)

    # the same grid, nodes and gamma L (a Jacobian's n_l2 column, the baseline at every N): the same c
    coef = _PHASE.get(("se", qx.tobytes(), qy.tobytes(), qx.shape, sig.tobytes(), float(params.gamma_l), float(L)),
                      make)
    G = np.exp(-0.5 * (q[:, None] * sc[None, :]) ** 2)  # (nq, nz)
    V = np.concatenate([(Y * G)[..., None], Y[..., None] * P.T[None]], axis=-1)
    return coef, V


def _radius_sums(params: SystemParams, q: np.ndarray, n_radius: int):
    """Radius nodes z, weights lambda, radii R, v = V^2/E[V^2], F^2 (nq, nz) and Y = lambda F^2 v (nq, nz); cached
    by (q, R_s, r0, n_radius) (:class:`_Recent`)."""

    def make():
        z, lam = radius_nodes(params.rs, n_radius)
        R = params.r0 * np.exp(z)
        v6 = np.exp(6.0 * z)
        v = v6 / np.dot(lam, v6)  # V^2 / E[V^2] on the nodes (E[v] = 1 exactly on the rule)
        F2 = form_factor(q[:, None] * R[None, :]) ** 2  # (nq, nz)
        return z, lam, R, v, F2, F2 * (lam * v)  # Y: lambda F^2 v

    return _RADIUS.get((q.tobytes(), float(params.rs), float(params.r0), int(n_radius)), make)


def _laplace_products(rs: float, n_radius: int, N: int, n_laplace: int, v: np.ndarray, lam: np.ndarray):
    r"""The q- and window-independent Laplace factors of :func:`_moments`: nodes tau, weights omega,
    :math:`E_1 = e^{-b v \tau}`, :math:`D_1 = 1 - E_1` (nz, nl), :math:`E_1 w_1` (nz,) with
    :math:`w_1 = \omega\,\varphi(\tau, 0)^{N-1}`, and :math:`E_2 = e^{-b v (\tau + \upsilon)}`, :math:`D_2 = 1 - E_2`
    (nz, nl^2); b = 4/N. They depend on (R_s, n_radius) through v and lambda, and on N: cached by those."""

    def make():
        b = 4.0 / N
        tau, om = laplace_nodes(n_laplace, _tau_max(N))
        bv = b * v
        E1 = np.exp(-bv[:, None] * tau[None, :])  # (nz, nl)
        D1 = -np.expm1(-bv[:, None] * tau[None, :])
        log_phi1 = np.log1p(-0.25 * (lam @ D1))
        w1 = om * np.exp((N - 1) * log_phi1)
        sig = (tau[:, None] + tau[None, :]).ravel()  # (nl^2,)
        E2 = np.exp(-bv[:, None] * sig[None, :])  # (nz, nl^2)
        D2 = -np.expm1(-bv[:, None] * sig[None, :])
        return tau, om, E1, D1, E1 @ w1, E2, D2

    return _LAPLACE.get((float(rs), int(n_radius), int(N), int(n_laplace)), make)


def _uniform_products(rs, n_radius, N, n_laplace, q, lam, Y, F2, v, E1, D1, E2, D2):
    r"""The radius sums of :func:`_moments` when every radius has the same displacement std (uniform
    convention, R_s = 0 or D2 = 0), with :math:`p_{11}`, :math:`p_{10}` factored out: :math:`\lambda^T D_1`,
    :math:`\lambda^T D_2`, :math:`Y E_1` (nq, nl), :math:`Y E_2` (nq, nl^2) and :math:`(Y F^2 v) E_2` (nq, nl^2).
    They depend on (R_s, n_radius, N, n_laplace, q) only -- not on D2 or gamma L: cached by those."""

    def make():
        return lam @ D1, lam @ D2, Y @ E1, Y @ E2, (Y * F2 * v) @ E2

    return _UNIFORM.get((float(rs), int(n_radius), int(N), int(n_laplace), q.tobytes()), make)


def _moments(params: SystemParams, q: np.ndarray, theta: np.ndarray, n_radius: int, n_laplace: int,
             finite_n: bool, edges: bool, n_cheb: int | None = None,
             phase_nodes=None, factored: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """E[I] (n_q,) and E[I I'] (n_q, n_theta); see the module docstring for the formulas.

    ``n_cheb``: Stokes-Einstein with edges only -- None: default Chebyshev count (:func:`_se_phase`);
    0: direct evaluation of K at every (q, theta, radius node) (reference for tests). ``phase_nodes``: see
    :func:`se_phase_nodes`. ``factored``: one displacement std for all radii (uniform) -- True: the radius sums
    without p11 from the cache (:func:`_uniform_products`); False: the general sums (reference for tests).
    """
    N = params.n_particles
    z, lam, R, v, F2, Y = _radius_sums(params, q, n_radius)
    s = displacement_std(R, params.d2, params.displacement, params.r0)
    uniform = params.displacement == "uniform" or params.rs == 0 or params.d2 == 0  # s the same for all R
    if edges:
        p11 = _PHASE.get(("p11", s.tobytes(), float(params.gamma_l), float(params.beam_size)),
                         lambda: both_probability(s, params.gamma_l, params.beam_size))
    else:
        p11 = np.full_like(s, 0.25)
    p10 = 0.25 - p11
    qx = q[:, None] * np.cos(theta)[None, :]
    qy = q[:, None] * np.sin(theta)[None, :]
    separated = not uniform and edges and n_cheb != 0
    if uniform:
        K = _PHASE.get(("uniform", qx.tobytes(), qy.tobytes(), qx.shape, float(s[0]), float(params.gamma_l),
                        float(params.beam_size), bool(edges)),
                       lambda: pair_phase(qx, qy, s[0], params.gamma_l, params.beam_size, edges=edges,
                                          mirror_axis=_mirror_axis(theta)))  # (nq, nt)
    elif separated:
        coef, V = _se_phase(params, q, qx, qy, s, Y, v, lam, n_cheb, phase_nodes)
    else:
        K = pair_phase(qx[..., None], qy[..., None], s, params.gamma_l, params.beam_size, edges=edges)

    if not finite_n:
        EI = Y.sum(axis=1)
        if uniform:
            kap = K * EI[:, None]
        elif separated:
            kap = np.einsum("qta,qa->qt", coef, V.sum(axis=1))
        else:
            kap = np.einsum("qj,qtj->qt", Y, K)
        return EI, EI[:, None] ** 2 + 16.0 * kap**2

    tau, om, E1, D1, Ew1, E2, D2 = _laplace_products(params.rs, n_radius, N, n_laplace, v, lam)
    nl = tau.size
    # --- E[I]: phi(t, 0) = 3/4 + E[e^{-b tau v}]/4
    EI = Y @ Ew1
    W = (om[:, None] * om[None, :]).ravel()
    c_beta, c_pair = 16.0 / N, 16.0 * (N - 1) / N
    if uniform and factored:
        # one s for every radius: p11, p10 are numbers and factor out of every radius sum, so the sums over the
        # radius nodes are those of (R_s, N, q) alone (:func:`_uniform_products`) -- a D2 or gamma L step
        # (a Jacobian's columns, the steps of a fit) costs O(n_q n_laplace^2) instead of O(n_q n_z n_laplace^2)
        P11 = float(p11[0])
        P10 = 0.25 - P11
        lD1, lD2, YE1, YE2, YF2vE2 = _uniform_products(params.rs, n_radius, N, n_laplace, q, lam, Y, F2, v, E1, D1,
                                                       E2, D2)
        a1 = P10 * lD1
        log_phi = np.log1p(-((a1[:, None] + a1[None, :]).ravel() + P11 * lD2))
        wN1 = W * np.exp((N - 1) * log_phi)
        wN2 = W * np.exp((N - 2) * log_phi) if N >= 2 else np.zeros_like(W)
        beta = P11 * (YF2vE2 @ wN1)
        alpha = (P10 * YE1)[:, :, None] + P11 * YE2.reshape(-1, nl, nl)
        aa = np.einsum("qac,qca,ac->q", alpha, alpha, wN2.reshape(nl, nl))
        kk = (YE2**2) @ wN2
        EII = c_beta * beta[:, None] + c_pair * (aa[:, None] + K**2 * kk[:, None])
        return EI, EII
    # --- E[I I']: product grid in (tau, upsilon)
    a1 = (lam * p10) @ D1  # p01 = p10
    one_minus_phi = (a1[:, None] + a1[None, :]).ravel() + (lam * p11) @ D2
    log_phi = np.log1p(-one_minus_phi)
    wN1 = W * np.exp((N - 1) * log_phi)
    wN2 = W * np.exp((N - 2) * log_phi) if N >= 2 else np.zeros_like(W)
    beta = (Y * F2 * (p11 * v)) @ (E2 @ wN1)  # lambda p11 F^4 v^2
    A1 = (Y * p10) @ E1  # (nq, nl)
    A2 = ((Y * p11) @ E2).reshape(-1, nl, nl)
    alpha = A1[:, :, None] + A2  # alpha[q, a, c]; alpha'[q, a, c] = alpha[q, c, a]
    aa = np.einsum("qac,qca,ac->q", alpha, alpha, wN2.reshape(nl, nl))
    M = (E2 * wN2) @ E2.T  # (nz, nz), q-independent
    if separated:
        H = np.einsum("qja,qjb->qab", V, M @ V)  # (nq, m, m)
        kk = np.einsum("qta,qta->qt", coef @ H, coef)
    else:
        if uniform:
            K = K[..., None]  # the same phase at every radius node
        YK = Y[:, None, :] * K  # (nq, nt, nz)
        kk = np.einsum("qtj,qtj->qt", YK @ M, YK)
    EII = c_beta * beta[:, None] + c_pair * (aa[:, None] + kk)
    return EI, EII


def _check(params: SystemParams, grid: QGrid | None) -> QGrid:
    if not isinstance(params, SystemParams):
        raise ShearcorrError(f"params must be a SystemParams, got {type(params).__name__}")
    if grid is None:
        return QGrid()
    if not isinstance(grid, QGrid):
        raise ShearcorrError(f"grid must be a QGrid, got {type(grid).__name__}")
    return grid


def ensemble_arrays(
    params: SystemParams,
    grid: QGrid | None = None,
    *,
    resolution: tuple[int, int] | None = None,
    error: str = "bound",
    finite_n: bool = True,
    edges: bool = True,
    beam=None,
    pixel=None,
    flow_angle: float = 0.0,
    phase_nodes: tuple[float, float, int] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Exact ensemble averages on a polar grid: the fast path without xarray.

    Parameters
    ----------
    params : SystemParams
    grid : QGrid, default the paper's 100 x 101 grid
        Any positive q (1/r0) and any theta (rad from the flow axis).
    resolution : (n_radius, n_laplace), default :func:`default_resolution`
        Trapezoid nodes in ln R (:func:`shearcorr.forward.quadrature.radius_nodes`) and exp-sinh nodes per
        Laplace variable (:func:`shearcorr.forward.quadrature.laplace_nodes`).
    error : {"bound", "estimate"}
        ``"bound"``: g_err = :data:`DEFAULT_ERROR_BOUND` everywhere (validated, docs/theory.md);
        ``"estimate"``: g_err = |g(n) - g(2n)| + 1e-9, computing g once more at double resolution
        (the returned g is the finer one).
    finite_n, edges : bool
        Physics switches for limit tests. ``finite_n=False``: N -> infinity at fixed n_l2
        (S/N deterministic). ``edges=False``: no beam edges (bulk pair phase, p11 = 1/4).
        Together with rs = 0 they give eq. 5 (:func:`shearcorr.physics.g_theory`).
    beam : shearcorr.beam.Beam, optional
        The beam (footprint, coherence, geometry; :mod:`shearcorr.beam`). None or the paper's beam
        (a coherent square of side ``beam_size`` in the 1-2 geometry) uses the exact path of this
        module; any other beam the general engine :mod:`.beamengine` (docs/theory.md section 7).
    pixel : shearcorr.pixels.PixelResponse, optional
        Detector pixel footprint and point spread (the pair model of ``analyze``); needs the general engine.
    flow_angle : float
        Detector azimuth of the flow (rad): orients the pixel response relative to the flow.
    phase_nodes : (lo, hi, n), optional
        Stokes-Einstein, paper beam: the Chebyshev nodes in ln s of the edge correction (:func:`se_phase_nodes`
        of another parameter set: a Jacobian's base point); default those of ``params``.

    Returns
    -------
    I, g, g_err : ndarray, shape (n_q, n_theta), float64
        :math:`E[I]` (eq. 1, isotropic), :math:`g = E[I I'] / E[I]^2` (eq. 4, E I' = E I) and the
        numerical error of g (for the general engine: its documented model-error bound,
        :data:`shearcorr.forward.beamengine.BEAM_ERROR_BOUND`).
    """
    grid = _check(params, grid)
    paper_box = beam is None or beam.is_paper(params.beam_size)
    check_analytic(params, grid, box=paper_box)  # refuse inputs outside the validated domain (issue 14)
    nr, nl = default_resolution(params, grid.q[-1]) if resolution is None else (int(resolution[0]), int(resolution[1]))
    if error not in ("bound", "estimate"):
        raise ShearcorrError(f"error must be 'bound' or 'estimate', got {error!r}")
    q, theta = np.asarray(grid.q), np.asarray(grid.theta)
    moments, bound = _moments, DEFAULT_ERROR_BOUND
    if pixel is not None or (beam is not None and not beam.is_paper(params.beam_size)):
        if not edges:
            raise ShearcorrError("edges=False is a limit test of the paper's beam; it has no meaning with a beam or pixels")
        from .beamengine import BEAM_ERROR_BOUND, beam_moments

        from ..beam import Beam

        bm = Beam() if beam is None else beam
        bound = BEAM_ERROR_BOUND

        def moments(params, q, theta, nr, nl, finite_n, edges):
            return beam_moments(params, q, theta, bm, pixel=pixel, flow_angle=flow_angle, n_radius=nr, n_laplace=nl,
                                finite_n=finite_n)
    if phase_nodes is not None and moments is _moments:
        moments = functools.partial(_moments, phase_nodes=phase_nodes)
    EI, EII = moments(params, q, theta, nr, nl, finite_n, edges)
    g = EII / EI[:, None] ** 2
    if error == "estimate":
        EI2, EII2 = moments(params, q, theta, 2 * nr, 2 * nl, finite_n, edges)
        g2 = EII2 / EI2[:, None] ** 2
        g_err = np.abs(g2 - g) + 1e-9
        g, EI = g2, EI2
    else:
        g_err = np.full(g.shape, bound)
    I = np.broadcast_to(EI[:, None], g.shape).copy()
    return I, g, g_err


def ensemble(
    params: SystemParams,
    grid: QGrid | None = None,
    *,
    resolution: tuple[int, int] | None = None,
    error: str = "bound",
    beam=None,
) -> xr.Dataset:
    """Semi-analytic ensemble result: same layout as the Monte Carlo engine (:mod:`shearcorr.result`).

    ``engine="analytic"``, ``configs=0``, ``seed=None``; ``g_err`` is the numerical error of g
    (see :func:`ensemble_arrays`); ``I_err`` = 0. Quadrature settings are recorded in the attrs, and
    the beam (:meth:`shearcorr.beam.Beam.to_dict`, JSON) when one is given.
    """
    grid = _check(params, grid)
    nr, nl = default_resolution(params, grid.q[-1]) if resolution is None else (int(resolution[0]), int(resolution[1]))
    I, g, g_err = ensemble_arrays(params, grid, resolution=(nr, nl), error=error, beam=beam)
    n_q, n_t = grid.shape
    attrs = {
        "analytic_n_radius": nr if params.rs > 0 else 1,
        "analytic_n_laplace": nl,
        "analytic_error": error,
        "analytic_neglected": "position pairings O(N_W/(qL/2)^2) on the axes, O(N_W/(qL/2)^4) elsewhere",
    }
    if beam is not None:
        import json

        attrs["beam"] = json.dumps(beam.resolved(params.beam_size).to_dict())
    return make_result(
        grid, params, I=I, g=g, g_err=g_err, engine="analytic", configs=0, seed=None,
        g_q_err=g_err.max(axis=1), g_theta_err=g_err.max(axis=0), attrs=attrs,
    )
