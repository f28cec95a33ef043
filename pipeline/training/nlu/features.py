"""Sparse featurization: the preprocessing half of the NLU model (no TensorFlow).

Each featurizer maps a tokenized message to feature ids in its own
append-only :class:`Vocabulary`; the network turns ids into dense vectors by
summing rows of one embedding table per featurizer (a sparse dense layer).

Vocabularies only ever grow: :meth:`NluPreprocessor.adapt` appends keys it
has not seen in first-seen order and never reorders, so an id means the same
feature for the whole life of a model and its finetuned descendants. Unknown
keys at prediction time are dropped (their contribution is zero).

An encoded message has, per featurizer, ``ids`` and ``positions``:
position ``p >= 1`` is token ``p - 1``; position 0 is the sentence slot (the
``__CLS__`` token) and holds sentence-only features (word n-grams, n >= 2).
Count-vector and regex token features are also summed into the sentence
slot by the network (``FeaturizerSpec.kind`` in ``SENTENCE_KINDS``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from pipeline.data.model import LookupTable, RegexFeature
from pipeline.errors import TrainingError

from .settings import FeaturizerSpec, NluSettings
from .tokenizer import Token, Tokenizer

#: Featurizer kinds whose token features are also summed into the sentence slot.
SENTENCE_KINDS = ("count_vectors", "regex")

_EMPTY = np.zeros(0, dtype=np.int32)


class Vocabulary:
    """Append-only mapping from feature keys to stable integer ids."""

    def __init__(self, keys: Iterable[str] = ()) -> None:
        self._keys: list[str] = []
        self._index: dict[str, int] = {}
        self.extend(keys)

    def extend(self, keys: Iterable[str]) -> int:
        """Append unseen keys in order; return how many were added."""
        added = 0
        for key in keys:
            if key not in self._index:
                self._index[key] = len(self._keys)
                self._keys.append(key)
                added += 1
        return added

    def get(self, key: str) -> int | None:
        return self._index.get(key)

    def lookup(self, keys: Iterable[str]) -> list[int]:
        """Ids of known keys (unknown keys are dropped)."""
        index = self._index
        return [index[k] for k in keys if k in index]

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: object) -> bool:
        return key in self._index


def char_ngrams(word: str, low: int, high: int, *, word_boundaries: bool) -> list[str]:
    """scikit-learn's ``char_wb`` n-grams of one word (``char``: the same without padding)."""
    if not word_boundaries:
        return [word[i : i + n] for n in range(low, high + 1) for i in range(len(word) - n + 1)]
    padded = f" {word} "
    length = len(padded)
    grams: list[str] = []
    for n in range(low, high + 1):
        grams.extend(padded[i : i + n] for i in range(max(1, length - n + 1)))
        if n >= length:  # a short word counts once, as in scikit-learn
            break
    return grams


def _lexical_value(name: str, text: str, index: int, count: int) -> str:
    if name == "BOS":
        return str(index == 0)
    if name == "EOS":
        return str(index == count - 1)
    if name == "low":
        return str(text.islower())
    if name == "upper":
        return str(text.isupper())
    if name == "title":
        return str(text.istitle())
    if name == "digit":
        return str(text.isdigit())
    if name.startswith("prefix"):
        return text[: int(name[-1])].lower()
    return text[-int(name[-1]) :].lower()  # suffixN


@dataclass(frozen=True)
class PatternSet:
    """Compiled regex and lookup patterns of the RegexFeaturizer, keyed by vocabulary key."""

    regexes: tuple[tuple[str, re.Pattern[str]], ...]
    phrases: tuple[tuple[str, frozenset[tuple[str, ...]], int], ...]  # key, token tuples, max length
    lowercase_phrases: bool


def regex_key(name: str, pattern: str) -> str:
    return f"regex:{name}:{pattern}"


def lookup_key(name: str) -> str:
    return f"lookup:{name}"


def pattern_keys(spec: FeaturizerSpec, regexes: Sequence[RegexFeature], lookups: Sequence[LookupTable]) -> list[str]:
    """Vocabulary keys of the patterns ``spec`` uses, in data order."""
    keys: list[str] = []
    if spec.use_regexes:
        keys.extend(regex_key(r.name, p) for r in regexes for p in r.patterns)
    if spec.use_lookup_tables:
        keys.extend(lookup_key(t.name) for t in lookups)
    return list(dict.fromkeys(keys))


def build_patterns(
    spec: FeaturizerSpec, regexes: Sequence[RegexFeature], lookups: Sequence[LookupTable], tokenizer: Tokenizer
) -> PatternSet:
    """Compile the regexes and lookup tables of the training data."""
    flags = 0 if spec.case_sensitive else re.IGNORECASE
    compiled: list[tuple[str, re.Pattern[str]]] = []
    if spec.use_regexes:
        for regex in regexes:
            for pattern in regex.patterns:
                try:
                    compiled.append((regex_key(regex.name, pattern), re.compile(pattern, flags)))
                except re.error as exc:
                    raise TrainingError(
                        f"regex '{regex.name}' has an invalid pattern ({exc}); received {pattern!r}",
                        location=regex.location,
                        hint="write a Python regular expression",
                    ) from exc
    phrases: list[tuple[str, frozenset[tuple[str, ...]], int]] = []
    if spec.use_lookup_tables:
        for table in lookups:
            if spec.use_word_boundaries:
                elements = set()
                for element in table.elements:
                    words = tuple(t.text if spec.case_sensitive else t.text.lower() for t in tokenizer.tokenize(element))
                    if words:
                        elements.add(words)
                longest = max((len(e) for e in elements), default=0)
                phrases.append((lookup_key(table.name), frozenset(elements), longest))
            else:
                alternatives = "|".join(re.escape(e) for e in sorted(table.elements, key=len, reverse=True) if e)
                if alternatives:
                    compiled.append((lookup_key(table.name), re.compile(alternatives, flags)))
    return PatternSet(tuple(compiled), tuple(phrases), not spec.case_sensitive)


@dataclass(frozen=True)
class EncodedText:
    """A tokenized message and its sparse feature ids (see the module docstring)."""

    tokens: tuple[Token, ...]
    ids: tuple[np.ndarray, ...]  # per featurizer, int32
    positions: tuple[np.ndarray, ...]  # per featurizer, int32 (0 = sentence slot)


class NluPreprocessor:
    """Tokenizer + sparse featurizers with append-only vocabularies."""

    def __init__(
        self,
        settings: NluSettings,
        vocabularies: Sequence[Sequence[str]] | None = None,
        regexes: Sequence[RegexFeature] = (),
        lookups: Sequence[LookupTable] = (),
    ) -> None:
        self.settings = settings
        self.specs = settings.featurizers
        self.tokenizer = Tokenizer(settings.token_pattern, settings.tokenizer_lowercase)
        self.vocabularies = [Vocabulary(v) for v in (vocabularies or [()] * len(self.specs))]
        if len(self.vocabularies) != len(self.specs):
            raise ValueError(
                f"expected {len(self.specs)} vocabularies (one per featurizer); received {len(self.vocabularies)}"
            )
        self.regexes = tuple(regexes)
        self.lookups = tuple(lookups)
        self._key_cache: list[dict[Any, list[str]]] = [{} for _ in self.specs]
        self._id_cache: list[dict[Any, np.ndarray]] = [{} for _ in self.specs]
        self._patterns = [
            build_patterns(s, self.regexes, self.lookups, self.tokenizer) if s.kind == "regex" else None
            for s in self.specs
        ]

    # ------------------------------------------------------------------ keys
    def _word_keys(self, index: int, word: str) -> list[str]:
        """Count-vector keys of one token (cached per featurizer and word)."""
        cache = self._key_cache[index]
        keys = cache.get(word)
        if keys is None:
            spec = self.specs[index]
            text = word.lower() if spec.lowercase else word
            if spec.analyzer == "word":
                keys = [text] if spec.min_ngram <= 1 else []
            else:
                keys = char_ngrams(text, spec.min_ngram, spec.max_ngram, word_boundaries=spec.analyzer == "char_wb")
            cache[word] = keys
        return keys

    def _lexical_keys(self, index: int, offset: int, names: tuple[str, ...], word: str) -> list[str]:
        """Position-independent lexical keys of ``word`` seen at window ``offset`` (cached)."""
        cache = self._key_cache[index]
        key = (offset, word)
        keys = cache.get(key)
        if keys is None:
            keys = [f"{offset}:{n}:{_lexical_value(n, word, 0, 0)}" for n in names if n not in ("BOS", "EOS")]
            cache[key] = keys
        return keys

    def _token_keys(self, index: int, tokens: Sequence[Token], text: str) -> list[list[str]]:
        """Per token, the feature keys of featurizer ``index``."""
        spec = self.specs[index]
        if spec.kind == "count_vectors":
            return [self._word_keys(index, t.text) for t in tokens]
        if spec.kind == "lexical":
            windows = spec.features
            half = len(windows) // 2
            count = len(tokens)
            keys: list[list[str]] = []
            for i in range(count):
                token_keys: list[str] = []
                for offset, names in enumerate(windows, start=-half):
                    j = i + offset
                    if 0 <= j < count:
                        token_keys.extend(self._lexical_keys(index, offset, names, tokens[j].text))
                        if "BOS" in names:
                            token_keys.append(f"{offset}:BOS:{j == 0}")
                        if "EOS" in names:
                            token_keys.append(f"{offset}:EOS:{j == count - 1}")
                keys.append(token_keys)
            return keys
        return self._pattern_keys(index, tokens, text)

    def _pattern_keys(self, index: int, tokens: Sequence[Token], text: str) -> list[list[str]]:
        patterns = self._patterns[index]
        assert patterns is not None
        keys: list[list[str]] = [[] for _ in tokens]
        if not tokens:
            return keys
        for key, regex in patterns.regexes:
            for match in regex.finditer(text):
                if match.end() <= match.start():
                    continue
                for i, token in enumerate(tokens):
                    if token.start < match.end() and token.end > match.start() and key not in keys[i]:
                        keys[i].append(key)
        if patterns.phrases:
            words = [t.text.lower() if patterns.lowercase_phrases else t.text for t in tokens]
            for key, elements, longest in patterns.phrases:
                for i in range(len(words)):
                    for n in range(1, min(longest, len(words) - i) + 1):
                        if tuple(words[i : i + n]) in elements:
                            for j in range(i, i + n):
                                if key not in keys[j]:
                                    keys[j].append(key)
        return keys

    def _sentence_keys(self, index: int, tokens: Sequence[Token]) -> list[str]:
        spec = self.specs[index]
        if spec.kind != "count_vectors" or spec.analyzer != "word" or spec.max_ngram < 2:
            return []
        words = [t.text.lower() if spec.lowercase else t.text for t in tokens]
        return [
            " ".join(words[i : i + n])
            for n in range(max(2, spec.min_ngram), spec.max_ngram + 1)
            for i in range(len(words) - n + 1)
        ]

    # ------------------------------------------------------------- adapt/encode
    def adapt(self, texts: Iterable[str]) -> list[int]:
        """Append unseen feature keys of ``texts`` to the vocabularies; return keys added per featurizer.

        Keys are appended in first-seen order (texts in order, tokens left to
        right), so the same texts always give the same ids.
        """
        before = [len(v) for v in self.vocabularies]
        done: list[set[Any]] = [set() for _ in self.specs]
        for i, spec in enumerate(self.specs):
            if spec.kind == "regex":
                self.vocabularies[i].extend(pattern_keys(spec, self.regexes, self.lookups))
        for text in texts:
            tokens = self.tokenizer.tokenize(text)
            for i, spec in enumerate(self.specs):
                vocab, seen = self.vocabularies[i], done[i]
                if spec.kind == "count_vectors":
                    for token in tokens:
                        if token.text not in seen:
                            seen.add(token.text)
                            vocab.extend(self._word_keys(i, token.text))
                    vocab.extend(self._sentence_keys(i, tokens))
                elif spec.kind == "lexical":
                    for keys in self._token_keys(i, tokens, text):
                        vocab.extend(keys)
        added = [len(v) - b for v, b in zip(self.vocabularies, before)]
        if any(added):
            self._id_cache = [{} for _ in self.specs]
        return added

    def _cached_ids(self, index: int, key: Any, keys: Callable[[], list[str]]) -> np.ndarray:
        cache = self._id_cache[index]
        ids = cache.get(key)
        if ids is None:
            ids = np.array(self.vocabularies[index].lookup(keys()), dtype=np.int32)
            cache[key] = ids
        return ids

    def _token_units(self, index: int, tokens: Sequence[Token], text: str) -> list[list[tuple[Any, np.ndarray]]]:
        """Per token, its feature ids as (unit key, ids) parts; equal keys mean equal ids.

        Units let training sum the features of a word once per batch however
        often it occurs (``trainer.make_batch``).
        """
        spec = self.specs[index]
        if spec.kind == "count_vectors":
            return [[(t.text, self._cached_ids(index, t.text, partial(self._word_keys, index, t.text)))] for t in tokens]
        if spec.kind == "lexical":
            windows = spec.features
            half = len(windows) // 2
            count = len(tokens)
            result = []
            for i in range(count):
                parts = []
                for offset, names in enumerate(windows, start=-half):
                    j = i + offset
                    if 0 <= j < count:
                        word = tokens[j].text
                        key: Any = (offset, word)
                        parts.append(
                            (key, self._cached_ids(index, key, partial(self._lexical_keys, index, offset, names, word)))
                        )
                        if "BOS" in names or "EOS" in names:
                            key = (offset, j == 0, j == count - 1)
                            parts.append(
                                (
                                    key,
                                    self._cached_ids(
                                        index,
                                        key,
                                        partial(_boundary_keys, offset, names, j == 0, j == count - 1),
                                    ),
                                )
                            )
                result.append(parts)
            return result
        vocab = self.vocabularies[index]
        if len(vocab) == 0:
            return [[] for _ in tokens]
        result = []
        for keys in self._token_keys(index, tokens, text):
            ids = np.array(vocab.lookup(keys), dtype=np.int32)
            result.append([(("pattern", *ids.tolist()), ids)] if ids.size else [])
        return result

    def encode_units(self, text: str) -> tuple[tuple[Token, ...], list[list[tuple[int, Any, np.ndarray]]]]:
        """Tokens and, per featurizer, ``(position, unit key, ids)`` triples in position order."""
        tokens = self.tokenizer.tokenize(text)
        per_featurizer = []
        for i in range(len(self.specs)):
            units: list[tuple[int, Any, np.ndarray]] = [
                (0, ("sentence", k), np.array([k], dtype=np.int32))
                for k in self.vocabularies[i].lookup(self._sentence_keys(i, tokens))
            ]
            for position, parts in enumerate(self._token_units(i, tokens, text), start=1):
                units.extend((position, key, ids) for key, ids in parts if ids.size)
            per_featurizer.append(units)
        return tokens, per_featurizer

    def encode(self, text: str) -> EncodedText:
        """Tokens and feature ids of one message (unknown keys dropped)."""
        tokens, per_featurizer = self.encode_units(text)
        all_ids: list[np.ndarray] = []
        all_positions: list[np.ndarray] = []
        for units in per_featurizer:
            if units:
                all_ids.append(np.concatenate([ids for _, _, ids in units]))
                all_positions.append(np.repeat(np.array([p for p, _, _ in units], dtype=np.int32), [len(ids) for _, _, ids in units]))
            else:
                all_ids.append(_EMPTY)
                all_positions.append(_EMPTY)
        return EncodedText(tokens, tuple(all_ids), tuple(all_positions))

    @property
    def feature_sizes(self) -> dict[str, int]:
        return {spec.name: len(vocab) for spec, vocab in zip(self.specs, self.vocabularies)}

    # ----------------------------------------------------------------- config
    def get_config(self) -> dict[str, Any]:
        """Vocabularies and the patterns they were built with (JSON-able)."""
        return {
            "featurizers": [spec.name for spec in self.specs],
            "vocabularies": [list(v.keys) for v in self.vocabularies],
            "regexes": [{"name": r.name, "patterns": list(r.patterns)} for r in self.regexes],
            "lookups": [{"name": t.name, "elements": list(t.elements)} for t in self.lookups],
        }

    @classmethod
    def from_config(cls, settings: NluSettings, config: Mapping[str, Any]) -> "NluPreprocessor":
        names = [spec.name for spec in settings.featurizers]
        if list(config["featurizers"]) != names:
            raise ValueError(f"featurizers {names} expected; received {list(config['featurizers'])}")
        return cls(
            settings,
            config["vocabularies"],
            tuple(RegexFeature(r["name"], tuple(r["patterns"])) for r in config["regexes"]),
            tuple(LookupTable(t["name"], tuple(t["elements"])) for t in config["lookups"]),
        )


def _boundary_keys(offset: int, names: Sequence[str], first: bool, last: bool) -> list[str]:
    """The BOS/EOS feature keys of a window position (``offset``) for the lexical featurizer."""
    return [*([f"{offset}:BOS:{first}"] if "BOS" in names else []), *([f"{offset}:EOS:{last}"] if "EOS" in names else [])]
