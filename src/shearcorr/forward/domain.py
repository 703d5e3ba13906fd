r"""Where the forward engines may be used: the analytic engine's validated domain, and memory.

The semi-analytic engine (:mod:`.analytic`, docs/theory.md) rests on assumptions that hold in the
paper's box and fail outside it; there it returns numbers that look like answers (g = 599 at
gamma_l = 1e5, where brute force gives 1.01). :func:`check_analytic` refuses, with one line naming the
limit, every input outside the domain validated against brute-force Monte Carlo
(docs/theory.md section 8, ``benchmarks/bench_domain.py``):

* **window pairings** (section 1): the neglected terms are :math:`O(n_{l2}/(q L/2)^2)` on the axes;
  :math:`n_{l2}/(q_{\min} L/2)^2 \le` :data:`WINDOW_EPS_MAX`;
* **shear inside the box**: the box :math:`[-L, L]^2` holds the window's pre-image only for
  :math:`\gamma = \gamma L / L < 1`, and the edge terms are exact to first order in gamma;
  :math:`\gamma \le` :data:`GAMMA_MAX`;
* **steps inside the box**: the box margin :math:`(L/2)(1 - \gamma)` is at least
  :data:`BOX_SIGMAS` displacement stds (the largest s of the radii that carry weight);
* **polydispersity**: :math:`R_s \le` :data:`RS_MAX` (heavy :math:`V^2 \propto R^6` tails: beyond it the
  particles that carry the intensity are no longer small against the beam and the radius quadrature
  is not validated);
* **particles in the beam**: :data:`N_L2_RANGE`; **q**: :math:`q_{\max} R_0 \le` :data:`Q_MAX_R0`.

Memory: :func:`analytic_bytes` and :func:`mc_bytes` estimate the peak working memory of one parameter
set, and :func:`check_memory` refuses (with the numbers) what does not fit
(:func:`shearcorr.memory.require`) before anything is allocated.
"""

from __future__ import annotations

import math

from ..errors import ShearcorrError
from ..memory import FLOAT, require
from ..params import QGrid, SystemParams

__all__ = ["WINDOW_EPS_MAX", "GAMMA_MAX", "BOX_SIGMAS", "RS_MAX", "N_L2_RANGE", "Q_MAX_R0", "check_analytic",
           "analytic_q_min", "max_d2", "largest_step", "check_box", "analytic_bytes", "mc_bytes", "check_memory"]

#: Largest n_l2 / (q_min L / 2)^2 (relative size of the neglected window pairings on the axes).
WINDOW_EPS_MAX = 0.25
#: Largest shear strain gamma = gamma_l / beam_size.
GAMMA_MAX = 0.9
#: The box margin (L/2)(1 - gamma) must hold this many displacement stds.
BOX_SIGMAS = 6.0
#: Largest polydispersity R_s.
RS_MAX = 0.5
#: Validated range of the mean number of particles in the beam.
N_L2_RANGE = (10.0, 3000.0)
#: Largest q R0.
Q_MAX_R0 = 60.0
_DOC = "docs/theory.md section 8"


def largest_step(params: SystemParams) -> float:
    """The largest per-axis displacement std s of the radii that carry weight (R0 units): d2 for
    "uniform", d2 sqrt(r0 / R) at the 3-sigma small radius R = r0 e^{-3 rs} for "stokes-einstein"."""
    if params.displacement == "stokes-einstein":
        return params.d2 * math.exp(1.5 * params.rs)
    return params.d2


def max_d2(params: SystemParams) -> float:
    """Largest d2 (R0) of the validated domain at ``params``' gamma and rs: BOX_SIGMAS displacement
    stds inside the box margin (L/2)(1 - gamma)."""
    margin = 0.5 * params.beam_size * max(1.0 - params.gamma_l / params.beam_size, 0.0)
    scale = math.exp(1.5 * params.rs) if params.displacement == "stokes-einstein" else 1.0
    return margin / (BOX_SIGMAS * scale)


def analytic_q_min(params: SystemParams) -> float:
    """Smallest q (1/r0) of the validated domain for this system: n_l2 / (q L/2)^2 <= WINDOW_EPS_MAX."""
    return 2.0 * math.sqrt(params.n_l2 / WINDOW_EPS_MAX) / params.beam_size


def check_analytic(params: SystemParams, grid: QGrid, *, box: bool = True) -> None:
    """Refuse (one-line ShearcorrError naming the limit) a system or grid outside the analytic engine's
    validated domain (module docstring), then an input whose working memory does not fit.

    Parameters
    ----------
    params : SystemParams
    grid : QGrid
    box : bool
        Check the paper's box limits (gamma, non-affine steps). False for other beams: their shear
        length and box differ (1-3: gamma = gamma_l / gap), and the general engine checks its own box
        (:mod:`shearcorr.forward.beamengine`).
    """
    L = params.beam_size
    where = f"outside the analytic engine's validated domain ({_DOC})"
    lo, hi = N_L2_RANGE
    if not lo <= params.n_l2 <= hi:
        raise ShearcorrError(f"n_l2 = {params.n_l2:g} is {where}: {lo:g} <= n_l2 <= {hi:g}; use a value in that range")
    if params.rs > RS_MAX:
        raise ShearcorrError(f"rs = {params.rs:g} is {where}: rs <= {RS_MAX:g} (heavy-tailed radii); use a smaller rs")
    if box and params.gamma_l / L > GAMMA_MAX:
        raise ShearcorrError(f"gamma_l = {params.gamma_l:g} is {where}: gamma_l <= {GAMMA_MAX:g} x beam_size = "
                             f"{GAMMA_MAX * L:g} R0 (the sheared window must stay inside the simulated box)")
    if box:
        check_box(params)
    q = grid.q
    q_min = analytic_q_min(params)
    if q[0] < q_min:
        eps = params.n_l2 / (q[0] * L / 2) ** 2
        raise ShearcorrError(f"q_min = {q[0]:.3g}/R0 is {where}: with n_l2 = {params.n_l2:g} and beam_size = {L:g} R0 "
                             f"the neglected window terms n_l2/(q L/2)^2 = {eps:.2g} exceed {WINDOW_EPS_MAX:g}; "
                             f"use q >= {q_min:.3g}/R0 or a larger beam")
    if q[-1] * params.r0 > Q_MAX_R0:
        raise ShearcorrError(f"q_max = {q[-1]:.3g}/R0 is {where}: q R0 <= {Q_MAX_R0:g}; use a smaller q range")
    check_memory(analytic_bytes(params, grid), "the analytic engine", grid)


def check_box(params: SystemParams) -> None:
    """Refuse a system whose sheared, displaced window leaves the simulated box [-L, L]^2 (every engine
    and the renderer simulate that box): the margin (L/2)(1 - gamma) must hold BOX_SIGMAS steps."""
    L = params.beam_size
    s = largest_step(params)
    margin = 0.5 * L * (1.0 - params.gamma_l / L)
    if BOX_SIGMAS * s > margin:
        raise ShearcorrError(f"gamma_l = {params.gamma_l:g} and d2 = {params.d2:g} move particles out of the simulated box "
                             f"[-L, L]^2 (L = beam_size = {L:g} R0): {BOX_SIGMAS:g} displacement stds ({BOX_SIGMAS * s:.3g} R0) "
                             f"must fit in the margin (L/2)(1 - gamma_l/L) = {margin:.3g} R0 ({_DOC}); use smaller values or a larger beam")


def analytic_bytes(params: SystemParams, grid: QGrid) -> float:
    """Peak working memory (bytes) of one analytic set: (q, theta) maps of the pair phase and the
    result, per-q Laplace products (n_laplace^2) and radius nodes (see :func:`.analytic._moments`)."""
    from .analytic import DEFAULT_LAPLACE_NODES, SE_CHEB_MAX, default_resolution

    nq, nt = grid.shape
    nz, nl = default_resolution(params, float(grid.q[-1]))
    per_point = 16 + 4 * (1 + SE_CHEB_MAX)  # pair phase, its edge terms, moments, g, I, g_err, result copies
    nl2 = nl * nl if nl else DEFAULT_LAPLACE_NODES**2
    return FLOAT * (per_point * nq * nt + 6.0 * nq * nl2 + 8.0 * nq * nz + 3.0 * nz * nl2)


def mc_bytes(params: SystemParams, grid: QGrid) -> float:
    """Peak working memory (bytes) of the Monte Carlo engine: moment sums and jackknife blocks
    (~104 per grid point), the intensity maps of one chunk (128 per point), particle arrays."""
    from .accumulator import N_BLOCKS
    from .montecarlo import CHUNK

    nq, nt = grid.shape
    per_point = 8 + 3 * N_BLOCKS + 2 * CHUNK + 16
    return FLOAT * (per_point * nq * nt + 12.0 * CHUNK * params.n_particles)


def check_memory(nbytes: float, engine: str, grid: QGrid) -> None:
    """Refuse a forward computation on ``grid`` that needs more than the available memory."""
    nq, nt = grid.shape
    require(nbytes, f"{engine} on a {nq} x {nt} grid", "use fewer q or theta values (--n-q, --n-theta)")
