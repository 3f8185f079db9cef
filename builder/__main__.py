"""``python -m builder`` runs the unitdissect command line."""

import sys

from .cli import main

sys.exit(main())
