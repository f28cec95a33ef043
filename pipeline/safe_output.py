"""Output safety: what deltatrain prints can never become a CI command or leak a secret.

Training data, store manifests and error messages are written by whoever
opens a pull request or runs another pipeline. Printed raw, a name such as
``"x\\n::add-mask::..."`` becomes a GitHub workflow command, an ESC byte
repaints the log, and ``section_start:...\\r\\e[0K`` forges a GitLab section.
Everything deltatrain writes to a log, a GitHub command file, a PR comment or
a report passes through the functions here, at the output boundary:

- :func:`redact` removes credentials: URL user info, token-like query
  parameters and the values of known secrets;
- :func:`render_log_text` makes text inert in a CI log: control characters
  (ANSI escapes, carriage returns, Unicode line separators) are shown as
  ``\\xHH``, and a line that GitHub would read as a command (``::`` at its
  start, ``##[`` anywhere) is shown with those characters percent-encoded;
- :func:`render_command` is the only way to build a workflow command that is
  meant to run: its message and properties are escaped as GitHub documents;
- :func:`render_outputs` writes ``$GITHUB_OUTPUT`` so that a value cannot
  add keys; :func:`render_json` writes JSON that means the same and is inert.

Pure functions: nothing here reads the environment or writes a file.
"""

from __future__ import annotations

import enum
import json
import re
import uuid
from typing import Any, Iterable, Mapping
from urllib.parse import unquote, urlsplit

#: Shown instead of a removed credential.
REDACTED = "***"

#: Environment variables whose values are secrets wherever they appear in output.
SECRET_ENV_VARS: tuple[str, ...] = (
    "DELTATRAIN_STORE_TOKEN",
    "GITHUB_TOKEN",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
)

#: Secrets shorter than this are not replaced in free text (they would garble it).
MIN_SECRET_LENGTH = 4


class CommandName(str, enum.Enum):
    """Workflow commands deltatrain emits on purpose; every other ``::`` line is data."""

    ERROR = "error"
    WARNING = "warning"
    NOTICE = "notice"
    ADD_MASK = "add-mask"
    STOP_COMMANDS = "stop-commands"
    GROUP = "group"
    END_GROUP = "endgroup"


#: Annotation levels, the subset of commands that carry a message for the reader.
ANNOTATION_LEVELS = (CommandName.ERROR, CommandName.WARNING, CommandName.NOTICE)

# ------------------------------------------------------------------ redaction

_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s/?#'\"`<>]*")
_SECRET_PARAM = re.compile(
    r"(?i)([?&;](?:[\w.-]*(?:token|secret|passw(?:or)?d|signature|credential|api[_-]?key)[\w.-]*"
    r"|sig|pwd|auth|key-pair-id)=)([^&#\s'\"`<>)\]]+)"
)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` without URL credentials, token-like query values and the given secret values."""
    for secret in sorted({s for s in secrets if len(s) >= MIN_SECRET_LENGTH}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    text = _URL.sub(_redact_userinfo, text)
    return _SECRET_PARAM.sub(lambda m: m.group(1) + REDACTED, text)


def _redact_userinfo(match: re.Match[str]) -> str:
    scheme_and_authority = match.group(0)
    scheme, _, authority = scheme_and_authority.partition("://")
    if "@" not in authority:
        return scheme_and_authority
    return f"{scheme}://{REDACTED}@{authority.rpartition('@')[2]}"


def find_url_secrets(url: str) -> list[str]:
    """The secret parts of a URL (password / user info, token-like query values) to mask."""
    found: list[str] = []
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return found
    netloc = parts.netloc
    if "@" in netloc:
        userinfo = netloc.rpartition("@")[0]
        user, has_password, password = userinfo.partition(":")
        found += [password, unquote(password)] if has_password else [user, unquote(user)]
    for match in _SECRET_PARAM.finditer("?" + parts.query if parts.query else ""):
        found += [match.group(2), unquote(match.group(2))]
    return [s for s in dict.fromkeys(found) if s]


def find_secrets(environ: Mapping[str, str], urls: Iterable[str | None] = ()) -> tuple[str, ...]:
    """Secret values known from the environment and from credentials inside ``urls``."""
    values = [environ.get(name, "") for name in SECRET_ENV_VARS]
    for url in urls:
        if url:
            values += find_url_secrets(url)
    return tuple(v for v in dict.fromkeys(values) if len(v) >= MIN_SECRET_LENGTH)


def redact_json(value: Any, secrets: Iterable[str] = ()) -> Any:
    """A JSON-like value with :func:`redact` applied to every string (keys included)."""
    secrets = tuple(secrets)
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, Mapping):
        return {redact(str(k), secrets): redact_json(v, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_json(v, secrets) for v in value]
    return value


# ------------------------------------------------------------------ log text

# C0 controls but tab and newline, DEL, C1 controls, and Unicode line/paragraph separators.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")
_COMMAND_START = re.compile(r"^(\s*)::")


def escape_controls(text: str, *, keep_newlines: bool = True) -> str:
    """Control characters (ESC, CR, NUL, ...) shown as ``\\xHH``; newlines kept or shown as ``\\n``."""
    text = _CONTROL.sub(_show_control, text)
    return text if keep_newlines else text.replace("\n", "\\n")


def _show_control(match: re.Match[str]) -> str:
    code = ord(match.group(0))
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def neutralize_line(line: str) -> str:
    """One line (no newline) that no CI runner reads as a command."""
    line = escape_controls(line, keep_newlines=False)
    line = line.replace("##[", "%23%23[")
    return _COMMAND_START.sub(r"\1%3A:", line)


def render_log_text(text: str, secrets: Iterable[str] = ()) -> str:
    """Text safe to print in a CI log: redacted, and inert line by line."""
    return "\n".join(neutralize_line(line) for line in redact(text, secrets).split("\n"))


def render_value(text: str, secrets: Iterable[str] = ()) -> str:
    """A one-line, redacted, inert form of a data value (outputs, single-line fields)."""
    return neutralize_line(redact(text, secrets))


def is_inert(line: str) -> bool:
    """True when GitHub and GitLab would show ``line`` as text, never run it."""
    return line == neutralize_line(line)


# ------------------------------------------------------------------ commands


def escape_command_data(text: str) -> str:
    """Escape the message part of a workflow command (``::cmd::message``)."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_command_property(text: str) -> str:
    """Escape a property value of a workflow command (``::cmd key=value::``)."""
    return escape_command_data(text).replace(":", "%3A").replace(",", "%2C")


def render_command(
    name: CommandName,
    message: str = "",
    properties: Mapping[str, str | int | None] | None = None,
    secrets: Iterable[str] = (),
) -> str:
    """One workflow command line, with redacted, escaped message and properties.

    Messages keep their line breaks (``\\r``, ``\\n`` and ``\\r\\n`` all become
    ``%0A``, which GitHub shows as lines); other control characters are shown
    as ``\\xHH``, and ``##[`` (the runner's old syntax) as ``%23%23[``. ``add-mask`` values are
    escaped but never redacted: masking them is their purpose.
    """
    name = CommandName(name)
    secrets = () if name is CommandName.ADD_MASK else tuple(secrets)
    props = []
    for key, value in (properties or {}).items():
        if value is None or value == "":
            continue
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", key):
            raise ValueError(f"workflow command property names are letters and digits; received {key!r}")
        text = escape_controls(redact(str(value), secrets), keep_newlines=False)
        props.append(f"{key}={escape_command_property(text)}")
    data = message
    if name is not CommandName.ADD_MASK:
        # The runner also reads `##[` (its old syntax) anywhere in a line: show it escaped.
        lines = redact(message, secrets).replace("\r\n", "\n").replace("\r", "\n")
        data = escape_controls(lines).replace("##[", "%23%23[")
    head = f"::{name.value} {','.join(props)}" if props else f"::{name.value}"
    return f"{head}::{escape_command_data(data)}"


def render_mask_commands(secret: str) -> list[str]:
    """``::add-mask::`` lines for a secret (one per line: masks work line by line)."""
    return [render_command(CommandName.ADD_MASK, part) for part in secret.splitlines() if part.strip()]


def new_stop_token() -> str:
    """A token for ``::stop-commands::``, unguessable by the text printed after it."""
    return f"deltatrain-{uuid.uuid4().hex}"


# ------------------------------------------------------------------ command files


_OUTPUT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


def render_outputs(
    outputs: Mapping[str, str], secrets: Iterable[str] = (), delimiter: str | None = None
) -> str:
    """Text to append to ``$GITHUB_OUTPUT``: one redacted, single-line value per name.

    Every value is written in the heredoc form ``name<<DELIM`` with a random
    delimiter (as ``@actions/core`` does) that is checked not to occur in the
    value, and values are made single-line first, so no value can end the
    heredoc early or add a key of its own.
    """
    secrets = tuple(secrets)
    chunks = []
    for name, raw in outputs.items():
        if not _OUTPUT_NAME.fullmatch(name):
            raise ValueError(f"output names are letters, digits, '-' and '_'; received {name!r}")
        value = render_value(str(raw), secrets)
        delim = delimiter or f"ghadelimiter_{uuid.uuid4().hex}"
        if delim in value or delim in name:
            raise ValueError(f"output {name!r} contains the heredoc delimiter {delim!r}")
        chunks.append(f"{name}<<{delim}\n{value}\n{delim}\n")
    return "".join(chunks)


#: GitLab reads at most this many characters of one dotenv value; longer ones are cut.
DOTENV_MAX_VALUE = 1000


def render_dotenv(outputs: Mapping[str, str], secrets: Iterable[str] = (), prefix: str = "DELTATRAIN_") -> str:
    """A GitLab ``artifacts:reports:dotenv`` file: ``PREFIX_NAME=value`` per output, one line each.

    Names become upper case with ``_`` for ``-``; values are redacted, made
    single-line and inert, and cut to :data:`DOTENV_MAX_VALUE` characters.
    """
    lines = []
    for name, raw in outputs.items():
        if not _OUTPUT_NAME.fullmatch(name):
            raise ValueError(f"output names are letters, digits, '-' and '_'; received {name!r}")
        value = render_value(str(raw), tuple(secrets)).strip()[:DOTENV_MAX_VALUE]
        lines.append(f"{prefix}{name.upper().replace('-', '_')}={value}\n")
    return "".join(lines)


def render_json(value: Any, secrets: Iterable[str] = (), indent: int | None = 2) -> str:
    """JSON with the same meaning as ``value``, redacted and inert in a CI log.

    ``#``, control characters and line separators inside strings are written
    as ``\\uXXXX`` escapes, so ``##[`` never appears in the text; a JSON line
    never starts with ``::``.
    """
    text = json.dumps(redact_json(value, secrets), indent=indent, ensure_ascii=False, default=str)
    return re.sub(r"[#\x7f-\x9f\u2028\u2029]", lambda m: f"\\u{ord(m.group(0)):04x}", text)


# ------------------------------------------------------------------ Markdown


def render_markdown_code(text: str, *, in_table: bool = False) -> str:
    """``text`` as one inline code span, whatever backticks, newlines or HTML it holds."""
    text = escape_controls(text, keep_newlines=False)
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or not text.strip() else ""
    code = f"{fence}{pad}{text}{pad}{fence}"
    return code.replace("|", "\\|") if in_table else code


def render_markdown_text(text: str, *, in_table: bool = False) -> str:
    """Free text from data as one Markdown line: no raw HTML, no line breaks.

    ``<``, ``>`` and ``&`` become entities outside code spans; inside a code
    span (found as CommonMark finds them: a backtick run closed by the next run
    of the same length) HTML is shown as written, so it is left alone.
    """
    text = escape_controls(text, keep_newlines=False)
    parts: list[str] = []
    position = 0
    runs = list(re.finditer(r"`+", text))
    index = 0
    while index < len(runs):
        opener = runs[index]
        closer = next((r for r in runs[index + 1:] if len(r.group(0)) == len(opener.group(0))), None)
        if closer is None:
            index += 1
            continue
        before = _escape_html(text[position:opener.start()])
        stripped = before.rstrip("\\")  # a backslash before a backtick would make it text
        parts.append(stripped + "&#92;" * (len(before) - len(stripped)))
        parts.append(text[opener.start():closer.end()])
        position = closer.end()
        index = runs.index(closer) + 1
    parts.append(_escape_html(text[position:]))
    joined = "".join(parts)
    return joined.replace("|", "\\|") if in_table else joined


def _escape_html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
