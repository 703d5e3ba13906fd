r"""Synthetic experiments: a frame pair with known truth, rendered from one Monte Carlo configuration.

Pipeline (all lengths in R0; one configuration, :func:`shearcorr.forward.montecarlo.sample_configuration`,
or :func:`shearcorr.forward.beammc.beam_configuration` for another beam):

1. Detector: ``shape`` pixels, flat, beam centre in the middle; the distance is chosen so that one
   pixel spans ``dq`` in q R0 at the centre. The default ``dq = (2 pi / L) / 2.2`` samples the speckle
   (intensity autocorrelation width 2 pi / L) with 2.2 pixels, above Nyquist. Physical units:
   R0 = 10 nm, L = beam_size R0 (8 um), lambda = 1 A, 55 um pixels (distance ~ 10 m for the default).
2. Sample frame: the flow (x of the model) points along detector azimuth ``flow_angle``, so a point
   at azimuth phi sees q = |q| (cos(phi - flow), sin(phi - flow)) in the sample frame.
3. The field: every lit particle (footprint intensity u > 0) scatters with the field of each coherent
   mode of the beam (:func:`shearcorr.forward.modes.coherent_modes`: one mode, the footprint amplitude, for a
   coherent beam; an explicit sum of modes for a partially coherent one),
   :math:`I(\mathbf q) = \sum_k \nu_k |A_k(\mathbf q)|^2 / S`, :math:`S = \sum u V^2` (eq. 1); all modes at
   once by :func:`shearcorr.forward.modes.intensity_at` (the sum over modes of
   :func:`shearcorr.forward.montecarlo.amplitude_at`, phases computed once per q-point).
4. Pixels: each pixel integrates the intensity over its area: ``pixel_subsamples`` x ``pixel_subsamples``
   Gauss-Legendre points per pixel at their exact q (:meth:`DetectorGeometry.qvec_at`; 1 = point
   sampling). A Gaussian point-spread function (``psf_sigma_px``) then spreads the pixel intensities.
   Nothing here uses the analytic model's Fourier shortcuts.
5. Extra incoherence: ``contrast`` mixes in the incoherent intensity P/S of the same particles,
   I = s I_field + (1 - s) P/S with s = sqrt(contrast) (the speckle contrast of a point-sampled
   coherent beam is then exactly ``contrast``; beam coherence and pixels lower it further).
6. Photon counting: Poisson with mean ``counts`` photons per pixel at q R0 = 0.5 for a monodisperse
   form factor (scaled by the actual I(q)).
7. Mask (1 = valid, saved as mask.npy): a beam stop of radius ``beamstop`` (q R0) with its arm (a
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
           "flow_oracle", "PIXEL_SUBSAMPLES"]

R0_NM, LAMBDA_A, PIXEL_M = 10.0, 1.0, 55e-6
#: Default Gauss-Legendre points per pixel and axis (4 x 4 integrates the speckle to ~1e-3 at 2.2 px per speckle).
PIXEL_SUBSAMPLES = 4
#: Coherent modes of a partially coherent beam are kept to 1 - MODE_EPS of the trace (the rest, nearly
#: incoherent, changes the contrast by that fraction, which the analysis estimates from the data).
MODE_EPS = 1e-4


class SynthPair:
    """Result of :func:`render_pair`: ``before``, ``after`` (int64 counts), ``mask`` (bool, True =
    valid), ``geometry`` (:class:`DetectorGeometry`), ``geometry_spec`` (JSON dict) and ``truth``."""

    def __init__(self, before, after, mask, geometry, geometry_spec, truth):
        self.before, self.after, self.mask = before, after, mask
        self.geometry, self.geometry_spec, self.truth = geometry, geometry_spec, truth


def render_pair(params: SystemParams, *, flow_angle_deg=30.0, contrast=0.3, counts=10.0, shape=(1024, 1024),
                dq=None, beamstop=0.15, seed=0, beam=None, pixel_subsamples=PIXEL_SUBSAMPLES, psf_sigma_px=0.0) -> SynthPair:
    """Render a synthetic frame pair (see module docstring). ``seed`` fixes configuration and photons.

    ``beam`` (:class:`shearcorr.beam.Beam`, R0; default the paper's coherent square), ``pixel_subsamples``
    and ``psf_sigma_px`` describe the instrument; all three are written into ``geometry_spec``
    (geometry.json) so that ``analyze`` is told the instrument the frames were made with.
    """
    frames, mask, geo, spec, truth = _render(params, 2, flow_angle_deg, contrast, counts, shape, dq, beamstop, seed,
                                             beam, pixel_subsamples, psf_sigma_px)
    return SynthPair(frames[0], frames[1], mask, geo, spec, truth)


def render_series(params: SystemParams, n_frames: int, *, flow_angle_deg=30.0, contrast=0.3, counts=10.0,
                  shape=(1024, 1024), dq=None, beamstop=0.15, seed=0, beam=None, pixel_subsamples=PIXEL_SUBSAMPLES,
                  psf_sigma_px=0.0):
    """Frames of one sample through ``n_frames - 1`` successive rearrangements Gamma (shear steps).

    Frame k + 1 shows the particles of frame k moved by Gamma (eq. 3, fresh non-affine steps each
    time), so consecutive frames are pairs that share their particles and a frame. Frames 0 and 1
    equal :func:`render_pair` with the same arguments. Returns (frames list, mask, geometry, truth).
    The box [-L, L]^2 must keep the window filled: n_frames * gamma_l / 2 < L / 2. Paper's beam only.
    """
    if int(n_frames) < 2:
        raise ShearcorrError(f"a series needs at least 2 frames, got {n_frames}")
    if beam is not None and not beam.is_paper(params.beam_size):
        raise ShearcorrError("series of more than two frames are rendered with the paper's beam only; use render_pair")
    if (int(n_frames) - 1) * params.gamma_l / 2 >= params.beam_size / 2:
        raise ShearcorrError(f"{n_frames} frames of gamma_l = {params.gamma_l:g} shear particles out of the simulation box; use fewer")
    frames, mask, geo, _, truth = _render(params, int(n_frames), flow_angle_deg, contrast, counts, shape, dq, beamstop,
                                          seed, beam, pixel_subsamples, psf_sigma_px)
    return frames, mask, geo, truth


def render_frame(x, y, radius, geometry, *, flow_angle_deg: float, rng, contrast: float = 1.0, counts: float = 10.0,
                 beam=None, pixel_subsamples: int = PIXEL_SUBSAMPLES, psf_sigma_px: float = 0.0, modes=None,
                 volume=None) -> np.ndarray:
    r"""One detector frame (photon counts) of particles at (x, y) with radii ``radius`` (R0, model frame).

    .. math:: \bar n_p = c \int_{\rm pixel\ p} \Big[s\,\frac{\sum_k \nu_k |\sum_i E_k(\mathbf r_i)
              V_i F(qR_i) e^{-i\mathbf q\cdot\mathbf r_i}|^2}{\sum_i u_i V_i^2}
              + (1 - s)\,\frac{\sum_i u_i V_i^2 F^2(qR_i)}{\sum_i u_i V_i^2}\Big] * \mathrm{PSF},\quad
              n_p \sim \mathrm{Poisson}(\bar n_p)

    (module docstring; s = sqrt(contrast), c = ``counts`` / F(0.5)^2).

    Parameters
    ----------
    x, y, radius : array-like (n,)
        Positions along the flow and across it, and radii (R0).
    geometry : DetectorGeometry
        Per-pixel q; :meth:`DetectorGeometry.qvec_at` gives the sub-pixel q-vectors.
    flow_angle_deg : float
        Detector azimuth of the flow (degrees, APS convention).
    rng : numpy Generator
        Photon noise.
    contrast, counts : float
        Extra coherent fraction (module docstring) and photons per pixel at q R0 = 0.5.
    beam : shearcorr.beam.Beam, optional
        Footprint and coherence (R0); None: the paper's uniform, coherent window of side
        ``geometry.beam_size_r0``.
    pixel_subsamples : int
        Gauss-Legendre points per pixel and axis (1: the intensity at the pixel centre).
    psf_sigma_px : float
        rms of a Gaussian point-spread function applied to the pixel intensities (pixels).
    modes : (nu, evaluate), optional
        Precomputed :func:`shearcorr.forward.modes.coherent_modes` of ``beam`` (reused across frames).
    volume : float, optional
        The divisor S of the formula above. None (the paper's eq. 1): this configuration's
        :math:`\sum_i u_i V_i^2`. A number: that fixed value for every frame, as a detector records the intensity
        the particles scatter, which grows with the particles in the beam (``intensity="detector"`` of the
        synthetic stacks).
    """
    from numpy.polynomial.legendre import leggauss

    from ..beam import Beam
    from ..forward.modes import coherent_modes, intensity_at

    x, y, radius = (np.asarray(v, dtype=np.float64) for v in (x, y, radius))
    n_sub = int(pixel_subsamples)
    if n_sub < 1:
        raise ShearcorrError(f"pixel_subsamples must be >= 1, got {pixel_subsamples}")
    beam = (Beam() if beam is None else beam).resolved(geometry.beam_size_r0)
    nu, evaluate = coherent_modes(beam, MODE_EPS) if modes is None else modes
    u = beam.intensity(x, y)
    lit = u > 0
    xs, ys, rs, us = x[lit], y[lit], radius[lit], u[lit]
    v2u = us * sphere_volume(rs) ** 2
    S_conf = float(v2u.sum())
    S = S_conf if volume is None else float(volume)
    ny, nx = geometry.shape
    if S_conf <= 0:
        return rng.poisson(np.zeros((ny, nx))).astype(np.int64)
    amps = evaluate(xs, ys)
    rows, cols = np.mgrid[0:ny, 0:nx].astype(np.float64)
    t, w = leggauss(n_sub) if n_sub > 1 else (np.zeros(1), np.full(1, 2.0))
    flow = np.radians(float(flow_angle_deg))
    q_max = float(geometry.qr0.max()) * 1.01 + 1.0
    qs = np.linspace(0.0, q_max, 4096)
    P = (v2u[None, :] * form_factor(qs[:, None] * rs[None, :]) ** 2).sum(axis=1) / S  # incoherent I(q)
    coh = np.zeros((ny, nx))
    inc = np.zeros((ny, nx))
    for a, wa in zip(t, w):
        for b, wb in zip(t, w):
            q, ph = geometry.qvec_at(rows + 0.5 * a, cols + 0.5 * b)
            qx, qy = q * np.cos(ph - flow), q * np.sin(ph - flow)
            wt = 0.25 * wa * wb
            coh += (wt / S) * intensity_at(qx, qy, xs, ys, rs, amps, nu)
            inc += wt * np.interp(q, qs, P)
    s = np.sqrt(contrast)
    intensity = s * coh + (1.0 - s) * inc
    if psf_sigma_px > 0:
        from scipy.ndimage import gaussian_filter

        intensity = gaussian_filter(intensity, float(psf_sigma_px), mode="nearest")
    scale = counts / float(form_factor(0.5) ** 2)
    return rng.poisson(intensity * scale).astype(np.int64)


def synth_detector(shape, dq, beam_size: float, beamstop: float = 0.15, *, beam=None, psf_sigma_px: float = 0.0,
                   min_size: int = 64):
    """The synthetic detector: flat, beam centre in the middle, one pixel spanning ``dq`` (q R0) at the
    centre (default (2 pi / L) / 2.2, 2.2 pixels per speckle); mask (True = valid) with a beam stop of
    radius ``beamstop`` (q R0) and its arm, a horizontal and a vertical module gap. ``beam`` (not the
    paper's) and ``psf_sigma_px`` go into the geometry and its ``geometry.json`` dict.

    Returns (geometry, geometry.json dict, mask (ny, nx) bool, dq).
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
    if beam is not None:
        spec["beam"] = beam.to_spec(R0_NM)
    if psf_sigma_px:
        spec["psf_sigma_px"] = float(psf_sigma_px)
    geo = flat_detector((ny, nx), spec["beam_center_px"], PIXEL_M, distance, wavelength=LAMBDA_A,
                        particle_radius_nm=R0_NM, beam_size_nm=L * R0_NM, beam=beam, psf_sigma_px=psf_sigma_px)
    rows, cols = np.mgrid[0:ny, 0:nx]
    cx, cy = spec["beam_center_px"]
    mask = geo.qr0 > beamstop
    mask &= ~((np.abs(cols - cx) < max(3, nx // 170)) & (rows > cy))  # beam-stop arm to the lower edge
    gy, gx = int(cy + ny // 4), int(cx - nx // 5)
    mask[gy:gy + max(4, ny // 128), :] = False
    mask[:, gx:gx + max(4, nx // 128)] = False
    return geo, spec, mask, dq


def _render(params, n_frames, flow_angle_deg, contrast, counts, shape, dq, beamstop, seed, beam=None,
            pixel_subsamples=PIXEL_SUBSAMPLES, psf_sigma_px=0.0):
    from .checks import check_render

    check_render(params, counts, contrast, shape, n_frames)  # box, counts, memory (one-line errors)
    if not 0 < contrast <= 1:
        raise ShearcorrError(f"contrast must be in (0, 1], got {contrast}")
    if not counts > 0:
        raise ShearcorrError(f"counts must be > 0 (photons per pixel at q R0 = 0.5), got {counts}")
    from ..forward.modes import coherent_modes

    L = params.beam_size
    paper = beam is None or beam.is_paper(L)
    geo, spec, mask, dq = synth_detector(shape, dq, L, beamstop, beam=None if paper else beam, psf_sigma_px=psf_sigma_px)
    ny, nx = geo.shape
    from ..forward import montecarlo as conf
    from ..physics import rearrange

    s_conf, s_phot, s_steps = _streams(seed, 3)
    if paper:
        cfg = conf.sample_configuration(params, s_conf)
    else:
        from ..forward.beammc import beam_configuration

        cfg = beam_configuration(params, beam, s_conf)
    modes = coherent_modes((beam if beam is not None else _paper_beam()).resolved(L), MODE_EPS)
    rng = np.random.default_rng(s_phot)
    step_rng = np.random.default_rng(s_steps)
    positions = [(cfg.x, cfg.y), (cfg.x_after, cfg.y_after)]
    frames, n_in = [], []
    for k in range(n_frames):
        if k >= 2:
            positions.append(rearrange(*positions[-1], cfg.radius, params, step_rng))
        xs, ys = positions[k]
        frames.append(render_frame(xs, ys, cfg.radius, geo, flow_angle_deg=flow_angle_deg, rng=rng, contrast=contrast,
                                   counts=counts, beam=None if paper else beam, pixel_subsamples=pixel_subsamples,
                                   psf_sigma_px=psf_sigma_px, modes=modes))
        lit = (beam if not paper else _paper_beam()).resolved(L).intensity(xs, ys) > 0
        n_in.append(int(lit.sum()))
    shear = L if paper else beam.shear_length(L)
    truth = {"gamma_l": params.gamma_l, "d2": params.d2, "rs": params.rs, "n_l2": params.n_l2,
             "displacement": params.displacement, "beam_size": params.beam_size,
             "flow_angle_deg": float(flow_angle_deg), "contrast": float(contrast), "counts": float(counts),
             "n_in_beam": n_in, "shape": [ny, nx], "dq_r0_per_pixel": dq,
             "speckle_px": (2 * np.pi / L) / dq, "seed": None if seed is None else int(seed),
             "beam": None if paper else beam.resolved(L).to_dict(), "pixel_subsamples": int(pixel_subsamples),
             "psf_sigma_px": float(psf_sigma_px), "shear_length": shear, "strain": params.gamma_l / shear,
             "shearcorr_version": __version__,
             "physical": {"particle_radius_nm": R0_NM, "gamma_l_nm": params.gamma_l * R0_NM, "d2_nm": params.d2 * R0_NM}}
    return frames, mask, geo, spec, truth


def _paper_beam():
    from ..beam import Beam

    return Beam()


def pair_configuration(params: SystemParams, seed=0, beam=None):
    """The Monte Carlo configuration (:class:`shearcorr.forward.montecarlo.Configuration`) that
    :func:`render_pair` renders with this ``params``, ``seed`` and ``beam`` (flow along the model's x axis)."""
    if beam is not None and not beam.is_paper(params.beam_size):
        from ..forward.beammc import beam_configuration

        return beam_configuration(params, beam, _streams(seed)[0])
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


def write_synth(pair: SynthPair, out, fmt="npy", *, overwrite: bool = False) -> Path:
    """Write before/after frames (``npy`` or ``h5``, dataset /entry/data/data), mask.npy (1 = valid),
    geometry.json and truth.json into folder ``out`` atomically (temporary folder, then rename); an
    existing non-empty ``out`` only with ``overwrite``."""
    check_choice("frame_format", fmt, what="format")
    out = check_output_folder(out, overwrite=overwrite)
    with atomic_folder(out, overwrite=overwrite) as tmp:
        for name, arr in (("before", pair.before), ("after", pair.after)):
            if fmt == "npy":
                np.save(tmp / f"{name}.npy", arr.astype(np.int32))
            else:
                import io

                import h5py

                buf = io.BytesIO()  # built in memory: HDF5 writing to a full disk crashes the interpreter
                with h5py.File(buf, "w") as fh:
                    fh.create_dataset("entry/data/data", data=arr.astype(np.int32)[None], compression="gzip")
                (tmp / f"{name}.h5").write_bytes(buf.getvalue())
        np.save(tmp / "mask.npy", pair.mask.astype(np.uint8))
        spec = dict(pair.geometry_spec)
        if "profile_map" in spec.get("beam", {}):  # a measured beam profile goes into its own file
            spec["beam"] = dict(spec["beam"])
            np.save(tmp / "beam_profile.npy", np.asarray(spec["beam"].pop("profile_map")))
            spec["beam"]["profile_file"] = "beam_profile.npy"
        (tmp / "geometry.json").write_text(json.dumps(spec, indent=2) + "\n")
        truth = dict(pair.truth, files={"before": f"before.{fmt}", "after": f"after.{fmt}", "mask": "mask.npy",
                                        "mask_convention": "valid", "dataset": "/entry/data/data" if fmt == "h5" else None})
        (tmp / "truth.json").write_text(json.dumps(truth, indent=2) + "\n")
    return out
