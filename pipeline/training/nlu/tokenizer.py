"""Whitespace/punctuation tokenizer with character offsets (Rasa's WhitespaceTokenizer).

A token is a run of word characters; ``.``, ``-``, ``:``, ``/``, ``@`` and
``&`` are kept when they sit *between* word characters, so ``e-mail``,
``3.5``, ``10:30`` and ``ann@example.com`` stay one token. An apostrophe
starts a token of its own, so the possessive in ``[kate](person)'s`` and the
clitics of ``don't`` are separate (entity spans end before them). Other
punctuation and symbols are dropped, as in Rasa.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, NamedTuple

from pipeline.errors import ConfigError

DEFAULT_TOKEN_PATTERN = r"['’]\w+|\w+(?:[.\-:/@&]\w+)*"


class Token(NamedTuple):
    """One token: ``text`` is the surface form at ``[start, end)`` of the message."""

    text: str
    start: int
    end: int


@dataclass(frozen=True)
class Tokenizer:
    """Split a message into :class:`Token` objects with offsets."""

    token_pattern: str = DEFAULT_TOKEN_PATTERN
    lowercase: bool = False

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "_regex", re.compile(self.token_pattern))
        except re.error as exc:
            raise ConfigError(
                f"WhitespaceTokenizer: token_pattern is not a valid regular expression ({exc});"
                f" received {self.token_pattern!r}",
                hint="use a Python regular expression such as " + repr(DEFAULT_TOKEN_PATTERN),
            ) from exc

    def tokenize(self, text: str) -> tuple[Token, ...]:
        """Tokens of ``text`` in order; empty tuple for text without word characters."""
        lower = self.lowercase
        return tuple(
            Token(m.group(0).lower() if lower else m.group(0), m.start(), m.end())
            for m in self._regex.finditer(text)  # type: ignore[attr-defined]
            if m.end() > m.start()
        )

    def get_config(self) -> dict[str, Any]:
        return {"token_pattern": self.token_pattern, "lowercase": self.lowercase}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Tokenizer":
        return cls(**config)
