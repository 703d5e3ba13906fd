r"""Brute-force Monte Carlo with a general beam (footprint, coherent modes, 1-2 / 1-3 geometry).

Extends :mod:`.montecarlo` (the paper's beam keeps its own, unchanged path). A configuration:
``N = round(n_l2 (2B)^2 / L^2)`` particles uniform in the box [-B, B]^2
(:meth:`shearcorr.beam.Beam.box_half_width`), log-normal radii and the move

* 1-2: x' = x + gamma y + dx, y' = y + dy, gamma = gamma_l / L (paper eq. 3);
* 1-3: x' = x + gamma (d - z0) + dx, y' = y + dy with the depth d ~ U(-h/2, h/2) along the beam,
  gamma = gamma_l / h (y is the vorticity axis in the detector plane).

Every particle with non-zero illumination scatters, its field weighted by the beam's coherent modes
(:func:`shearcorr.forward.modes.coherent_modes`):

.. math:: I(\mathbf q) = \frac{\sum_k \nu_k\,|\sum_i E_k(\mathbf r_i) V_i F(qR_i) e^{-i\mathbf q\cdot\mathbf r_i}|^2}
          {\sum_i u(\mathbf r_i) V_i^2},\qquad u = I_b(\mathbf r)

(an explicit partially coherent field: no Fourier shortcut of the analytic engine is used). The
estimator, its errors and the reproducibility rules are those of :mod:`.montecarlo` (chunks of
``CHUNK`` configurations, chunk j from child j of the seed).
"""

from __future__ import annotations

import json
import math

import numpy as np

from ..beam import Beam
from .modes import coherent_modes
from ..errors import ShearcorrError
from ..physics import displacement_std, sample_radii, sphere_volume
from . import modekernels
from ..rng import child_seed
from .accumulator import EnsembleAccumulator, _grid_trig
from .montecarlo import CHUNK, Configuration, _root_sequence

__all__ = ["draw_beam_chunk", "beam_configuration", "BeamRenderer", "simulate_beam_mc"]


def draw_beam_chunk(params, beam: Beam, ss, j: int):
    """The CHUNK configurations of chunk ``j`` for ``beam``: (CHUNK, N) arrays x, y, radius, x', y'."""
    beam = beam.resolved(params.beam_size)
    rng = np.random.default_rng(child_seed(ss, j))
    B = beam.box_half_width(params.beam_size)
    n = int(round(params.n_l2 * (2.0 * B) ** 2 / params.beam_size**2))
    x = rng.uniform(-B, B, (CHUNK, n))
    y = rng.uniform(-B, B, (CHUNK, n))
    radius = sample_radii(CHUNK * n, params.rs, params.r0, rng).reshape(CHUNK, n)
    gamma = params.gamma_l / beam.shear_length(params.beam_size)
    shift = gamma * y
    if beam.plane == "1-3":
        depth = rng.uniform(-0.5 * beam.gap, 0.5 * beam.gap, (CHUNK, n))
        shift = gamma * (depth - beam.zero_velocity)
    s = displacement_std(radius, params.d2, params.displacement, params.r0)
    dx = rng.standard_normal((CHUNK, n)) * s
    dy = rng.standard_normal((CHUNK, n)) * s
    return x, y, radius, x + shift + dx, y + dy


def beam_configuration(params, beam: Beam, seed=None, *, index: int = 0) -> Configuration:
    """Configuration ``index`` of :func:`simulate_beam_mc` with the same params, beam and seed."""
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or index < 0:
        raise ShearcorrError(f"index must be a non-negative integer, got {index!r}")
    ss, _ = _root_sequence(seed)
    x, y, radius, xa, ya = draw_beam_chunk(params, beam, ss, int(index) // CHUNK)
    k = int(index) % CHUNK
    return Configuration(x[k].copy(), y[k].copy(), radius[k].copy(), xa[k].copy(), ya[k].copy(),
                         float(params.beam_size), beam=beam.resolved(params.beam_size))


class BeamRenderer:
    """Intensity maps of configurations under a beam on a polar grid (numba, modes summed per map)."""

    def __init__(self, beam: Beam, grid, eps: float = 1e-5):
        self.beam = beam
        self.nu, self.modes = coherent_modes(beam, eps)
        self.q, self.ct, self.st = _grid_trig(grid)

    def maps(self, params, x, y, radius):
        """(m, n_q, n_theta) maps for (m, N) arrays of positions and radii."""
        m = x.shape[0]
        u = self.beam.intensity(x, y)
        lit = u > 0.0
        off = np.zeros(m + 1, dtype=np.int64)
        np.cumsum(lit.sum(axis=1), out=off[1:])
        s = np.where(lit, u * sphere_volume(radius) ** 2, 0.0).sum(axis=1)
        inv_s = np.divide(1.0, s, out=np.zeros_like(s), where=s > 0)
        xs, ys, rs = x[lit], y[lit], radius[lit]
        amps = np.ascontiguousarray(self.modes(xs, ys), dtype=np.float32)
        return modekernels.chunk_intensities_modes(self.q, self.ct, self.st, xs, ys, rs, amps, self.nu, off, inv_s,
                                               params.rs == 0)


def simulate_beam_mc(params, grid, beam: Beam, *, configs: int, seed=None, progress: bool = False):
    """Brute-force ensemble average of I and g(q, theta) under ``beam`` (module docstring); same result
    layout and estimator as :func:`shearcorr.forward.montecarlo.simulate_mc`."""
    from ..result import make_result

    beam = beam.resolved(params.beam_size)
    ss, seed_int = _root_sequence(seed)
    acc = EnsembleAccumulator(grid, configs)
    rend = BeamRenderer(beam, grid)
    from tqdm.auto import tqdm

    with tqdm(total=configs, unit="config", desc="shearcorr mc", disable=not progress, smoothing=0.1) as bar:
        for j in range(math.ceil(configs / CHUNK)):
            m = min(CHUNK, configs - j * CHUNK)
            x, y, radius, xa, ya = draw_beam_chunk(params, beam, ss, j)
            maps = rend.maps(params, np.concatenate([x[:m], xa[:m]]), np.concatenate([y[:m], ya[:m]]),
                             np.concatenate([radius[:m], radius[:m]]))
            acc.add_maps(maps[:m], maps[m:])
            bar.update(m)
    est = acc.estimates()
    attrs = {"chunk_size": CHUNK, "jackknife_blocks": acc.n_blocks, "beam": json.dumps(beam.to_dict()),
             "beam_modes": int(rend.nu.size)}
    if seed_int is None:
        attrs["seed_entropy"] = str(ss.entropy)
    return make_result(grid, params, I=est["I"], I_err=est["I_err"], g=est["g"], g_err=est["g_err"],
                       g_q_err=est["g_q_err"], g_theta_err=est["g_theta_err"], engine="mc", configs=configs,
                       seed=seed_int, attrs=attrs)
