"""Optional parts of the install (pip extras) and the message shown when one is missing.

``pip install deltatrain`` is the core: data, validation, fingerprint,
decision, stores, reports. It installs neither TensorFlow nor NumPy, so a CI
job can decide ``skip`` seconds after a fresh runner starts. Everything else
is an extra, imported lazily where it is used; a missing one is a
:class:`~pipeline.errors.UsageError` carrying the ``pip install`` command.
"""

from __future__ import annotations

import enum
import importlib.util

from pipeline.errors import UsageError


class Extra(str, enum.Enum):
    """The pip extras of the ``deltatrain`` distribution (``pyproject.toml`` declares the same)."""

    TRAIN = "train"
    S3 = "s3"
    PLOTS = "plots"
    SERVE = "serve"


#: Top-level modules each extra brings; the first missing one is named in the error.
EXTRA_MODULES: dict[Extra, tuple[str, ...]] = {
    Extra.TRAIN: ("numpy", "tensorflow"),
    Extra.S3: ("boto3",),
    Extra.PLOTS: ("matplotlib",),
    Extra.SERVE: ("aiohttp",),
}


def render_install_command(extra: Extra) -> str:
    """The shell command that installs ``extra``."""
    return f"pip install 'deltatrain[{extra.value}]'"


def find_missing_module(extra: Extra) -> str | None:
    """The first module of ``extra`` that cannot be imported here, without importing anything."""
    for module in EXTRA_MODULES[extra]:
        if importlib.util.find_spec(module) is None:
            return module
    return None


def is_installed(extra: Extra) -> bool:
    """Whether every module of ``extra`` is importable."""
    return find_missing_module(extra) is None


def require_extra(extra: Extra, purpose: str) -> None:
    """Raise a UsageError with the install command when ``extra`` is not installed."""
    missing = find_missing_module(extra)
    if missing is not None:
        raise UsageError(
            f"{purpose} needs the `{extra.value}` extra of deltatrain; `{missing}` is not installed",
            hint=render_install_command(extra)
            + " (the core install, `pip install deltatrain`, only validates, fingerprints and decides)",
        )
