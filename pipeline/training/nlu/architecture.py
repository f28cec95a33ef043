"""The DIET-style network's shape: config, weight names and initial weights (NumPy only).

Shared by the TensorFlow trainer (:mod:`.network`) and the NumPy predictor
(:mod:`.inference`), so both read the same weights by the same names.

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

LAYER_NORM_EPSILON = 1e-6
FFN_MULTIPLIER = 2


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
