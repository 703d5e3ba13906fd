"""Model files that are safe to open: one ``.npz`` of plain numeric arrays plus JSON metadata.

Layout (format ``shearcorr-gpr-model``, version 5; files of versions 1-4 still load)::

    meta.npy              uint8 bytes of a UTF-8 JSON document (below)
    grid_q, grid_theta    the training grid
    X_train               (n, d) training inputs after the feature transform
    svd_components        (k, n_theta) right singular vectors (feature "svd" only)
    feature_mean, feature_scale   z-score of the selected columns (model "ard")
    pca_components        (n_components, n_selected) principal axes (model "ard"; block-diagonal with
                          2 n_components rows for pca_blocks)
    alpha_<target>        (n,) alpha = (K + sigma I)^-1 u_standardised, one per target
    length_scale_<target> (d,) ARD length scales (model "ard")

A family of models (:class:`~shearcorr.inverse.family.ModelFamily`, format version 4) stores each
member's arrays under the prefix ``m<i>_`` and its JSON document (below, without format and checksum)
as item i of ``members``; one checksum covers all.

Format version 5 (a model, or a family with ``members``) adds per-sample stds
(:mod:`shearcorr.inverse.calibration`) to a model that has them::

    calibration_points    (n, T) standardised leave-one-out predictions of the training samples
    calibration_z2_<target>  (n,) their squared leave-one-out z-scores

and the JSON entry ``calibration`` (method, targets, bandwidth per target, prior count). Files of
versions 1-4 load as before (no calibration: the GP's own stds).

JSON: format, format_version, shearcorr_version, model ("paper" or "ard"), feature, n_theta, k,
standardise, n_components, pca_blocks, targets, kernel convention, per-target hyperparameters (paper:
``{l, sigma, y_mean, y_std, lml}``; ard: ``{amplitude, noise, y_mean, y_std, transform, lml}``),
train/test sample indices, training provenance, and ``sha256``: of the arrays (name, dtype, shape and
bytes, in sorted name order) and, from version 3 on, of the JSON document itself (sorted keys, without
the ``sha256`` entry) - so a changed hyperparameter is detected like a changed array.

Loading uses ``numpy.load(allow_pickle=False)`` (object arrays and pickles are refused), checks the
format, the checksum, every shape and every value (finite arrays and hyperparameters, positive length
scales, feature scales and y_std, non-negative noise, sample indices that are whole numbers >= 0), and
rebuilds the regressors from the arrays with numpy (:meth:`PaperGPR.from_state`,
:meth:`ARDGPR.from_state`); nothing is unpickled or executed. Every failure is one ShearcorrError.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np

from .._version import __version__
from ..choices import CHOICES
from ..errors import ShearcorrError
from ..files import atomic_file
from ..params import PARAM_NAMES, QGrid
from .ard import ARDGPR
from .calibration import Calibration
from .features import ProfileFeatures
from .gpr import PaperGPR
from .model import InversionModel

__all__ = ["save_model", "load_model", "FORMAT", "FORMAT_VERSION"]

FORMAT = "shearcorr-gpr-model"
FORMAT_VERSION = 5
#: Format version of the files of families written before version 5 (a version-5 family has ``members``).
FAMILY_VERSION = 4
#: Versions this shearcorr reads (1 and 2: the checksum covers the arrays only; 5: per-sample stds).
READABLE_VERSIONS = (1, 2, 3, 4, 5)
KERNEL = "k(x,x') = exp(-|x-x'|^2 / (2 l)) + sigma delta; l = sklearn length_scale^2; targets standardised"
KERNEL_ARD = ("k(x,x') = amplitude exp(-sum_d (x_d-x'_d)^2 / (2 length_scale_d^2)) + noise delta; "
              "u = transform(y) standardised")


def _checksum(arrays: dict, meta: dict | None = None) -> str:
    """SHA-256 of the arrays (sorted by name) and, for format version >= 3, of ``meta`` without its sha256."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    if meta is not None:
        h.update(json.dumps({k: v for k, v in meta.items() if k != "sha256"}, sort_keys=True).encode("utf-8"))
    return h.hexdigest()


def _payload(model: InversionModel) -> tuple[dict, dict]:
    """Arrays and JSON metadata (without format and checksum) of one model."""
    first = next(iter(model.regressors.values()))
    arrays = {
        "grid_q": np.asarray(model.grid.q, dtype=np.float64),
        "grid_theta": np.asarray(model.grid.theta, dtype=np.float64),
        "X_train": np.asarray(first.X_train_, dtype=np.float64),
        "train_index": np.asarray(model.train_index, dtype=np.int64),
        "test_index": np.asarray(model.test_index, dtype=np.int64),
    }
    f = model.features
    if f.feature == "svd":
        arrays["svd_components"] = np.asarray(f.components_, dtype=np.float64)
    if f.standardise:
        arrays["feature_mean"] = np.asarray(f.mean_, dtype=np.float64)
        arrays["feature_scale"] = np.asarray(f.scale_, dtype=np.float64)
        if int(f.n_components):
            arrays["pca_components"] = np.asarray(f.pca_components_, dtype=np.float64)
    kind = model.kind
    hyper = {}
    for t, gp in model.regressors.items():
        if gp.X_train_ is not first.X_train_ and not np.array_equal(gp.X_train_, first.X_train_):
            raise ShearcorrError("all regressors of a model must share the training inputs")
        if isinstance(gp, ARDGPR) != (kind == "ard"):
            raise ShearcorrError("all regressors of a model must be of the same kind")
        arrays[f"alpha_{t}"] = np.asarray(gp.alpha_, dtype=np.float64)
        lml = float(getattr(gp, "log_marginal_likelihood_value_", float("nan")))
        if kind == "ard":
            arrays[f"length_scale_{t}"] = np.asarray(gp.length_scale_, dtype=np.float64)
            hyper[t] = {"amplitude": gp.amplitude_, "noise": gp.noise_, "y_mean": gp.y_mean_, "y_std": gp.y_std_,
                        "transform": gp.transform, "lml": lml}
        else:
            hyper[t] = {"l": gp.l_, "sigma": gp.sigma_, "y_mean": gp.y_mean_, "y_std": gp.y_std_, "lml": lml}
    meta = {
        "shearcorr_version": __version__, "model": kind,
        "feature": f.feature, "n_theta": int(f.n_theta), "k": int(f.k), "standardise": bool(f.standardise),
        "n_components": int(f.n_components), "pca_blocks": bool(getattr(f, "pca_blocks", False)),
        "n_features_in": int(f.n_features_in_),
        "targets": list(model.regressors), "kernel": KERNEL_ARD if kind == "ard" else KERNEL,
        "hyperparameters": hyper, "provenance": model.provenance,
    }
    if model.calibration is not None:
        arrays.update(model.calibration.arrays())
        meta["calibration"] = model.calibration.meta()
    return arrays, meta


def save_model(model, path) -> Path:
    """Write a model or a :class:`~shearcorr.inverse.family.ModelFamily` to ``path`` (.npz) atomically
    (:func:`shearcorr.files.atomic_file`); a family of one member is written as that member."""
    from .family import ModelFamily

    path = Path(path)
    members = model.members if isinstance(model, ModelFamily) else (model,)
    if len(members) == 1:
        arrays, meta = _payload(members[0])
        meta.update(format=FORMAT, format_version=FORMAT_VERSION)
    else:
        arrays, metas = {}, []
        for i, m in enumerate(members):
            a, mm = _payload(m)
            arrays.update({f"m{i}_{k}": v for k, v in a.items()})
            metas.append(mm)
        meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "shearcorr_version": __version__,
                "members": metas}
    meta = json.loads(json.dumps(meta, allow_nan=True))  # the exact document that is stored (tuples -> lists)
    meta["sha256"] = _checksum(arrays, meta)
    arrays["meta"] = np.frombuffer(json.dumps(meta, sort_keys=True).encode("utf-8"), dtype=np.uint8)
    with atomic_file(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)
    return path


def _read_arrays(path: Path) -> dict:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ShearcorrError(f"cannot read model file {path}: {exc.strerror or exc}") from None
    if not raw.startswith(b"PK"):
        raise ShearcorrError(f"{path} is not a shearcorr model file (not an .npz archive)")
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as z:
            arrays = {name: z[name] for name in z.files}
        if not all(isinstance(a, np.ndarray) for a in arrays.values()):
            raise ShearcorrError(f"{path} is not a shearcorr model file (members that are not numpy arrays)")
        return arrays
    except ShearcorrError:
        raise
    except ValueError as exc:  # object arrays / pickles refused by allow_pickle=False
        raise ShearcorrError(f"{path} holds pickled or object data, which shearcorr never loads ({exc})") from None
    except (zipfile.BadZipFile, OSError, EOFError, KeyError, zipfile.LargeZipFile) as exc:
        raise ShearcorrError(f"model file {path} is corrupted or truncated ({type(exc).__name__}: {exc})") from None
    except Exception as exc:  # zlib.error and friends
        raise ShearcorrError(f"model file {path} is corrupted or truncated ({type(exc).__name__}: {exc})") from None


def load_model(path):
    """Load a model (:class:`InversionModel`) or a family of models
    (:class:`~shearcorr.inverse.family.ModelFamily`) written by :func:`save_model`; never unpickles;
    clear errors for damaged files."""
    path = Path(path)
    if path.is_dir():
        what = "a dataset store" if any((path / f).is_file() for f in ("zarr.json", ".zgroup")) else "a folder"
        raise ShearcorrError(f"{path} is {what}, not a model file; give the .npz written by 'shearcorr train' "
                             "first (shearcorr predict MODEL.npz DATA)")
    if not path.is_file():
        raise ShearcorrError(f"no such model file: {path}")
    arrays = _read_arrays(path)
    if "meta" not in arrays or arrays["meta"].dtype != np.uint8:
        raise ShearcorrError(f"{path} is not a shearcorr model file (no metadata)")
    try:
        meta = json.loads(arrays.pop("meta").tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ShearcorrError(f"model file {path} has corrupted metadata") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ShearcorrError(f"{path} is not a shearcorr model file (format {meta.get('format') if isinstance(meta, dict) else None!r})")
    version = meta.get("format_version")
    if version not in READABLE_VERSIONS:
        raise ShearcorrError(f"{path} has model format version {version!r}; this shearcorr reads versions "
                             f"{', '.join(map(str, READABLE_VERSIONS))}; retrain the model")
    if _checksum(arrays, meta if version >= 3 else None) != meta.get("sha256"):
        raise ShearcorrError(f"model file {path} is corrupted (checksum mismatch of its "
                             f"{'arrays or metadata' if version >= 3 else 'arrays'})")
    if version == FAMILY_VERSION or (version >= 5 and "members" in meta):
        metas = meta.get("members")
        if not isinstance(metas, list) or len(metas) < 2:
            raise ShearcorrError(f"model file {path} is damaged: a family file lists no members")
        members = []
        for i, mm in enumerate(metas):
            pre = f"m{i}_"
            if not isinstance(mm, dict):
                raise ShearcorrError(f"model file {path} is damaged: member {i} has no metadata")
            members.append(_build(path, {k[len(pre):]: v for k, v in arrays.items() if k.startswith(pre)}, mm))
        from .family import ModelFamily

        return ModelFamily(tuple(members))
    return _build(path, arrays, meta)


def _build(path: Path, arrays: dict, meta: dict) -> InversionModel:
    """One model from its arrays and metadata, every shape and value checked (module docstring)."""
    try:
        for name, a in arrays.items():
            if a.dtype.kind not in "fiu":
                raise ShearcorrError(f"{path} holds non-numeric arrays; refusing it")
            if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
                raise ShearcorrError(f"model file {path} is damaged: {name} contains NaN or inf")
        for name in ("train_index", "test_index"):
            idx = arrays[name]
            if idx.ndim != 1 or idx.dtype.kind not in "iu" or (idx.size and idx.min() < 0):
                raise ShearcorrError(f"model file {path} is damaged: {name} must hold sample indices >= 0")
        targets = [str(t) for t in meta["targets"]]
        if not targets or any(t not in PARAM_NAMES for t in targets):
            raise ShearcorrError(f"{path} names unknown targets {targets}")
        grid = QGrid(arrays["grid_q"], arrays["grid_theta"])
        X = arrays["X_train"]
        kind = str(meta.get("model", "paper"))
        if kind not in CHOICES["model"]:
            raise ShearcorrError(f"{path} names an unknown model kind {kind!r}")
        feats = ProfileFeatures(feature=str(meta["feature"]), n_theta=int(meta["n_theta"]), k=int(meta["k"]),
                                standardise=bool(meta.get("standardise", False)),
                                n_components=int(meta.get("n_components", 0)),
                                pca_blocks=bool(meta.get("pca_blocks", False)))
        feats.n_features_in_ = int(meta["n_features_in"])
        if feats.n_theta != grid.theta.size or feats.n_features_in_ != grid.theta.size + grid.q.size:
            raise ShearcorrError(f"{path} is inconsistent: feature widths do not match its grid")
        if feats.feature == "svd":
            feats.components_ = arrays["svd_components"]
            if feats.components_.shape != (feats.k, feats.n_theta):
                raise ShearcorrError(f"{path} is inconsistent: SVD components have shape {feats.components_.shape}")
        if feats.standardise:
            feats.mean_, feats.scale_ = arrays["feature_mean"], arrays["feature_scale"]
            if not np.all(feats.scale_ > 0):
                raise ShearcorrError(f"model file {path} is damaged: feature_scale must be > 0")
            width = feats._select(np.ones((1, feats.n_features_in_))).shape[1]
            if feats.mean_.shape != (width,) or feats.scale_.shape != (width,):
                raise ShearcorrError(f"{path} is inconsistent: feature scaler does not match the feature width")
            if feats.n_components:
                feats.pca_components_ = arrays["pca_components"]
                if feats.pca_components_.shape != (feats.n_components * (2 if feats.pca_blocks else 1), width):
                    raise ShearcorrError(f"{path} is inconsistent: PCA components have shape {feats.pca_components_.shape}")
        regs = {}
        for t in targets:
            h = meta["hyperparameters"][t]
            alpha = arrays[f"alpha_{t}"]
            if X.ndim != 2 or alpha.shape != (X.shape[0],):
                raise ShearcorrError(f"{path} is inconsistent: alpha_{t} does not match X_train")
            if kind == "ard":
                regs[t] = ARDGPR.from_state(X, alpha, arrays[f"length_scale_{t}"], h["amplitude"], h["noise"],
                                            h["y_mean"], h["y_std"], h["transform"])
            else:
                regs[t] = PaperGPR.from_state(X, alpha, h["l"], h["sigma"], h["y_mean"], h["y_std"])
            regs[t].log_marginal_likelihood_value_ = float(h.get("lml", float("nan")))
        if feats.transform(np.ones((1, feats.n_features_in_))).shape[1] != X.shape[1]:
            raise ShearcorrError(f"{path} is inconsistent: X_train width does not match the feature transform")
        cal = None
        if "calibration" in meta:
            cal = Calibration.from_stored(arrays, meta["calibration"])
            if cal.points.shape[0] != X.shape[0]:
                raise ShearcorrError(f"{path} is inconsistent: the calibration has {cal.points.shape[0]} points, "
                                     f"the model {X.shape[0]} training samples")
        return InversionModel(grid=grid, features=feats, regressors=regs, train_index=arrays["train_index"],
                              test_index=arrays["test_index"], provenance=dict(meta.get("provenance", {})),
                              calibration=cal)
    except ShearcorrError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ShearcorrError(f"model file {path} is incomplete or inconsistent ({type(exc).__name__}: {exc})") from None
