"""The DIET-style network: config, weight names, initial weights and the forward pass.

The forward pass (:func:`encode`, :func:`heads`) is written once over an ``ops``
object (:mod:`pipeline.training.ops`): the NumPy predictor (:mod:`.inference`)
runs it with NumPy, the trainer (:mod:`.network`) with TensorFlow, on the same
weights by the same names. This module imports no TensorFlow.

::

    per featurizer i:  embed/i [V_i, D]      sparse ids -> summed rows (a sparse dense layer)
    dense/kernel [F, D], dense/bias [D]      pretrained dense features (LanguageModelFeaturizer),
                                             projected and added (only when used)
    input_norm, position [P, D]              LayerNorm(sum) + learned position
    context/kernel [(2c+1)D, D]              h += relu([h(t-c) .. h(t+c)] W) on tokens
    layer{l}/...                             pre-LN transformer blocks
    output_norm
    intent/kernel [D, E], intent/bias [E], intent/labels [I, E]   DIET similarity head
    entity/kernel [D, K], entity/bias [K]    per-token tag softmax (BILOU/BIO), decoded
                                             by Viterbi under the tag grammar
    role/..., group/...                      per-token softmax heads (only when used)

Sequence position 0 is the sentence slot (``__CLS__``); tokens follow.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping

import numpy as np

from pipeline.training.ops import Ops

LAYER_NORM_EPSILON = 1e-6
FFN_MULTIPLIER = 2
#: Attention logit added for padded keys (their weight underflows to exactly 0).
_MASK_VALUE = -1e9
#: Scale of the cosine similarities (DIET's ``similarity_type: cosine``).
COSINE_SCALE = 5.0
#: Dropout sites: each has its own stateless random stream (salts 10 + 4 * layer ... are per layer).
_SALT_HIDDEN, _SALT_CONTEXT, _SALT_LAYERS, _SALT_SPARSE = 1, 2, 10, 100


@dataclass(frozen=True)
class TrainingOptions:
    """Regularisation and loss options (from DIETClassifier settings)."""

    drop_rate: float
    drop_rate_attention: float
    sparse_input_dropout: bool
    constrain_similarities: bool


@dataclass(frozen=True)
class NetworkConfig:
    """Hyper-parameters that fix the shapes of every weight."""

    feature_sizes: tuple[int, ...]
    sentence_features: tuple[bool, ...]  # featurizer's token ids also feed the sentence slot
    size: int
    layers: int
    heads: int
    positions: int
    embedding_dimension: int
    num_intents: int
    num_tags: int
    num_roles: int  # including "none"; 0 = no role head
    num_groups: int
    cosine: bool
    intent_classification: bool
    entity_recognition: bool
    context_window: int = 1  # tokens each side seen by the convolution before the transformer (0: none)
    dense_size: int = 0  # width of the pretrained dense features per token and sentence (0: none)

    @property
    def ffn_size(self) -> int:
        return FFN_MULTIPLIER * self.size

    def get_config(self) -> dict[str, Any]:
        config = asdict(self)
        config["feature_sizes"] = list(self.feature_sizes)
        config["sentence_features"] = list(self.sentence_features)
        return config

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "NetworkConfig":
        data = dict(config)
        data["feature_sizes"] = tuple(data["feature_sizes"])
        data["sentence_features"] = tuple(data["sentence_features"])
        return cls(**data)

    def weight_shapes(self) -> dict[str, tuple[int, ...]]:
        """Name -> shape of every weight, in a fixed order."""
        d, f = self.size, self.ffn_size
        shapes: dict[str, tuple[int, ...]] = {}
        for i, vocab in enumerate(self.feature_sizes):
            shapes[f"embed/{i}"] = (vocab, d)
        if self.dense_size:
            shapes["dense/kernel"] = (self.dense_size, d)
            shapes["dense/bias"] = (d,)
        shapes["input_norm/gamma"] = (d,)
        shapes["input_norm/beta"] = (d,)
        shapes["position"] = (self.positions, d)
        if self.context_window:
            shapes["context/kernel"] = ((2 * self.context_window + 1) * d, d)
            shapes["context/bias"] = (d,)
        for layer in range(self.layers):
            p = f"layer{layer}/"
            shapes.update(
                {
                    p + "attn_norm/gamma": (d,),
                    p + "attn_norm/beta": (d,),
                    p + "qkv/kernel": (d, 3 * d),
                    p + "qkv/bias": (3 * d,),
                    p + "attn_out/kernel": (d, d),
                    p + "attn_out/bias": (d,),
                    p + "ffn_norm/gamma": (d,),
                    p + "ffn_norm/beta": (d,),
                    p + "ffn_in/kernel": (d, f),
                    p + "ffn_in/bias": (f,),
                    p + "ffn_out/kernel": (f, d),
                    p + "ffn_out/bias": (d,),
                }
            )
        shapes["output_norm/gamma"] = (d,)
        shapes["output_norm/beta"] = (d,)
        if self.intent_classification:
            e = self.embedding_dimension
            shapes["intent/kernel"] = (d, e)
            shapes["intent/bias"] = (e,)
            shapes["intent/labels"] = (self.num_intents, e)
        if self.entity_recognition:
            k = self.num_tags
            shapes["entity/kernel"] = (d, k)
            shapes["entity/bias"] = (k,)
            if self.num_roles:
                shapes["role/kernel"] = (d, self.num_roles)
                shapes["role/bias"] = (self.num_roles,)
            if self.num_groups:
                shapes["group/kernel"] = (d, self.num_groups)
                shapes["group/bias"] = (self.num_groups,)
        return shapes


def initial_weights(config: NetworkConfig, seed: int) -> dict[str, np.ndarray]:
    """Seeded initial weights (Glorot-uniform kernels, zero biases, unit norms)."""
    rng = np.random.default_rng(seed)
    weights: dict[str, np.ndarray] = {}
    for name, shape in config.weight_shapes().items():
        leaf = name.rsplit("/", 1)[-1]
        if name.startswith("embed/"):
            value = rng.normal(0.0, 1.0 / np.sqrt(config.size), size=shape)
        elif name == "position":
            value = rng.normal(0.0, 0.1, size=shape)
        elif leaf == "gamma":
            value = np.ones(shape)
        elif leaf in ("beta", "bias"):
            value = np.zeros(shape)
        else:  # kernels and label embeddings
            limit = np.sqrt(6.0 / (shape[0] + shape[1]))
            value = rng.uniform(-limit, limit, size=shape)
        weights[name] = value.astype(np.float32)
    return weights


def grow_weights(
    weights: Mapping[str, np.ndarray], old: NetworkConfig, new: NetworkConfig
) -> dict[str, np.ndarray]:
    """Weights for ``new`` (larger vocabularies): old rows kept, new rows zero.

    A zero row contributes nothing to the summed features, so the grown
    network predicts exactly like the old one (new keys behave as unknown
    keys did) until training moves them.
    """
    grown = dict(weights)
    for i, (before, after) in enumerate(zip(old.feature_sizes, new.feature_sizes)):
        if after < before:
            raise ValueError(f"featurizer {i} would shrink from {before} to {after} features")
        if after > before:
            table = weights[f"embed/{i}"]
            grown[f"embed/{i}"] = np.concatenate([table, np.zeros((after - before, table.shape[1]), np.float32)])
    return grown


# ----------------------------------------------------------------------- forward


def encode(
    ops: Ops,
    w: Mapping[str, Any],
    config: NetworkConfig,
    features: Any,
    mask: Any,
    dense: Any,
    options: TrainingOptions | None = None,
) -> Any:
    """Contextual vectors [B, L, D] (position 0: the sentence slot, then the tokens).

    ``features``: the sparse inputs in ``ops``' layout (:meth:`~pipeline.training.ops.Ops.sparse_embed`);
    ``mask`` [B, L]: 1 for the sentence slot and real tokens; ``dense`` [B, L, F]: the pretrained
    features (unused when ``config.dense_size`` is 0); ``options``: dropout rates (``ops`` applies
    dropout only when training).
    """
    drop = options.drop_rate if options is not None else 0.0
    drop_attention = options.drop_rate_attention if options is not None else 0.0
    drop_sparse = drop if options is not None and options.sparse_input_dropout else 0.0
    shape = ops.shape(mask)
    batch, length = shape[0], shape[1]
    d = config.size
    x = ops.zeros((batch, length, d))
    if config.dense_size:  # no input dropout on them (Rasa's dense_input_dropout: false)
        x = x + ops.dense(dense, w["dense/kernel"], w["dense/bias"])
    tables = [w[f"embed/{i}"] if size else None for i, size in enumerate(config.feature_sizes)]
    x = ops.sparse_embed(x, tables, features, config.sentence_features, drop_sparse, _SALT_SPARSE)
    h = ops.layer_norm(x, w["input_norm/gamma"], w["input_norm/beta"], LAYER_NORM_EPSILON)
    h = h + ops.gather(w["position"], ops.minimum(ops.arange(length), config.positions - 1))[None]
    h = ops.dropout(h, drop, _SALT_HIDDEN)
    if config.context_window:
        # h += relu([h(t-c) .. h(t+c)] W) on tokens; the sentence slot neither gives nor gets context
        c = config.context_window
        token_mask = ops.concat([ops.zeros((batch, 1)), mask[:, 1:]], axis=1)[:, :, None]
        padded = ops.pad(h * token_mask, [[0, 0], [c, c], [0, 0]])
        window = ops.concat([h if k == c else padded[:, k : k + length] for k in range(2 * c + 1)], axis=-1)
        context = ops.relu(ops.dense(window, w["context/kernel"], w["context/bias"]))
        h = h + ops.dropout(context, drop, _SALT_CONTEXT) * token_mask
    heads, dh = config.heads, d // config.heads
    key_bias = (1.0 - mask)[:, None, None, :] * _MASK_VALUE
    for layer in range(config.layers):
        p = f"layer{layer}/"
        salt = _SALT_LAYERS + 4 * layer
        a = ops.layer_norm(h, w[p + "attn_norm/gamma"], w[p + "attn_norm/beta"], LAYER_NORM_EPSILON)
        qkv = ops.reshape(ops.dense(a, w[p + "qkv/kernel"], w[p + "qkv/bias"]), [batch, length, 3, heads, dh])
        qkv = ops.transpose(qkv, [2, 0, 3, 1, 4])  # [3, B, H, L, dh]
        scores = ops.matmul(qkv[0], qkv[1], transpose_b=True) * (1.0 / float(np.sqrt(dh))) + key_bias
        probs = ops.dropout(ops.softmax(scores), drop_attention, salt)
        attention = ops.reshape(ops.transpose(ops.matmul(probs, qkv[2]), [0, 2, 1, 3]), [batch, length, d])
        h = ops.residual(h, attention, w[p + "attn_out/kernel"], w[p + "attn_out/bias"])
        f = ops.layer_norm(h, w[p + "ffn_norm/gamma"], w[p + "ffn_norm/beta"], LAYER_NORM_EPSILON)
        f = ops.relu(ops.dense(f, w[p + "ffn_in/kernel"], w[p + "ffn_in/bias"]))
        h = ops.residual(h, f, w[p + "ffn_out/kernel"], w[p + "ffn_out/bias"], drop, salt + 2)
    return ops.layer_norm(h, w["output_norm/gamma"], w["output_norm/beta"], LAYER_NORM_EPSILON)


def heads(ops: Ops, w: Mapping[str, Any], config: NetworkConfig, h: Any) -> dict[str, Any]:
    """The logits of the vectors ``h`` [B, L, D]: ``similarities`` [B, I] of the sentence slot with
    every intent, ``emissions`` [B, L-1, K] (entity tags), ``roles`` and ``groups`` of the tokens."""
    out: dict[str, Any] = {}
    if config.intent_classification:
        u = ops.dense(h[:, 0], w["intent/kernel"], w["intent/bias"])
        labels = w["intent/labels"]
        if config.cosine:
            out["similarities"] = ops.matmul(ops.l2_normalize(u), ops.l2_normalize(labels), transpose_b=True) * COSINE_SCALE
        else:
            out["similarities"] = ops.matmul(u, labels, transpose_b=True)
    if config.entity_recognition:
        tokens = h[:, 1:]
        out["emissions"] = ops.dense(tokens, w["entity/kernel"], w["entity/bias"])
        if config.num_roles:
            out["roles"] = ops.dense(tokens, w["role/kernel"], w["role/bias"])
        if config.num_groups:
            out["groups"] = ops.dense(tokens, w["group/kernel"], w["group/bias"])
    return out


def forward(
    ops: Ops,
    w: Mapping[str, Any],
    config: NetworkConfig,
    features: Any,
    mask: Any,
    dense: Any,
    options: TrainingOptions | None = None,
) -> dict[str, Any]:
    """The network: :func:`heads` of :func:`encode` (the arguments are theirs)."""
    return heads(ops, w, config, encode(ops, w, config, features, mask, dense, options))
