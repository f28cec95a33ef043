"""Where things live inside a saved NLU model directory.

::

    <model dir>/
        format.json         {"model_format_version": ..., "nlu_format": ..., "kind": "nlu"}
        config.json         resolved settings (NluSettings.get_config())
        vocabularies.json   preprocessor config + append-only vocabularies
        labels.json         intents, entity tags, roles, groups, synonyms
        weights.npz         network weights, float32, one array per WEIGHT name
        training.json       summary and hashes of the examples trained on
        selectors.json      ResponseSelectors (only when trained): settings, retrieval
                            intents, network config, retrieval responses
        selector{i}.npz     weights of the i-th selector

Everything but ``weights.npz`` is JSON so that a finetune compatibility check
(:func:`pipeline.training.nlu.check_finetune_compatible`) reads it without
TensorFlow.
"""

from __future__ import annotations

FORMAT_FILE = "format.json"
CONFIG_FILE = "config.json"
VOCABULARIES_FILE = "vocabularies.json"
LABELS_FILE = "labels.json"
WEIGHTS_FILE = "weights.npz"
TRAINING_FILE = "training.json"

ALL_FILES = (FORMAT_FILE, CONFIG_FILE, VOCABULARIES_FILE, LABELS_FILE, WEIGHTS_FILE, TRAINING_FILE)
#: Written only by models with a trained ResponseSelector (their absence: no selector).
SELECTORS_FILE = "selectors.json"
SELECTOR_WEIGHTS_FILE = "selector{index}.npz"

#: Identifies the directory as an NLU model (``format.json`` key ``kind``).
MODEL_KIND = "nlu"
#: Version of this package's own layout, bumped with incompatible changes of
#: the files above; checked together with ``pipeline.MODEL_FORMAT_VERSION``.
NLU_FORMAT = 1

#: Name of the extractor in parse output, as in Rasa.
EXTRACTOR_NAME = "DIETClassifier"
#: Intent predicted below the fallback threshold, as in Rasa.
FALLBACK_INTENT = "nlu_fallback"
#: Number of intents listed in ``intent_ranking``, as in Rasa.
INTENT_RANKING_LENGTH = 10
