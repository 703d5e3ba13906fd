"""Package version: the one place it is written (pyproject.toml reads it from here at build time).

Kept as a literal so that ``shearcorr --version`` needs no package-metadata lookup
(``importlib.metadata`` alone costs ~0.1-0.2 s of start-up).
"""

__version__ = "0.1.0"
