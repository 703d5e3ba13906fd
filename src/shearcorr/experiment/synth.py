r"""Synthetic experiments: a frame pair with known truth, rendered from one Monte Carlo configuration.

Pipeline (all lengths in R0; one configuration, :func:`shearcorr.forward.montecarlo.sample_configuration`):

1. Detector: ``shape`` pixels, flat, beam centre in the middle; the distance is chosen so that one
   pixel spans ``dq`` in q R0 at the centre. The default ``dq = (2 pi / L) / 2.2`` samples the speckle
   (intensity autocorrelation width 2 pi / L) with 2.2 pixels, above Nyquist. Physical units:
   R0 = 10 nm, L = beam_size R0 (8 um), lambda = 1 A, 55 um pixels (distance ~ 10 m for the default).
2. Sample frame: the flow (x of the model) points along detector azimuth ``flow_angle``, so a pixel
   at azimuth phi sees q = |q| (cos(phi - flow), sin(phi - flow)) in the sample frame.
3. Coherent amplitudes A, A' of the particles inside the beam window before / after the move
   (:func:`shearcorr.forward.montecarlo.amplitude_at`), normalised by sum V^2 as eq. 1.
4. Partial coherence: a Gaussian-Schell-like beam with one dominant coherent mode; the many weak
   modes add up to the incoherent (ensemble) intensity P/S = sum w_i^2 / S of the same particles:
   I = s |A|^2/S + (1 - s) P/S with s = sqrt(beta), so the speckle contrast is exactly beta (for a
   point-like pixel; real pixel integration lowers it further - the analysis estimates beta from data).
5. Photon counting: Poisson with mean ``counts`` photons per pixel at q R0 = 0.5 for a monodisperse
   form factor (scaled by the actual I(q)).
6. Mask (1 = valid, saved as mask.npy): a beam stop of radius ``beamstop`` (q R0) with its arm (a
   strip to the lower edge), a horizontal and a vertical module gap.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .._version import __version__
from ..choices import check_choice
from ..errors import ShearcorrError
from ..files import atomic_folder, check_output_folder
from ..params import SystemParams
from ..physics import form_factor, sphere_volume
from ..rng import child_seed, seed_sequence
from .flow import wrap_half
from .geometry import flat_detector

__all__ = ["SynthPair", "render_pair", "render_series", "render_frame", "synth_detector", "write_synth", "pair_configuration",
           "flow_oracle"]

R0_NM, LAMBDA_A, PIXEL_M = 10.0, 1.0, 55e-6


class SynthPair:
    """Result of :func:`render_pair`: ``before``, ``after`` (int64 counts), ``mask`` (bool, True =
    valid), ``geometry`` (:class:`DetectorGeometry`), ``geometry_spec`` (JSON dict) and ``truth``."""

    def __init__(self, before, after, mask, geometry, geometry_spec, truth):
        self.before, self.after, self.mask = before, after, mask
        self.geometry, self.geometry_spec, self.truth = geometry, geometry_spec, truth


def render_pair(params: SystemParams, *, flow_angle_deg=30.0, contrast=0.3, counts=10.0, shape=(1024, 1024),
                dq=None, beamstop=0.15, seed=0) -> SynthPair:
    """Render a synthetic frame pair (see module docstring). ``seed`` fixes configuration and photons."""
    frames, mask, geo, spec, truth = _render(params, 2, flow_angle_deg, contrast, counts, shape, dq, beamstop, seed)
    return SynthPair(frames[0], frames[1], mask, geo, spec, truth)


def render_series(params: SystemParams, n_frames: int, *, flow_angle_deg=30.0, contrast=0.3, counts=10.0,
                  shape=(1024, 1024), dq=None, beamstop=0.15, seed=0):
    """Frames of one sample through ``n_frames - 1`` successive rearrangements Gamma (shear steps).

    Frame k + 1 shows the particles of frame k moved by Gamma (eq. 3, fresh non-affine steps each
    time), so consecutive frames are pairs that share their particles and a frame. Frames 0 and 1
    equal :func:`render_pair` with the same arguments. Returns (frames list, mask, geometry, truth).
    The box [-L, L]^2 must keep the window filled: n_frames * gamma_l / 2 < L / 2.
    """
    if int(n_frames) < 2:
        raise ShearcorrError(f"a series needs at least 2 frames, got {n_frames}")
    if (int(n_frames) - 1) * params.gamma_l / 2 >= params.beam_size / 2:
        raise ShearcorrError(f"{n_frames} frames of gamma_l = {params.gamma_l:g} shear particles out of the simulation box; use fewer")
    frames, mask, geo, _, truth = _render(params, int(n_frames), flow_angle_deg, contrast, counts, shape, dq, beamstop, seed)
    return frames, mask, geo, truth


def synth_detector(shape, dq, beam_size: float, beamstop: float = 0.15, *, min_size: int = 64):
    """The synthetic detector: flat, beam centre in the middle, one pixel spanning ``dq`` (q R0) at the
    centre (default (2 pi / L) / 2.2); mask (True = valid) with a beam stop of radius ``beamstop``
    (q R0) and its arm, a horizontal and a vertical module gap.

    Returns (geometry, geometry.json dict, mask, dq).
    """
    ny, nx = (int(s) for s in shape)
    if ny < min_size or nx < min_size:
        raise ShearcorrError(f"frame shape must be at least {min_size} x {min_size}, got {shape}")
    L = float(beam_size)
    dq = (2 * np.pi / L) / 2.2 if dq is None else float(dq)
    k_nm = 2 * np.pi / (LAMBDA_A / 10.0)
    distance = PIXEL_M * k_nm / (dq / R0_NM)
    spec = {"shape": [ny, nx], "beam_center_px": [(nx - 1) / 2.0, (ny - 1) / 2.0], "pixel_size_m": PIXEL_M, "distance_m": distance,
            "wavelength_angstrom": LAMBDA_A, "particle_radius_nm": R0_NM, "beam_size_um": L * R0_NM / 1000.0,
            "q_unit": "1/nm"}
    geo = flat_detector((ny, nx), spec["beam_center_px"], PIXEL_M, distance, wavelength=LAMBDA_A,
                        particle_radius_nm=R0_NM, beam_size_nm=L * R0_NM)
    rows, cols = np.mgrid[0:ny, 0:nx]
    cx, cy = spec["beam_center_px"]
    mask = geo.qr0 > beamstop
    mask &= ~((np.abs(cols - cx) < max(3, nx // 170)) & (rows > cy))  # beam-stop arm to the lower edge
    gy, gx = int(cy + ny // 4), int(cx - nx // 5)
    mask[gy:gy + max(4, ny // 128), :] = False
    mask[:, gx:gx + max(4, nx // 128)] = False
    return geo, spec, mask, dq


def render_frame(x, y, radius, qr0, phi, *, beam_size: float, flow_angle_deg: float = 0.0, contrast: float = 0.3,
                 counts: float = 10.0, rng=None) -> np.ndarray:
    r"""One detector frame of the particles at (x, y) (steps 2-5 of the module docstring).

    Parameters
    ----------
    x, y, radius : ndarray (n,)
        Particle positions and radii (R0), flow along x; only those strictly inside the beam window
        [-L/2, L/2]^2 scatter.
    qr0, phi : ndarray
        q R0 and detector azimuth (rad, APS convention) of every pixel (any shape).
    beam_size : float
        L / R0.
    flow_angle_deg : float
        Detector azimuth of the flow direction.
    contrast : float
        Speckle contrast beta in (0, 1]: I = sqrt(beta) |A|^2/S + (1 - sqrt(beta)) P/S.
    counts : float
        Mean photons per pixel at q R0 = 0.5 for a monodisperse form factor.
    rng : numpy Generator, optional
        Draws the Poisson counts (int64); None returns the expected counts (float64).
    """
    from ..forward import montecarlo as conf

    half = 0.5 * float(beam_size)
    inb = (np.abs(x) < half) & (np.abs(y) < half)
    r = radius[inb]
    ang = phi - np.radians(flow_angle_deg)
    A = conf.amplitude_at(qr0 * np.cos(ang), qr0 * np.sin(ang), x[inb], y[inb], r)
    v2 = sphere_volume(r) ** 2
    S = v2.sum()
    if not S > 0:  # empty beam: no photons
        lam = np.zeros(np.shape(qr0))
        return lam if rng is None else rng.poisson(lam).astype(np.int64)
    # incoherent intensity sum_i w_i^2 / S on the ring q (isotropic)
    qs = np.linspace(0, qr0.max() * 1.001, 2048)
    if np.all(r == r[0]):  # one radius: P / S is the form factor squared
        P = form_factor(qs * r[0]) ** 2
    else:
        P = (v2[None, :] * form_factor(qs[:, None] * r[None, :]) ** 2).sum(axis=1) / S
    inc = np.interp(qr0, qs, P)
    s = np.sqrt(contrast)
    lam = (s * np.abs(A) ** 2 / S + (1 - s) * inc) * (counts / float(form_factor(0.5) ** 2))
    return lam if rng is None else rng.poisson(lam).astype(np.int64)


def _render(params, n_frames, flow_angle_deg, contrast, counts, shape, dq, beamstop, seed):
    if not 0 < contrast <= 1:
        raise ShearcorrError(f"contrast must be in (0, 1], got {contrast}")
    if not counts > 0:
        raise ShearcorrError(f"counts must be > 0 (photons per pixel at q R0 = 0.5), got {counts}")
    geo, spec, mask, dq = synth_detector(shape, dq, params.beam_size, beamstop)
    ny, nx = geo.shape
    L = params.beam_size
    from ..forward import montecarlo as conf
    from ..physics import rearrange

    s_conf, s_phot, s_steps = _streams(seed, 3)
    cfg = conf.sample_configuration(params, s_conf)
    rng = np.random.default_rng(s_phot)
    step_rng = np.random.default_rng(s_steps)
    half = 0.5 * L
    positions = [(cfg.x, cfg.y), (cfg.x_after, cfg.y_after)]
    frames, n_in = [], []
    for k in range(n_frames):
        if k >= 2:
            positions.append(rearrange(*positions[-1], cfg.radius, params, step_rng))
        xs, ys = positions[k]
        frames.append(render_frame(xs, ys, cfg.radius, geo.qr0, geo.phi, beam_size=L, flow_angle_deg=flow_angle_deg,
                                   contrast=contrast, counts=counts, rng=rng))
        n_in.append(int(((np.abs(xs) < half) & (np.abs(ys) < half)).sum()))
    truth = {"gamma_l": params.gamma_l, "d2": params.d2, "rs": params.rs, "n_l2": params.n_l2,
             "displacement": params.displacement, "beam_size": params.beam_size,
             "flow_angle_deg": float(flow_angle_deg), "contrast": float(contrast), "counts": float(counts),
             "n_in_beam": n_in, "shape": [ny, nx], "dq_r0_per_pixel": dq,
             "speckle_px": (2 * np.pi / L) / dq, "seed": None if seed is None else int(seed),
             "shearcorr_version": __version__,
             "physical": {"particle_radius_nm": R0_NM, "gamma_l_nm": params.gamma_l * R0_NM, "d2_nm": params.d2 * R0_NM}}
    return frames, mask, geo, spec, truth


def pair_configuration(params: SystemParams, seed=0):
    """The Monte Carlo configuration (:class:`shearcorr.forward.montecarlo.Configuration`) that
    :func:`render_pair` renders with this ``params`` and ``seed`` (flow along the model's x axis)."""
    from ..forward.montecarlo import sample_configuration

    return sample_configuration(params, _streams(seed)[0])


def _streams(seed, n=2):
    """Children 0..n-1 of ``seed`` (as ``spawn(n)`` of a fresh SeedSequence, without mutating a
    SeedSequence passed in): configuration, photons, and the further steps of a series."""
    root = seed_sequence(seed)
    return [child_seed(root, j) for j in range(n)]


def flow_oracle(config, params: SystemParams) -> dict:
    r"""The flow angle that an observer who knows every particle would estimate, and its bound.

    A benchmark for any estimator that works from the frames (which are a function of the
    configuration plus photon noise): the particles in the beam before *and* after the move, with
    positions r_i and displacements :math:`\Delta\mathbf r_i = \gamma\,(\mathbf n\cdot\mathbf r_i)
    \,\mathbf t + \boldsymbol\delta_i` (flow t = (cos a, sin a), gradient n, per-axis std s_i of the
    non-affine step), fitted by maximum likelihood over (a, gamma). Returns (radians; the truth is a = 0):

    * ``full``: that estimate; its Cramer-Rao std
      :math:`\sigma_{\rm full} = 1/(\gamma\sqrt{\sum_i |\mathbf r_i|^2/s_i^2})`
      (:math:`\approx \sqrt6\,D_2/(\gamma L\sqrt N)` for N particles, uniform displacements)
      in ``sigma_full``;
    * ``displacements``: the principal axis of the displacement set alone -- all that the
      correlation of a pair sees, since the bin average removes the positions. Its tilt is
      S_xy / (S_xx - S_yy) of the displacements' second moments, with std ``sigma_displacements``

      .. math:: \sigma_{\rm disp} = \frac{\sqrt{\sum_i (\gamma^2 y_i^2 + s_i^2)\,s_i^2}}{\sum_i \gamma^2 y_i^2}
                \approx \frac{\sqrt{12}\,D_2}{\gamma L\sqrt N}\sqrt{1 + \frac{12 D_2^2}{(\gamma L)^2}}
    """
    from scipy.optimize import least_squares

    from ..physics import displacement_std

    both = config.in_beam_before & config.in_beam_after
    x, y = config.x[both], config.y[both]
    dx, dy = config.x_after[both] - x, config.y_after[both] - y
    s = displacement_std(config.radius[both], params.d2, params.displacement, params.r0)
    if params.gamma_l <= 0 or x.size < 3:
        raise ShearcorrError("the flow oracle needs gamma_l > 0 and at least 3 particles in the beam")

    def resid(v):
        a, g = v
        proj = g * (-np.sin(a) * x + np.cos(a) * y)
        return np.concatenate([(dx - proj * np.cos(a)) / s, (dy - proj * np.sin(a)) / s])

    a_full = least_squares(resid, [0.0, params.gamma], x_scale=[0.01, params.gamma]).x[0]
    _, vecs = np.linalg.eigh(np.cov(np.stack([dx, dy])))
    a_disp = float(np.arctan2(vecs[1, -1], vecs[0, -1]))
    sig_full = 1.0 / (params.gamma * np.sqrt(np.sum((x**2 + y**2) / s**2)))
    gy2 = (params.gamma * y) ** 2
    sig_disp = np.sqrt(np.sum((gy2 + s**2) * s**2)) / np.sum(gy2)
    return {"full": wrap_half(a_full), "sigma_full": float(sig_full), "displacements": wrap_half(a_disp),
            "sigma_displacements": float(sig_disp), "n_particles": int(x.size)}


def write_synth(pair: SynthPair, out, fmt="npy") -> Path:
    """Write before/after frames (``npy`` or ``h5``, dataset /entry/data/data), mask.npy (1 = valid),
    geometry.json and truth.json into folder ``out`` atomically (temporary folder, then rename)."""
    check_choice("frame_format", fmt, what="format")
    out = check_output_folder(out, overwrite=False)
    with atomic_folder(out) as tmp:
        for name, arr in (("before", pair.before), ("after", pair.after)):
            if fmt == "npy":
                np.save(tmp / f"{name}.npy", arr.astype(np.int32))
            else:
                import h5py

                with h5py.File(tmp / f"{name}.h5", "w") as fh:
                    fh.create_dataset("entry/data/data", data=arr.astype(np.int32)[None], compression="gzip")
        np.save(tmp / "mask.npy", pair.mask.astype(np.uint8))
        (tmp / "geometry.json").write_text(json.dumps(pair.geometry_spec, indent=2) + "\n")
        truth = dict(pair.truth, files={"before": f"before.{fmt}", "after": f"after.{fmt}", "mask": "mask.npy",
                                        "mask_convention": "valid", "dataset": "/entry/data/data" if fmt == "h5" else None})
        (tmp / "truth.json").write_text(json.dumps(truth, indent=2) + "\n")
    return out
