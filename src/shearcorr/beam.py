r"""The beam and the instrument: footprint, transverse coherence, scattering geometry, detector response.

One frozen, validated description shared by the analytic engine, the Monte Carlo engine, the
synthetic-frame renderer, ``geometry.json`` and ``analyze`` (theory: ``docs/theory.md`` section 7).

Frames and units. Lengths are in units of the particle radius R0 (the model's unit); the physical
description (``geometry.json``) is converted with the particle radius (:meth:`Beam.from_spec`). The
model plane is spanned by the flow axis x and a second axis y in the detector plane: the velocity
gradient in the ``"1-2"`` geometry, the vorticity in the ``"1-3"`` geometry. Footprint sizes and
coherence lengths are given **along the flow and across it** (the footprint axes are assumed aligned
with the flow, as for horizontal/vertical slits and a horizontal or vertical flow).

* Footprint (intensity I_b(r), maximum 1): ``"square"`` / ``"rectangular"`` slits (uniform, hard
  edges; full widths), ``"gaussian"`` (FWHM along and across the flow), ``"measured"`` (a 2-D
  intensity map sampled on a regular grid, centred on the beam).
* Coherence: a Gaussian Schell-model beam, cross-spectral density
  :math:`J(\mathbf r_1, \mathbf r_2) = a(\mathbf r_1)\,a(\mathbf r_2)\,\mu(\mathbf r_1 - \mathbf r_2)` with
  :math:`a = \sqrt{I_b}` and :math:`\mu(\boldsymbol\rho) = \exp(-\rho_x^2/2\xi_x^2 - \rho_y^2/2\xi_y^2)`;
  :math:`\xi` are the rms transverse coherence lengths; None (or inf) is a coherent axis.
* Geometry: ``"1-2"`` -- beam along the vorticity (3), flow--gradient (1--2) plane on the detector:
  the affine displacement :math:`\gamma y` depends on the in-plane coordinate and the beam size L
  multiplies :math:`\gamma` in the decorrelation (the paper's model; rheo-SANS "1-2 plane" cells).
  ``"1-3"`` -- beam along the velocity gradient (2) through a gap (sample thickness) h, flow--vorticity
  (1--3) plane on the detector: the displacement :math:`\gamma (y_d - y_0)` depends on the depth
  :math:`y_d` along the beam, h multiplies :math:`\gamma` (the "radial" beam of Couette cells and the
  axial beam of plate--plate / cone--plate cells). The "tangential" Couette beam (along the flow,
  2--3 plane) has no flow component of q and carries no affine signal; it is not modelled.
  ``gamma_l`` always means :math:`\gamma` times the shear length: the beam size L (``beam_size``) in
  1-2, the gap h in 1-3.
* Detector (:class:`PixelResponse`): the q-space footprint of one pixel and a Gaussian point-spread
  function. The measured intensity is the coherent one convolved in q with the source's angular
  spread, the pixel and the PSF; in the pair correlation all three act through the transfer
  :math:`M(\boldsymbol\rho) = |\mu(\boldsymbol\rho)|^2\,|\hat R_{pix}(\boldsymbol\rho)|^2\,|\hat R_{psf}(\boldsymbol\rho)|^2`
  (:func:`transfer`), a function of the separation :math:`\boldsymbol\rho` of two scatterers.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field

import numpy as np

from .choices import CHOICES, check_choice
from .errors import ShearcorrError

__all__ = ["Beam", "PROFILES", "PLANES", "FWHM_PER_SIGMA", "GAUSS_CUT"]

PROFILES = CHOICES["beam_profile"]
PLANES = CHOICES["plane"]
#: FWHM of a Gaussian intensity profile in units of its standard deviation, 2 sqrt(2 ln 2).
FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
#: A Gaussian footprint is truncated where its intensity falls below exp(-GAUSS_CUT^2 / 2) per axis.
GAUSS_CUT = 5.5
#: A measured profile must fall below this fraction of its maximum on the edge of its map.
MEASURED_EDGE_TOL = 1e-3


def _mixture(mix) -> tuple | None:
    """Validated, normalised coherence components ((w, xi_x, xi_y), ...); None when all are coherent."""
    try:
        comps = [tuple(c) for c in mix]
    except TypeError:
        comps = None
    if not comps or any(len(c) != 3 for c in comps):
        raise ShearcorrError(f"beam: coherence_mix must be a list of (weight, xi_along, xi_across), got {mix!r}")
    out = []
    for w, *xi in comps:
        w = float(w)
        if not (w >= 0 and math.isfinite(w)):
            raise ShearcorrError(f"beam: coherence_mix weights must be >= 0, got {w!r}")
        out.append((w, *_pair("coherence_mix length", xi, allow_inf=True)))
    total = sum(c[0] for c in out)
    if not total > 0:
        raise ShearcorrError("beam: coherence_mix weights must not all be zero")
    out = tuple((w / total, x, y) for w, x, y in out if w > 0)
    return None if all(math.isinf(x) and math.isinf(y) for _, x, y in out) else out


def _pair(name, v, *, allow_inf=False) -> tuple[float, float]:
    vals = (v, v) if np.ndim(v) == 0 else tuple(v)
    if len(vals) != 2:
        raise ShearcorrError(f"beam: {name} must be one number or two (along the flow, across it), got {v!r}")
    out = []
    for x in vals:
        try:
            x = float(x)
        except (TypeError, ValueError):
            raise ShearcorrError(f"beam: {name} must be numbers, got {v!r}") from None
        if not (x > 0) or (math.isinf(x) and not allow_inf) or math.isnan(x):
            raise ShearcorrError(f"beam: {name} must be positive{' (inf = coherent)' if allow_inf else ''} and finite, got {v!r}")
        out.append(x)
    return out[0], out[1]


@dataclass(frozen=True, eq=False)
class Beam:
    r"""Beam footprint, transverse coherence and scattering geometry (lengths in R0; module docstring).

    Parameters
    ----------
    profile : {"square", "rectangular", "gaussian", "measured"}
    size : float or (float, float), optional
        Slit widths (square, rectangular) or FWHM (gaussian), along the flow and across it, in R0.
        None: a square / Gaussian of the model's ``beam_size`` (resolved by :meth:`resolved`).
    coherence : float or (float, float), optional
        rms transverse coherence lengths xi (Gaussian Schell model), along and across the flow, R0;
        None (default) or inf: coherent (:meth:`to_dict` writes an infinite length as null).
    coherence_mix : sequence of (weight, xi_along, xi_across), optional
        Instead of ``coherence``: a degree of coherence that is a weighted sum of Gaussian Schell
        components, :math:`\mu(\boldsymbol\rho) = \sum_k w_k \exp(-\rho_x^2/2\xi_{xk}^2 - \rho_y^2/2\xi_{yk}^2)`
        (weights >= 0, normalised to sum 1; inf = a coherent component), e.g. a coherent mode with a
        short-range halo: ``[(0.8, inf, inf), (0.2, 40, 40)]``.
    plane : {"1-2", "1-3"}
        Scattering geometry (module docstring).
    gap : float, optional
        Gap / sample thickness h along the beam (R0); required for, and only used by, ``"1-3"``.
    zero_velocity : float
        ``"1-3"``: depth of the zero-velocity plane from the middle of the gap (R0), in [-h/2, h/2]
        (0: counter-moving walls; +-h/2: a fixed wall, e.g. the outer cylinder of a Couette cell).
    profile_map : array-like of shape (ny, nx), optional
        ``"measured"``: intensity on a regular grid, row index along +y (across the flow), column
        index along +x (flow); the beam centre is the centre of the map.
    profile_step : float or (float, float), optional
        ``"measured"``: grid step along x and y (R0).
    """

    profile: str = "square"
    size: tuple[float, float] | None = None
    coherence: tuple[float, float] | None = None
    plane: str = "1-2"
    gap: float | None = None
    zero_velocity: float = 0.0
    profile_map: np.ndarray | None = field(default=None, repr=False)
    profile_step: tuple[float, float] | None = None
    coherence_mix: tuple | None = None

    def __post_init__(self):
        check_choice("beam_profile", self.profile, what="beam: profile")
        check_choice("plane", self.plane, what="beam: plane (1-2: beam along the vorticity; 1-3: along the velocity gradient)")
        if self.size is not None:
            if self.profile == "measured":
                raise ShearcorrError("beam: a measured profile takes its size from profile_map and profile_step; drop size")
            size = _pair("size", self.size)
            if self.profile == "square" and abs(size[0] - size[1]) > 1e-9 * size[0]:
                raise ShearcorrError(f"beam: a square beam has one size, got {self.size!r}; use profile 'rectangular'")
            object.__setattr__(self, "size", size)
        elif self.profile == "rectangular":
            raise ShearcorrError("beam: a rectangular beam needs size = (along the flow, across it)")
        if self.coherence is not None:
            if self.coherence_mix is not None:
                raise ShearcorrError("beam: give coherence or coherence_mix, not both")
            coh = _pair("coherence", self.coherence, allow_inf=True)
            object.__setattr__(self, "coherence", None if all(math.isinf(c) for c in coh) else coh)
        if self.coherence_mix is not None:
            object.__setattr__(self, "coherence_mix", _mixture(self.coherence_mix))
        if self.plane == "1-3":
            if self.gap is None:
                raise ShearcorrError("beam: the 1-3 geometry needs the gap h (sample thickness along the beam)")
            gap = float(self.gap)
            if not (gap > 0 and math.isfinite(gap)):
                raise ShearcorrError(f"beam: gap must be a positive length, got {self.gap!r}")
            object.__setattr__(self, "gap", gap)
            z0 = float(self.zero_velocity)
            if not abs(z0) <= 0.5 * gap:
                raise ShearcorrError(f"beam: zero_velocity must lie in the gap, |z0| <= h/2 = {0.5 * gap:g}, got {z0:g}")
            object.__setattr__(self, "zero_velocity", z0)
        else:
            if self.gap is not None:
                raise ShearcorrError("beam: gap is used only by the 1-3 geometry (in 1-2 the beam size is the shear length)")
            if float(self.zero_velocity) != 0.0:
                raise ShearcorrError("beam: zero_velocity is supported only in the 1-3 geometry (1-2 puts it at the beam centre)")
        if self.profile == "measured":
            self._check_measured()
        elif self.profile_map is not None or self.profile_step is not None:
            raise ShearcorrError("beam: profile_map / profile_step belong to profile 'measured'")

    def _check_measured(self):
        if self.profile_map is None or self.profile_step is None:
            raise ShearcorrError("beam: a measured profile needs profile_map (2-D intensity) and profile_step (grid step, R0)")
        m = np.array(self.profile_map, dtype=np.float64)
        if m.ndim != 2 or min(m.shape) < 8:
            raise ShearcorrError(f"beam: profile_map must be a 2-D array of at least 8 x 8, got shape {m.shape}")
        if not np.all(np.isfinite(m)) or m.min() < 0 or m.max() <= 0:
            raise ShearcorrError("beam: profile_map must be finite, non-negative and not all zero")
        m /= m.max()
        edge = max(m[0].max(), m[-1].max(), m[:, 0].max(), m[:, -1].max())
        if edge > MEASURED_EDGE_TOL:
            raise ShearcorrError(f"beam: the measured profile is {edge:.2g} of its maximum on the edge of the map; "
                                 f"give a map that extends until the intensity is below {MEASURED_EDGE_TOL:g}")
        m.flags.writeable = False
        object.__setattr__(self, "profile_map", m)
        object.__setattr__(self, "profile_step", _pair("profile_step", self.profile_step))

    # ------------------------------------------------------------------ identity
    def to_dict(self) -> dict:
        """JSON-serialisable description (lengths in R0); the measured map is summarised by a hash."""
        fin = lambda c: c if math.isfinite(c) else None  # noqa: E731 - strict JSON
        coh = None if self.coherence is None else [fin(c) for c in self.coherence]
        d = {"profile": self.profile, "size": list(self.size) if self.size else None, "coherence": coh,
             "plane": self.plane}
        if self.coherence_mix is not None:
            d["coherence_mix"] = [[w, fin(x), fin(y)] for w, x, y in self.coherence_mix]
        if self.plane == "1-3":
            d.update(gap=self.gap, zero_velocity=self.zero_velocity)
        if self.profile == "measured":
            d.update(profile_shape=list(self.profile_map.shape), profile_step=list(self.profile_step),
                     profile_sha256=hashlib.sha256(self.profile_map.tobytes()).hexdigest()[:16])
        return d

    def key(self) -> str:
        """Short hash of the description (cache keys)."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    def __eq__(self, other):
        return isinstance(other, Beam) and self.key() == other.key()

    def __hash__(self):
        return hash(self.key())

    # ------------------------------------------------------------------ derived
    @property
    def is_slit(self) -> bool:
        """Uniform footprint with hard edges (intensity 0 or 1)."""
        return self.profile in ("square", "rectangular")

    @property
    def coherent(self) -> bool:
        return self.coherence is None and self.coherence_mix is None

    @property
    def coherence_components(self) -> tuple | None:
        """The degree of coherence as components ((weight, xi_along, xi_across), ...); None: coherent."""
        if self.coherence_mix is not None:
            return self.coherence_mix
        return None if self.coherence is None else ((1.0, *self.coherence),)

    def resolved(self, beam_size: float) -> Beam:
        """The same beam with ``size`` filled from the model's ``beam_size`` where it was left None."""
        if self.size is not None or self.profile == "measured":
            return self
        return Beam(self.profile, (beam_size, beam_size), self.coherence, self.plane, self.gap, self.zero_velocity,
                    coherence_mix=self.coherence_mix)

    def is_paper(self, beam_size: float) -> bool:
        """The paper's beam: square of side ``beam_size``, coherent, 1-2 geometry (exact default path)."""
        return (self.profile == "square" and self.coherent and self.plane == "1-2"
                and (self.size is None or abs(self.size[0] - beam_size) <= 1e-12 * beam_size))

    def shear_length(self, beam_size: float) -> float:
        """The length that multiplies gamma in gamma_l: beam_size (1-2) or the gap (1-3)."""
        return self.gap if self.plane == "1-3" else float(beam_size)

    def half_extent(self) -> tuple[float, float]:
        """Half-widths (x, y) of the region where the footprint intensity is non-negligible (R0)."""
        if self.profile == "measured":
            ny, nx = self.profile_map.shape
            return 0.5 * (nx - 1) * self.profile_step[0], 0.5 * (ny - 1) * self.profile_step[1]
        sx, sy = self.size
        if self.profile == "gaussian":
            return GAUSS_CUT * sx / FWHM_PER_SIGMA, GAUSS_CUT * sy / FWHM_PER_SIGMA
        return 0.5 * sx, 0.5 * sy

    def box_half_width(self, beam_size: float) -> float:
        """Half-width B of the simulation box [-B, B]^2. Slits: the paper's rule, the footprint fills half
        the box width (B = L for the paper's beam). Smooth footprints: their extent (where the intensity
        has fallen below exp(-GAUSS_CUT^2/2)) plus L/4 for particles that move in."""
        half = max(self.half_extent())
        if self.is_slit:
            return max(float(beam_size), 2.0 * half)
        return max(float(beam_size), half + 0.25 * float(beam_size))

    def intensity(self, x, y) -> np.ndarray:
        """Footprint intensity I_b(x, y) (maximum 1); x along the flow, y across (R0)."""
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        if self.is_slit:
            return ((np.abs(x) < 0.5 * self.size[0]) & (np.abs(y) < 0.5 * self.size[1])).astype(np.float64)
        if self.profile == "gaussian":
            sx, sy = (s / FWHM_PER_SIGMA for s in self.size)
            ex, ey = self.half_extent()
            val = np.exp(-0.5 * ((x / sx) ** 2 + (y / sy) ** 2))
            return np.where((np.abs(x) < ex) & (np.abs(y) < ey), val, 0.0)
        return self._interp_measured(x, y)

    def _interp_measured(self, x, y):
        m = self.profile_map
        ny, nx = m.shape
        fx = x / self.profile_step[0] + 0.5 * (nx - 1)
        fy = y / self.profile_step[1] + 0.5 * (ny - 1)
        from scipy.ndimage import map_coordinates

        coords = np.stack([np.ravel(fy), np.ravel(fx)])
        out = map_coordinates(m, coords, order=3, mode="constant", cval=0.0, prefilter=True)
        return np.clip(out, 0.0, None).reshape(np.broadcast(x, y).shape)

    def amplitude(self, x, y) -> np.ndarray:
        """Field amplitude a = sqrt(I_b) (real: no wavefront curvature, see docs/theory.md)."""
        return np.sqrt(self.intensity(x, y))

    def coherence_transfer(self, rho_x, rho_y) -> np.ndarray:
        r""":math:`|\mu(\boldsymbol\rho)|^2`, :math:`\mu = \sum_k w_k \exp(-\rho_x^2/2\xi_{xk}^2 - \rho_y^2/2\xi_{yk}^2)`
        (one component: :math:`\exp(-\rho_x^2/\xi_x^2 - \rho_y^2/\xi_y^2)`; 1 when coherent)."""
        rho_x, rho_y = np.asarray(rho_x, dtype=np.float64), np.asarray(rho_y, dtype=np.float64)
        comps = self.coherence_components
        if comps is None:
            return np.ones(np.broadcast_shapes(rho_x.shape, rho_y.shape))
        mu = sum(w * np.exp(-0.5 * (rho_x / xx) ** 2 - 0.5 * (rho_y / xy) ** 2) for w, xx, xy in comps)
        return mu * mu

    # ------------------------------------------------------------------ physical units
    @classmethod
    def from_spec(cls, spec: dict, *, particle_radius_nm: float) -> Beam:
        """Beam from the ``"beam"`` object of ``geometry.json`` (physical units, docs/experiment.md).

        Keys: ``profile``; ``size_um`` (slit widths or, for gaussian, FWHM; one number or [along the
        flow, across]); ``coherence_length_um`` (rms xi, one number or two; omit for coherent);
        ``plane`` ("1-2" | "1-3"); ``gap_um`` and ``zero_velocity_um`` (1-3); ``profile_file`` (.npy,
        relative paths already resolved by the caller into ``profile_map``) and ``profile_step_um``.
        """
        if not isinstance(spec, dict):
            raise ShearcorrError("geometry: 'beam' must be a JSON object (docs/experiment.md, 'Describe your beamline')")
        known = {"profile", "size_um", "coherence_length_um", "coherence_mix_um", "plane", "gap_um", "zero_velocity_um",
                 "profile_file", "profile_map", "profile_step_um"}
        extra = sorted(set(spec) - known)
        if extra:
            raise ShearcorrError(f"geometry: unknown beam key(s) {', '.join(extra)}; known: {', '.join(sorted(known - {'profile_map'}))}")
        r = float(particle_radius_nm)
        um = 1000.0 / r  # 1 um in R0

        def conv(key, allow_inf=False):
            if key not in spec or spec[key] is None:
                return None
            v = spec[key]
            vals = [v] if np.ndim(v) == 0 else list(v)
            try:
                vals = [math.inf if (allow_inf and isinstance(x, str) and x.lower() in ("inf", "infinity")) else float(x)
                        for x in vals]
            except (TypeError, ValueError):
                raise ShearcorrError(f"geometry: beam {key} must be a number or two numbers (um), got {v!r}") from None
            out = [x * um for x in vals]
            return out[0] if len(out) == 1 else tuple(out)

        mix = spec.get("coherence_mix_um")
        if mix is not None:
            try:
                mix = [(float(c[0]), *(math.inf if str(x).lower() in ("inf", "infinity") else float(x) * um for x in c[1:]))
                       for c in mix]
            except (TypeError, ValueError, IndexError):
                raise ShearcorrError(f"geometry: beam coherence_mix_um must be [[weight, along_um, across_um], ...], got {mix!r}") from None
        return cls(profile=spec.get("profile", "square"), size=conv("size_um"),
                   coherence=conv("coherence_length_um", allow_inf=True), plane=str(spec.get("plane", "1-2")),
                   gap=conv("gap_um"), zero_velocity=conv("zero_velocity_um") or 0.0,
                   profile_map=spec.get("profile_map"), profile_step=conv("profile_step_um"), coherence_mix=mix)

    def to_spec(self, particle_radius_nm: float) -> dict:
        """Physical description (the ``"beam"`` object of geometry.json), inverse of :meth:`from_spec`; a
        measured map stays an array under ``profile_map`` (the caller writes it to a file and names it
        in ``profile_file``)."""
        um = float(particle_radius_nm) / 1000.0  # 1 R0 in um
        d = {"profile": self.profile, "plane": self.plane}
        if self.size is not None:
            d["size_um"] = [self.size[0] * um, self.size[1] * um]
        if self.coherence is not None:
            d["coherence_length_um"] = [c * um if math.isfinite(c) else "inf" for c in self.coherence]
        if self.coherence_mix is not None:
            d["coherence_mix_um"] = [[w, *(x * um if math.isfinite(x) else "inf" for x in xi)] for w, *xi in self.coherence_mix]
        if self.plane == "1-3":
            d["gap_um"] = self.gap * um
            d["zero_velocity_um"] = self.zero_velocity * um
        if self.profile == "measured":
            d["profile_map"] = np.asarray(self.profile_map)
            d["profile_step_um"] = [self.profile_step[0] * um, self.profile_step[1] * um]
        return d
