"""Echoes of several files against the strain amplitude: the yielding curve of echo-XPCS."""

from __future__ import annotations

import numpy as np

from ..errors import ShearcorrError
from ..files import atomic_folder, check_output_folder, json_text

__all__ = ["analyze_sweep"]


def analyze_sweep(stacks, amplitudes, geometry, output=None, *, overwrite=False, plots=True, **options) -> dict:
    """Echo analysis of every file (:func:`.analysis.analyze_stack`, mode ``"echo"``) and the sweep of
    the irreversible displacement and residual strain per cycle against ``amplitudes`` (one per file).

    ``output``: a new folder with ``file_NNN/`` (each file's full result), ``sweep.json`` and
    ``sweep.png``, written atomically. Returns the sweep (:func:`.echo.amplitude_sweep`) with the
    file names.
    """
    from .analysis import analyze_stack
    from .echo import amplitude_sweep

    stacks = list(stacks)
    if amplitudes is None or len(amplitudes) != len(stacks):
        raise ShearcorrError(f"give one --strain-amplitude per file: {len(stacks)} files, "
                             f"{0 if amplitudes is None else len(amplitudes)} amplitudes")
    options.pop("mode", None)
    out = None if output is None else check_output_folder(output, overwrite=overwrite)

    def run(folder):
        results = []
        for k, path in enumerate(stacks):
            sub = None if folder is None else folder / f"file_{k:03d}"
            results.append(analyze_stack(path, geometry, sub, mode="echo", plots=plots, **options).analysis)
        sweep = amplitude_sweep(results, amplitudes)
        order = np.argsort(np.asarray(amplitudes, dtype=float))
        sweep["files"] = [str(stacks[i]) for i in order]
        sweep["folders"] = [f"file_{i:03d}" for i in order]
        return sweep

    if out is None:
        return run(None)
    with atomic_folder(out, overwrite=overwrite) as tmp:
        sweep = run(tmp)
        (tmp / "sweep.json").write_text(json_text(sweep, indent=2) + "\n")
        if plots:
            from ..plots import require_matplotlib
            from ..plots.stack import amplitude_sweep as plot_sweep

            plt = require_matplotlib()
            fig = plot_sweep(sweep).figure
            fig.tight_layout()
            fig.savefig(tmp / "sweep.png", dpi=90)
            plt.close(fig)
    return sweep
