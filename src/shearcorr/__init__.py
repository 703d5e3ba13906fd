"""shearcorr: speckle-correlation analysis of sheared colloids.

Forward model (Monte Carlo and semi-analytic), datasets, inversion and detector-frame analysis
for the affine shear strain gamma_l, the non-affine displacement d2 and the polydispersity rs.

The public names below are imported on first use (module ``__getattr__``), so ``import shearcorr``
and ``shearcorr --help`` stay fast and load no numerical library.
"""

from __future__ import annotations

import importlib

from ._version import __version__
from .errors import ShearcorrError

__all__ = ["__version__", "ShearcorrError", "SystemParams", "QGrid", "simulate", "load_result", "save_result"]

#: public name -> module that defines it
_LAZY = {"SystemParams": ".params", "QGrid": ".params", "simulate": ".forward", "load_result": ".result",
         "save_result": ".result"}


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
