"""One exception hierarchy for deltatrain, raised deep and rendered once.

::

    DeltatrainError                 every error deltatrain raises on purpose (exit 1)
    ├── UsageError                  bad command-line / action input (exit 2)
    ├── DataError                   user training data is invalid (exit 1)
    │                               carries the list of Problems found
    ├── ConfigError                 config.yml is invalid (exit 1)
    ├── ModelError                  a saved model or archive is unusable
    │   ├── ArchiveError            archive layout, unsafe member, bad metadata
    │   └── FinetuneRefused         previous model cannot be finetuned (reasons)
    ├── TrainingError               training could not run on this data
    ├── GateError                   the model failed the quality gate (exit 3)
    ├── StoreError                  model store failure (exit 4)
    │   ├── StoreAuthError          401 / 403
    │   ├── StoreNotFoundError      404 / missing key
    │   └── StoreIntegrityError     sha256 mismatch, corrupt manifest
    │       └── BrokenModelError        one listed model is unusable (store still readable)
    ├── GitError                    repository could not be read
    └── UnexpectedError             anything else: a bug in deltatrain, rendered like the rest

Exit codes (:class:`ExitCode`) are defined here once; the adapters return them.

Every error carries *what* failed, *where* (file:line, URL, key), what was
received and *how to fix it*. Adapters (CLI, Action) render them; nothing in
between prints. Vendor exceptions are translated at the boundary with
``raise ... from exc``; code never matches on message text.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Sequence


class ExitCode(enum.IntEnum):
    """Exit codes of ``deltatrain`` and of the Action (the one definition)."""

    OK = 0
    DATA = 1  # invalid data or config, and any other error without its own code
    USAGE = 2  # bad flags or action inputs
    GATE = 3  # the model failed the quality gate (not uploaded)
    STORE = 4  # the model store failed
    INTERRUPTED = 130  # Ctrl-C


@dataclass(frozen=True)
class Location:
    """A place in a user file: path relative to the project, 1-based line/column."""

    file: str
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        text = self.file
        if self.line is not None:
            text += f":{self.line}"
            if self.column is not None:
                text += f":{self.column}"
        return text


def prefix_path(path: object, prefix: str) -> str:
    """A project-relative path (or Location) as seen from the repository root: ``-C bot`` gives ``bot/data/nlu.yml``."""
    text = str(path)
    if not prefix or not text or text.startswith("/"):
        return text
    return f"{prefix.rstrip('/')}/{text}"


@dataclass(frozen=True)
class Problem:
    """One finding about user data: an error stops training, a warning does not."""

    severity: str  # "error" | "warning"
    message: str
    location: Location | None = None
    hint: str | None = None
    code: str = "data"

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    def render(self) -> str:
        """Human-readable one-paragraph form: ``file:line: error: message. hint``."""
        where = f"{self.location}: " if self.location else ""
        text = f"{where}{self.severity}: {self.message}"
        if self.hint:
            text += f"\n    fix: {self.hint}"
        return text


class DeltatrainError(Exception):
    """Base of every error deltatrain raises on purpose."""

    exit_code: ExitCode = ExitCode.DATA
    #: What to do when the error carries no ``hint`` of its own (see :attr:`fix`).
    default_fix = "see the log of this step for what failed"

    def __init__(
        self,
        message: str,
        *,
        location: Location | str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.location = location
        self.hint = hint

    @property
    def fix(self) -> str:
        """What to do about it: the error's hint, else what to do about errors of its kind."""
        return self.hint or self.default_fix

    def render(self) -> str:
        """``where: message`` and the hint on its own line."""
        where = f"{self.location}: " if self.location else ""
        text = f"{where}{self.message}"
        if self.hint:
            text += f"\n    fix: {self.hint}"
        return text

    def __str__(self) -> str:
        return self.render()


class UsageError(DeltatrainError):
    """Invalid command-line or action input."""

    exit_code = ExitCode.USAGE
    default_fix = "correct the flag or action input named above (deltatrain ci --help lists them)"


class DataError(DeltatrainError):
    """The training data has errors; ``problems`` lists every one found."""

    exit_code = ExitCode.DATA
    default_fix = "fix every problem listed (file:line), commit, and run again"

    def __init__(self, problems: Sequence[Problem], message: str | None = None) -> None:
        self.problems = tuple(problems)
        errors = [p for p in self.problems if p.is_error]
        first = errors[0] if errors else (self.problems[0] if self.problems else None)
        summary = message or (
            f"{len(errors)} error(s) in the training data" if errors else "invalid training data"
        )
        super().__init__(
            summary,
            location=first.location if first else None,
            hint=first.hint if first else None,
        )

    def render(self) -> str:
        lines = [p.render() for p in self.problems]
        lines.append(self.message)
        return "\n".join(lines)


class ConfigError(DeltatrainError):
    """config.yml is invalid (unknown component, bad option value, ...)."""

    default_fix = "fix config.yml at the place named, then run again"


class ModelError(DeltatrainError):
    """A saved model or model archive cannot be used."""


class ArchiveError(ModelError):
    """A model archive has an invalid or unsafe layout."""


class FinetuneRefused(ModelError):
    """The previous model cannot be finetuned on the new data; ``reasons`` says why."""

    def __init__(self, reasons: Sequence[str], *, hint: str | None = None) -> None:
        self.reasons = tuple(reasons)
        super().__init__(
            "cannot finetune the previous model: " + "; ".join(self.reasons),
            hint=hint or "train a new model in full (drop --finetune, or use --mode full)",
        )


class TrainingError(DeltatrainError):
    """Training could not run on this data (e.g. fewer than two intents)."""


class GateError(DeltatrainError):
    """The model failed the quality gate; it is reported, not uploaded."""

    exit_code = ExitCode.GATE


class StoreError(DeltatrainError):
    """The model store failed (network, permissions, missing or corrupt files)."""

    exit_code = ExitCode.STORE
    default_fix = "check the store URL and its credentials (DELTATRAIN_STORE_TOKEN, AWS_*), then run again"


class StoreAuthError(StoreError):
    """The model store refused our credentials (HTTP 401/403, S3 AccessDenied)."""


class StoreNotFoundError(StoreError):
    """A key or URL is missing in the model store."""


class StoreIntegrityError(StoreError):
    """Downloaded bytes do not match the recorded sha256, or the manifest is corrupt."""


class BrokenModelError(StoreIntegrityError):
    """A model listed in a readable manifest is unusable: files missing, damaged or malformed.

    The CI step answers it with a full retrain (the reason names ``model_name``);
    elsewhere it is a store error like any other.
    """

    def __init__(self, message: str, *, model_name: str, location: str | None = None,
                 hint: str | None = None) -> None:
        super().__init__(message, location=location, hint=hint)
        self.model_name = model_name


class GitError(DeltatrainError):
    """The git repository could not be read."""


class UnexpectedError(DeltatrainError):
    """An exception deltatrain did not raise on purpose (a bug), wrapped to be rendered like any other."""

    def __init__(self, exc: BaseException) -> None:
        super().__init__(
            f"unexpected {type(exc).__name__}: {exc}",
            hint="this is a bug in deltatrain; please report it with the log of this run",
        )
