"""shearcorr: speckle-correlation analysis of sheared colloids.

Forward model (Monte Carlo and semi-analytic), datasets, inversion and detector-frame analysis
for the affine shear strain gamma_l, the non-affine displacement d2 and the polydispersity rs.
"""

from ._version import __version__
from .errors import ShearcorrError
from .forward import simulate
from .params import QGrid, SystemParams
from .result import load_result, save_result

__all__ = ["__version__", "ShearcorrError", "SystemParams", "QGrid", "simulate", "load_result", "save_result"]
