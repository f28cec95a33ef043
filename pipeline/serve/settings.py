"""Every option of ``deltatrain serve`` and its default, declared once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import MutableMapping

#: Environment variable holding the API token (Rasa's ``--auth-token``).
TOKEN_ENV = "DELTATRAIN_SERVER_TOKEN"
#: Environment variable holding the JWT secret (Rasa's ``--jwt-secret``).
JWT_SECRET_ENV = "DELTATRAIN_SERVER_JWT_SECRET"
#: Response header naming the model that answered a parse (not in Rasa; harmless to its clients).
MODEL_HEADER = "X-Deltatrain-Model"

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5005  # Rasa's
DEFAULT_POLL_SECONDS = 30.0
DEFAULT_TOKEN_NAME = "token"  # Rasa's query parameter (endpoints.yml ``token_name``)
DEFAULT_MAX_TEXT_CHARS = 10_000
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
DEFAULT_REQUEST_TIMEOUT = 30.0
DEFAULT_SHUTDOWN_TIMEOUT = 10.0
DEFAULT_MAX_BATCH = 32
DEFAULT_MAX_WAIT_MS = 2.0
#: Messages per ``parse_batch`` call: larger micro-batches run as length-sorted chunks of about this
#: many (on the HWU64 model 2.0-2.2 ms CPU per message in chunks of 8 against 2.8-3.1 in batches of
#: 32: padding to the longest message and activations that outgrow the core's cache; bench/RESULTS.md).
PARSE_CHUNK = 8
DEFAULT_MAX_CONVERSATIONS = 10_000


#: Thread-count variables of the BLAS libraries NumPy may use. Parsing multiplies small matrices;
#: several BLAS threads per process only add overhead and, on busy cores, spin: on 2 loaded cores
#: one message took 205 ms with OpenBLAS's default threads and 6 ms with one (bench/RESULTS.md).
BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def default_to_one_blas_thread(environ: MutableMapping[str, str]) -> None:
    """Set each BLAS thread variable to 1 unless the user set it; call before NumPy is imported."""
    for name in BLAS_THREAD_VARIABLES:
        environ.setdefault(name, "1")


@dataclass(frozen=True)
class ServeSettings:
    """How the HTTP server behaves (where the model comes from is a ``ModelSource``)."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    auth_token: str | None = None
    token_name: str = DEFAULT_TOKEN_NAME
    jwt_secret: str | None = None
    poll_seconds: float = DEFAULT_POLL_SECONDS
    workers: int = 1
    max_text_chars: int = DEFAULT_MAX_TEXT_CHARS
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT
    max_batch: int = DEFAULT_MAX_BATCH
    max_wait_ms: float = DEFAULT_MAX_WAIT_MS
    max_conversations: int = DEFAULT_MAX_CONVERSATIONS

    def __repr__(self) -> str:
        return (
            f"ServeSettings(host={self.host!r}, port={self.port}, auth_token={'***' if self.auth_token else None},"
            f" jwt_secret={'***' if self.jwt_secret else None}, poll_seconds={self.poll_seconds},"
            f" workers={self.workers}, max_batch={self.max_batch}, max_wait_ms={self.max_wait_ms})"
        )

    def problems(self) -> list[str]:
        """What is wrong with these settings (empty: fine), each naming the flag."""
        found = []
        if not 0 <= self.port <= 65535:
            found.append(f"--port must be 0-65535, received {self.port}")
        if self.poll_seconds < 0:
            found.append(f"--poll-seconds must be 0 (no reload) or more, received {self.poll_seconds}")
        if self.workers < 1:
            found.append(f"--workers must be at least 1, received {self.workers}")
        if self.workers > 1 and self.port == 0:
            found.append("--workers above 1 needs a fixed --port (the workers share it)")
        if self.max_batch < 1:
            found.append(f"--max-batch must be at least 1, received {self.max_batch}")
        if self.max_wait_ms < 0:
            found.append(f"--max-wait-ms must be 0 or more, received {self.max_wait_ms}")
        if self.auth_token is not None and not self.auth_token.strip():
            found.append(f"the auth token is empty (--auth-token or {TOKEN_ENV})")
        if not self.token_name.strip():
            found.append("--token-name must not be empty")
        return found
