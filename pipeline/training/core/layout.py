"""Where things live inside a saved dialogue (core) model directory.

::

    <model dir>/
        format.json          {"model_format_version": ..., "core_format": ..., "kind": "core"}
        config.json          resolved policy settings (CoreSettings.get_config())
        domain.json          state vocabulary, domain sections and their fingerprint
        rules.json           RulePolicy lookup entries           (when configured)
        memoization.json     MemoizationPolicy lookup            (when configured)
        ted.json             TEDPolicy max_history, whether it was trained (when configured)
        ted_weights.npz      TEDPolicy weights, float32, one array per weight name (when trained)
        training.json        summary of the training run

Everything but ``ted_weights.npz`` is JSON, so the finetune compatibility check
(:func:`pipeline.training.core.check_finetune_compatible`) reads ``format.json``,
``config.json``, ``domain.json`` and ``ted.json`` only.
"""

from __future__ import annotations

FORMAT_FILE = "format.json"
CONFIG_FILE = "config.json"
DOMAIN_FILE = "domain.json"
RULES_FILE = "rules.json"
MEMO_FILE = "memoization.json"
TED_FILE = "ted.json"
TED_WEIGHTS_FILE = "ted_weights.npz"
TRAINING_FILE = "training.json"

ALL_FILES = (FORMAT_FILE, CONFIG_FILE, DOMAIN_FILE, RULES_FILE, MEMO_FILE, TED_FILE, TED_WEIGHTS_FILE, TRAINING_FILE)
#: Files the finetune compatibility check reads.
COMPATIBILITY_FILES = (FORMAT_FILE, CONFIG_FILE, DOMAIN_FILE, TED_FILE)

#: Identifies the directory as a dialogue model (``format.json`` key ``kind``).
MODEL_KIND = "core"
#: Version of this package's own layout, bumped with incompatible changes of the
#: files above; checked together with ``pipeline.MODEL_FORMAT_VERSION``.
CORE_FORMAT = 1
