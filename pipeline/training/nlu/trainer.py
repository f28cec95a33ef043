"""Full training and incremental finetuning of the NLU model (imports TensorFlow).

Training runs ``epochs`` epochs over shuffled, length-bucketed batches whose
size grows linearly over ``batch_size`` (as in Rasa), with the learning rate
decaying linearly to zero over the planned epochs. When the epoch loss
plateaus first (with the train intent accuracy at PLATEAU_ACCURACY), training
anneals instead: ANNEAL_EPOCHS more epochs take the learning rate from where it
is to zero and the batch size to its maximum, then it stops (on HWU64 with
``epochs: 100`` and early stopping at epoch 34, annealing gained 1.0 entity F1
at the same intent accuracy: bench/RESULTS.md, issue 18).

Finetuning continues from the previous weights: vocabularies grow
append-only (new embedding rows start at zero, see
:func:`~.architecture.grow_weights`), and each of the ``ceil(epochs ×
epoch_fraction)`` epochs sees every *new* example (not in the previous
model's training data, by content hash) plus a seeded replay sample of the
old ones, so an epoch costs a fraction of a full one without forgetting.
Added intents and entity types grow the label space (:mod:`.growth`). The
replay sample is drawn once, so only it and the new examples are featurized
(pretrained features cost more than an epoch). With pretrained features, the
shared weights are pulled part of the way back to the previous model's after
every finetune step (:data:`ANCHOR_PULL`, a decoupled L2-SP penalty), so
training on that sample adapts the model without drifting from what the old
examples taught it.

ResponseSelectors (retrieval intents, :mod:`.selector`) train after the
classifier on the retrieval examples' features, each with its own small
network and the same loop; a finetune continues them on the same sample.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from pipeline.data.model import Config, NluData, NluExample
from pipeline.decision import check_epoch_fraction
from pipeline.errors import TrainingError
from pipeline.training.optim import batch_size_for
from pipeline.training.runtime import Progress, emit

from . import pretrained
from .architecture import NetworkConfig, TrainingOptions, grow_weights, initial_weights
from .compat import check_finetune_compatible
from .features import SENTENCE_KINDS, NluPreprocessor
from .growth import (
    GROWTH_REPLAY_PER_INTENT,
    NEW_INTENT_EXAMPLES,
    added_labels,
    balanced_epochs,
    fit_new_intent_rows,
    fit_new_tag_columns,
    grow_label_weights,
    grown_config,
    neighbour_intents,
    neighbour_replay,
    sentence_vectors,
    token_vectors,
)
from .labels import LabelMaps, encode_entities
from .model import NluModel, example_hash
from .network import Batch, DietNetwork
from .rasa_defaults import differing_defaults
from .selector import SelectorSettings, TrainedSelector, resolve_selectors, retrieval_responses, selector_examples
from .pretrained_tf import tensorflow_forward
from .runtime_tf import import_tensorflow
from .settings import NluSettings, auto_epochs, resolve_settings

#: Old examples replayed in every finetune epoch, as a multiple of the new examples
#: (one seeded sample, drawn once, so only it and the new examples are featurized).
REPLAY_RATIO = 1.0
#: Finetuning starts at this fraction of the learning rate (the previous weights are already
#: trained; larger first steps undo part of it: bench/RESULTS.md, finetune tuning).
FINETUNE_LEARNING_RATE_SCALE = 0.25
#: After every finetune step of a model with pretrained features, the shared weights (all but
#: the sparse embedding rows) are pulled this fraction of the way back to the previous model's:
#: training on a sample of the data otherwise drifts them (the projection of the pretrained
#: features above all) away from what all the old examples taught (bench/RESULTS.md).
ANCHOR_PULL = 0.1
#: The same for a model with sparse features only: they do not drift that way, and a pull of
#: 0.1 cost 0.7 points entity F1 on HWU64 (bench/RESULTS.md), so none.
ANCHOR_PULL_SPARSE_ONLY = 0.0
#: At least this many old examples are replayed per finetune epoch (when there are that many).
REPLAY_MINIMUM = 256
#: New entity types' tag columns are fitted on the tokens of this many sample examples (new ones first).
TAG_PROBE_EXAMPLES = 600
#: Pretrained features of at least this many messages are computed in TensorFlow (else NumPy).
TENSORFLOW_FEATURIZE_MINIMUM = 1000
#: Examples are sorted by length inside shuffled chunks of this many batches (less padding).
BUCKET_BATCHES = 16
#: Early stopping: stop once the epoch loss improved by less than this (relative) ...
PLATEAU_TOLERANCE = 0.01
#: ... for this many epochs in a row, with train intent accuracy at least PLATEAU_ACCURACY.
PLATEAU_PATIENCE = 3
PLATEAU_ACCURACY = 0.99
#: ... and then anneal for this many epochs (learning rate to zero, batch size to its maximum).
ANNEAL_EPOCHS = 5


@dataclass(frozen=True)
class Record:
    """One featurized training example: per featurizer, feature units at positions."""

    num_tokens: int
    unit_positions: tuple[np.ndarray, ...]  # per featurizer: position of each unit (sorted)
    unit_keys: tuple[tuple[Any, ...], ...]  # per featurizer: key of each unit
    unit_ids: tuple[tuple[np.ndarray, ...], ...]  # per featurizer: feature ids of each unit
    intent: int
    tags: np.ndarray
    roles: np.ndarray
    groups: np.ndarray
    dense: np.ndarray | None = None  # [1 + num_tokens, F] pretrained features, or None


def featurize(
    preprocessor: NluPreprocessor,
    labels: LabelMaps,
    examples: Sequence[NluExample],
    progress: Progress | None = None,
) -> list[Record]:
    """Encode examples into feature units, pretrained features and label ids."""
    intent_index = {name: i for i, name in enumerate(labels.intents)}
    encoded = [preprocessor.encode_units(example.text) for example in examples]
    dense: list[np.ndarray | None] = [None] * len(examples)
    settings = preprocessor.settings
    if settings.language_model:
        started = time.perf_counter()
        # TensorFlow pays off on large data; on small data its graph tracing costs more than it saves
        forward = tensorflow_forward(pretrained.shared_model()) if len(examples) >= TENSORFLOW_FEATURIZE_MINIMUM else None
        messages = [[t.text for t in tokens] for tokens, _ in encoded]
        dense = list(pretrained.message_features(messages, settings.language_model_layers, forward))
        emit(progress, model="nlu", phase="features", messages=len(examples), seconds=round(time.perf_counter() - started, 1))
    records = []
    for example, (tokens, per_featurizer), rows in zip(examples, encoded, dense):
        tags, roles, groups = encode_entities(example, tokens, labels)
        records.append(
            Record(
                len(tokens),
                tuple(np.array([u[0] for u in units], dtype=np.int32) for units in per_featurizer),
                tuple(tuple(u[1] for u in units) for units in per_featurizer),
                tuple(tuple(u[2] for u in units) for units in per_featurizer),
                intent_index.get(example.intent, 0),
                tags,
                roles,
                groups,
                rows,
            )
        )
    return records


_EMPTY = np.zeros(0, dtype=np.int32)


def _record_inputs(record: Record) -> tuple[list[np.ndarray], list[np.ndarray], int, np.ndarray | None]:
    """A record as the NumPy predictor's inputs: per featurizer flat ids and their positions."""
    ids: list[np.ndarray] = []
    positions: list[np.ndarray] = []
    for pos, unit_ids in zip(record.unit_positions, record.unit_ids):
        if len(unit_ids):
            ids.append(np.concatenate(unit_ids).astype(np.int64))
            positions.append(np.repeat(pos, [len(u) for u in unit_ids]))
        else:
            ids.append(_EMPTY)
            positions.append(_EMPTY)
    return ids, positions, record.num_tokens, record.dense


def make_batch(records: Sequence[Record]) -> Batch:
    """Pack records: per featurizer the batch's distinct units (their feature ids, summed
    once) and which unit sits at which flat position ``example * length + position``."""
    size = len(records)
    length = 1 + max(r.num_tokens for r in records)
    features = []
    for i in range(len(records[0].unit_keys)):
        index: dict[Any, int] = {}
        arrays: list[np.ndarray] = []
        token_units: list[int] = []
        for r in records:
            for key, ids in zip(r.unit_keys[i], r.unit_ids[i]):
                unit = index.get(key)
                if unit is None:
                    unit = index[key] = len(arrays)
                    arrays.append(ids)
                token_units.append(unit)
        unit_ids = np.concatenate(arrays) if arrays else _EMPTY
        unit_segments = np.repeat(np.arange(len(arrays), dtype=np.int32), [len(a) for a in arrays])
        token_segments = np.concatenate([r.unit_positions[i] + b * length for b, r in enumerate(records)])
        features.append((unit_ids, unit_segments, np.array(token_units, dtype=np.int32), token_segments.astype(np.int32)))
    mask = np.zeros((size, length), dtype=np.float32)
    tags = np.zeros((size, length - 1), dtype=np.int32)
    roles = np.zeros_like(tags)
    groups = np.zeros_like(tags)
    for b, r in enumerate(records):
        mask[b, : r.num_tokens + 1] = 1.0
        tags[b, : r.num_tokens] = r.tags
        roles[b, : r.num_tokens] = r.roles
        groups[b, : r.num_tokens] = r.groups
    intents = np.array([r.intent for r in records], dtype=np.int32)
    width = records[0].dense.shape[1] if records[0].dense is not None else 0
    dense = np.zeros((size, length, width), dtype=np.float32)
    if width:
        for b, r in enumerate(records):
            dense[b, : r.num_tokens + 1] = r.dense
    return Batch(tuple(features), mask, dense, intents, tags, roles, groups)


def schedule(epoch: int, epochs: int, sizes: tuple[int, int], anneal_from: int | None = None) -> tuple[float, int]:
    """Learning-rate fraction and batch size of ``epoch``: linear over the planned ``epochs``, or,
    from ``anneal_from`` on (after a plateau), linear to zero and to ``sizes[1]`` over ANNEAL_EPOCHS."""
    if anneal_from is None or epoch < anneal_from:
        return 1.0 - epoch / epochs, batch_size_for(epoch, epochs, sizes)
    start_fraction, start_size = 1.0 - anneal_from / epochs, batch_size_for(anneal_from, epochs, sizes)
    progress = (epoch - anneal_from + 1) / (ANNEAL_EPOCHS + 1)
    return start_fraction * (1.0 - progress), int(start_size + progress * (sizes[1] - start_size))


def plan_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffled batches of similar-length examples (indices into ``lengths``)."""
    order = rng.permutation(len(lengths))
    chunk = batch_size * BUCKET_BATCHES
    batches: list[np.ndarray] = []
    for start in range(0, len(order), chunk):
        part = order[start : start + chunk]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches.extend(part[i : i + batch_size] for i in range(0, len(part), batch_size))
    rng.shuffle(batches)  # type: ignore[arg-type]
    return batches


def _plateaued(losses: list[float], accuracies: list[float]) -> bool:
    if len(losses) <= PLATEAU_PATIENCE or accuracies[-1] < PLATEAU_ACCURACY:
        return False
    best_before = min(losses[: -PLATEAU_PATIENCE])
    return min(losses[-PLATEAU_PATIENCE:]) > best_before * (1.0 - PLATEAU_TOLERANCE)


def _fit(
    network: DietNetwork,
    records: Sequence[Record],
    epochs: int,
    settings: NluSettings,
    seed: int,
    progress: Progress | None,
    phase: str,
    learning_rate_scale: float = 1.0,
    epoch_subset: Callable[[int], np.ndarray] | None = None,
) -> dict[str, Any]:
    """Run the epochs (each over ``epoch_subset(epoch)`` of the records when given); return the training history."""
    diet = settings.diet
    all_lengths = np.array([r.num_tokens for r in records])
    losses: list[float] = []
    accuracies: list[float] = []
    step = 0
    anneal_from: int | None = None  # first epoch of the annealing after a plateau
    end = epochs
    for epoch in range(epochs):
        if epoch >= end:
            break
        rng = np.random.default_rng([seed, epoch])
        fraction, batch_size = schedule(epoch, epochs, diet.batch_size, anneal_from)
        learning_rate = np.float32(learning_rate_scale * diet.learning_rate * fraction)
        total_loss = total_accuracy = 0.0
        seen = 0
        subset = epoch_subset(epoch) if epoch_subset is not None else np.arange(len(records))
        lengths = all_lengths[subset]
        for planned in plan_batches(lengths, batch_size, rng):
            batch_index = subset[planned]
            batch = make_batch([records[i] for i in batch_index])
            loss, accuracy = network.train_step(
                batch.features,
                batch.mask,
                batch.dense,
                batch.intents,
                batch.tags,
                batch.roles,
                batch.groups,
                learning_rate,
                np.array([seed, step], dtype=np.int32),
            )
            step += 1
            n = len(batch_index)
            total_loss += float(loss) * n
            total_accuracy += float(accuracy) * n
            seen += n
        losses.append(total_loss / max(seen, 1))
        accuracies.append(total_accuracy / max(seen, 1))
        emit(progress, model="nlu", phase=phase, epoch=epoch + 1, epochs=epochs, loss=losses[-1], accuracy=accuracies[-1])
        if diet.early_stopping and anneal_from is None and _plateaued(losses, accuracies):
            anneal_from = epoch + 1
            end = min(epochs, anneal_from + ANNEAL_EPOCHS)
    return {"losses": losses, "accuracies": accuracies}


def _options(settings: NluSettings) -> TrainingOptions:
    diet = settings.diet
    return TrainingOptions(diet.drop_rate, diet.drop_rate_attention, diet.sparse_input_dropout, diet.constrain_similarities)


def _check_data(data: NluData, settings: NluSettings) -> None:
    if not data.examples:
        raise TrainingError(
            "there are no NLU training examples; received 0 examples",
            hint="add examples under 'nlu:' in the training data",
        )
    if settings.diet.intent_classification and len(data.intents) < 2:
        raise TrainingError(
            "intent classification needs at least two intents with examples;"
            f" received {len(data.intents)}: {', '.join(data.intents) or 'none'}",
            hint="add examples of a second intent, or set intent_classification: false for DIETClassifier",
        )


def _network_config(settings: NluSettings, labels: LabelMaps, preprocessor: NluPreprocessor) -> NetworkConfig:
    diet = settings.diet
    return NetworkConfig(
        feature_sizes=tuple(len(v) for v in preprocessor.vocabularies),
        sentence_features=tuple(spec.kind in SENTENCE_KINDS for spec in preprocessor.specs),
        size=diet.transformer_size,
        layers=diet.number_of_transformer_layers,
        heads=diet.number_of_attention_heads,
        positions=diet.max_sequence_length,
        embedding_dimension=diet.embedding_dimension,
        num_intents=len(labels.intents),
        num_tags=len(labels.tags),
        num_roles=len(labels.roles) + 1 if labels.roles else 0,
        num_groups=len(labels.groups) + 1 if labels.groups else 0,
        cosine=diet.similarity_type == "cosine",
        intent_classification=diet.intent_classification,
        entity_recognition=diet.entity_recognition and bool(labels.entities),
        dense_size=pretrained.DIMENSION if settings.language_model else 0,
    )


def _summary(
    mode: str,
    history: dict[str, Any],
    epochs: int,
    data: NluData,
    labels: LabelMaps,
    preprocessor: NluPreprocessor,
    settings: NluSettings,
    started: float,
    seed: int,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "mode": mode,
        "epochs_run": len(history["losses"]),
        "epochs_planned": epochs,
        "final_loss": history["losses"][-1] if history["losses"] else None,
        "train_accuracy": history["accuracies"][-1] if history["accuracies"] else None,
        "num_examples": len(data.examples),
        "num_intents": len(labels.intents),
        "num_entities": len(labels.entities),
        "feature_sizes": preprocessor.feature_sizes,
        "wall_seconds": round(time.perf_counter() - started, 3),
        "seed": seed,
        "ignored_options": list(settings.ignored),
        "loss_history": [round(x, 5) for x in history["losses"]],
        "accuracy_history": [round(x, 5) for x in history["accuracies"]],
        **extra,
    }


def train_nlu(
    data: NluData,
    config: Config,
    *,
    progress: Progress | None = None,
    seed: int = 42,
    responses: Mapping[str, Any] | None = None,
) -> NluModel:
    """Train an NLU model from scratch on ``data`` with the NLU pipeline of ``config``.

    With retrieval intents in ``data`` and a ResponseSelector in the pipeline, the selectors
    are trained after the classifier, on the same features; ``responses`` (the domain's)
    gives the retrieval responses they answer with.
    """
    started = time.perf_counter()
    settings = resolve_settings(config)
    _check_data(data, settings)
    labels = LabelMaps.from_data(data, bilou=settings.diet.BILOU_flag)
    preprocessor = NluPreprocessor(settings, None, data.regexes, data.lookups)
    preprocessor.adapt(e.text for e in data.examples)
    network_config = _network_config(settings, labels, preprocessor)
    import_tensorflow(seed)
    network = DietNetwork(network_config, initial_weights(network_config, seed), _options(settings))
    traced = network.start_tracing()
    records = featurize(preprocessor, labels, data.examples, progress)
    featurize_seconds = time.perf_counter() - started
    traced()
    epochs = auto_epochs(settings.diet, len(data.examples), pretrained=bool(settings.language_model))
    history = _fit(network, records, epochs, settings, seed, progress, "train")
    summary = _summary(
        "full", history, epochs, data, labels, preprocessor, settings, started, seed,
        featurize_seconds=round(featurize_seconds, 3),
        rasa_defaults_differing=differing_defaults(config, epochs),
    )
    selectors = _train_selectors(config, settings, preprocessor, data, data.examples, records, (), 1.0, seed, progress)
    if selectors:
        summary["selectors"] = {s.settings.key: s.summary for s in selectors}
    return NluModel(
        settings,
        preprocessor,
        labels,
        network_config,
        network.get_weights(),
        data.synonym_map(),
        [example_hash(e) for e in data.examples],
        summary,
        selectors,
        retrieval_responses(responses or {}) if selectors else {},
        _retrieval_intents(data) if selectors else (),
    )


def _retrieval_intents(data: NluData) -> tuple[str, ...]:
    return tuple(sorted({e.intent for e in data.examples if e.response_key}))


def _train_selectors(
    config: Config,
    settings: NluSettings,
    preprocessor: NluPreprocessor,
    data: NluData,
    examples: Sequence[NluExample],
    records: Sequence[Record],
    previous: Sequence[TrainedSelector],
    epoch_fraction: float,
    seed: int,
    progress: Progress | None,
) -> list[TrainedSelector]:
    """Every ResponseSelector of ``config`` with something to select from, trained on ``examples``
    (all of ``data``, or a finetune's sample) and their ``records``; from ``previous`` when finetuning."""
    previous_by_key = {s.settings.key: s for s in previous}
    selectors = []
    for selector in resolve_selectors(config):
        trained = _train_selector(
            selector, settings, preprocessor, examples, records, previous_by_key.get(selector.key), epoch_fraction,
            seed, progress, all_examples=len(selector_examples(data.examples, selector)),
        )
        if trained is not None:
            selectors.append(trained)
    return selectors


def _train_selector(
    selector: SelectorSettings,
    settings: NluSettings,
    preprocessor: NluPreprocessor,
    examples: Sequence[NluExample],
    records: Sequence[Record],
    previous: TrainedSelector | None,
    epoch_fraction: float,
    seed: int,
    progress: Progress | None,
    *,
    all_examples: int,
) -> TrainedSelector | None:
    """Train (or, from ``previous``, finetune) one ResponseSelector on the retrieval examples
    among ``examples`` (``records`` are their features, in the same order); ``None`` when
    there is nothing to select from."""
    started = time.perf_counter()
    index = selector_examples(examples, selector)
    if previous is not None:
        keys = previous.keys
    else:
        keys = tuple(sorted({examples[i].full_intent for i in index}))
        if not keys:
            return None
    key_index = {k: i for i, k in enumerate(keys)}
    index = [i for i in index if examples[i].full_intent in key_index]
    selector_settings = replace(settings, diet=selector.diet)
    labels = LabelMaps(keys, (), (), (), bilou=settings.diet.BILOU_flag)
    network_config = _network_config(selector_settings, labels, preprocessor)
    if previous is not None:
        weights = grow_weights(previous.weights, previous.network, network_config)
        pull = ANCHOR_PULL if network_config.dense_size else ANCHOR_PULL_SPARSE_ONLY
        scale = FINETUNE_LEARNING_RATE_SCALE
    else:
        weights, pull, scale = initial_weights(network_config, seed), 0.0, 1.0
    # the finetune sample holds part of the selector's examples; its epochs follow all of them
    epochs = math.ceil(
        auto_epochs(selector.diet, all_examples, pretrained=bool(settings.language_model)) * epoch_fraction
    )
    history: dict[str, Any] = {"losses": [], "accuracies": []}
    if index and epochs:
        network = DietNetwork(network_config, weights, _options(selector_settings), pull)
        relabelled = [replace(records[i], intent=key_index[examples[i].full_intent]) for i in index]
        phase = f"{'finetune' if previous is not None else 'train'} selector {selector.key}"
        history = _fit(network, relabelled, epochs, selector_settings, seed, progress, phase, scale)
        weights = network.get_weights()
    summary = {
        "mode": "finetune" if previous is not None else "full",
        "retrieval_intent": selector.retrieval_intent,
        "num_examples": len(index),
        "num_responses": len(keys),
        "epochs_planned": epochs,
        "epochs_run": len(history["losses"]),
        "final_loss": history["losses"][-1] if history["losses"] else None,
        "train_accuracy": history["accuracies"][-1] if history["accuracies"] else None,
        "wall_seconds": round(time.perf_counter() - started, 3),
    }
    return TrainedSelector(selector, keys, network_config, weights, summary)


def finetune_nlu(
    previous_dir: Path,
    data: NluData,
    config: Config,
    *,
    epoch_fraction: float,
    progress: Progress | None = None,
    seed: int = 42,
    responses: Mapping[str, Any] | None = None,
) -> NluModel:
    """Continue training the model in ``previous_dir`` on ``data`` for ``ceil(epochs × epoch_fraction)`` epochs.

    Its ResponseSelectors are finetuned the same way (their new and replayed retrieval examples).

    Added intents and entity types grow the label space (:mod:`.growth`: old weights
    kept, new label weights initialised from what the previous network computes).
    Raises FinetuneRefused (see :func:`check_finetune_compatible`) when removed or
    renamed labels, the config beyond ``epochs``, the model format or the feature
    space do not allow it.
    """
    started = time.perf_counter()
    check_epoch_fraction(epoch_fraction, name="epoch_fraction")
    check_finetune_compatible(previous_dir, data, config)
    previous = NluModel.load(previous_dir)
    settings = resolve_settings(config)
    _check_data(data, settings)
    labels = LabelMaps.from_data(data, bilou=settings.diet.BILOU_flag)
    labels = replace(labels, roles=previous.labels.roles, groups=previous.labels.groups)  # compat: unchanged
    if not settings.diet.intent_classification:
        labels = replace(labels, intents=previous.labels.intents)
    if not settings.diet.entity_recognition:
        labels = replace(labels, entities=previous.labels.entities)
    intents_added, entities_added = added_labels(previous.labels, labels)
    preprocessor = NluPreprocessor(settings, [v.keys for v in previous.preprocessor.vocabularies], data.regexes, data.lookups)
    known = set(previous.example_hashes)
    hashes = [example_hash(e) for e in data.examples]
    new_index = np.array([i for i, h in enumerate(hashes) if h not in known], dtype=np.int64)
    old_index = np.array([i for i, h in enumerate(hashes) if h in known], dtype=np.int64)
    preprocessor.adapt(data.examples[i].text for i in new_index)
    network_config = grown_config(
        previous.network,
        [len(v) for v in preprocessor.vocabularies],
        labels,
        previous.network.entity_recognition or (settings.diet.entity_recognition and bool(labels.entities)),
    )
    weights = grow_weights(previous.weights, previous.network, replace(previous.network, feature_sizes=network_config.feature_sizes))

    epochs = math.ceil(auto_epochs(settings.diet, len(data.examples), pretrained=bool(settings.language_model)) * epoch_fraction)
    replay = max(REPLAY_MINIMUM, int(math.ceil(REPLAY_RATIO * len(new_index))))
    if intents_added:
        replay = max(replay, GROWTH_REPLAY_PER_INTENT * len(previous.labels.intents))
    replay = min(len(old_index), replay)
    rng = np.random.default_rng([seed, 1_000_003])
    sample = np.sort(rng.choice(old_index, size=replay, replace=False)) if replay else old_index[:0]
    import_tensorflow(seed)
    pull = ANCHOR_PULL if network_config.dense_size else ANCHOR_PULL_SPARSE_ONLY
    records = featurize(preprocessor, labels, [data.examples[i] for i in np.concatenate([new_index, sample])], progress)
    if intents_added or entities_added:
        # the new labels' weights start from what the previous network already computes (.growth)
        before = replace(previous.network, feature_sizes=network_config.feature_sizes)
        vectors = {}
        for intent in intents_added:
            chosen = [j for j, i in enumerate(new_index) if data.examples[i].intent == intent]
            vectors[intent] = sentence_vectors(weights, before, [_record_inputs(records[j]) for j in chosen])
        replayed = range(len(new_index), len(new_index) + min(len(sample), NEW_INTENT_EXAMPLES * 4))
        reference = sentence_vectors(weights, before, [_record_inputs(records[j]) for j in replayed])
        if intents_added:  # the old intents the new ones are mistaken for: more of them are replayed
            neighbours = neighbour_intents(weights, before, previous.labels.intents, vectors)
            old_intents = [data.examples[i].intent for i in old_index]
            extra = old_index[neighbour_replay(old_intents, np.searchsorted(old_index, sample), neighbours, seed)]
            records += featurize(preprocessor, labels, [data.examples[i] for i in extra], progress)
            sample = np.concatenate([sample, extra])
        weights = grow_label_weights(
            weights,
            before,
            network_config,
            previous.labels,
            labels,
            {intent: v[:NEW_INTENT_EXAMPLES] for intent, v in vectors.items()},
            seed,
            reference=reference,
        )
        if intents_added:  # fit the new rows on the previous network's view of an epoch's sample
            probe = balanced_epochs([data.examples[i].intent for i in np.concatenate([new_index, sample])], intents_added, seed)
            rows = probe(0) if probe is not None else np.arange(len(records))
            weights["intent/labels"] = fit_new_intent_rows(
                weights, before, [_record_inputs(records[j]) for j in rows], np.array([records[j].intent for j in rows]),
                [k for k, intent in enumerate(labels.intents) if intent in intents_added],
            )
        if entities_added and previous.network.entity_recognition:
            # fit the new tag columns on what the previous network computes for the sample's tokens
            tag_probe = [records[j] for j in range(min(len(records), TAG_PROBE_EXAMPLES))]
            new_columns = [k for k, tag in enumerate(labels.tags) if tag not in previous.labels.tags]
            weights["entity/kernel"], weights["entity/bias"] = fit_new_tag_columns(
                weights["entity/kernel"], weights["entity/bias"],
                token_vectors(weights, before, [_record_inputs(r) for r in tag_probe]),
                np.concatenate([r.tags for r in tag_probe if r.num_tokens]), new_columns,
            )
    needed = np.concatenate([new_index, sample])
    unanchored = (("intent/labels",) if intents_added else ()) + (("entity/kernel", "entity/bias") if entities_added else ())
    network = DietNetwork(network_config, weights, _options(settings), pull, unanchored)
    traced = network.start_tracing()
    featurize_seconds = time.perf_counter() - started
    traced()
    history = _fit(
        network,
        records,
        epochs,
        settings,
        seed,
        progress,
        "finetune",
        FINETUNE_LEARNING_RATE_SCALE,
        balanced_epochs([data.examples[i].intent for i in needed], intents_added, seed),
    )
    summary = _summary(
        "finetune",
        history,
        epochs,
        data,
        labels,
        preprocessor,
        settings,
        started,
        seed,
        new_examples=int(len(new_index)),
        intents_added=list(intents_added),
        entities_added=list(entities_added),
        replayed_per_epoch=int(len(sample)),
        anchor_pull=pull,
        unanchored=list(unanchored),
        epoch_fraction=epoch_fraction,
        featurize_seconds=round(featurize_seconds, 3),
        features_added={
            spec.name: len(v) - before
            for spec, v, before in zip(preprocessor.specs, preprocessor.vocabularies, previous.network.feature_sizes)
        },
    )
    sample_examples = [data.examples[i] for i in needed]
    selectors = _train_selectors(
        config, settings, preprocessor, data, sample_examples, records, previous.selectors, epoch_fraction, seed, progress
    )
    if selectors:
        summary["selectors"] = {s.settings.key: s.summary for s in selectors}
    return NluModel(
        settings,
        preprocessor,
        labels,
        network_config,
        network.get_weights(),
        data.synonym_map(),
        hashes,
        summary,
        selectors,
        retrieval_responses(responses or {}) if selectors else {},
        _retrieval_intents(data) if selectors else (),
    )
