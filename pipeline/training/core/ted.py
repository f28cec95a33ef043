"""TEDPolicy: a small transformer over the last ``max_history`` dialogue states.

Network (one definition, :func:`forward`, run by NumPy for prediction and by
TensorFlow for training)::

    states [B, H, F] --dense--> [B, H, D] + position embedding
      --> N x (pre-norm self-attention over the real turns, pre-norm ReLU feed-forward)
      --> layer norm of the last turn --dense--> dialogue embedding [B, E]
      --> dot product with one embedding per action [A, E] --> softmax

as Rasa's TED: a transformer encodes the dialogue, and the confidence of an
action is the softmax of the similarity of its embedding with the dialogue's.
Histories shorter than ``H`` are padded at the front and masked out.

TensorFlow is imported only inside :func:`train_weights` (through
:func:`pipeline.training.runtime.configure_tensorflow`); loading a model and
predicting need NumPy only, so predictions after ``save``/``load`` are
bit-for-bit the ones before. Training is seeded: initial weights come from a
NumPy generator, dropout from stateless TensorFlow random ops, and batches
are shuffled by a NumPy generator, so one seed gives one model.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from pipeline.errors import ConfigError, ModelError
from pipeline.training.ops import NUMPY, Ops, TensorFlowOps
from pipeline.training.optim import Adam, batch_size_for
from pipeline.training.runtime import Progress, emit

from .ensemble import PolicyOutput
from .settings import TedSettings
from .states import DomainSpec, Replay, State, replay
from .tracker import ActionExecuted, Event

__all__ = [
    "TEDPolicy",
    "forward",
    "forward_tensorflow",
    "predict_probabilities",
    "init_weights",
    "weight_shapes",
    "build_training_examples",
    "train_weights",
]

_LN_EPSILON = 1e-5
_MASK_VALUE = -1e9
#: Dropout site ``k`` draws from the stateless random stream ``seed + [0, k * _SALT_STRIDE]``.
_SALT_STRIDE = 7919
#: Histories encoded and predicted at once (bounds memory for large test sets).
_PREDICT_CHUNK = 512
#: How many other stories each story is also replayed after (Rasa's augmentation).
AUGMENTATION_PREDECESSORS = 5


def weight_shapes(
    feature_size: int, num_actions: int, max_history: int, settings: TedSettings
) -> dict[str, tuple[int, ...]]:
    """Name and shape of every weight of the network (the saved ``.npz`` keys)."""
    d, e = settings.transformer_size, settings.embedding_dimension
    shapes: dict[str, tuple[int, ...]] = {
        "input/kernel": (feature_size, d),
        "input/bias": (d,),
        "position": (max_history, d),
    }
    for i in range(settings.number_of_transformer_layers):
        p = f"layer_{i}"
        shapes.update(
            {
                f"{p}/norm1/gamma": (d,),
                f"{p}/norm1/beta": (d,),
                **{f"{p}/attention/{n}/kernel": (d, d) for n in ("query", "key", "value", "output")},
                **{f"{p}/attention/{n}/bias": (d,) for n in ("query", "key", "value", "output")},
                f"{p}/norm2/gamma": (d,),
                f"{p}/norm2/beta": (d,),
                f"{p}/ffn/hidden/kernel": (d, 2 * d),
                f"{p}/ffn/hidden/bias": (2 * d,),
                f"{p}/ffn/output/kernel": (2 * d, d),
                f"{p}/ffn/output/bias": (d,),
            }
        )
    shapes.update(
        {
            "final_norm/gamma": (d,),
            "final_norm/beta": (d,),
            "dialogue_embed/kernel": (d, e),
            "dialogue_embed/bias": (e,),
            "action_embed": (num_actions, e),
        }
    )
    return shapes


def init_weights(shapes: Mapping[str, tuple[int, ...]], seed: int) -> dict[str, np.ndarray]:
    """Glorot-uniform kernels, zero biases, unit layer-norm gains; float32, seeded."""
    rng = np.random.default_rng(seed)
    weights = {}
    for name, shape in shapes.items():
        if name.endswith("/gamma"):
            value = np.ones(shape)
        elif name.endswith(("/bias", "/beta")):
            value = np.zeros(shape)
        elif name == "position":
            value = rng.normal(0.0, 0.02, shape)
        else:
            limit = math.sqrt(6.0 / (shape[0] + shape[-1]))
            value = rng.uniform(-limit, limit, shape)
        weights[name] = value.astype(np.float32)
    return weights


# ----------------------------------------------------------------------- network


def forward(ops: Ops, w: Mapping[str, Any], x: Any, mask: Any, settings: TedSettings) -> Any:
    """Logits ``[B, A]`` of the network; ``ops`` is NumPy or TensorFlow (:mod:`pipeline.training.ops`)."""
    d = settings.transformer_size
    heads = settings.number_of_attention_heads
    dh = d // heads
    steps = int(w["position"].shape[0])

    def dense(t: Any, name: str) -> Any:
        return ops.dense(t, w[f"{name}/kernel"], w[f"{name}/bias"])

    def dropout(t: Any, rate: float, site: int) -> Any:
        return ops.dropout(t, rate, site * _SALT_STRIDE)

    def norm(t: Any, prefix: str) -> Any:
        mu = ops.mean(t)
        centered = t - mu
        var = ops.mean(centered * centered)
        return centered * ops.rsqrt(var + _LN_EPSILON) * w[f"{prefix}/gamma"] + w[f"{prefix}/beta"]

    def split(t: Any, rows: int) -> Any:
        return ops.transpose(ops.reshape(t, (-1, rows, heads, dh)), (0, 2, 1, 3))

    h = dense(x, "input") + w["position"]
    h = dropout(h, settings.drop_rate_dialogue, 0)
    key_bias = (1.0 - mask)[:, None, None, :] * _MASK_VALUE
    scale = 1.0 / math.sqrt(dh)
    layers = settings.number_of_transformer_layers
    for i in range(layers):
        p = f"layer_{i}"
        a = norm(h, f"{p}/norm1")
        # only the last turn's output is used: the last layer computes its queries,
        # attention output and feed-forward for that turn alone (same result, less work)
        rows = 1 if i == layers - 1 else steps
        q = split(dense(a[:, -1:, :] if rows == 1 else a, f"{p}/attention/query"), rows)
        k = split(dense(a, f"{p}/attention/key"), steps)
        v = split(dense(a, f"{p}/attention/value"), steps)
        scores = (q @ ops.transpose(k, (0, 1, 3, 2))) * scale + key_bias
        attention = dropout(ops.softmax(scores), settings.drop_rate_attention, 10 * i + 1)
        merged = ops.reshape(ops.transpose(attention @ v, (0, 2, 1, 3)), (-1, rows, d))
        out = dense(merged, f"{p}/attention/output")
        h = (h[:, -1:, :] if rows == 1 else h) + dropout(out, settings.drop_rate_dialogue, 10 * i + 2)
        f = ops.relu(dense(norm(h, f"{p}/norm2"), f"{p}/ffn/hidden"))
        h = h + dropout(dense(f, f"{p}/ffn/output"), settings.drop_rate_dialogue, 10 * i + 3)
    last = norm(h[:, -1, :], "final_norm")
    dialogue = last @ w["dialogue_embed/kernel"] + w["dialogue_embed/bias"]
    return dialogue @ ops.transpose(w["action_embed"], (1, 0))


def predict_probabilities(
    weights: Mapping[str, np.ndarray], x: np.ndarray, mask: np.ndarray, settings: TedSettings
) -> np.ndarray:
    """Softmax confidences ``[B, A]`` (float64), computed with NumPy."""
    logits = forward(NUMPY, weights, x.astype(np.float32), mask.astype(np.float32), settings).astype(np.float64)
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    probabilities: np.ndarray = shifted / shifted.sum(axis=-1, keepdims=True)
    return probabilities


def forward_tensorflow(
    weights: Mapping[str, np.ndarray], x: np.ndarray, mask: np.ndarray, settings: TedSettings
) -> np.ndarray:
    """Logits computed by TensorFlow (the training path), for checking against NumPy."""
    from pipeline.training.runtime import configure_tensorflow  # noqa: PLC0415 - TensorFlow stays lazy

    tf = configure_tensorflow()
    tensors = {name: tf.constant(value) for name, value in weights.items()}
    logits: np.ndarray = forward(TensorFlowOps(tf), tensors, tf.constant(x), tf.constant(mask), settings).numpy()
    return logits


# ---------------------------------------------------------------------- training


def _first_actions(events: Sequence[Event], count: int) -> tuple[Event, ...]:
    """The events up to and including the ``count``-th action (listens it implies included)."""
    seen = 0
    for index, event in enumerate(events):
        if isinstance(event, ActionExecuted):
            seen += 1
            if seen >= count:
                return tuple(events[: index + 1])
    return tuple(events)


def build_training_examples(
    stories: Sequence[Sequence[Event]],
    max_history: int,
    spec: DomainSpec,
    *,
    seed: int = 0,
    predecessors: int = AUGMENTATION_PREDECESSORS,
) -> tuple[list[tuple[State, ...]], np.ndarray]:
    """Distinct (state window, action) pairs of the stories, in first-seen order.

    Two augmentations make the network rely on the turns that matter rather
    than on the exact story it saw:

    * as Rasa's story augmentation, each story is also replayed after up to
      ``predecessors`` other stories (picked with ``seed``), so that its first
      turns are seen with history before them, not only at a conversation start
      (only the windows that reach into the predecessor are added);
    * every action is also learnt from the current state alone (a back-off for
      histories never seen).
    """
    seen: set[tuple[tuple[State, ...], str]] = set()
    windows: list[tuple[State, ...]] = []
    labels: list[int] = []

    def add(played: Replay, first: int, last: int) -> None:
        for k in range(first, min(last, len(played.actions))):
            action = played.actions[k]
            history = played.history(k)
            for window in (history[-max_history:], history[-1:]):
                if (window, action) not in seen:
                    seen.add((window, action))
                    windows.append(window)
                    labels.append(spec.action_index(action))

    played_stories = [replay(events, spec) for events in stories]
    for played in played_stories:
        add(played, 0, len(played.actions))
    if predecessors and len(stories) > 1:
        rng = np.random.default_rng(seed)
        for index, events in enumerate(stories):
            others = [i for i in range(len(stories)) if i != index]
            chosen = others if len(others) <= predecessors else rng.choice(others, predecessors, replace=False)
            head = _first_actions(events, max_history - 1)
            for before in chosen:
                offset = len(played_stories[before].actions)
                add(replay(tuple(stories[before]) + head, spec), offset, offset + max_history - 1)
    return windows, np.asarray(labels, dtype=np.int32)


def train_weights(
    weights: Mapping[str, np.ndarray],
    x: np.ndarray,
    mask: np.ndarray,
    y: np.ndarray,
    settings: TedSettings,
    *,
    epochs: int,
    seed: int,
    progress: Progress | None = None,
    phase: str = "train",
) -> tuple[dict[str, np.ndarray], list[dict[str, float]]]:
    """Train the network with Adam on softmax cross-entropy; one progress event per epoch."""
    from pipeline.training.runtime import configure_tensorflow  # noqa: PLC0415 - TensorFlow stays lazy

    tf = configure_tensorflow(seed=seed)
    names = sorted(weights)
    variables = {name: tf.Variable(weights[name], name=name.replace("/", "_")) for name in names}
    var_list = [variables[n] for n in names]
    adam = Adam(tf, var_list)
    learning_rate = settings.learning_rate

    steps = x.shape[1]
    features = x.shape[2]

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, steps, features], tf.float32),
            tf.TensorSpec([None, steps], tf.float32),
            tf.TensorSpec([None], tf.int32),
            tf.TensorSpec([2], tf.int32),
        ],
        autograph=False,  # plain Python loops over layers: nothing to convert, and converting is slow
    )
    def train_step(xb: Any, mb: Any, yb: Any, seed_pair: Any) -> Any:
        with tf.GradientTape() as tape:
            logits = forward(TensorFlowOps(tf, seed_pair), variables, xb, mb, settings)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=yb, logits=logits))
        adam.apply(tape.gradient(loss, var_list), learning_rate)
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int32), yb), tf.float32))
        return loss, correct

    rng = np.random.default_rng(seed)
    history: list[dict[str, float]] = []
    total = len(y)
    global_step = 0
    for epoch in range(epochs):
        size = batch_size_for(epoch, epochs, settings.batch_size)
        order = rng.permutation(total)
        loss_sum = 0.0
        correct_sum = 0.0
        for start in range(0, total, size):
            index = order[start : start + size]
            loss, correct = train_step(x[index], mask[index], y[index], np.array([seed, global_step], dtype=np.int32))
            loss_sum += float(loss) * len(index)
            correct_sum += float(correct)
            global_step += 1
        record = {"loss": loss_sum / total, "accuracy": correct_sum / total}
        history.append(record)
        emit(progress, model="core", phase=phase, epoch=epoch + 1, epochs=epochs, **record)
    return {name: variables[name].numpy() for name in names}, history


# ------------------------------------------------------------------------ policy


class TEDPolicy:
    """The ML policy: predicts from any history, including ones never seen in training."""

    name = "TEDPolicy"

    def __init__(
        self,
        settings: TedSettings,
        max_history: int,
        weights: Mapping[str, np.ndarray] | None,
    ) -> None:
        self.settings = settings
        self.max_history = max_history
        self.weights = dict(weights) if weights is not None else None

    @staticmethod
    def check_settings(settings: TedSettings) -> None:
        if settings.transformer_size % settings.number_of_attention_heads:
            raise ConfigError(
                f"TEDPolicy: transformer_size {settings.transformer_size} is not divisible by "
                f"number_of_attention_heads {settings.number_of_attention_heads}",
                hint="choose a transformer_size that is a multiple of number_of_attention_heads (e.g. 128 and 4)",
            )

    @staticmethod
    def resolve_max_history(settings: TedSettings, stories: Sequence[Sequence[Event]], spec: DomainSpec) -> int:
        """``max_history``, or the longest story history when it is unset."""
        if settings.max_history is not None:
            return settings.max_history
        return max((len(replay(events, spec).states) for events in stories), default=1) or 1

    @classmethod
    def train(
        cls,
        settings: TedSettings,
        stories: Sequence[Sequence[Event]],
        spec: DomainSpec,
        *,
        seed: int,
        epochs: int | None = None,
        previous: "TEDPolicy | None" = None,
        progress: Progress | None = None,
        phase: str = "train",
    ) -> tuple["TEDPolicy", list[dict[str, float]]]:
        """Train (or, with ``previous``, finetune) on the stories' events."""
        cls.check_settings(settings)
        seed = settings.random_seed if settings.random_seed is not None else seed
        max_history = previous.max_history if previous is not None else cls.resolve_max_history(settings, stories, spec)
        epochs = settings.epochs if epochs is None else epochs
        windows, labels = build_training_examples(stories, max_history, spec, seed=seed)
        if not windows or epochs == 0:
            weights = previous.weights if previous is not None else None
            return cls(settings, max_history, weights), []
        if previous is not None and previous.weights is not None:
            weights = previous.weights
        else:
            weights = init_weights(weight_shapes(spec.feature_size, len(spec.actions), max_history, settings), seed)
        x, mask = spec.encode_histories(windows, max_history)
        trained, history = train_weights(
            weights, x, mask, labels, settings, epochs=epochs, seed=seed, progress=progress, phase=phase
        )
        return cls(settings, max_history, trained), history

    def predict_batch(self, histories: Sequence[Sequence[State]], spec: DomainSpec) -> np.ndarray | None:
        """Confidences ``[N, A]`` for many histories at once; ``None`` when untrained."""
        if self.weights is None:
            return None
        chunks = []
        for start in range(0, len(histories), _PREDICT_CHUNK):
            x, mask = spec.encode_histories(histories[start : start + _PREDICT_CHUNK], self.max_history)
            chunks.append(predict_probabilities(self.weights, x, mask, self.settings))
        return np.concatenate(chunks) if chunks else np.zeros((0, len(spec.actions)))

    def output(self, probabilities: np.ndarray | None) -> PolicyOutput | None:
        if probabilities is None:
            return None
        return PolicyOutput(self.name, self.settings.priority, probabilities)

    def predict(self, history: Sequence[State], spec: DomainSpec) -> PolicyOutput | None:
        batch = self.predict_batch([history], spec)
        return self.output(None if batch is None else batch[0])

    def check_shapes(self, spec: DomainSpec) -> None:
        """Raise ModelError when saved weights do not fit the saved vocabulary."""
        if self.weights is None:
            return
        expected = weight_shapes(spec.feature_size, len(spec.actions), self.max_history, self.settings)
        received = {name: tuple(value.shape) for name, value in self.weights.items()}
        if expected != received:
            missing = sorted(set(expected) - set(received))
            wrong = sorted(n for n in expected if n in received and expected[n] != received[n])
            raise ModelError(
                "TEDPolicy weights do not match the saved vocabulary and settings"
                + (f"; missing: {', '.join(missing[:5])}" if missing else "")
                + (f"; wrong shape: {', '.join(f'{n} {received[n]} (expected {expected[n]})' for n in wrong[:5])}" if wrong else ""),
                hint="the model directory is corrupt or mixed from two models; train a new model",
            )
