"""The NLU training schedule: linear learning-rate decay and batch-size ramp, annealing after a plateau."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.data.model import NluData
from pipeline.training.nlu import train_nlu
from pipeline.training.nlu.trainer import ANNEAL_EPOCHS, _plateaued, schedule
from pipeline.training.optim import batch_size_for

from .test_nlu import NLU_YAML, read_yaml, tiny_config


@pytest.mark.parametrize("epoch", [0, 1, 17, 99])
def test_schedule_without_plateau_is_linear(epoch: int) -> None:
    fraction, size = schedule(epoch, 100, (64, 256))
    assert fraction == pytest.approx(1.0 - epoch / 100)
    assert size == batch_size_for(epoch, 100, (64, 256))


def test_schedule_after_a_plateau_anneals_to_zero_and_the_largest_batch() -> None:
    start = 34
    before, size_before = schedule(start - 1, 100, (64, 256), anneal_from=start)
    assert before == pytest.approx(1.0 - (start - 1) / 100)  # epochs before the plateau keep the plan
    steps = [schedule(e, 100, (64, 256), anneal_from=start) for e in range(start, start + ANNEAL_EPOCHS)]
    fractions = [f for f, _ in steps]
    sizes = [s for _, s in steps]
    assert fractions == sorted(fractions, reverse=True) and fractions[0] < before
    assert 0.0 < fractions[-1] < 0.2 * (1.0 - start / 100)
    assert sizes == sorted(sizes) and size_before <= sizes[0] and sizes[-1] > 0.8 * 256


def test_early_stopping_anneals_for_anneal_epochs_after_the_plateau(tmp_path: Any) -> None:
    data: NluData = read_yaml(tmp_path, NLU_YAML)
    model = train_nlu(data, tiny_config(epochs=150, early_stopping=True), seed=7)
    losses = model.summary["loss_history"]
    accuracies = model.summary["accuracy_history"]
    plateau = next(e for e in range(1, len(losses) + 1) if _plateaued(losses[:e], accuracies[:e]))
    assert model.summary["epochs_run"] == plateau + ANNEAL_EPOCHS < model.summary["epochs_planned"] == 150


def test_summary_names_defaults_that_differ_from_rasa_unless_the_config_sets_them() -> None:
    from pipeline.data.model import Component, Config, freeze
    from pipeline.training.nlu.rasa_defaults import differing_defaults

    def config(**diet: Any) -> Config:
        return Config(pipeline=(Component("LexicalSyntacticFeaturizer"), Component("DIETClassifier", freeze(diet))))

    notes = differing_defaults(config(epochs=100), epochs_planned=18)
    assert notes[0].startswith("DIETClassifier.epochs: 18 planned of the config's 100")
    assert any(n.startswith("DIETClassifier.transformer_size: 128 (Rasa: 256)") for n in notes)
    assert any(n.startswith("LexicalSyntacticFeaturizer.features:") for n in notes)
    set_by_team = differing_defaults(config(epochs=100, transformer_size=256, constrain_similarities=False), 100)
    assert not any(n.split(":")[0] in ("DIETClassifier.epochs", "DIETClassifier.transformer_size",
                                       "DIETClassifier.constrain_similarities") for n in set_by_team)
    assert differing_defaults(Config(pipeline=(Component("CountVectorsFeaturizer"),))) == []


def test_trained_model_summary_lists_the_differences(tmp_path: Any) -> None:
    data: NluData = read_yaml(tmp_path, NLU_YAML)
    model = train_nlu(data, tiny_config(epochs=2), seed=7)
    named = [n.split(":")[0] for n in model.summary["rasa_defaults_differing"]]
    assert "DIETClassifier.regularization_constant" in named  # not implemented: always named
    assert "DIETClassifier.learning_rate" not in named  # tiny_config sets it
    assert "DIETClassifier.epochs" not in named  # tiny_config runs its epochs exactly (early_stopping: false)
