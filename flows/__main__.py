"""``python -m flows`` is the ``newsarchive`` command."""

import sys

from flows.cli import run

sys.exit(run())
