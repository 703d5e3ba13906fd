r"""GPR inversions of one pair: a GPR trained on the data's own bins, and a ``shearcorr train`` model.

Geometry-specific GPR (:func:`gpr_predict`): a training set of y_model on the data's own
(q, theta-from-flow) bins, drawn by a scrambled Sobol design over the parameter box, cached on disk
(key: hash of bins, usable-bin mask, box, n_train, model constants, shearcorr version) together with
the SVD basis and the fitted state of one :class:`shearcorr.inverse.gpr.PaperGPR` per target. The
prediction std adds the GPR posterior std and the spread of predictions over noise draws of the data.

A trained inversion model (:func:`model_predict`): the frames are binned onto the model's own (q, theta)
grid, reduced to the profile [g(theta) | g(q)] and passed to the model.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._version import __version__
from ..errors import ShearcorrError
from ..files import JSONRecord, atomic_file
from ..params import TARGETS
from .correlation import correlation_map
from .inference import MIN_BINS
from .results import Estimate

__all__ = ["gpr_predict", "GPRPrediction", "model_predict", "ModelPrediction", "default_cache_dir", "PAIR_ARGS",
           "GPR_BOX"]

#: The pair model's physical parameters in the order of :meth:`BinnedPairModel.y`'s arguments; also the
#: columns of the GPR's parameter box and Sobol design (results are keyed by name, in ``TARGETS`` order).
PAIR_ARGS = ("gamma_l", "d2", "rs")
#: Default parameter box of the geometry-specific GPR, in ``PAIR_ARGS`` order: the paper's ranges.
GPR_BOX = ((5.0, 30.0), (0.5, 3.0), (0.0, 0.3))
#: LML grid points per axis of each geometry-specific GPR.
GPR_GRID = 12
#: Added to the feature scales so a constant feature does not divide by zero.
SCALE_FLOOR = 1e-12


@dataclass(frozen=True)
class GPRPrediction(JSONRecord):
    """Result of :func:`gpr_predict`: (value, std) per target, whether the trained state came from the cache."""

    rs: Estimate
    d2: Estimate
    gamma_l: Estimate
    cached: bool
    n_train: int
    box: list

    def to_dict(self) -> dict:
        return {"cached": self.cached, "n_train": self.n_train, "box": self.box,
                **{t: list(getattr(self, t)) for t in TARGETS}}


@dataclass(frozen=True)
class ModelPrediction(JSONRecord):
    """Result of :func:`model_predict`: (value, std) per target of a ``shearcorr train`` model file."""

    values: dict
    path: str

    def to_dict(self) -> dict:
        return {**{t: list(v) for t, v in self.values.items()}, "path": self.path}


def default_cache_dir() -> Path:
    """``$SHEARCORR_CACHE`` or ``$XDG_CACHE_HOME/shearcorr`` or ``~/.cache/shearcorr``."""
    env = os.environ.get("SHEARCORR_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "shearcorr"


def _sobol(n, box, seed):
    from scipy.stats import qmc

    u = qmc.Sobol(len(box), scramble=True, seed=seed).random(n)
    lo, hi = np.array([b[0] for b in box]), np.array([b[1] for b in box])
    return lo + u * (hi - lo)


def _cache_path(model, ok, box, n_train, k, cache_dir, seed):
    key_src = json.dumps({"q": model.q_edges.round(10).tolist(), "phi": model.phi_edges.round(10).tolist(),
                          "ok": np.flatnonzero(ok).tolist(), "box": box, "n": n_train, "k": k, "n_l2": model.n_l2,
                          "disp": model.displacement, "L": model.beam_size, "sub": [model.sq, model.sp, model.n_fine],
                          "seed": seed, "version": __version__, "instrument": getattr(model, "instrument_key", None)},
                         sort_keys=True)
    key = hashlib.sha256(key_src.encode()).hexdigest()[:24]
    return Path(cache_dir) / f"pairmodel-{key}.npz" if cache_dir is not None else None


def _fitted_state(model, ok, box, n_train, k, cache_dir, seed=0):
    """Training set, SVD basis and the three fitted GPR states for these bins; cached on disk.

    Everything depends only on the geometry (bins, usable-bin mask) and the model constants, not on
    the data, so a second analysis with the same geometry only projects the data and predicts.
    """
    from ..inverse.gpr import PaperGPR

    path = _cache_path(model, ok, box, n_train, k, cache_dir, seed)
    names = ["theta", "mu", "V", "scale"] + [f"{t}_{a}" for t in TARGETS for a in ("X", "alpha", "hyp")]
    if path is not None and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                st = {n: z[n] for n in names}
            gps = {t: PaperGPR.from_state(st[f"{t}_X"], st[f"{t}_alpha"], *st[f"{t}_hyp"]) for t in TARGETS}
            return st, gps, True
        except (OSError, ValueError, KeyError):
            pass  # a damaged or older cache entry is rebuilt
    theta = _sobol(n_train, box, seed)
    Y = np.stack([model.y(t[0], t[1], t[2], 0.0)[ok] for t in theta])
    mu = Y.mean(axis=0)
    _, _, Vt = np.linalg.svd(Y - mu, full_matrices=False)
    V = Vt[: min(k, Vt.shape[0])]
    X = (Y - mu) @ V.T
    scale = X.std(axis=0) + SCALE_FLOOR
    X = X / scale
    st = {"theta": theta, "mu": mu, "V": V, "scale": scale}
    gps = {}
    for t in TARGETS:
        gp = PaperGPR(optimizer="grid", n_grid=GPR_GRID).fit(X, theta[:, PAIR_ARGS.index(t)])
        gps[t] = gp
        st[f"{t}_X"], st[f"{t}_alpha"] = gp.X_train_, gp.alpha_
        st[f"{t}_hyp"] = np.array([gp.l_, gp.sigma_, gp.y_mean_, gp.y_std_])
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(path) as tmp:
            np.savez(tmp, **st)
    return st, gps, False


def gpr_predict(cmap, model, *, box=GPR_BOX, n_train=256, k=8, cache_dir=None, n_draws=64, seed=0) -> GPRPrediction:
    """Geometry-specific GPR inversion of a flow-aligned map (``cmap.phi`` is theta from the flow).

    Features: projections of y = (C - 1)/beta on the first ``k`` SVD vectors of the training set
    (built on the data's own bins). The std adds the GPR posterior std and the spread of the
    predictions over ``n_draws`` noise draws of the data (errors ``cmap.C_err``).
    """
    from ..rng import as_generator

    ok = cmap.ok
    if ok.sum() < MIN_BINS:
        raise ShearcorrError(f"only {int(ok.sum())} usable (q, theta) bins; use fewer bins or check the mask")
    box = [list(map(float, b)) for b in box]
    st, gps, cached = _fitted_state(model, ok, box, int(n_train), int(k), cache_dir, seed)
    feats = lambda Z: ((Z - st["mu"]) @ st["V"].T) / st["scale"]  # noqa: E731
    rng = as_generator(seed)
    yd = cmap.y[ok]
    draws = yd + (cmap.C_err[ok] / cmap.beta) * rng.standard_normal((n_draws, yd.size))
    Xd = feats(np.vstack([yd, draws]))
    out = {}
    for name in TARGETS:
        m, s = gps[name].predict(Xd[:1], return_std=True)
        spread = float(np.std(gps[name].predict(Xd[1:])))
        out[name] = Estimate(float(m[0]), float(np.hypot(s[0], spread)))
    return GPRPrediction(cached=cached, n_train=int(n_train), box=box, **out)


def model_predict(path, pair, geo, *, phi_offset, contrast=None, photon_counts=True, speckle_px=None) -> ModelPrediction:
    """Predict with a ``shearcorr train`` model: the frames are binned onto the model's own grid.

    Of a family of models (the default of ``shearcorr train``) the member of the highest N (a noise-free
    one if present) predicts: a single pair's map is not an N-configuration average.

    Parameters
    ----------
    path : path
        Model file (.npz).
    pair : FramePair
    geo : DetectorGeometry
    phi_offset : float
        The flow angle (rad): the model's theta is measured from it.
    contrast, photon_counts, speckle_px
        As in :func:`~.correlation.correlation_map`.
    """
    from ..inverse.modelfile import load_model

    model = load_model(path).member(float("inf"))  # of a family: the member of the least noise
    gq, gt = model.grid.q, model.grid.theta
    qv = geo.qr0[pair.valid]
    if gq[0] < qv.min() * 0.999 or gq[-1] > qv.max() * 1.001:
        raise ShearcorrError(f"model grid mismatch: the model needs q R0 in [{gq[0]:.3g}, {gq[-1]:.3g}] but the frames cover "
                             f"[{qv.min():.3g}, {qv.max():.3g}]; train a model on this geometry or use --method fit")
    if gt.size < 3 or not np.allclose(np.diff(gt), gt[1] - gt[0]) or abs(gt[-1] - gt[0] - np.pi) > 1e-6:
        raise ShearcorrError("model grid mismatch: the model's theta grid is not uniform on [0, pi]; it cannot be binned from frames")
    lq = np.log(gq)
    edges = np.exp(np.concatenate([[lq[0] - (lq[1] - lq[0]) / 2], (lq[1:] + lq[:-1]) / 2, [lq[-1] + (lq[-1] - lq[-2]) / 2]]))
    dt = gt[1] - gt[0]
    cm = correlation_map(pair, geo, edges, gt.size - 1, phi_offset=phi_offset - dt / 2, contrast=contrast,
                         photon_counts=photon_counts, speckle_px=speckle_px)
    g = cm.y + 1.0
    g = np.concatenate([g, g[:, :1]], axis=1)  # theta = pi is theta = 0
    if not np.all(np.isfinite(g)):
        raise ShearcorrError(f"model grid mismatch: {int((~np.isfinite(g)).sum())} of the model's (q, theta) points get no valid pixel; "
                             "train a model on this geometry or use --method fit")
    P = np.concatenate([g.mean(axis=0), g.mean(axis=1)])[None, :]
    pred = model.predict_profiles(P)
    return ModelPrediction({k: Estimate(float(m[0]), float(s[0])) for k, (m, s) in pred.items()}, str(path))
