"""Finetuning through a growing label space (added intents and entity types): tiny real models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pipeline.errors import FinetuneRefused
from pipeline.training.nlu import NluModel, check_finetune_compatible, finetune_nlu, train_nlu

from .test_nlu import NEW_INTENT, NLU_YAML, read_yaml, tiny_config

NEW_ENTITY = """
    version: "3.1"
    nlu:
    - intent: check_weather
      examples: |
        - weather for [skiing](activity) in [Oslo](city)
        - is it good for [surfing](activity) [today](date)
        - can i go [hiking](activity) [tomorrow](date)
        - weather for [sailing](activity) please
"""

MORE_TIME = """
    version: "3.1"
    nlu:
    - intent: ask_time
      examples: |
        - what is the time
        - do you know the time
        - time please
        - what time is it now
"""


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> tuple[NluModel, Path]:
    data = read_yaml(tmp_path_factory.mktemp("data"), NLU_YAML)
    model = train_nlu(data, tiny_config(epochs=40), seed=3)
    directory = tmp_path_factory.mktemp("model") / "nlu"
    model.save(directory)
    return model, directory


def _intents(model: NluModel, texts: list[str]) -> list[str]:
    return [r["intent"]["name"] for r in model.parse_batch(texts)]


def test_finetune_with_an_added_intent_predicts_it_and_keeps_the_old_ones(
    base: tuple[NluModel, Path], tmp_path: Path
) -> None:
    model, directory = base
    data = read_yaml(tmp_path, NLU_YAML, NEW_INTENT, MORE_TIME)
    old_texts = [e.text for e in data.examples if e.intent != "ask_time"]
    before = _intents(model, old_texts)
    check_finetune_compatible(directory, data, tiny_config(epochs=40))  # does not raise
    tuned = finetune_nlu(directory, data, tiny_config(epochs=40), epoch_fraction=0.5, seed=3)
    assert tuned.labels.intents == ("ask_time", "book_flight", "check_weather", "goodbye", "greet")
    assert tuned.summary["intents_added"] == ["ask_time"]
    new_texts = [e.text for e in data.examples if e.intent == "ask_time"]
    assert _intents(tuned, new_texts) == ["ask_time"] * len(new_texts)
    assert _intents(tuned, old_texts) == before
    # saved and reloaded, it predicts the same
    tuned.save(tmp_path / "tuned")
    assert _intents(NluModel.load(tmp_path / "tuned"), new_texts + old_texts) == _intents(tuned, new_texts + old_texts)


def test_finetune_with_an_added_entity_type_extracts_it(base: tuple[NluModel, Path], tmp_path: Path) -> None:
    model, directory = base
    data = read_yaml(tmp_path, NLU_YAML, NEW_ENTITY)
    tuned = finetune_nlu(directory, data, tiny_config(epochs=40), epoch_fraction=1.0, seed=3)
    assert tuned.labels.entities == ("activity", "city", "date")
    assert tuned.summary["entities_added"] == ["activity"]
    found = [
        e["value"] for r in tuned.parse_batch([e.text for e in data.examples if any(s.entity == "activity" for s in e.entities)])
        for e in r["entities"] if e["entity"] == "activity"
    ]
    assert len(found) >= 3, found
    cities_before = [sorted(e["value"] for e in r["entities"] if e["entity"] == "city") for r in model.parse_batch(["weather in Berlin tomorrow", "forecast for NYC"])]
    cities_after = [sorted(e["value"] for e in r["entities"] if e["entity"] == "city") for r in tuned.parse_batch(["weather in Berlin tomorrow", "forecast for NYC"])]
    assert cities_after == cities_before


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        pytest.param(("- intent: goodbye", "- intent: farewell"), ["intents added: `farewell`", "intents removed: `goodbye`"], id="renamed"),
        pytest.param(("- intent: goodbye", "- intent: greet"), ["intents removed: `goodbye`"], id="removed"),
    ],
)
def test_removed_or_renamed_intents_still_refuse_the_finetune(
    base: tuple[NluModel, Path], tmp_path: Path, edit: tuple[str, str], expected: list[str]
) -> None:
    _, directory = base
    with pytest.raises(FinetuneRefused) as refused:
        check_finetune_compatible(directory, read_yaml(tmp_path, NLU_YAML.replace(*edit)), tiny_config(epochs=40))
    assert list(refused.value.reasons) == expected
