"""``python -m pipeline``: the same as the ``deltatrain`` command."""

import sys

from pipeline.cli import main

sys.exit(main())
