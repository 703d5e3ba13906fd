"""The reproduce report: its typed data (:class:`ReportData`) and its markdown (:func:`render`).

Every number in the report comes from a :class:`ReportData` filled by the pipeline
(:mod:`shearcorr.reproduce.pipeline`); nothing is hard-coded except the paper's own values, quoted for
comparison (:data:`PAPER_ERR`, :data:`PAPER_TABLE1`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .._version import __version__

__all__ = ["PAPER_ERR", "PAPER_TABLE1", "PAPER_ROWS", "ARD_ROWS", "ROWS", "ROW_LABELS", "SVDSummary", "DirectFit",
           "NoisyTest", "NoisyFit", "CAPTIONS", "NOISY_ROW", "POLISHED_ROW", "ReportData", "render"]

#: Paper's headline errors (Sec. III C) and Table I (l, sigma).
PAPER_ERR = {"rs": 0.06, "d2": 0.01, "gamma_l": 0.03}
PAPER_TABLE1 = {"rs": (1.338e-1, 2.673e-3), "d2": (2.419e-1, 2.717e-3), "gamma_l": (1.405e-1, 1.927e-2)}
#: Model rows of the report: the paper's GPR on each input, then the ARD model.
PAPER_ROWS = ("g_theta", "g_q", "both", "svd")
ARD_ROWS = ("ard_both", "ard_g_theta")
ROWS = PAPER_ROWS + ARD_ROWS
#: The noise-aware model of the Monte Carlo test (trained for that test's N; not in the analytic tables).
NOISY_ROW = "both_noisy"
#: The same model's answers polished by the likelihood (:mod:`shearcorr.inverse.polish`): what `predict` returns.
POLISHED_ROW = "both_noisy_polished"
ROW_LABELS = {NOISY_ROW: "paper GPR, g(theta)+g(q), trained for N = {n} (noise-aware: the default family's member)",
              POLISHED_ROW: "the same, polished by the likelihood (the default of `predict`)",
              "g_theta": "paper GPR, g(theta) (the paper's configuration)", "g_q": "paper GPR, g(q)",
              "both": "paper GPR, g(theta)+g(q)", "svd": "paper GPR, SVD k=3 of g(theta)",
              "ard_both": "ARD GPR, {pca} of z-scored g(theta), g(q)",
              "ard_g_theta": "ARD GPR, {pca} of z-scored g(theta)"}
#: Targets of the report's tables (n_l2 is trained too, to show it is not recoverable).
SHOWN = ("rs", "d2", "gamma_l")


@dataclass(frozen=True)
class SVDSummary:
    """Leading singular values of the g(theta) matrix and the share of sum Sigma^2 of the first three."""

    singular_values: list
    explained3: float


@dataclass(frozen=True)
class DirectFit:
    """The direct physics fit on the first ``n`` held-out samples, and the GPRs' Err on the same samples."""

    n: int
    seconds_per_sample: float
    err: dict
    gpr_err_same: dict
    gpr_seconds_per_sample: dict


@dataclass(frozen=True)
class NoisyTest:
    """A model on the Monte Carlo test set: its Evaluation, the 95 % coverage without input noise, and
    RMS error / Cramer-Rao bound per target."""

    evaluation: object
    coverage95_noise_free: dict
    rms_over_crb: dict


@dataclass(frozen=True)
class NoisyFit:
    """The direct fit with the noise model (:mod:`shearcorr.inverse.fit`, n_l2 with its prior) on the
    Monte Carlo test set: per target Err, interval coverage, z std, RMS error / Cramer-Rao bound."""

    n: int
    configs: int
    err: dict
    coverage68: dict
    coverage95: dict
    z_std: dict
    rms_over_crb: dict
    chi2_red_median: float
    seconds_per_sample: float


#: One caption per figure of the report (file-name stem -> text).
CAPTIONS = {
    "fig1_configuration": "Fig. 1: (a) one configuration before and after the rearrangement; (b) its intensity "
                          "I, (c) I' after, (d) I I' as polar maps.",
    "fig2_mc_average": "Fig. 2: Monte Carlo ensemble average: (a) I, (b) g(q, theta), (c) the paper's eq. 5, "
                       "polar maps with q linear.",
    "fig3_g_q_g_theta": "Fig. 3: g(q) (left) and g(theta) (right) of the analytic engine for sweeps of R_s, D_2 "
                        "and gamma L (rows), the others at the baseline.",
    "fig4_svd": "Fig. 4: singular values of the training g(theta) matrix (left) and the first singular "
                "vectors against theta (right).",
    "fig5_svd_space": "Fig. 5: the training samples in the space of the first three SVD projections, "
                      "coloured by each parameter.",
    "fig6_pddf_lml": "Fig. 6: (a) PDDF/ACF of the training inputs; (b-d) log marginal likelihood over "
                     "(l, sigma) for R_s, D_2 and gamma L, optimum marked.",
    "fig7_parity": "Fig. 7: predicted against true values on the held-out samples, error bars 1 std",
}


@dataclass
class ReportData:
    """Everything the report shows (filled stage by stage by :func:`shearcorr.reproduce.reproduce`)."""

    config: object  # ReproduceConfig
    seed: int
    figures: dict = field(default_factory=dict)  # "forward" -> [names]; "fig4".."fig6", "fig7_<row>" -> name
    svd: SVDSummary | None = None
    infos: dict = field(default_factory=dict)  # row -> TrainingInfo
    evals: dict = field(default_factory=dict)  # row -> Evaluation (held-out analytic samples)
    labels: dict = field(default_factory=dict)  # row -> label
    best_row: str = ""
    pddf_seconds: float = 0.0
    rs_ident: object = None  # RsIdentifiability
    rs_degeneracy: list = field(default_factory=list)  # Degeneracy rows
    fit: DirectFit | None = None
    spot: list = field(default_factory=list)  # SpotCheck rows
    noisy: dict = field(default_factory=dict)  # row -> NoisyTest
    noisy_fit: NoisyFit | None = None
    mc_chi2: list = field(default_factory=list)
    n_train: int = 0
    n_test: int = 0
    times: dict = field(default_factory=dict)
    total_seconds: float = 0.0

    @property
    def rows(self) -> tuple:
        """The model rows of this run (``config.rows``), in :data:`ROWS` order."""
        return tuple(f for f in ROWS if f in self.config.rows)


def _pct(v) -> str:
    return f"{100 * v:.2f} %"


def _per_target(d: dict) -> str:
    return " / ".join(f"{100 * d[t]:.0f}" for t in SHOWN) + " %"


def _header(R: ReportData) -> list[str]:
    c, F = R.config, R.figures
    lines = [
        "# shearcorr reproduce report", "",
        f"shearcorr {__version__}; seed {R.seed}; analytic dataset of {c.n_samples} samples on "
        f"{c.grid[2]} q x {c.grid[3]} theta, split {R.n_train} train / {R.n_test} held-out test "
        f"(30 %); LML grids {c.n_grid} x {c.n_grid}; total run time {R.total_seconds:.0f} s.", "",
        "## Figures", "",
        f"Fig. 2 is a Monte Carlo average over {c.forward_configs} configurations; Fig. 3 uses the analytic engine.",
        "",
    ]
    names = list(F["forward"]) + [F[key] for key in ("fig4", "fig5", "fig6")]
    names += [F[key] for key in sorted(k for k in F if k.startswith("fig7"))]
    for name in names:
        lines += [f"![{name}](figures/{name})", "", f"*{_caption(name)}*", ""]
    lines += ["", f"SVD of g(theta): leading singular values {', '.join(f'{v:.4g}' for v in R.svd.singular_values)}; "
              f"the first three carry {100 * R.svd.explained3:.5f} % of sum Sigma^2.", ""]
    return lines


def _caption(name: str) -> str:
    stem = name.rsplit(".", 1)[0]
    if stem.startswith("fig7_parity_"):
        return f"{CAPTIONS['fig7_parity']} (input {stem[len('fig7_parity_'):]})."
    return CAPTIONS[stem]


def _table1(R: ReportData) -> list[str]:
    def row(f, t):
        info = R.infos[f]
        i = list(info.targets).index(t)
        return info.search.l[i], info.search.sigma[i], info.l_bounds

    lines = ["## Table I: optimised hyperparameters (input g(theta))", "",
             "l is the paper's squared length (sklearn length_scale^2), sigma the white-noise variance of the "
             "standardised target.", "",
             "| target | l (ours) | sigma (ours) | l (paper) | sigma (paper) | l bounds searched |",
             "|---|---|---|---|---|---|"]
    for t in ("rs", "d2", "gamma_l", "n_l2"):
        l, s, lb = row("g_theta", t)
        paper = f"{PAPER_TABLE1[t][0]:.4g} | {PAPER_TABLE1[t][1]:.4g}" if t in PAPER_TABLE1 else "- | -"
        lines.append(f"| {t} | {l:.4g} | {s:.3g} | {paper} | [{lb[0]:.3g}, {lb[1]:.3g}] |")
    lines += ["", "The paper's Table I has no n_l2 row (it does not invert n_l2). l is a squared distance between "
              "input vectors, so it scales with the square of the inputs' units: ours are the 101-point g(theta) "
              "profiles as the engine gives them, whose differences between samples are 10-50x larger in "
              "squared norm than those of inputs the paper may have rescaled (it does not say how); the ratios "
              "of l between targets and the sigma column are the comparable numbers."]
    lines += ["", "Hyperparameters of the other inputs: " + "; ".join(
        f"{f}: " + ", ".join(f"{t} (l {row(f, t)[0]:.3g}, sigma {row(f, t)[1]:.2g})" for t in SHOWN)
        for f in PAPER_ROWS if f != "g_theta"), "",
        "ARD models (amplitude x ARD RBF + white noise on the top principal components of the z-scored input; "
        "n_l2, D_2, gamma L modelled as log values; length scales in units of the components): " + "; ".join(
            f"{f}/{t}: amplitude {h['amplitude']:.3g}, noise {h['noise']:.2g}, length scales "
            + " ".join(f"{v:.3g}" for v in h["length_scale"])
            for f in ARD_ROWS if f in R.infos for t, h in R.infos[f].hyper.items() if t != "n_l2") + ".", ""]
    return lines


def _errors(R: ReportData) -> list[str]:
    lines = ["## Err on the held-out 30 % (analytic data)", "",
             "Err = <|mu_true - mu_pred| / max(mu_true, mu_pred)>, predictions clipped at 0, 0/0 counted as 0.", "",
             "| input | Err R_s | Err D_2 | Err gamma L | Err nL^2 (not recoverable) | cov68 R_s/D_2/gammaL | cov95 R_s/D_2/gammaL |",
             "|---|---|---|---|---|---|---|",
             f"| paper (g(theta), MC data) | {_pct(PAPER_ERR['rs'])} | {_pct(PAPER_ERR['d2'])} | {_pct(PAPER_ERR['gamma_l'])} | - | - | - |"]
    for f in R.rows:
        e = R.evals[f]
        lines.append(f"| {R.labels[f]} | {_pct(e.err['rs'])} | {_pct(e.err['d2'])} | {_pct(e.err['gamma_l'])} | "
                     f"{_pct(e.err['n_l2'])} | {_per_target(e.coverage68)} | {_per_target(e.coverage95)} |")
    fit = R.fit
    lines.append(f"| direct fit, full g(q, theta) (first {fit.n} test samples) | {_pct(fit.err['rs'])} | "
                 f"{_pct(fit.err['d2'])} | {_pct(fit.err['gamma_l'])} | fixed at 150 | - | - |")
    lines += ["", f"Best input (sum of Err / paper's Err): **{R.best_row}**.", "",
              f"GPR on the same {fit.n} samples as the fit: " + "; ".join(
                  f"{f}: " + ", ".join(f"{t} {_pct(v)}" for t, v in fit.gpr_err_same[f].items()) for f in R.rows) + ".", ""]
    return lines


def _rs(R: ReportData) -> list[str]:
    ident = R.rs_ident
    lines = ["## R_s identifiability", "", f"Input {R.best_row}, held-out samples binned by the true R_s:", "",
             "| R_s bin | n | Err R_s | mean abs error | mean predicted std |", "|---|---|---|---|---|"]
    lines += [f"| [{b.lo:.2f}, {b.hi:.2f}) | {b.n} | {_pct(b.err)} | {b.mean_abs_error:.4f} | {b.mean_std:.4f} |"
              for b in ident.bins]
    lines += ["", "Largest change of g(theta) caused by R_s at (nL^2, D_2, gammaL) = (150, 1, 10), analytic engine: "
              + ", ".join(f"R_s = {r:g}: {d:.2e}" for r, d in ident.signal)
              + f"; for comparison nL^2 150 -> 200 at R_s = 0 changes it by {ident.n_l2_signal:.2e}.", "",
              "How much of the R_s signal survives the best monodisperse fit (R_s fixed at 0; nL^2, D_2, gammaL free; "
              "analytic engine, at (150, R_s, 1, 10)): what is left is the part of the observable only R_s explains.", "",
              "| observable | R_s | max abs(g(R_s) - g(0)) | rms residual after fit | max residual | fitted nL^2, D_2, gammaL |",
              "|---|---|---|---|---|---|"]
    lines += [f"| {d.observable} | {d.rs:g} | {d.signal:.2e} | {d.rms_residual:.2e} | {d.max_residual:.2e} | "
              f"{d.fitted[0]:.1f}, {d.fitted[1]:.4f}, {d.fitted[2]:.3f} |" for d in R.rs_degeneracy]
    return lines + [""]


def _monte_carlo(R: ReportData) -> list[str]:
    c = R.config
    lines = ["## Monte Carlo checks", "",
             f"Spot check, {c.spot_sets} parameter sets x {c.spot_configs} configurations, MC vs analytic engine:", "",
             "| nL^2 | R_s | D_2 | gamma L | chi^2/dof | max abs difference |", "|---|---|---|---|---|---|"]
    lines += [f"| {s.params.n_l2:.1f} | {s.params.rs:.3f} | {s.params.d2:.3f} | {s.params.gamma_l:.2f} | {s.chi2:.3f} | "
              f"{s.max_abs:.2e} |" for s in R.spot]
    chi = np.asarray(R.mc_chi2)
    lines += ["", f"Noisy test set: models trained on analytic data, tested on {c.mc_sets} Monte Carlo sets x "
              f"{c.mc_configs} configurations (chi^2/dof vs analytic: median {np.median(chi):.3f}, "
              f"max {chi.max():.3f}):", "",
              "The predicted std includes the input noise propagated from g_err to first order "
              "(var += J Sigma_x J^T, docs/inversion.md); the last column is the coverage without that term. The "
              "polished row starts from the noise-aware model's answer and takes Gauss-Newton steps of the fit's "
              "likelihood (docs/inversion.md); its last column repeats its coverage (no input-noise term).", "",
              "| model | Err R_s | Err D_2 | Err gamma L | cov68 R_s/D_2/gammaL | cov95 R_s/D_2/gammaL | "
              "z std R_s/D_2/gammaL | RMS/CRB R_s/D_2/gammaL | cov95 without input noise |",
              "|---|---|---|---|---|---|---|---|---|"]
    for f in R.noisy:
        e = R.noisy[f].evaluation
        lines.append(f"| {R.labels[f]} | {_pct(e.err['rs'])} | {_pct(e.err['d2'])} | {_pct(e.err['gamma_l'])} | "
                     f"{_per_target(e.coverage68)} | {_per_target(e.coverage95)} | {_z(e.z_std)} | "
                     f"{_z(R.noisy[f].rms_over_crb)} | {_per_target(R.noisy[f].coverage95_noise_free)} |")
    nf = R.noisy_fit
    lines.append(f"| direct fit with the noise model (n_l2 with its prior) | {_pct(nf.err['rs'])} | "
                 f"{_pct(nf.err['d2'])} | {_pct(nf.err['gamma_l'])} | {_per_target(nf.coverage68)} | "
                 f"{_per_target(nf.coverage95)} | {_z(nf.z_std)} | {_z(nf.rms_over_crb)} | - |")
    lines += ["", f"The direct fit (`shearcorr fit`, docs/inversion.md) models the estimator's O(1/N) bias and "
              f"the covariance of a g averaged over N = {nf.configs} configurations (docs/theory.md section 9); "
              f"median chi^2/dof {nf.chi2_red_median:.2f}; {nf.seconds_per_sample:.2f} s per set. RMS/CRB: root-mean-"
              "square error over the root-mean-square Cramer-Rao bound of each set at its truth (n_l2 with its "
              "prior; 1 = the information limit; efficiency = 1 / RMS/CRB). The GPR models are trained on "
              "noise-free g, except the noise-aware one (its training inputs drawn with the estimator's bias and "
              "noise at the test's N, docs/inversion.md; its std is the GP's scaled per sample by its leave-one-out "
              "calibration, no input-noise term): it is the member for this N of the family that `shearcorr train` makes by default (N = 300, 2000, 20000; "
              "the report trains only this member)."]
    return lines + [""]


def _z(d: dict) -> str:
    return " / ".join(f"{d[t]:.2f}" for t in SHOWN)


def _timings(R: ReportData) -> list[str]:
    lines = ["## Timings", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in R.times.items()]
    lines += ["", "Training (LML grid + refinement + factorisation, 4 targets): " + ", ".join(
        f"{f} {R.infos[f].train_seconds:.1f} s" for f in (*R.rows, NOISY_ROW) if f in R.infos)
        + f". PDDF/ACF of {R.n_train} training vectors: {R.pddf_seconds:.2f} s. Prediction per sample: "
        + ", ".join(f"{f} {1e3 * R.evals[f].seconds_per_sample:.2f} ms" for f in R.rows)
        + f"; direct fit {R.fit.seconds_per_sample:.2f} s per sample (noise-free), "
        + f"{R.noisy_fit.seconds_per_sample:.2f} s per Monte Carlo set (noise model).", ""]
    return lines


def render(R: ReportData) -> str:
    """Markdown of the report from the numbers collected by the pipeline (nothing hard-coded)."""
    return "\n".join(_header(R) + _table1(R) + _errors(R) + _rs(R) + _monte_carlo(R) + _timings(R))
