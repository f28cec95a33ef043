"""Build one model archive from a plan: keep, finetune or fully train each part.

This is the single place that turns a decision into a model. It imports the
TensorFlow trainers only for parts that are actually trained, so a repackage
(only responses changed) never imports TensorFlow.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping

from pipeline import MODEL_FORMAT_VERSION, __version__
from pipeline.archive import (
    CORE_DIR,
    DOMAIN_FILE,
    FINGERPRINT_FILE,
    METADATA_FILE,
    NLU_DATA_FILE,
    archive_name,
    extract_archive,
    model_name_of,
    pack_archive,
    read_archive_json,
    write_json,
)
from pipeline.data.model import Component, Config, Project, freeze, thaw
from pipeline.data.writer import render_domain_yaml, render_nlu_yaml
from pipeline.decision import FINETUNE, FULL, KEEP, REPACKAGE, DecisionKind, PartAction
from pipeline.errors import ModelError, TrainingError
from pipeline.fingerprint import Fingerprint

Progress = Callable[[Mapping[str, Any]], None]


@dataclass(frozen=True)
class BuildPlan:
    """What to do with each model part and where the result goes."""

    nlu: PartAction
    core: PartAction  # KEEP without a previous dialogue model: no dialogue model
    output_dir: Path
    name: str | None = None  # default: UTC timestamp
    epoch_fraction: float = 1.0
    previous_archive: Path | None = None
    persist_nlu_data: bool = False
    nlu_epochs: int | None = None  # override for every NLU component with epochs
    core_epochs: int | None = None
    num_threads: int | None = None
    finetunes_in_a_row: int = 0
    extra_metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BuildResult:
    """The archive written and what went into it."""

    archive: Path
    name: str
    metadata: Mapping[str, Any]
    fingerprint: Fingerprint


def default_model_name(now: datetime | None = None) -> str:
    """Rasa-style timestamp name, e.g. ``20261123-171502-123456``."""
    now = now or datetime.now(timezone.utc)
    return now.strftime("%Y%m%d-%H%M%S-%f")


def has_dialogue(project: Project) -> bool:
    """Whether the project trains a dialogue model (domain plus stories or rules)."""
    return project.has_domain and bool(project.stories)


def with_epochs(config: Config, nlu_epochs: int | None, core_epochs: int | None) -> Config:
    """Config with ``epochs`` set on every trainable component (used by overrides and tests)."""

    def patch(components: tuple[Component, ...], epochs: int | None, names: tuple[str, ...]) -> tuple[Component, ...]:
        if epochs is None:
            return components
        return tuple(
            replace(c, options=freeze({**thaw(c.options), "epochs": epochs})) if c.name in names else c
            for c in components
        )

    return replace(
        config,
        pipeline=patch(config.pipeline, nlu_epochs, ("DIETClassifier", "ResponseSelector")),
        policies=patch(config.policies, core_epochs, ("TEDPolicy",)),
    )


def build_model(
    project: Project,
    fingerprint: Fingerprint | Mapping[str, Any],
    plan: BuildPlan,
    *,
    progress: Progress | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
) -> BuildResult:
    """Train/finetune/copy each part per ``plan`` and pack the archive."""
    fingerprint = Fingerprint.from_json(fingerprint)
    started = time.perf_counter()
    trained_at = now()
    name = plan.name or default_model_name(trained_at)
    config = with_epochs(project.config, plan.nlu_epochs, plan.core_epochs)
    dialogue = has_dialogue(project)
    previous_meta: dict[str, Any] = {}
    previous_fp: dict[str, Any] = {}
    timings: dict[str, float] = {}
    parts: dict[str, dict[str, Any] | None] = {}
    with tempfile.TemporaryDirectory(prefix="deltatrain-build-") as tmp:
        staging = Path(tmp, "model")
        staging.mkdir()
        previous_dir: Path | None = None
        if plan.previous_archive is not None and (KEEP in (plan.nlu, plan.core) or FINETUNE in (plan.nlu, plan.core)):
            previous_meta, previous_fp = read_archive_json(plan.previous_archive)
            previous_dir = extract_archive(plan.previous_archive, Path(tmp, "previous"))

        tick = time.perf_counter()
        if project.nlu.examples:
            parts["nlu"] = _build_part(
                "nlu", plan.nlu, previous_dir, staging, progress,
                train=lambda: _nlu().train_nlu(project.nlu, config, progress=progress, responses=project.domain.responses),
                finetune=lambda prev: _nlu().finetune_nlu(
                    prev, project.nlu, config, epoch_fraction=plan.epoch_fraction, progress=progress,
                    responses=project.domain.responses,
                ),
                num_threads=plan.num_threads,
            )
        timings["nlu_seconds"] = round(time.perf_counter() - tick, 3)

        tick = time.perf_counter()
        if dialogue or (plan.core == KEEP and previous_dir is not None and (previous_dir / CORE_DIR).is_dir()):
            core_action = plan.core if dialogue else KEEP
            parts["core"] = _build_part(
                "core", core_action, previous_dir, staging, progress,
                # text-only user turns in stories are labelled by the NLU model just built
                train=lambda: _core().train_core(
                    project.domain, project.stories, config, progress=progress, nlu_dir=staging / "nlu"
                ),
                finetune=lambda prev: _core().finetune_core(
                    prev, project.domain, project.stories, config, epoch_fraction=plan.epoch_fraction,
                    progress=progress, nlu_dir=staging / "nlu",
                ),
                num_threads=plan.num_threads,
            )
        timings["core_seconds"] = round(time.perf_counter() - tick, 3)

        if project.has_domain:
            (staging / DOMAIN_FILE).write_text(render_domain_yaml(project.domain), encoding="utf-8")
        if plan.persist_nlu_data:
            (staging / NLU_DATA_FILE).write_text(render_nlu_yaml(project.nlu), encoding="utf-8")
        built = {k: v for k, v in parts.items() if v is not None}
        for part_name in built:
            if not (staging / part_name).is_dir():
                raise ModelError(f"{part_name} model was not written", hint="report this as a bug")
        actions = {p["action"] for p in built.values()}
        mode = DecisionKind.FULL if FULL in actions else DecisionKind.FINETUNE if FINETUNE in actions else REPACKAGE
        metadata = {
            "deltatrain_version": __version__,
            "model_format": MODEL_FORMAT_VERSION,
            "name": name,
            "trained_at": trained_at.isoformat(),
            "mode": str(mode),
            "parts": built,
            "epoch_fraction": plan.epoch_fraction if FINETUNE in actions else None,
            "finetunes_in_a_row": plan.finetunes_in_a_row if mode == DecisionKind.FINETUNE else (0 if mode == DecisionKind.FULL else previous_meta.get("finetunes_in_a_row", 0)),
            "finetuned_from": (
                {"name": previous_meta.get("name") or model_name_of(plan.previous_archive), "fingerprint": previous_fp.get("sections", {})}
                if plan.previous_archive is not None and (FINETUNE in actions or KEEP in actions)
                else None
            ),
            "data": dict(fingerprint.counts),
            "language": project.config.language,
            "assistant_id": project.config.assistant_id,
            "timings": {**timings, "total_seconds": round(time.perf_counter() - started, 3)},
            **dict(plan.extra_metadata),
        }
        write_json(staging / METADATA_FILE, metadata)
        write_json(staging / FINGERPRINT_FILE, fingerprint.to_json())
        archive = pack_archive(staging, Path(plan.output_dir) / archive_name(name))
    return BuildResult(archive=archive, name=name, metadata=metadata, fingerprint=fingerprint)


def _build_part(
    part: str,
    action: PartAction,
    previous_dir: Path | None,
    staging: Path,
    progress: Progress | None,
    *,
    train: Callable[[], Any],
    finetune: Callable[[Path], Any],
    num_threads: int | None,
) -> dict[str, Any] | None:
    """Keep, finetune or train one part into ``staging``; its metadata (``None``: nothing to keep)."""
    target = staging / part
    previous_part = previous_dir / part if previous_dir is not None else None
    if action == KEEP:
        if previous_part is None or not previous_part.is_dir():
            return None  # nothing to carry over (e.g. train_core only)
        shutil.copytree(previous_part, target)
        return {"action": str(KEEP), "summary": {}}
    if action not in (FINETUNE, FULL):
        raise ValueError(f"unknown action {action!r}")
    from pipeline.extras import Extra, require_extra
    from pipeline.training.runtime import configure_tensorflow

    require_extra(Extra.TRAIN, f"training the {part} model")
    configure_tensorflow(num_threads)
    if action == FINETUNE:
        if previous_part is None or not previous_part.is_dir():
            raise ModelError(f"cannot finetune: the previous model has no {part} model", hint="train in full")
        model = finetune(previous_part)
    else:
        model = train()
    model.save(target)
    summary = dict(getattr(model, "summary", {}) or {})
    return {"action": str(action), "summary": summary}


def _nlu() -> Any:
    from pipeline.training import nlu

    return nlu


def _core() -> Any:
    from pipeline.training import core

    return core


def ensure_trainable(project: Project) -> None:
    """Refuse data no model can be trained on, with a fix."""
    intents = {e.intent for e in project.nlu.examples}
    if len(intents) < 2:
        raise TrainingError(
            f"the NLU model needs examples of at least two intents, found {len(intents)}",
            hint="add examples for more intents in data/nlu.yml",
        )
