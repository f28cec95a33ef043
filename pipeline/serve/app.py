"""The aiohttp application: Rasa 3.x's HTTP API over the served deltatrain model.

Routes (same paths and shapes as Rasa's, for what deltatrain has)::

    GET  /                                        "Hello from deltatrain: <version>"
    GET  /version                                 {"version", "minimum_compatible_version", "model_format"}
    GET  /status                                  model file, id, how it was trained, metrics, reloads
    POST /model/parse                             {"text", "message_id"} -> Rasa's parse result
    POST /conversations/{id}/messages             {"text", "sender": "user"} -> tracker
    POST /conversations/{id}/tracker/events       event or [events] -> tracker
    GET  /conversations/{id}/tracker              tracker
    POST /conversations/{id}/predict              {"scores", "policy", "confidence", "tracker"}

Every error is Rasa's JSON error body (:mod:`.responses`); nothing answers
with a traceback. ``/`` and ``/version`` need no credentials, as in Rasa.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable, Mapping, Sequence

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from pipeline import MODEL_FORMAT_VERSION, __version__

from .auth import AuthOutcome, check_request
from .batching import MicroBatcher, ShuttingDown
from .loaded import LoadedModel
from .reloader import Reloader
from .responses import ApiError, Reason, render_error
from .settings import MODEL_HEADER, PARSE_CHUNK, ServeSettings
from .tracker import ConversationStore, EventError, check_event, to_tracker_state, user_event

log = logging.getLogger("deltatrain.serve")

#: Routes anyone may call (Rasa's are the same two).
PUBLIC_PATHS = frozenset({"/", "/version"})
#: Rasa's ``include_events`` values; this server has no restarts, so the first three are the same.
EVENT_VERBOSITY = ("ALL", "APPLIED", "AFTER_RESTART", "NONE")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class ServerState:
    """What the handlers share: settings, the reloader (served model), batcher, conversations."""

    settings: ServeSettings
    reloader: Reloader
    batcher: MicroBatcher
    conversations: ConversationStore
    started_at: str = field(default_factory=lambda: datetime.now(timezone.utc).replace(microsecond=0).isoformat())

    def model(self) -> LoadedModel:
        """The model serving right now; 409 Conflict when there is none yet."""
        model = self.reloader.current
        if model is None:
            raise ApiError(
                409, Reason.CONFLICT, "No model loaded yet: the server is waiting for the model store.",
                details=self.reloader.status(),
                help_text="publish a model with 'deltatrain ci'; /status shows the last load error",
            )
        return model


STATE = web.AppKey("state", ServerState)


def parse_with(model: LoadedModel, texts: Sequence[str]) -> list[dict[str, Any]]:
    """``parse_batch`` of the model's NLU part (runs in the batcher's thread)."""
    assert model.nlu is not None  # load_model_archive refuses models without NLU
    return model.nlu.parse_batch(list(texts))


def build_app(settings: ServeSettings, reloader: Reloader) -> web.Application:
    """The application with every route, the error/auth/timeout middlewares and startup/cleanup hooks."""
    state = ServerState(
        settings=settings,
        reloader=reloader,
        batcher=MicroBatcher(parse_with, max_batch=settings.max_batch, max_wait=settings.max_wait_ms / 1000,
                             chunk=PARSE_CHUNK),
        conversations=ConversationStore(settings.max_conversations),
    )
    app = web.Application(client_max_size=settings.max_body_bytes, middlewares=[_errors, _auth])
    app[STATE] = state
    app.router.add_get("/", hello)
    app.router.add_get("/version", version)
    app.router.add_get("/status", status)
    app.router.add_post("/model/parse", parse)
    app.router.add_post("/conversations/{conversation_id}/messages", add_message)
    app.router.add_post("/conversations/{conversation_id}/tracker/events", append_events)
    app.router.add_get("/conversations/{conversation_id}/tracker", get_tracker)
    app.router.add_post("/conversations/{conversation_id}/predict", predict)

    async def start(_: web.Application) -> None:
        await state.batcher.start()

    async def stop(_: web.Application) -> None:
        await state.batcher.stop()

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    return app


# ------------------------------------------------------------------ middlewares


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure becomes Rasa's JSON error; the request timeout is enforced here."""
    settings = request.app[STATE].settings
    try:
        async with asyncio.timeout(settings.request_timeout):
            return await handler(request)
    except ApiError as exc:
        return web.json_response(exc.body(), status=exc.status)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        reason, message = _http_error(exc, request, settings)
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return web.json_response(render_error(exc.status, reason, message), status=exc.status, headers=headers)
    except TimeoutError:
        message = f"the request took longer than {settings.request_timeout:g} s and was stopped"
        return web.json_response(render_error(503, Reason.TIMEOUT, message), status=503)
    except Exception:  # noqa: BLE001 - logged with its traceback here, never sent to the client
        log.exception("unexpected error in %s %s", request.method, request.path)
        message = "an unexpected error occurred; the server log has the details"
        return web.json_response(render_error(500, Reason.SERVER_ERROR, message), status=500)


def _http_error(exc: web.HTTPException, request: web.Request, settings: ServeSettings) -> tuple[Reason, str]:
    if exc.status == 404:
        return Reason.NOT_FOUND, f"no such endpoint: {request.method} {request.path}"
    if exc.status == 405:
        allowed = exc.headers.get("Allow", "")
        return Reason.METHOD_NOT_ALLOWED, f"{request.method} is not allowed on {request.path}; use {allowed}"
    if exc.status == 413:
        return Reason.TOO_LARGE, f"the request body is larger than {settings.max_body_bytes} bytes"
    return Reason.BAD_REQUEST, exc.reason


@web.middleware
async def _auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Rasa's token / JWT check on every route but ``/`` and ``/version`` (unknown paths: 404 first)."""
    if request.path in PUBLIC_PATHS or request.match_info.http_exception is not None:
        return await handler(request)
    settings = request.app[STATE].settings
    outcome = check_request(
        query=request.query,
        authorization=request.headers.get("Authorization"),
        token=settings.auth_token,
        token_name=settings.token_name,
        jwt_secret=settings.jwt_secret,
        conversation_id=request.match_info.get("conversation_id"),
    )
    if outcome is AuthOutcome.NOT_AUTHENTICATED:
        raise ApiError(401, Reason.NOT_AUTHENTICATED, "User is not authenticated.",
                       help_text=f"pass the server's token as ?{settings.token_name}=... or 'Authorization: Bearer ...'")
    if outcome is AuthOutcome.NOT_AUTHORIZED:
        raise ApiError(403, Reason.NOT_AUTHORIZED, "User has insufficient permissions.",
                       help_text="a 'user' JWT may only use the conversation named by its username")
    return await handler(request)


class AccessLogger(AbstractAccessLogger):
    """One JSON line per request; the path without its query string, so tokens never reach the log."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(json.dumps({
            "remote": request.remote,
            "method": request.method,
            "path": request.path,
            "status": response.status,
            "ms": round(time * 1000, 2),
            "bytes": response.body_length,
        }))


# ------------------------------------------------------------------ request bodies


async def _json_body(request: web.Request, example: str) -> Any:
    raw = await request.read()  # HTTPRequestEntityTooLarge beyond client_max_size
    if not raw.strip():
        raise ApiError(400, Reason.BAD_REQUEST, f"the request body is empty; send JSON like {example}",
                       details={"in": "body"})
    try:
        return json.loads(raw)
    except UnicodeDecodeError as exc:
        raise ApiError(400, Reason.BAD_REQUEST, f"the request body is not UTF-8 text ({exc.reason})",
                       details={"in": "body"}) from exc
    except json.JSONDecodeError as exc:
        raise ApiError(400, Reason.BAD_REQUEST,
                       f"the request body is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno});"
                       f" send JSON like {example}", details={"in": "body"}) from exc


async def _json_object(request: web.Request, example: str) -> Mapping[str, Any]:
    body = await _json_body(request, example)
    if not isinstance(body, dict):
        raise ApiError(400, Reason.BAD_REQUEST,
                       f"the request body must be a JSON object like {example}, received {type(body).__name__}",
                       details={"in": "body"})
    return body


def _text(body: Mapping[str, Any], settings: ServeSettings) -> str:
    if "text" not in body:
        raise ApiError(400, Reason.BAD_REQUEST, "the request has no 'text'; send {\"text\": \"hello\"}",
                       details={"parameter": "text", "in": "body"})
    text = body["text"]
    if not isinstance(text, str):
        raise ApiError(400, Reason.BAD_REQUEST, f"'text' must be a string, received {type(text).__name__}",
                       details={"parameter": "text", "in": "body"})
    if not text.strip():
        raise ApiError(400, Reason.BAD_REQUEST, "'text' is empty; send the user's message",
                       details={"parameter": "text", "in": "body"})
    if len(text) > settings.max_text_chars:
        raise ApiError(400, Reason.BAD_REQUEST,
                       f"'text' has {len(text)} characters; the limit is {settings.max_text_chars}",
                       details={"parameter": "text", "in": "body", "limit": settings.max_text_chars})
    return text


def _message_id(body: Mapping[str, Any]) -> str | None:
    value = body.get("message_id")
    if value is None or isinstance(value, str):
        return value
    raise ApiError(400, Reason.BAD_REQUEST, f"'message_id' must be a string, received {type(value).__name__}",
                   details={"parameter": "message_id", "in": "body"})


async def _parse(state: ServerState, model: LoadedModel, text: str, message_id: str | None) -> dict[str, Any]:
    try:
        result = dict(await state.batcher.submit(model, text))
    except ShuttingDown as exc:
        raise ApiError(503, Reason.UNAVAILABLE, "the server is shutting down before this message was parsed",
                       help_text="send the request again (to another instance)") from exc
    if message_id is not None:
        result["message_id"] = message_id
    return result


def _conversation_json(state: ServerState, conversation_id: str, request: web.Request) -> dict[str, Any]:
    verbosity = request.query.get("include_events", "AFTER_RESTART").upper()
    if verbosity not in EVENT_VERBOSITY:
        raise ApiError(400, Reason.BAD_REQUEST,
                       f"invalid 'include_events' {verbosity!r}; use one of {', '.join(EVENT_VERBOSITY)}",
                       details={"parameter": "include_events", "in": "query"})
    conversation = state.conversations.get(conversation_id)
    if conversation is None:
        raise ApiError(404, Reason.NOT_FOUND, f"no conversation {conversation_id!r} on this server",
                       details={"parameter": "conversation_id", "in": "path"},
                       help_text="start it with POST /conversations/{conversation_id}/messages")
    result = conversation.to_json()
    if verbosity == "NONE":
        result["events"] = None
    return result


# ------------------------------------------------------------------ handlers


async def hello(request: web.Request) -> web.Response:
    """Plain-text hello with the version (Rasa: "Hello from Rasa: <version>")."""
    return web.Response(text=f"Hello from deltatrain: {__version__}")


async def version(request: web.Request) -> web.Response:
    """The server's version and the model format it reads."""
    return web.json_response({"version": __version__, "minimum_compatible_version": __version__,
                              "model_format": MODEL_FORMAT_VERSION})


async def status(request: web.Request) -> web.Response:
    """The served model (name, id, how it was trained, metrics, when loaded) and reload state."""
    state = request.app[STATE]
    model = state.model()
    return web.json_response({
        "model_file": model.name,
        "model_id": model.model_id,
        "num_active_training_jobs": 0,
        "model": model.describe(),
        "reload": {**state.reloader.status(), "poll_seconds": state.settings.poll_seconds},
        "batching": state.batcher.stats(),
        "conversations": len(state.conversations),
        "started_at": state.started_at,
        "pid": os.getpid(),
    })


async def parse(request: web.Request) -> web.Response:
    """Rasa's ``/model/parse``: text, intent, entities, intent_ranking."""
    state = request.app[STATE]
    body = await _json_object(request, '{"text": "hello"}')
    text, message_id = _text(body, state.settings), _message_id(body)
    model = state.model()  # taken once: this request finishes on this model even if a swap happens
    return web.json_response(await _parse(state, model, text, message_id), headers={MODEL_HEADER: model.name})


async def add_message(request: web.Request) -> web.Response:
    """Append a user message (parsed by the served model unless ``parse_data`` is given); the tracker."""
    state = request.app[STATE]
    conversation_id = request.match_info["conversation_id"]
    body = await _json_object(request, '{"text": "hello", "sender": "user"}')
    sender = body.get("sender", "user")
    if sender != "user":
        raise ApiError(400, Reason.BAD_REQUEST,
                       f"only user messages can be sent to this endpoint, received sender {sender!r}",
                       details={"parameter": "sender", "in": "body"})
    text, message_id = _text(body, state.settings), _message_id(body)
    if body.get("parse_data") is not None:
        event = _checked_events([{"event": "user", "text": text, "parse_data": body["parse_data"],
                                  "message_id": message_id}])[0]
    else:
        event = user_event(await _parse(state, state.model(), text, message_id), message_id=message_id)
    conversation = state.conversations.get_or_create(conversation_id)
    conversation.append(event)
    return web.json_response(conversation.to_json())


def _checked_events(raw: Any) -> list[dict[str, Any]]:
    items = raw if isinstance(raw, list) else [raw]
    if not items:
        raise ApiError(400, Reason.BAD_REQUEST, "no events in the request body",
                       details={"in": "body"})
    try:
        return [check_event(item, index) for index, item in enumerate(items)]
    except EventError as exc:
        raise ApiError(400, Reason.BAD_REQUEST, str(exc), details={"in": "body"}) from exc


async def append_events(request: web.Request) -> web.Response:
    """Append events (user, action, slot, active_loop) to a conversation; the tracker."""
    state = request.app[STATE]
    conversation_id = request.match_info["conversation_id"]
    events = _checked_events(await _json_body(request, '[{"event": "action", "name": "utter_greet"}]'))
    conversation = state.conversations.get_or_create(conversation_id)
    for event in events:
        conversation.append(event)
    return web.json_response(_conversation_json(state, conversation_id, request))


async def get_tracker(request: web.Request) -> web.Response:
    """A conversation's tracker; 404 for an unknown conversation."""
    state = request.app[STATE]
    return web.json_response(_conversation_json(state, request.match_info["conversation_id"], request))


async def predict(request: web.Request) -> web.Response:
    """The next action for a conversation: scores, policy, confidence, tracker (nothing is executed)."""
    state = request.app[STATE]
    conversation_id = request.match_info["conversation_id"]
    tracker = _conversation_json(state, conversation_id, request)
    model = state.model()
    if model.core is None:
        raise ApiError(409, Reason.CONFLICT, f"the served model {model.name} has no dialogue part (core/)",
                       help_text="train the model with a domain and stories")
    conversation = state.conversations.get(conversation_id)
    assert conversation is not None  # _conversation_json raised otherwise
    core = model.core
    prediction = await asyncio.to_thread(core.predict_next_action, to_tracker_state(conversation.events))
    return web.json_response({
        "scores": [{"action": name, "score": score} for name, score in prediction.ranking],
        "policy": prediction.policy,
        "confidence": prediction.confidence,
        "action": prediction.action,
        "tracker": tracker,
    })


__all__ = ["AccessLogger", "MODEL_HEADER", "STATE", "ServerState", "build_app", "parse_with"]
