"""Python API mirroring ``rasa.train``: train, train_nlu, train_core.

Same names, arguments and meaning as Rasa's reference, without asyncio::

    from pipeline.train import train
    result = train("domain.yml", "config.yml", ["data"], output="models")
    result.model   # path of the new (or reused) archive, None on a dry run
    result.code    # Rasa's dry-run bitmask: 0 nothing, 1 dialogue, 2 NLU, 4 responses, 8 forced

Unchanged parts are carried over from the latest model in ``output`` (chosen
by the training time recorded inside each model); a responses-only change is
a repackage without training; ``model_to_finetune`` continues training of the
previous weights for ``ceil(epochs × finetuning_epoch_fraction)`` epochs.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

from pipeline.archive import CORE_DIR, NLU_DIR, extract_archive, find_latest_model, read_archive_json
from pipeline.build import BuildPlan, build_model, ensure_trainable, has_dialogue
from pipeline.data.loader import DirectorySource, ProjectPaths, load_project
from pipeline.data.model import Project
from pipeline.decision import (
    CODE_FORCED,
    FINETUNE,
    FULL,
    KEEP,
    Decision,
    DecisionOptions,
    Mode,
    PartAction,
    check_epoch_fraction,
    decide,
    kind_of,
    without_finetune,
)
from pipeline.errors import ArchiveError, DataError, FinetuneRefused, Location, ModelError, Problem, UsageError
from pipeline.fingerprint import compute_fingerprint, summarize_changes
from pipeline.validation import validate_project

Progress = Any


@dataclass(frozen=True)
class TrainingResult:
    """Outcome of a training call: archive path (None on dry run) and Rasa's code."""

    model: str | None = None
    code: int = 0
    decision: Decision | None = None
    warnings: tuple[Problem, ...] = field(default=())
    dry_run_results: tuple[str, ...] = field(default=())


def load_training_project(
    domain: str | Path | None, config: str | Path, training_files: str | Path | Sequence[str | Path] | None,
    *, root: Path | None = None, ignore_unknown_components: bool = False, tests: Sequence[str] = (),
) -> tuple[Project, tuple[Problem, ...]]:
    """Load and validate the project (config.yml included, ``tests`` too when given); raise DataError on
    errors, return warnings."""
    files = [training_files] if isinstance(training_files, (str, Path)) else list(training_files or ["data"])
    paths = ProjectPaths(
        data=tuple(str(f) for f in files),
        domain=None if domain is None else str(domain),
        config=str(config),
        tests=tuple(str(t) for t in tests),
        ignore_unknown_components=ignore_unknown_components,
    )
    source = DirectorySource(root or Path.cwd())
    no_domain: tuple[Problem, ...] = ()
    if domain is not None and not (source.is_file(str(domain)) or source.is_dir(str(domain))):
        # Rasa's handle_domain_if_not_exists: without a domain only the NLU model is trained.
        paths = replace(paths, domain="")
        no_domain = (Problem("warning", "no domain found: training the NLU model only", Location(str(domain)),
                             "pass --domain to train the dialogue model too", code="missing"),)
    project, problems = load_project(source, paths)
    return check_project(project, (*no_domain, *problems))


def check_project(project: Project, problems: tuple[Problem, ...]) -> tuple[Project, tuple[Problem, ...]]:
    """Add validation findings to the loader's; raise DataError on any error, else return the warnings."""
    found = (*problems, *validate_project(project))
    if any(p.is_error for p in found):
        raise DataError(found)
    return project, tuple(p for p in found if not p.is_error)


def resolve_model_path(model: str | Path | None) -> Path | None:
    """A model path, or the latest model of a directory; None when there is none."""
    if model is None:
        return None
    path = Path(model)
    if path.is_dir():
        return find_latest_model(path)
    if path.is_file():
        return path
    raise ModelError("model not found", location=str(path), hint="pass a .tar.gz model or a directory of models")


def train(
    domain: str | Path | None,
    config: str | Path,
    training_files: str | Path | Sequence[str | Path] | None,
    output: str | Path = "models",
    dry_run: bool = False,
    force_training: bool = False,
    fixed_model_name: str | None = None,
    persist_nlu_training_data: bool = False,
    core_additional_arguments: Mapping[str, Any] | None = None,
    nlu_additional_arguments: Mapping[str, Any] | None = None,
    model_to_finetune: str | Path | None = None,
    finetuning_epoch_fraction: float = 1.0,
    *,
    progress: Progress | None = None,
    num_threads: int | None = None,
    parts: tuple[str, ...] = ("nlu", "core"),
    ignore_unknown_components: bool = False,
) -> TrainingResult:
    """Train a model (NLU and dialogue) like ``rasa.train``; see the module docstring."""
    check_epoch_fraction(finetuning_epoch_fraction)
    project, warnings = load_training_project(domain, config, training_files,
                                              ignore_unknown_components=ignore_unknown_components)
    fingerprint = compute_fingerprint(project)
    output_dir = Path(output)
    finetune_from = resolve_model_path(model_to_finetune)
    if model_to_finetune is not None and finetune_from is None:
        raise ModelError("no model to finetune found", location=str(model_to_finetune),
                         hint="train a model first, or drop --finetune")
    skipped: list[ArchiveError] = []
    previous = finetune_from or find_latest_model(output_dir, skipped=skipped)
    warnings = (*warnings, *(_skipped_warning(exc) for exc in skipped))
    previous_meta, previous_fp = read_archive_json(previous) if previous else ({}, None)
    changes = summarize_changes(previous_fp, fingerprint, project) if previous_fp is not None else None
    dialogue = has_dialogue(project) and "core" in parts
    options = DecisionOptions(mode=Mode.FINETUNE if finetune_from else Mode.AUTO, force=force_training,
                              max_finetunes=10**9)
    decision = _decision_acted_on(
        decide(previous_fp, previous_meta, changes, options, has_core=dialogue,
               previous_problem=f"no previous model in {output_dir}/"),
        nlu_trained="nlu" in parts, finetune=finetune_from is not None,
    )
    nlu_action, core_action = decision.nlu, decision.core
    if finetune_from is not None:
        if FULL in (nlu_action, core_action):
            raise FinetuneRefused(decision.reasons)
        _check_compatible(finetune_from, project, nlu_action, core_action)
    code = decision.code | (CODE_FORCED if force_training else 0)
    reasons = decision.reasons
    if dry_run:
        return TrainingResult(None, code, decision, warnings, reasons)
    if nlu_action == KEEP and core_action == KEEP and not decision.repackage and previous is not None:
        return TrainingResult(str(previous), 0, decision, warnings, reasons)
    if not project.has_domain and "core" in parts and not project.nlu.examples:
        raise UsageError("no domain and no NLU data: nothing to train", hint="pass --domain or add data/nlu.yml")
    if nlu_action != KEEP:
        ensure_trainable(project)
    plan = BuildPlan(
        nlu=nlu_action,
        core=core_action,
        output_dir=output_dir,
        name=fixed_model_name,
        epoch_fraction=finetuning_epoch_fraction,
        previous_archive=previous if KEEP in (nlu_action, core_action) or finetune_from else None,
        persist_nlu_data=persist_nlu_training_data,
        nlu_epochs=(nlu_additional_arguments or {}).get("epochs"),
        core_epochs=(core_additional_arguments or {}).get("epochs"),
        num_threads=num_threads,
        finetunes_in_a_row=int(previous_meta.get("finetunes_in_a_row", 0)) + 1 if finetune_from else 0,
        extra_metadata={"reasons": list(reasons)},
    )
    result = build_model(project, fingerprint, plan, progress=progress)
    return TrainingResult(str(result.archive), code, decision, warnings, reasons)


def _decision_acted_on(decision: Decision, *, nlu_trained: bool, finetune: bool) -> Decision:
    """The decision as ``train`` carries it out: like ``rasa train``, a part is finetuned only when a model
    to finetune is given (else it is trained in full), and the NLU model only when it is asked for."""
    if not nlu_trained and decision.nlu != KEEP:
        decision = replace(decision, kind=kind_of(KEEP, decision.core), nlu=KEEP,
                           reasons=(*decision.reasons, "NLU model not trained: only the dialogue model was asked for"))
    if not finetune:
        decision = without_finetune(decision, "no model to finetune given (--finetune): changed parts are trained in full")
    return decision


def _skipped_warning(exc: ArchiveError) -> Problem:
    """A warning for an unreadable archive passed over while looking for the latest model."""
    return Problem("warning", f"skipped an unreadable model archive: {exc.message}",
                   Location(str(exc.location)) if exc.location else None,
                   "delete or replace the file; it is not used as the previous model", code="model")


def _check_compatible(previous: Path, project: Project, nlu_action: PartAction, core_action: PartAction) -> None:
    """Ask the trainers whether the saved models accept the new data (reads saved JSON only)."""
    with tempfile.TemporaryDirectory(prefix="deltatrain-check-") as tmp:
        extracted = extract_archive(previous, Path(tmp))
        if nlu_action == FINETUNE:
            from pipeline.training import nlu

            nlu.check_finetune_compatible(extracted / NLU_DIR, project.nlu, project.config)
        if core_action == FINETUNE:
            from pipeline.training import core

            core.check_finetune_compatible(extracted / CORE_DIR, project.domain, project.config)


def train_nlu(
    config: str | Path,
    nlu_data: str | Path | Sequence[str | Path],
    output: str | Path = "models",
    fixed_model_name: str | None = None,
    persist_nlu_training_data: bool = False,
    additional_arguments: Mapping[str, Any] | None = None,
    domain: str | Path | None = None,
    model_to_finetune: str | Path | None = None,
    finetuning_epoch_fraction: float = 1.0,
    *,
    dry_run: bool = False,
    force_training: bool = False,
    progress: Progress | None = None,
    num_threads: int | None = None,
) -> TrainingResult:
    """Train only the NLU model (``rasa train nlu``)."""
    return train(
        domain, config, nlu_data, output, dry_run, force_training, fixed_model_name, persist_nlu_training_data,
        None, additional_arguments, model_to_finetune, finetuning_epoch_fraction,
        progress=progress, num_threads=num_threads, parts=("nlu",),
    )


def train_core(
    domain: str | Path,
    config: str | Path,
    stories: str | Path | Sequence[str | Path],
    output: str | Path = "models",
    fixed_model_name: str | None = None,
    additional_arguments: Mapping[str, Any] | None = None,
    model_to_finetune: str | Path | None = None,
    finetuning_epoch_fraction: float = 1.0,
    *,
    dry_run: bool = False,
    force_training: bool = False,
    progress: Progress | None = None,
    num_threads: int | None = None,
) -> TrainingResult:
    """Train only the dialogue model (``rasa train core``)."""
    return train(
        domain, config, stories, output, dry_run, force_training, fixed_model_name, False,
        additional_arguments, None, model_to_finetune, finetuning_epoch_fraction,
        progress=progress, num_threads=num_threads, parts=("core",),
    )
