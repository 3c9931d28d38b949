"""``python -m flows`` is the ``newsarchive`` command."""

import sys

from flows.cli import main

sys.exit(main())
