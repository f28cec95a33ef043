"""Where deltatrain's DIETClassifier differs from Rasa 3.6's defaults, and what each was measured to cost.

Pure Python, no TensorFlow. A team's config.yml that leaves one of these options unset gets
deltatrain's value, not Rasa's; :func:`differing_defaults` names each such option in the trained
model's summary with the reason and the measurement behind it (HWU64 with Rasa's default sparse
pipeline, ``bench/nlu.py --config bench/sparse_config.yml``, bench/RESULTS.md, issue 18). Setting the
option in config.yml gives Rasa's value.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from pipeline.data.model import Config, thaw

from .settings import DEFAULT_LEXICAL_FEATURES, DietOptions


@dataclass(frozen=True)
class DefaultDifference:
    """One option whose default differs from Rasa 3.6.21's."""

    component: str
    option: str  # Rasa's name
    rasa: Any  # Rasa 3.6.21's default
    why: str  # the reason, with what Rasa's value measured inside deltatrain


#: Rasa 3.6.21's LexicalSyntacticFeaturizer default (no prefix/suffix features; Rasa 2 had them).
RASA_LEXICAL_FEATURES = (
    ("low", "title", "upper"),
    ("BOS", "EOS", "low", "upper", "title", "digit"),
    ("low", "title", "upper"),
)

DIFFERENCES: tuple[DefaultDifference, ...] = (
    DefaultDifference(
        "DIETClassifier", "transformer_size", 256,
        "speed: 2 layers of 256 took ~8x as long (639 s vs 73 s) and scored 0.8 points lower intent accuracy"
        " on a public assistant's sparse config (issue 18)",
    ),
    DefaultDifference("DIETClassifier", "number_of_transformer_layers", 2, "speed: see transformer_size"),
    DefaultDifference(
        "DIETClassifier", "learning_rate", 0.001,
        "speed: deltatrain starts at 0.005 and decays linearly to zero, and converges in ~20 epochs"
        " where Rasa's constant 0.001 runs all of them",
    ),
    DefaultDifference(
        "DIETClassifier", "constrain_similarities", False,
        "quality: Rasa's false measured -0.3 points intent accuracy, -1.0 entity F1 on HWU64",
    ),
    DefaultDifference(
        "DIETClassifier", "early_stopping", None,
        "speed: deltatrain stops once the loss plateaus (after annealing the learning rate for a few epochs);"
        " Rasa runs every epoch",
    ),
)
#: Rasa options deltatrain does not implement, with what implementing them measured on HWU64.
NOT_IMPLEMENTED: tuple[DefaultDifference, ...] = (
    DefaultDifference(
        "DIETClassifier", "regularization_constant", 0.002,
        "quality: Rasa's L2 penalty on the kernels measured -0.7 points intent accuracy, -4.3 entity F1 on HWU64",
    ),
    DefaultDifference(
        "DIETClassifier", "number_of_negative_examples", 20,
        "quality: deltatrain's softmax runs over all intents; Rasa's sampled and in-batch negatives measured"
        " -0.6 points intent accuracy, -2.5 entity F1 on HWU64",
    ),
)


def _options(config: Config, component: str) -> dict[str, Any] | None:
    for c in config.pipeline:
        if c.name == component:
            return dict(thaw(c.options))
    return None


def differing_defaults(config: Config, epochs_planned: int | None = None) -> list[str]:
    """One line per default of deltatrain that differs from Rasa 3.6's for an option ``config`` leaves
    unset, and one when fewer than the config's ``epochs`` are planned (``epochs_planned``)."""
    lines: list[str] = []
    ours = {f.name: getattr(DietOptions(), f.name) for f in fields(DietOptions)}
    diet = _options(config, "DIETClassifier")
    if diet is not None:
        asked = diet.get("epochs")
        if isinstance(asked, int) and epochs_planned is not None and epochs_planned < asked:
            lines.append(
                f"DIETClassifier.epochs: {epochs_planned} planned of the config's {asked} (Rasa runs all {asked});"
                " deltatrain's decaying learning rate converges sooner and longer runs over-fit sparse features"
                " (HWU64, epochs: 100: 18 epochs scored 87.8 % intent accuracy / 75.4 entity F1 in 130 CPU s,"
                " all 100 scored 88.2 / 74.6 in 658 CPU s); set early_stopping: false to run all of them"
            )
        for item in DIFFERENCES:
            if item.option in diet:
                continue
            rasa = "runs every epoch" if item.rasa is None else f"Rasa: {item.rasa}"
            lines.append(f"{item.component}.{item.option}: {ours[item.option]} ({rasa}); {item.why}")
        for item in NOT_IMPLEMENTED:
            if item.option not in diet:
                lines.append(f"{item.component}.{item.option}: not used (Rasa: {item.rasa}); {item.why}")
    lexical = _options(config, "LexicalSyntacticFeaturizer")
    if lexical is not None and "features" not in lexical and DEFAULT_LEXICAL_FEATURES != RASA_LEXICAL_FEATURES:
        lines.append(
            "LexicalSyntacticFeaturizer.features: Rasa 2's windows with prefix/suffix features (Rasa 3.6: without"
            " them); quality: Rasa 3.6's windows measured -1.0 points intent accuracy, -0.2 entity F1 on HWU64"
        )
    return lines
