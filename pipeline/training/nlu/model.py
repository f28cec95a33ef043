"""NluModel: a trained NLU model that parses messages and saves/loads itself (no TensorFlow)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from pipeline import MODEL_FORMAT_VERSION, duckling
from pipeline.data.model import NluExample
from pipeline.errors import ModelError

from . import inference, layout, pretrained
from .architecture import NetworkConfig
from .features import NluPreprocessor
from .labels import LabelMaps, allowed_transitions, decode_spans
from .selector import TrainedSelector, render_response_selector
from .settings import NluSettings


def example_hash(example: NluExample) -> str:
    """Content hash of one training example (text, intent, entities) for finetune bookkeeping."""
    spans = [[s.start, s.end, s.entity, s.value, s.role, s.group] for s in example.entities]
    canonical = json.dumps([example.text, example.full_intent, spans], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


class NluModel:
    """Intent classifier and entity extractor with Rasa's parse output.

    ``parse`` and ``parse_batch`` run the NumPy predictor over the stored
    weights, so a saved and reloaded model predicts bit-identically.
    """

    def __init__(
        self,
        settings: NluSettings,
        preprocessor: NluPreprocessor,
        labels: LabelMaps,
        network: NetworkConfig,
        weights: Mapping[str, np.ndarray],
        synonyms: Mapping[str, str],
        example_hashes: Sequence[str] = (),
        summary: Mapping[str, Any] | None = None,
        selectors: Sequence[TrainedSelector] = (),
        responses: Mapping[str, Any] | None = None,
        all_retrieval_intents: Sequence[str] = (),
    ) -> None:
        self.settings = settings
        self.preprocessor = preprocessor
        self.labels = labels
        self.network = network
        self.weights = {name: np.asarray(value, dtype=np.float32) for name, value in weights.items()}
        self.synonyms = dict(synonyms)
        self.example_hashes = tuple(example_hashes)
        self.summary: dict[str, Any] = dict(summary or {})
        self._allowed = allowed_transitions(labels) if network.entity_recognition else None
        #: ResponseSelectors (retrieval intents) with the retrieval responses they answer with
        self.selectors = tuple(selectors)
        self.responses: dict[str, Any] = dict(responses or {})
        self.all_retrieval_intents = tuple(all_retrieval_intents)

    # ------------------------------------------------------------------ parse
    def parse(self, text: str) -> dict[str, Any]:
        """Rasa's parse result: ``text``, ``intent``, ``intent_ranking``, ``entities`` (with
        DucklingEntityExtractor's, which evaluation leaves out as Rasa's does) and, with a trained
        ResponseSelector, ``response_selector``."""
        result = self.parse_batch([text])[0]
        for server in self.settings.duckling:
            result["entities"].extend(duckling.fetch_entities(text, server))
        return result

    def parse_batch(self, texts: Sequence[str]) -> list[dict[str, Any]]:
        """``parse`` of every text, in order, for evaluation.

        The pretrained features of all texts are computed together (batches of similar
        length, about three times faster per message than one by one); a message's
        confidences can then differ from parsing it alone in the last float32 digits.
        """
        encoded = [self.preprocessor.encode(text) for text in texts]
        dense: list[np.ndarray | None] = [None] * len(texts)
        if self.network.dense_size:
            layers = self.settings.language_model_layers
            dense = list(pretrained.message_features([[t.text for t in e.tokens] for e in encoded], layers))
        results = []
        for text, message, rows in zip(texts, encoded, dense):
            raw = inference.predict(
                self.weights, self.network, message.ids, message.positions, len(message.tokens), rows
            )
            intent, ranking = self._intent(raw.intent_probs)
            entities = self._entities(text, message.tokens, raw)
            result = {"text": text, "intent": intent, "entities": entities, "intent_ranking": ranking}
            if self.selectors:
                n = len(message.tokens)
                probs = [s.probabilities(message.ids, message.positions, n, rows) for s in self.selectors]
                result["response_selector"] = render_response_selector(
                    self.selectors, probs, self.responses, self.all_retrieval_intents
                )
            results.append(result)
        return results

    def _intent(self, probs: np.ndarray | None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        if probs is None:
            return {"name": None, "confidence": 0.0}, []
        order = np.argsort(-probs, kind="stable")
        length = self.settings.diet.ranking_length or len(order)
        ranking = [{"name": self.labels.intents[i], "confidence": float(probs[i])} for i in order[:length]]
        intent = dict(ranking[0])
        threshold = self.settings.fallback_threshold
        if threshold is not None:
            top = float(probs[order[0]])
            second = float(probs[order[1]]) if len(order) > 1 else 0.0
            if top < threshold or top - second < self.settings.ambiguity_threshold:
                intent = {"name": layout.FALLBACK_INTENT, "confidence": float(threshold)}
                ranking.insert(0, dict(intent))
        return intent, ranking

    def _entities(self, text: str, tokens: Sequence[Any], raw: inference.RawPrediction) -> list[dict[str, Any]]:
        if raw.emissions is None or self._allowed is None:
            return []
        log_probs = inference.log_softmax(raw.emissions)
        path = inference.constrained_viterbi(log_probs, self._allowed)
        spans = decode_spans(path.tolist(), self.labels)
        if not spans:
            return []
        chosen = np.exp(log_probs[np.arange(len(path)), path])
        entities = []
        for first, last, entity in spans:
            start, end = tokens[first].start, tokens[last].end
            value = text[start:end]
            confidence = float(chosen[first : last + 1].mean())
            item: dict[str, Any] = {
                "entity": entity,
                "start": start,
                "end": end,
                "confidence_entity": confidence,
                "role": None,
                "group": None,
                "value": value,
                "extractor": layout.EXTRACTOR_NAME,
            }
            for key, probs, names in (("role", raw.role_probs, self.labels.roles), ("group", raw.group_probs, self.labels.groups)):
                if probs is not None:
                    mean = probs[first : last + 1].mean(axis=0)
                    best = int(mean.argmax())
                    if best > 0:
                        item[key] = names[best - 1]
                        item[f"confidence_{key}"] = float(mean[best])
            if self.settings.synonyms and value.lower() in self.synonyms:
                item["value"] = self.synonyms[value.lower()]
                item["processors"] = ["EntitySynonymMapper"]
            entities.append(item)
        return entities

    # ------------------------------------------------------------- save/load
    def save(self, directory: Path) -> None:
        """Write the model into ``directory`` (created if missing; files overwritten)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        documents = {
            layout.FORMAT_FILE: {
                "kind": layout.MODEL_KIND,
                "model_format_version": MODEL_FORMAT_VERSION,
                "nlu_format": layout.NLU_FORMAT,
            },
            layout.CONFIG_FILE: {"settings": self.settings.get_config(), "network": self.network.get_config()},
            layout.VOCABULARIES_FILE: self.preprocessor.get_config(),
            layout.LABELS_FILE: {"labels": self.labels.get_config(), "synonyms": self.synonyms},
            layout.TRAINING_FILE: {"summary": self.summary, "example_hashes": list(self.example_hashes)},
        }
        for name, document in documents.items():
            (directory / name).write_text(json.dumps(document, ensure_ascii=False, indent=1), encoding="utf-8")
        with open(directory / layout.WEIGHTS_FILE, "wb") as handle:
            np.savez(handle, **self.weights)  # type: ignore[arg-type]  # numpy's stub types **kwds as bool
        if self.selectors:
            selectors = {
                "selectors": [s.get_config() for s in self.selectors],
                "responses": self.responses,
                "all_retrieval_intents": list(self.all_retrieval_intents),
            }
            text = json.dumps(selectors, ensure_ascii=False, indent=1)
            (directory / layout.SELECTORS_FILE).write_text(text, encoding="utf-8")
            for index, selector in enumerate(self.selectors):
                with open(directory / layout.SELECTOR_WEIGHTS_FILE.format(index=index), "wb") as handle:
                    np.savez(handle, **selector.weights)  # type: ignore[arg-type]  # numpy's stub types **kwds as bool

    @classmethod
    def load(cls, directory: Path) -> "NluModel":
        """Read a model written by :meth:`save`; ModelError when files are missing or inconsistent."""
        directory = Path(directory)
        check_format(read_json(directory, layout.FORMAT_FILE))
        config = read_json(directory, layout.CONFIG_FILE)
        vocabularies = read_json(directory, layout.VOCABULARIES_FILE)
        labels_doc = read_json(directory, layout.LABELS_FILE)
        training = read_json(directory, layout.TRAINING_FILE)
        try:
            settings = NluSettings.from_config(config["settings"])
            network = NetworkConfig.from_config(config["network"])
            preprocessor = NluPreprocessor.from_config(settings, vocabularies)
            labels = LabelMaps.from_config(labels_doc["labels"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(
                f"the NLU model in {directory} has an unreadable config ({exc!r})",
                location=str(directory),
                hint="train the model again",
            ) from exc
        path = directory / layout.WEIGHTS_FILE
        try:
            with np.load(path, allow_pickle=False) as archive:
                weights = {name: archive[name] for name in archive.files}
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot read {layout.WEIGHTS_FILE} ({exc})", location=str(path)) from exc
        expected = network.weight_shapes()
        wrong = [
            f"{name} {tuple(weights[name].shape) if name in weights else 'missing'} != {shape}"
            for name, shape in expected.items()
            if name not in weights or tuple(weights[name].shape) != shape
        ]
        if wrong:
            raise ModelError(
                f"weights do not match the model config: {'; '.join(wrong[:5])}",
                location=str(path),
                hint="the model directory is corrupt; train the model again",
            )
        selectors, responses, retrieval_intents = _load_selectors(directory)
        return cls(
            settings,
            preprocessor,
            labels,
            network,
            weights,
            labels_doc.get("synonyms", {}),
            training.get("example_hashes", ()),
            training.get("summary", {}),
            selectors,
            responses,
            retrieval_intents,
        )


def _load_selectors(directory: Path) -> tuple[list[TrainedSelector], dict[str, Any], list[str]]:
    """The ResponseSelectors saved beside the model (none when ``selectors.json`` is absent)."""
    if not (directory / layout.SELECTORS_FILE).exists():
        return [], {}, []
    document = read_json(directory, layout.SELECTORS_FILE)
    selectors = []
    try:
        for index, config in enumerate(document["selectors"]):
            path = directory / layout.SELECTOR_WEIGHTS_FILE.format(index=index)
            try:
                with np.load(path, allow_pickle=False) as archive:
                    weights = {name: archive[name] for name in archive.files}
            except (OSError, ValueError) as exc:
                raise ModelError(f"cannot read {path.name} ({exc})", location=str(path)) from exc
            selector = TrainedSelector.from_config(config, weights)
            shapes = selector.network.weight_shapes()
            if any(name not in weights or tuple(weights[name].shape) != shape for name, shape in shapes.items()):
                raise ModelError(
                    f"the weights of ResponseSelector {index} do not match its config",
                    location=str(path),
                    hint="the model directory is corrupt; train the model again",
                )
            selectors.append(selector)
        return selectors, dict(document.get("responses", {})), list(document.get("all_retrieval_intents", []))
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(
            f"the ResponseSelectors in {directory} have an unreadable config ({exc!r})",
            location=str(directory / layout.SELECTORS_FILE),
            hint="train the model again",
        ) from exc


def read_json(directory: Path, name: str) -> Any:
    """One JSON file of a saved model; ModelError naming the file when missing or invalid."""
    path = Path(directory) / name
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ModelError(
            f"no NLU model in {directory}: {name} is missing",
            location=str(path),
            hint="expected the files " + ", ".join(layout.ALL_FILES),
        ) from exc
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read {name} of the NLU model ({exc})", location=str(path)) from exc


def format_problems(document: Mapping[str, Any]) -> list[str]:
    """Why a saved ``format.json`` cannot be used by this version (empty: fine)."""
    problems = []
    if document.get("kind") != layout.MODEL_KIND:
        problems.append(f"the directory holds a model of kind {document.get('kind')!r}, not {layout.MODEL_KIND!r}")
    if str(document.get("model_format_version")) != str(MODEL_FORMAT_VERSION):
        problems.append(
            f"model format version {document.get('model_format_version')!r} differs from this deltatrain's"
            f" {MODEL_FORMAT_VERSION!r}"
        )
    elif document.get("nlu_format") != layout.NLU_FORMAT:
        problems.append(f"NLU model layout {document.get('nlu_format')!r} differs from this deltatrain's {layout.NLU_FORMAT}")
    return problems


def check_format(document: Mapping[str, Any]) -> None:
    problems = format_problems(document)
    if problems:
        raise ModelError("cannot load the NLU model: " + "; ".join(problems), hint="train the model again")
