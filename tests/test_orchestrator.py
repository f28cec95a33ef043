"""The CI step's branches in milliseconds: ``run_ci`` with a fake trainer and tester that write
real archives, against a real local-folder store. No TensorFlow; the end-to-end tests
(test_e2e.py, test_ci_flow.py) keep the real trainer honest."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import pytest

from pipeline.archive import FINGERPRINT_FILE, METADATA_FILE, archive_name, pack_archive, write_json
from pipeline.build import BuildPlan, BuildResult
from pipeline.ci import CiOptions, CiResult, Stopwatch, run_ci
from pipeline.data.model import NluData, Project, Story
from pipeline.decision import FINETUNE, FULL, KEEP
from pipeline.errors import ExitCode, FinetuneRefused, StoreError
from pipeline.stores.forge import ReadOnlyTokenError
from pipeline.stores.local import LocalBackend
from pipeline.stores.model_store import ModelStore
from pipeline.testing import ModelTestResult
from tests.helpers import write_project

PROJECT = {
    "config.yml": """
        language: en
        pipeline:
          - name: WhitespaceTokenizer
          - name: CountVectorsFeaturizer
          - name: DIETClassifier
            epochs: 1
        policies:
          - name: MemoizationPolicy
          - name: TEDPolicy
            epochs: 1
        """,
    "domain.yml": """
        intents:
          - greet
          - goodbye
        responses:
          utter_greet:
            - text: "Hello!"
          utter_goodbye:
            - text: "Bye!"
        """,
    "data/nlu.yml": """
        nlu:
        - intent: greet
          examples: |
            - hello
            - hi there
        - intent: goodbye
          examples: |
            - bye
            - see you
        """,
    "data/stories.yml": """
        stories:
        - story: greet then leave
          steps:
          - intent: greet
          - action: utter_greet
          - intent: goodbye
          - action: utter_goodbye
        """,
    "tests/nlu_test.yml": """
        nlu:
        - intent: greet
          examples: |
            - hey
        - intent: goodbye
          examples: |
            - goodbye
        """,
}


@dataclass
class FakeTrainer:
    """Writes a real, tiny archive per plan (``metadata.json``, ``fingerprint.json``, one file per
    trained part); refuses to finetune when told to, as the real trainers do."""

    refuse_finetune: bool = False
    plans: list[BuildPlan] = field(default_factory=list)

    def __call__(
        self, project: Project, fingerprint: Mapping[str, Any], plan: BuildPlan, *, progress: Any = None
    ) -> BuildResult:
        self.plans.append(plan)
        if self.refuse_finetune and FINETUNE in (plan.nlu, plan.core):
            raise FinetuneRefused(["the label set changed"])
        name = f"model-{uuid.uuid4().hex[:12]}"
        staging = plan.output_dir / f".staging-{name}"
        metadata = {"name": name, "parts": {"nlu": {"action": plan.nlu}, "core": {"action": plan.core}},
                    "finetunes_in_a_row": plan.finetunes_in_a_row, **plan.extra_metadata}
        for part in ("nlu", "core"):
            (staging / part).mkdir(parents=True)
            (staging / part / "weights.txt").write_text(f"{part} {getattr(plan, part)}\n")
        write_json(staging / METADATA_FILE, metadata)
        write_json(staging / FINGERPRINT_FILE, dict(fingerprint))
        archive = pack_archive(staging, plan.output_dir / archive_name(name))
        return BuildResult(archive=archive, name=name, metadata=metadata, fingerprint=fingerprint)


@dataclass
class FakeTester:
    """Answers every test of a model with the next intent F1 of ``scores`` (the last one repeats)."""

    scores: list[float] = field(default_factory=lambda: [0.9])
    archives: list[Path] = field(default_factory=list)

    def __call__(
        self, archive: Path, test_nlu: NluData, test_stories: Sequence[Story], out_dir: Path | None = None
    ) -> ModelTestResult:
        assert archive.is_file(), "the tester gets the archive the trainer wrote"
        self.archives.append(archive)
        score = self.scores.pop(0) if len(self.scores) > 1 else self.scores[0]
        metrics: dict[str, float | None] = {"intent_f1": score, "intent_accuracy": score, "entity_f1": None,
                                            "story_accuracy": None}
        return ModelTestResult(nlu=None, stories=None, metrics=metrics)


class FailingUploads(LocalBackend):
    """A real local-folder store whose archive uploads fail with ``error``."""

    def __init__(self, root: Path, error: StoreError) -> None:
        super().__init__(root)
        self.error = error

    def put_file(self, key: str, path: Path) -> None:
        raise self.error


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_project(tmp_path / "assistant", PROJECT)


def _options(project: Path, **changes: Any) -> CiOptions:
    return CiOptions(project_dir=project, use_git=False, **changes)


def _run(project: Path, trainer: FakeTrainer | None = None, tester: FakeTester | None = None,
         store: ModelStore | None = None, **changes: Any) -> CiResult:
    return run_ci(_options(project, **changes), trainer=trainer or FakeTrainer(), tester=tester or FakeTester(),
                  store=store)


def _store_dir(project: Path) -> Path:
    return project / ".deltatrain" / "store"


def _manifest(project: Path) -> dict[str, Any]:
    return json.loads((_store_dir(project) / "manifest.json").read_text())


def _add_example(project: Path) -> None:
    nlu = project / "data" / "nlu.yml"
    nlu.write_text(nlu.read_text().replace("    - hi there\n", "    - hi there\n    - good morning\n"))


@pytest.fixture
def published(project: Path) -> Iterator[tuple[Path, str]]:
    """The project after a first full run published one model (intent F1 0.9)."""
    result = _run(project)
    assert result.uploaded
    yield project, str(result.model_name)


# ------------------------------------------------------------------ the branches


def test_first_run_trains_in_full_tests_and_publishes(project: Path) -> None:
    trainer, tester = FakeTrainer(), FakeTester()

    result = _run(project, trainer, tester)

    assert result.decision.kind == FULL and result.exit_code == ExitCode.OK
    assert [(p.nlu, p.core, p.previous_archive) for p in trainer.plans] == [(FULL, FULL, None)]
    assert tester.archives == [Path(str(result.model_path))]
    assert result.uploaded and _manifest(project)["latest"] == result.model_name
    assert result.metrics["intent_f1"] == 0.9 and result.gate is not None and result.gate.passed
    assert list(result.timings) == ["load_seconds", "store_read_seconds", "train_seconds", "test_seconds",
                                    "upload_seconds", "total_seconds"]


def test_unchanged_data_skips_without_training(published: tuple[Path, str]) -> None:
    project, first = published
    trainer = FakeTrainer()

    result = _run(project, trainer)

    assert result.decision.kind == "skip" and trainer.plans == []
    assert result.model_name == first and result.previous_model == first
    assert result.metrics["intent_f1"] == 0.9  # carried from the store
    assert not result.uploaded and "train_seconds" not in result.timings


def test_a_changed_response_repackages_and_carries_the_metrics(published: tuple[Path, str]) -> None:
    project, first = published
    domain = project / "domain.yml"
    domain.write_text(domain.read_text().replace("Hello!", "Hello there!"))
    trainer, tester = FakeTrainer(), FakeTester(scores=[0.1])

    result = _run(project, trainer, tester)

    assert result.decision.kind == "repackage"
    assert [(p.nlu, p.core) for p in trainer.plans] == [(KEEP, KEEP)]
    assert trainer.plans[0].previous_archive is not None  # the kept parts come from the previous model
    assert tester.archives == []  # weights unchanged: not tested again
    assert result.metrics["intent_f1"] == 0.9 and result.uploaded


def test_added_examples_finetune_the_downloaded_previous_model(published: tuple[Path, str]) -> None:
    project, first = published
    _add_example(project)
    trainer = FakeTrainer()

    result = _run(project, trainer, epoch_fraction=0.5)

    assert result.decision.kind == FINETUNE and not result.fell_back_to_full
    plan = trainer.plans[0]
    assert (plan.nlu, plan.core, plan.epoch_fraction) == (FINETUNE, KEEP, 0.5)
    assert plan.previous_archive is not None and plan.previous_archive.name == f"{first}.tar.gz"
    assert result.uploaded and _manifest(project)["latest"] == result.model_name != first


def test_a_refused_finetune_falls_back_to_full_once(published: tuple[Path, str]) -> None:
    project, _ = published
    _add_example(project)
    trainer, tester = FakeTrainer(refuse_finetune=True), FakeTester()

    result = _run(project, trainer, tester)

    assert [(p.nlu, p.core) for p in trainer.plans] == [(FINETUNE, KEEP), (FULL, KEEP)]
    assert len(tester.archives) == 1
    assert result.fell_back_to_full and result.decision.kind == FULL
    assert result.decision.reasons[-1] == "finetune refused: the label set changed"
    assert trainer.plans[1].extra_metadata["decision"] == FULL  # the archive says what it was built by
    assert result.uploaded and result.exit_code == ExitCode.OK


def test_a_finetune_failing_the_gate_falls_back_to_full(published: tuple[Path, str]) -> None:
    project, _ = published
    _add_example(project)
    trainer, tester = FakeTrainer(), FakeTester(scores=[0.5, 0.95])

    result = _run(project, trainer, tester)

    assert [(p.nlu, p.core) for p in trainer.plans] == [(FINETUNE, KEEP), (FULL, KEEP)]
    assert not tester.archives[0].exists(), "the rejected finetuned archive is deleted"
    assert result.fell_back_to_full and result.decision.kind == FULL
    assert result.decision.reasons[-1].startswith("finetuned model failed the quality gate: intent F1 0.500 dropped")
    assert result.gate is not None and result.gate.passed and result.metrics["intent_f1"] == 0.95
    assert result.uploaded and result.exit_code == ExitCode.OK


def test_a_gate_failure_without_fallback_exits_3_and_keeps_the_store(published: tuple[Path, str]) -> None:
    project, first = published
    _add_example(project)
    trainer = FakeTrainer()

    result = _run(project, trainer, FakeTester(scores=[0.5]), fallback_full=False)

    assert result.exit_code == ExitCode.GATE == 3
    assert len(trainer.plans) == 1 and not result.fell_back_to_full and result.decision.kind == FINETUNE
    assert result.gate is not None and not result.gate.passed
    assert "intent F1 0.500 dropped 0.400 below the previous model's 0.900" in result.gate.failures[0].reason
    assert not result.uploaded and _manifest(project)["latest"] == first
    assert Path(str(result.model_path)).is_file()  # kept for inspection, not published


def test_a_gate_failure_after_the_fallback_exits_3(published: tuple[Path, str]) -> None:
    project, first = published
    _add_example(project)
    trainer = FakeTrainer()

    result = _run(project, trainer, FakeTester(scores=[0.5, 0.6]))

    assert len(trainer.plans) == 2 and result.fell_back_to_full
    assert result.exit_code == ExitCode.GATE and not result.uploaded
    assert _manifest(project)["latest"] == first


def test_a_floor_fails_a_first_full_model(project: Path) -> None:
    result = _run(project, tester=FakeTester(scores=[0.7]), floors={"intent_f1": 0.8})

    assert result.exit_code == ExitCode.GATE and not result.uploaded
    assert result.gate is not None and result.gate.failures[0].reason == "intent F1 0.700 is below the floor 0.800"
    assert not (_store_dir(project) / "manifest.json").exists()


def test_an_upload_failure_raises_the_store_error_and_lists_nothing(published: tuple[Path, str]) -> None:
    project, first = published
    _add_example(project)
    store = ModelStore(FailingUploads(_store_dir(project), StoreError("disk full", hint="free some space")))

    with pytest.raises(StoreError, match="disk full"):
        _run(project, store=store)

    assert _manifest(project)["latest"] == first
    assert [m["name"] for m in _manifest(project)["models"]] == [first]


def test_a_read_only_token_trains_and_gates_but_does_not_upload(published: tuple[Path, str]) -> None:
    project, first = published
    _add_example(project)
    refused = ReadOnlyTokenError("GitHub refused the upload in a pull-request run (HTTP 403)")
    store = ModelStore(FailingUploads(_store_dir(project), refused))

    result = _run(project, store=store)

    assert result.exit_code == ExitCode.OK and not result.uploaded
    assert result.gate is not None and result.gate.passed
    assert result.notes[-1] == f"not uploaded: {refused.message}"
    assert _manifest(project)["latest"] == first


def _damage_archive(project: Path, name: str) -> None:
    """Replace the stored archive with half of it and list that in the manifest (sha256 and size)."""
    archive = _store_dir(project) / "models" / name / "model.tar.gz"
    data = archive.read_bytes()[:100]
    archive.write_bytes(data)
    manifest = _manifest(project)
    manifest["models"][0].update(sha256=hashlib.sha256(data).hexdigest(), size=len(data))
    (_store_dir(project) / "manifest.json").write_text(json.dumps(manifest))


def test_an_unreadable_previous_model_means_full_with_the_reason(published: tuple[Path, str]) -> None:
    project, first = published
    _damage_archive(project, first)
    _add_example(project)
    trainer = FakeTrainer()

    result = _run(project, trainer)

    assert [(p.nlu, p.core, p.previous_archive) for p in trainer.plans] == [(FULL, FULL, None)]
    assert result.decision.kind == FULL
    assert result.decision.reasons[0].startswith(f"previous model {first} cannot be used (")
    assert result.broken_model is not None and result.broken_model["name"] == first
    assert result.previous_metrics == {}
    assert any(note.startswith(f"broken model in the store: {first}") for note in result.notes)
    assert result.uploaded


def test_a_skip_onto_a_missing_archive_trains_in_full(published: tuple[Path, str]) -> None:
    project, first = published
    (_store_dir(project) / "models" / first / "model.tar.gz").unlink()
    trainer = FakeTrainer()

    result = _run(project, trainer)

    assert result.decision.kind == FULL and len(trainer.plans) == 1
    assert f"previous model {first} cannot be used" in result.decision.reasons[0]


def test_a_skip_reads_no_fingerprint_file_but_a_change_needs_it(published: tuple[Path, str]) -> None:
    """The manifest carries the fingerprint head: a skip never reads fingerprint.json; added
    examples do, and without the file the previous model is broken: a full retrain, said so."""
    project, first = published
    (_store_dir(project) / "models" / first / "fingerprint.json").unlink()

    assert _run(project).decision.kind == "skip"

    _add_example(project)
    trainer = FakeTrainer()
    result = _run(project, trainer)

    assert result.decision.kind == FULL and [(p.nlu, p.previous_archive) for p in trainer.plans] == [(FULL, None)]
    assert f"previous model {first} cannot be used" in result.decision.reasons[0]
    assert "fingerprint.json" in result.decision.reasons[0]
    assert any(note.startswith(f"broken model in the store: {first}") for note in result.notes)


@pytest.mark.parametrize(
    ("changes", "note"),
    [({"mode": "skip-check"}, "check only (--mode skip-check): nothing trained"),
     ({"decide_only": True}, "decide only: training needed")],
    ids=["skip-check", "decide-only"],
)
def test_stopping_before_training(project: Path, changes: dict[str, Any], note: str) -> None:
    trainer = FakeTrainer()

    result = _run(project, trainer, **changes)

    assert trainer.plans == [] and result.decision.kind == FULL
    assert result.notes[-1] == note and not result.uploaded
    assert result.stopped_before_training is bool(changes.get("decide_only"))


# ------------------------------------------------------------------ stopwatch


def test_stopwatch_adds_up_laps_of_one_name_in_first_started_order() -> None:
    now = iter([0.0, 1.0, 3.0, 3.5, 4.0, 10.0, 10.25, 11.0])
    clock = Stopwatch(lambda: next(now))

    with clock.lap("train"):  # 1.0 .. 3.0
        pass
    with clock.lap("test"):  # 3.5 .. 4.0
        pass
    with clock.lap("train"):  # 10.0 .. 10.25
        pass

    assert clock.timings() == {"train_seconds": 2.25, "test_seconds": 0.5, "total_seconds": 11.0}
