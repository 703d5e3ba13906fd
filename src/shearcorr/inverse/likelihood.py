r"""The likelihood of the direct fit: data, model E[g_hat_N](p) and whitened residuals in latent coordinates.

Used by :func:`shearcorr.inverse.fit.fit_g` (the fit) and :func:`shearcorr.inverse.crb.cramer_rao`
(the bound, with the same model, covariance and Jacobian). Latent vector x = (R_s^2, D2, gamma L[, n_l2]);
the derivation is in the docstring of :mod:`shearcorr.inverse.fit` and docs/theory.md section 9.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import least_squares

from ..params import QGrid, SystemParams

__all__ = ["Likelihood", "engine_points", "profile_matrix", "profile_operator", "FIT_BOUNDS", "N_L2_PRIOR", "STEPS", "EXCLUDE_AXES"]

#: Bounds of the fitted parameters (wider than the paper's design ranges).
FIT_BOUNDS = {"rs": (0.0, 0.6), "d2": (0.05, 6.0), "gamma_l": (0.0, 60.0), "n_l2": (25.0, 600.0)}
#: Gaussian prior of n_l2 when it is fitted: mean and std of the paper's U(100, 200).
N_L2_PRIOR = (150.0, 100.0 / np.sqrt(12.0))
#: Finite-difference steps of the latent parameters (absolute for R_s^2; relative for D2, gamma L; n_l2 in
#: units of a quarter particle: 10 particles, since N = round(4 n_l2) is a whole number).
STEPS = (2e-4, 2e-3, 2e-3, 2.5)
#: Exclude the grid points where the engine neglects window-shape pairings (:func:`engine_points`).
EXCLUDE_AXES = True


def profile_operator(shape) -> np.ndarray:
    """R, shape (n_theta + n_q, n_q n_theta): the profile row [g(theta) | g(q)] = R g of a map g (n_q, n_theta)
    flattened row-major (plain means over q and over theta, as the data's profiles)."""
    nq, nt = shape
    R = np.zeros((nt + nq, nq * nt))
    for j in range(nt):
        R[j, j::nt] = 1.0 / nq
    for i in range(nq):
        R[nt + i, i * nt:(i + 1) * nt] = 1.0 / nt
    return R


def profile_matrix(grid: QGrid, observable: str) -> np.ndarray | None:
    """The rows of :func:`profile_operator` for g(theta) or g(q); None for the full map."""
    if observable == "g":
        return None
    R = profile_operator(grid.shape)
    nt = grid.theta.size
    return R[:nt] if observable == "g_theta" else R[nt:]


def engine_points(grid: QGrid, beam_size: float = 800.0) -> np.ndarray:
    r"""Grid points where the analytic engine is exact to < 1e-5: outside the main lobe of the window
    transform around the q_x = 0 and q_y = 0 axes, :math:`|q_x|L/2 \ge \pi` and :math:`|q_y|L/2 \ge \pi`.

    Inside it the engine neglects position pairings of relative size :math:`N_W/(qL/2)^2` (up to ~2e-3
    in g at q R0 = 0.5, docs/theory.md §1); they are present in real data and in Monte Carlo, coherent
    along the axis columns, and would bias gamma L. On the paper's grid this drops the theta = 0, pi/2,
    pi columns. Returns a bool array (n_q, n_theta), True = used.
    """
    half = 0.5 * beam_size * np.asarray(grid.q)[:, None]
    return (np.abs(half * np.cos(grid.theta)[None, :]) >= np.pi) & (np.abs(half * np.sin(grid.theta)[None, :]) >= np.pi)


class Likelihood:
    """Data, model and covariance of one fit (latent vector x; see the module docstring)."""

    def __init__(self, data, grid, observable, configs, g_err, estimator, displacement, n_l2, prior, samples, seed):  # noqa: PLR0913
        self.grid, self.observable, self.estimator, self.displacement = grid, observable, estimator, displacement
        self.P = profile_matrix(grid, observable)
        self.sel = np.flatnonzero(engine_points(grid)) if observable == "g" and EXCLUDE_AXES else None
        self.d = np.asarray(data, dtype=np.float64).ravel()
        if self.sel is not None:
            self.d = self.d[self.sel]
        self.configs, self.g_err, self.samples, self.seed = configs, g_err, samples, seed
        self.n_l2_fixed, self.prior = n_l2, prior
        self.names = ["rs2", "d2", "gamma_l"] + ([] if n_l2 is not None else ["n_l2"])
        lo = [FIT_BOUNDS["rs"][0] ** 2, FIT_BOUNDS["d2"][0], FIT_BOUNDS["gamma_l"][0]]
        hi = [FIT_BOUNDS["rs"][1] ** 2, FIT_BOUNDS["d2"][1], FIT_BOUNDS["gamma_l"][1]]
        if n_l2 is None:
            lo.append(FIT_BOUNDS["n_l2"][0])
            hi.append(FIT_BOUNDS["n_l2"][1])
        self.lo, self.hi = np.array(lo), np.array(hi)
        self.n_eval = 0
        self._limits: dict = {}
        self._stats: dict = {}
        self._phase_nodes = None  # the engine's nodes of a Jacobian's base point, while its columns run
        #: (A, B, E[U^k]) to use at every x instead of their values at x (they enter only the O(1/N) bias;
        #: :mod:`shearcorr.inverse.polish` freezes them for its Jacobian), or None.
        self.frozen_limits = None
        self.whiten = None  # set by use_covariance

    def params(self, x) -> SystemParams:
        n_l2 = self.n_l2_fixed if self.n_l2_fixed is not None else x[3]
        return SystemParams(n_l2=n_l2, rs=np.sqrt(max(x[0], 0.0)), d2=x[1], gamma_l=x[2],
                            displacement=self.displacement)

    def reduce(self, g: np.ndarray) -> np.ndarray:
        if self.P is not None:
            return self.P @ g.ravel()
        return g.ravel() if self.sel is None else g.ravel()[self.sel]

    def _limits_at(self, p: SystemParams, grid):
        """A, B, E[U^k] (:func:`~shearcorr.inverse.noise.ensemble_limits`): the frozen ones, else cached per (N, R_s)."""
        from .noise import ensemble_limits

        if self.frozen_limits is not None:
            return self.frozen_limits
        key = (id(grid), p.n_particles, p.rs)
        if key not in self._limits:
            if len(self._limits) > 32:
                self._limits.clear()
            self._limits[key] = ensemble_limits(p, grid.q)
        return self._limits[key]

    def statistics(self, x, grid=None, phase_nodes=None):
        """(E[I], g, relative covariance) of :func:`~shearcorr.inverse.noise.ensemble_statistics` at latent x on
        ``grid`` (default the data's), kept for the few most recent x: the noise model at x and the residual at x
        (and the sandwich's second noise model) need the same engine call. ``phase_nodes``: the engine's
        (:func:`~shearcorr.forward.analytic.se_phase_nodes`)."""
        from .noise import ensemble_statistics

        grid = grid or self.grid
        p = self.params(x)
        limits = self._limits_at(p, grid)
        key = (id(grid), p.n_l2, p.rs, p.d2, p.gamma_l, id(limits), phase_nodes)
        if key not in self._stats:
            if len(self._stats) >= 8:
                self._stats.pop(next(iter(self._stats)))
            stats = ensemble_statistics(p, grid, limits, phase_nodes)
            for a in (stats[0], stats[1], *stats[2].values()):
                a.flags.writeable = False  # shared by the model and the noise model at x
            self._stats[key] = (stats, limits)  # limits held: their id stays theirs
        return self._stats[key][0]

    def model(self, x, grid=None) -> np.ndarray:
        """E[g_hat_N] at latent x on ``grid`` (default the data's); A, B, E[U^k] cached per (N, R_s)."""
        from .noise import expected_g

        self.n_eval += 1
        grid = grid or self.grid
        nodes = self._phase_nodes if grid is self.grid else None
        if self.configs is None:
            return expected_g(self.params(x), grid, None, estimator=self.estimator, phase_nodes=nodes)
        return expected_g(self.params(x), grid, self.configs, estimator=self.estimator,
                          statistics=self.statistics(x, grid, nodes))

    def use_covariance(self, x, *, full: bool):
        """Whitener of the noise covariance at x (diagonal only unless ``full``); unit weights if noise-free.

        Returns the :class:`~shearcorr.inverse.noise.EnsembleNoise` (its ``mean`` is the model at x), or None."""
        if self.configs is None:
            self.whiten, self.error_scale = (lambda r: r), None
            return None
        nm = self._noise(x, self.samples if full else 0, self.seed)
        self.error_scale = getattr(nm, "error_scale", None)
        self._cov_x, self._cov_samples = np.array(x, dtype=np.float64), self.samples if full else 0
        if self.P is None:
            self.whiten = nm.whitener(self.sel)
            self._whiten_t = self.whiten.transpose
        else:
            Linv = np.linalg.inv(np.linalg.cholesky(self._profile_cov(nm)))
            self.whiten = lambda r: Linv @ r
            self._whiten_t = lambda r: Linv.T @ r
        return nm

    def _noise(self, x, samples: int, seed: int):
        from .noise import ensemble_noise

        nm = ensemble_noise(self.params(x), self.grid, self.configs, estimator=self.estimator, n_samples=samples,
                            seed=seed, statistics=self.statistics(x))
        return nm if self.g_err is None else nm.with_errors(self.g_err)

    def _profile_cov(self, nm) -> np.ndarray:
        nt = self.grid.theta.size
        sl = slice(0, nt) if self.observable == "g_theta" else slice(nt, None)
        return nm.profile_covariance()[1][sl, sl]

    def score_covariance(self, jw: np.ndarray, samples: int | None = None) -> np.ndarray:
        r"""The meat of the sandwich: :math:`\tilde J^T S\,\Sigma_2\,S^T \tilde J`.

        :math:`\tilde J` (n_data, p) is the whitened Jacobian of the data rows, S the whitener of the
        covariance :math:`\Sigma_1` in use (its shared part sampled from K configurations with ``seed``),
        and :math:`\Sigma_2` an independent estimate at the same point (K configurations with ``seed + 1``).
        The fit weights the data by :math:`\Sigma_1^{-1}`; its latent covariance is
        :math:`A^{-1}(\tilde J^T S \Sigma S^T \tilde J)A^{-1}` with :math:`A = \tilde J^T\tilde J` and
        :math:`\Sigma` the true covariance. :math:`\Sigma_2` is unbiased for :math:`\Sigma` and independent of
        :math:`\Sigma_1`, so this meat is unbiased; with :math:`\Sigma_2 = \Sigma_1` it is exactly A, and
        :math:`A^{-1}` is biased low (the weights follow the sampling noise of :math:`\Sigma_1`; ~6 % in the
        variance of R_s at K = 64). ``samples``: the configurations of :math:`\Sigma_2` (default those of
        :math:`\Sigma_1`; any K keeps the meat unbiased, a larger one makes it less noisy). Returns (p, p); A itself
        for a diagonal covariance (nothing sampled).
        """
        if self.configs is None or self._cov_samples < 2:
            return jw.T @ jw
        nm = self._noise(self._cov_x, self._cov_samples if samples is None else int(samples), self.seed + 1)
        y = self._whiten_t(jw)
        if self.P is not None:
            return y.T @ self._profile_cov(nm) @ y
        idx = slice(None) if self.sel is None else self.sel
        uy = nm.factor[idx].T @ y
        return y.T @ (nm.diagonal[idx][:, None] * y) + uy.T @ uy

    def residual(self, x) -> np.ndarray:
        r = self.whiten(self.d - self.reduce(self.model(x)))
        if self.n_l2_fixed is None and self.prior is not None:
            r = np.append(r, (x[3] - self.prior[0]) / self.prior[1])
        self._last = (x.copy(), r)
        return r

    def jacobian(self, x) -> np.ndarray:
        """Forward differences (steps :data:`STEPS`), reusing the residual at x the optimiser just had.

        Stokes-Einstein: every column uses the engine's Chebyshev nodes of x for the edge correction
        (:func:`~shearcorr.forward.analytic.se_phase_nodes`; at x they are its own), so the columns that move
        R_s or D2 reuse its values and differ from x only where the physics does."""
        from ..forward.analytic import se_phase_nodes

        last = getattr(self, "_last", None)
        f0 = last[1] if last is not None and np.array_equal(last[0], x) else self.residual(x)
        J = np.empty((f0.size, x.size))
        self._phase_nodes = se_phase_nodes(self.params(x), self.grid)
        try:
            for j in range(x.size):
                h = STEPS[j] if j in (0, 3) else STEPS[j] * max(abs(x[j]), 0.5)
                if x[j] + h > self.hi[j]:
                    h = -h
                xp = x.copy()
                xp[j] += h
                J[:, j] = (self.residual(xp) - f0) / h
        finally:
            self._phase_nodes = None
        return J

    def solve(self, x0, scale=None, *, coarse: bool = False):
        """least_squares from x0; ``scale``: the expected std of each latent parameter (stops at ~1 % of it)."""
        x0 = np.clip(x0, self.lo, self.hi)
        scale = np.array([0.02, 0.5, 5.0, 30.0])[: x0.size] if scale is None else np.maximum(scale, 1e-9)
        return least_squares(self.residual, x0, jac=self.jacobian, bounds=(self.lo, self.hi), method="trf",
                             x_scale=scale, xtol=1e-3 if coarse else 1e-4, ftol=1e-5, max_nfev=8 if coarse else 40)
