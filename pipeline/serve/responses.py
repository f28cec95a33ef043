"""ApiError and the JSON body Rasa's HTTP API answers errors with."""

from __future__ import annotations

from enum import Enum
from typing import Any

from pipeline import __version__


class Reason(str, Enum):
    """Rasa's ``reason`` values (plus the ones only this server needs)."""

    BAD_REQUEST = "BadRequest"
    NOT_AUTHENTICATED = "NotAuthenticated"
    NOT_AUTHORIZED = "NotAuthorized"
    NOT_FOUND = "NotFound"
    METHOD_NOT_ALLOWED = "MethodNotAllowed"
    TOO_LARGE = "RequestTooLarge"
    TIMEOUT = "Timeout"
    UNAVAILABLE = "ServiceUnavailable"
    CONFLICT = "Conflict"
    SERVER_ERROR = "ServerError"


class ApiError(Exception):
    """An error answer: HTTP status, Rasa reason, message, optional details and fix."""

    def __init__(
        self, status: int, reason: Reason, message: str, *, details: dict[str, Any] | None = None,
        help_text: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.details = details or {}
        self.help_text = help_text

    def body(self) -> dict[str, Any]:
        """Rasa's ``ErrorResponse`` JSON."""
        return render_error(self.status, self.reason, self.message, self.details, self.help_text)


def render_error(
    status: int, reason: Reason, message: str, details: dict[str, Any] | None = None, help_text: str | None = None
) -> dict[str, Any]:
    """``{"version", "status": "failure", "message", "reason", "details", "help", "code"}`` as Rasa sends it."""
    return {
        "version": __version__,
        "status": "failure",
        "message": message,
        "reason": reason.value,
        "details": details or {},
        "help": help_text,
        "code": status,
    }
