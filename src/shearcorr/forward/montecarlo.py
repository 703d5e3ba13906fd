r"""Brute-force Monte Carlo forward model (paper Sec. II A-B): configurations, intensities, g(q, theta).

One configuration: ``N = round(4 n_l2)`` particles uniform in the box [-L, L]^2 (L = ``beam_size``),
log-normal radii, rearranged by Gamma (eq. 3). Only particles strictly inside the beam window
[-L/2, L/2]^2 scatter: before the move those whose original position is inside, after the move those
whose new position is inside. Their intensity (eq. 1, normalised per configuration):

.. math:: I(\mathbf q) = \frac{\left|\sum_i V_i F(qR_i)\, e^{-i\mathbf q\cdot\mathbf r_i}\right|^2}
          {\sum_i V_i^2},\qquad \mathbf q\cdot\mathbf r = q\,(x\cos\theta + y\sin\theta)

with the sums over the in-window particles; an empty window gives I = 0.

Ensemble estimator over M configurations, with a = I I', b = I, c = I' (I' after the move):

.. math:: g = \frac{\bar a}{\bar b\,\bar c}

the symmetric form of eq. 4 (E[I'] = E[I] exactly here, both windows hold the same statistics).
Its standard error is the delta-method one from streamed sums of a, b, c, their squares and the
products ab, ac (bc = a); g(q) and g(theta) get a grouped jackknife over ``N_BLOCKS`` contiguous
blocks of configurations, since grid points share configurations. No per-configuration arrays
are kept.

Randomness: configurations come in chunks of ``CHUNK`` (fixed); chunk j draws from the child
``SeedSequence(seed).spawn(...)[j]``, always a full chunk, so configuration k depends only on
(params, seed, k) -- not on ``configs``, the thread count or the machine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import xarray as xr

from ..forward import kernels, modekernels
from .accumulator import EnsembleAccumulator, _grid_trig, _in_window
from ..errors import ShearcorrError
from ..params import QGrid, SystemParams
from ..physics import rearrange, sample_radii, sphere_volume
from ..result import make_result
from ..rng import child_seed, seed_sequence

__all__ = [
    "CHUNK",
    "Configuration",
    "sample_configuration",
    "intensity_pair",
    "amplitude_at",
    "simulate_mc",
    "replicas",
]

#: Configurations per random-number chunk (fixed: part of the definition of a seeded result).
CHUNK = 64


@dataclass(frozen=True)
class Configuration:
    """One configuration of the dispersion before and after the rearrangement Gamma (eq. 3).

    All arrays have one entry per particle in the box [-L, L]^2 (float64, units r0).

    Attributes
    ----------
    x, y : ndarray
        Positions before the move.
    radius : ndarray
        Radii R_i.
    x_after, y_after : ndarray
        Positions after the move, Gamma(x, y).
    beam_size : float
        L; the beam window is [-L/2, L/2]^2.
    beam : shearcorr.beam.Beam or None
        The beam when it is not the paper's (then "in the beam" means lit: footprint intensity > 0,
        and :attr:`illumination_before` / :attr:`illumination_after` give the intensity).
    """

    x: np.ndarray
    y: np.ndarray
    radius: np.ndarray
    x_after: np.ndarray
    y_after: np.ndarray
    beam_size: float
    beam: object = None

    @property
    def illumination_before(self) -> np.ndarray:
        """Footprint intensity at each particle before the move (1 inside the paper's window, else 0)."""
        if self.beam is None:
            return _in_window(self.x, self.y, self.beam_size).astype(np.float64)
        return self.beam.intensity(self.x, self.y)

    @property
    def illumination_after(self) -> np.ndarray:
        """Footprint intensity at each particle after the move."""
        if self.beam is None:
            return _in_window(self.x_after, self.y_after, self.beam_size).astype(np.float64)
        return self.beam.intensity(self.x_after, self.y_after)

    @property
    def in_beam_before(self) -> np.ndarray:
        """Boolean mask: particle strictly inside the window (lit) before the move."""
        if self.beam is not None:
            return self.illumination_before > 0
        return _in_window(self.x, self.y, self.beam_size)

    @property
    def in_beam_after(self) -> np.ndarray:
        """Boolean mask: particle strictly inside the window (lit) after the move."""
        if self.beam is not None:
            return self.illumination_after > 0
        return _in_window(self.x_after, self.y_after, self.beam_size)

    @property
    def n_particles(self) -> int:
        """Particles in the box."""
        return int(self.x.size)


def _root_sequence(seed) -> tuple[np.random.SeedSequence, int | None]:
    """SeedSequence of a run and the integer seed to record (None when not an int)."""
    if isinstance(seed, np.random.Generator):
        return np.random.SeedSequence(int(seed.integers(0, 2**63))), None
    ss = seed_sequence(seed)
    return ss, (int(seed) if isinstance(seed, (int, np.integer)) else None)


def _draw_chunk(params: SystemParams, ss: np.random.SeedSequence, j: int):
    """The CHUNK configurations of chunk ``j``: arrays (CHUNK, N) x, y, radius, x', y'."""
    rng = np.random.default_rng(child_seed(ss, j))
    n, big = params.n_particles, params.beam_size
    x = rng.uniform(-big, big, (CHUNK, n))
    y = rng.uniform(-big, big, (CHUNK, n))
    radius = sample_radii(CHUNK * n, params.rs, params.r0, rng).reshape(CHUNK, n)
    xa, ya = rearrange(x, y, radius, params, rng)
    return x, y, radius, xa, ya


def sample_configuration(params: SystemParams, seed=None, *, index: int = 0) -> Configuration:
    """Configuration number ``index`` of :func:`simulate_mc` with the same ``params`` and ``seed``.

    Parameters
    ----------
    params : SystemParams
    seed : int, numpy SeedSequence or None
        Same meaning as in :func:`simulate_mc`.
    index : int, default 0
        Which configuration of the run (0-based).

    Returns
    -------
    Configuration
    """
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or index < 0:
        raise ShearcorrError(f"index must be a non-negative integer, got {index!r}")
    ss, _ = _root_sequence(seed)
    x, y, radius, xa, ya = _draw_chunk(params, ss, int(index) // CHUNK)
    k = int(index) % CHUNK
    return Configuration(x[k].copy(), y[k].copy(), radius[k].copy(), xa[k].copy(), ya[k].copy(),
                         float(params.beam_size))


def _inv_sum_v2(radius: np.ndarray) -> float:
    s = float(np.sum(sphere_volume(radius) ** 2))
    return 1.0 / s if s > 0 else 0.0


def intensity_pair(config: Configuration, grid: QGrid | None = None) -> tuple[np.ndarray, np.ndarray]:
    r"""Intensities of one configuration before and after the move (eq. 1) on the polar grid.

    .. math:: I(q,\theta) = \frac{|\sum_i V_i F(qR_i) e^{-i q (x_i\cos\theta + y_i\sin\theta)}|^2}{\sum_i V_i^2}

    over the particles in the window (before: original positions; after: moved positions).
    An empty window gives I = 0. Same fast kernel as :func:`simulate_mc` (relative error ~1e-6).

    Parameters
    ----------
    config : Configuration
    grid : QGrid, default the paper's 100 x 101 grid (q in 1/r0, theta in rad)

    Returns
    -------
    (I_before, I_after) : two float64 arrays of shape (n_q, n_theta), dimensionless.
    """
    grid = QGrid() if grid is None else grid
    q, ct, st = _grid_trig(grid)
    out = []
    for xs, ys, mask in ((config.x, config.y, config.in_beam_before),
                         (config.x_after, config.y_after, config.in_beam_after)):
        r = np.ascontiguousarray(config.radius[mask], dtype=np.float64)
        out.append(kernels.intensity_map(q, ct, st, np.ascontiguousarray(xs[mask], dtype=np.float64),
                                         np.ascontiguousarray(ys[mask], dtype=np.float64), r, _inv_sum_v2(r)))
    return out[0], out[1]


def amplitude_at(qx, qy, x, y, radius, weights=None) -> np.ndarray:
    r"""Scattering amplitude at arbitrary q-vectors (numerator of eq. 1 before squaring).

    .. math:: A(\mathbf q) = \sum_i a_i V_i F(|\mathbf q| R_i)\, e^{-i (q_x x_i + q_y y_i)},
              \qquad V_i = \tfrac{4\pi}{3} R_i^3

    Parallel over q-points (numba); phases reduced exactly in float64, sin/cos in float32, so
    |A - A_exact| is ~1e-6 of the rms amplitude. For equal radii F is evaluated once per q-point.

    Parameters
    ----------
    qx, qy : array-like, same shape
        Components of q (1/r0); any shape, flattened.
    x, y, radius : array-like of shape (n,)
        Particle positions and radii (r0). No window is applied: pass the particles that scatter.
    weights : array-like of shape (n,), optional
        Real field amplitudes :math:`a_i` of the illumination at the particles (a beam mode,
        :func:`shearcorr.forward.modes.coherent_modes`); default 1 (the paper's uniform window).

    Returns
    -------
    complex128 ndarray of the shape of ``qx`` (units r0^3).
    """
    qx_a = np.asarray(qx, dtype=np.float64)
    qy_a = np.asarray(qy, dtype=np.float64)
    if qx_a.shape != qy_a.shape:
        raise ShearcorrError(f"qx and qy must have the same shape, got {qx_a.shape} and {qy_a.shape}")
    xs, ys, rs = (np.ascontiguousarray(np.ravel(v), dtype=np.float64) for v in (x, y, radius))
    if not (xs.size == ys.size == rs.size):
        raise ShearcorrError(f"x, y and radius must have the same length, got {xs.size}, {ys.size}, {rs.size}")
    if not (np.all(np.isfinite(qx_a)) and np.all(np.isfinite(qy_a))):
        raise ShearcorrError("q-vectors must be finite; mask invalid pixels before calling amplitude_at")
    if not (np.all(np.isfinite(xs)) and np.all(np.isfinite(ys))) or np.any(~(rs > 0)):
        raise ShearcorrError("particle positions must be finite and radii > 0")
    if weights is not None:
        ws = np.ascontiguousarray(np.ravel(weights), dtype=np.float64)
        if ws.size != xs.size or not np.all(np.isfinite(ws)):
            raise ShearcorrError(f"weights must be {xs.size} finite numbers, one per particle")
        out = modekernels.amplitude_kernel_weighted(np.ascontiguousarray(qx_a.ravel()), np.ascontiguousarray(qy_a.ravel()),
                                                xs, ys, rs, ws)
        return out.reshape(qx_a.shape)
    mono = bool(rs.size == 0 or np.all(rs == rs[0]))
    out = kernels.amplitude_kernel(np.ascontiguousarray(qx_a.ravel()), np.ascontiguousarray(qy_a.ravel()),
                                   xs, ys, rs, mono)
    return out.reshape(qx_a.shape)


def simulate_mc(params: SystemParams, grid: QGrid | None = None, *, configs: int, seed=None,
                progress: bool = False, beam=None) -> xr.Dataset:
    r"""Brute-force Monte Carlo ensemble average of I and g(q, theta) (paper eqs. 1, 4).

    .. math:: g(q,\theta) = \frac{\langle I I'\rangle}{\langle I\rangle\langle I'\rangle},\qquad
              g(q) = \langle g\rangle_\theta,\quad g(\theta) = \langle g\rangle_q

    over ``configs`` configurations (see the module docstring for the model and the estimator).

    Parameters
    ----------
    params : SystemParams
    grid : QGrid, default the paper's 100 x 101 grid (q in 1/r0, theta in rad from the flow axis)
    configs : int
        Number of configurations, >= 1 (errors are NaN for 1; g(q), g(theta) errors need >= 2).
    seed : int, numpy SeedSequence, numpy Generator or None
        The result is a function of (params, grid, configs, seed) only -- identical for any thread
        count. A Generator is consumed for one 63-bit entropy value; None draws OS entropy
        (recorded as ``seed = -1`` and ``seed_entropy``).
    progress : bool
        Show a tqdm progress bar (configurations/s, ETA) on stderr.
    beam : shearcorr.beam.Beam, optional
        Any beam but the paper's (None) is simulated by :func:`.beammc.simulate_beam_mc` (footprint,
        coherent modes, 1-2 / 1-3 geometry; the same estimator and reproducibility rules).

    Returns
    -------
    xarray.Dataset
        Layout of :mod:`shearcorr.result` (I, I_err, g, g_err, g_q, g_q_err, g_theta, g_theta_err),
        attrs with ``engine="mc"``, ``configs``, ``seed``, ``chunk_size``, ``jackknife_blocks``.
    """
    if isinstance(configs, bool) or not isinstance(configs, (int, np.integer)):
        raise ShearcorrError(f"configs must be a whole number >= 1, got {configs!r}")
    if configs < 1:
        raise ShearcorrError(f"configs must be >= 1 (number of Monte Carlo configurations), got {configs}")
    if not isinstance(params, SystemParams):
        raise ShearcorrError(f"params must be a SystemParams, got {type(params).__name__}")
    grid = QGrid() if grid is None else grid
    configs = int(configs)
    if beam is not None and not beam.is_paper(params.beam_size):
        from .beammc import simulate_beam_mc

        return simulate_beam_mc(params, grid, beam, configs=configs, seed=seed, progress=progress)
    ss, seed_int = _root_sequence(seed)
    acc = EnsembleAccumulator(grid, configs)
    from tqdm.auto import tqdm

    with tqdm(total=configs, unit="config", desc="shearcorr mc", disable=not progress, smoothing=0.1) as bar:
        for j in range(math.ceil(configs / CHUNK)):
            m = min(CHUNK, configs - j * CHUNK)
            x, y, radius, xa, ya = _draw_chunk(params, ss, j)
            acc.add_chunk(params, x[:m], y[:m], radius[:m], xa[:m], ya[:m])
            bar.update(m)
    est = acc.estimates()
    attrs = {"chunk_size": CHUNK, "jackknife_blocks": acc.n_blocks}
    if seed_int is None:
        attrs["seed_entropy"] = str(ss.entropy)
    return make_result(grid, params, I=est["I"], I_err=est["I_err"], g=est["g"], g_err=est["g_err"],
                       g_q_err=est["g_q_err"], g_theta_err=est["g_theta_err"], engine="mc", configs=configs,
                       seed=seed_int, attrs=attrs)


def replicas(params: SystemParams, grid: QGrid, configs: int, n_replicas: int, seed=0) -> tuple[np.ndarray, np.ndarray]:
    r"""``n_replicas`` independent Monte Carlo estimates of g over ``configs`` configurations each.

    Replica r uses the consecutive chunks ``r * configs / CHUNK`` ... of the run seeded by ``seed`` (so
    the replicas never share a configuration), accumulated as in :func:`simulate_mc`. For the
    statistics of the estimator (:mod:`shearcorr.inverse.noise`: its bias and covariance over many
    replicas) without the per-call overhead of :func:`simulate_mc`.

    Parameters
    ----------
    params : SystemParams
    grid : QGrid
    configs : int
        Configurations per replica, a multiple of :data:`CHUNK` (64).
    n_replicas : int
    seed : int

    Returns
    -------
    (g, g_err) : two float64 arrays of shape (n_replicas, n_q, n_theta)
    """
    if int(configs) < CHUNK or int(configs) % CHUNK:
        raise ShearcorrError(f"configs per replica must be a multiple of {CHUNK}, got {configs}")
    ss, _ = _root_sequence(seed)
    per = int(configs) // CHUNK
    g, g_err = np.empty((int(n_replicas), *grid.shape)), np.empty((int(n_replicas), *grid.shape))
    for r in range(int(n_replicas)):
        acc = EnsembleAccumulator(grid, int(configs))
        for j in range(r * per, (r + 1) * per):
            acc.add_chunk(params, *_draw_chunk(params, ss, j))
        est = acc.estimates()
        g[r], g_err[r] = est["g"], est["g_err"]
    return g, g_err
