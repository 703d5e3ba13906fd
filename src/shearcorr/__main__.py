"""``python -m shearcorr`` is the ``shearcorr`` command."""

import sys

from .cli import main

sys.exit(main())
