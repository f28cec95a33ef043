"""``python -m pipeline``: the same as the ``deltatrain`` command."""

from pipeline.cli import run

run()
