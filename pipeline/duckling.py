"""DucklingEntityExtractor: ask a Duckling server for structured entities, as Rasa does.

Rasa's ``DucklingEntityExtractor`` (``DucklingHTTPExtractor`` before Rasa 2)
POSTs the message to ``<url>/parse`` as form fields ``text``, ``locale``,
``tz``, ``dims`` (JSON list) and ``reftime`` (milliseconds) and turns each
match into an entity with ``extractor: DucklingEntityExtractor``. The
``RASA_DUCKLING_HTTP_URL`` environment variable overrides ``url``, as in Rasa.

The settings are pure data kept in the NLU model (:class:`DucklingSettings`);
:func:`fetch_entities` is the only I/O. A server that cannot be reached, times
out or answers badly is a logged warning and no Duckling entities — never an
error — and is not asked again for :data:`RETRY_AFTER` seconds, so a test run
over many messages does not wait for a dead server once per message.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

logger = logging.getLogger(__name__)

#: Seconds to wait for Duckling (Rasa's default ``timeout``).
DEFAULT_TIMEOUT = 3.0
#: Seconds during which a server that just failed is not asked again.
RETRY_AFTER = 30.0
#: Environment variable that overrides ``url`` (Rasa's name).
URL_VARIABLE = "RASA_DUCKLING_HTTP_URL"
#: Extractor name in parse output, as in Rasa.
EXTRACTOR_NAME = "DucklingEntityExtractor"


@dataclass(frozen=True)
class DucklingSettings:
    """One DucklingEntityExtractor of the pipeline (Rasa's option names)."""

    url: str | None = None
    dimensions: tuple[str, ...] | None = None  # None: every dimension Duckling finds
    locale: str | None = None
    timezone: str | None = None
    timeout: float = DEFAULT_TIMEOUT

    def get_config(self) -> dict[str, Any]:
        """JSON-able form; :meth:`from_config` inverts it."""
        config = asdict(self)
        config["dimensions"] = None if self.dimensions is None else list(self.dimensions)
        return config

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "DucklingSettings":
        data = dict(config)
        if data.get("dimensions") is not None:
            data["dimensions"] = tuple(data["dimensions"])
        return cls(**data)


def default_locale(language: str) -> str:
    """Rasa 2's locale when none is set: ``de`` -> ``de_DE``. (Rasa 3 sends none, so Duckling
    parses every language as en_US; deriving it from ``language`` is a deliberate difference.)"""
    return f"{language}_{language.upper()}"


def build_payload(text: str, settings: DucklingSettings, reference_time_ms: int) -> dict[str, Any]:
    """The form fields Rasa sends to ``/parse``."""
    return {
        "text": text,
        "locale": settings.locale,
        "tz": settings.timezone,
        "dims": json.dumps(list(settings.dimensions) if settings.dimensions is not None else None),
        "reftime": reference_time_ms,
    }


def _value(match: Mapping[str, Any]) -> Any:
    value = match.get("value") or {}
    if value.get("type") == "interval":
        return {"to": (value.get("to") or {}).get("value"), "from": (value.get("from") or {}).get("value")}
    return value.get("value")


def build_entities(matches: Any, dimensions: Sequence[str] | None) -> list[dict[str, Any]]:
    """Duckling's matches as Rasa entity dicts, keeping only ``dimensions`` (all when None)."""
    if not isinstance(matches, list):
        return []
    entities = []
    for match in matches:
        if not isinstance(match, Mapping) or not {"start", "end", "dim"} <= match.keys():
            continue
        if dimensions and match["dim"] not in dimensions:
            continue
        entities.append(
            {
                "start": match["start"],
                "end": match["end"],
                "text": match.get("body", match.get("text")),
                "value": _value(match),
                "confidence": 1.0,
                "additional_info": match.get("value"),
                "entity": match["dim"],
                "extractor": EXTRACTOR_NAME,
            }
        )
    return entities


_lock = threading.Lock()
_down_until: dict[str, float] = {}
_warned_no_url = False


def fetch_entities(
    text: str,
    settings: DucklingSettings,
    *,
    reference_time_ms: int | None = None,
    environ: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Entities found by the Duckling server for ``text``; [] (and a logged warning) when it fails."""
    global _warned_no_url
    env = os.environ if environ is None else environ
    url = env.get(URL_VARIABLE) or settings.url
    if not url:
        if not _warned_no_url:
            _warned_no_url = True
            logger.warning(
                "DucklingEntityExtractor has no 'url' in config.yml and %s is not set: no Duckling entities",
                URL_VARIABLE,
            )
        return []
    parse_url = url.rstrip("/") + "/parse"
    with _lock:
        if _down_until.get(parse_url, 0.0) > time.monotonic():
            return []
    import requests  # noqa: PLC0415 - only when a message is parsed with Duckling

    reftime = reference_time_ms if reference_time_ms is not None else int(time.time()) * 1000
    try:
        response = requests.post(
            parse_url,
            data=build_payload(text, settings, reftime),
            headers={"Content-Type": "application/x-www-form-urlencoded; charset=UTF-8"},
            timeout=settings.timeout,
        )
        if response.status_code != 200:
            problem = f"HTTP {response.status_code}: {response.text[:200]}"
        else:
            matches = response.json()
            with _lock:
                _down_until.pop(parse_url, None)
            return build_entities(matches, settings.dimensions)
    except requests.RequestException as exc:
        problem = f"{type(exc).__name__}: {exc}"
    except ValueError as exc:  # the body is not JSON
        problem = f"the answer is not JSON ({exc})"
    with _lock:
        _down_until[parse_url] = time.monotonic() + RETRY_AFTER
    logger.warning(
        "Duckling at %s failed (%s); no Duckling entities for %.0f s. Start the server"
        " (docker run -p 8000:8000 rasa/duckling) or fix 'url' of DucklingEntityExtractor in config.yml",
        parse_url,
        problem,
        RETRY_AFTER,
    )
    return []


def reset() -> None:
    """Forget servers that failed (tests)."""
    global _warned_no_url
    with _lock:
        _down_until.clear()
    _warned_no_url = False
