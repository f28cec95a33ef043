"""The CI step, the one orchestrator: load → diff → decide → train → test → gate → upload.

It sequences the pure core (fingerprint, decision, metrics) and the I/O leaves
(git, store, trainers, report files). It never prints and never exits: it
reports progress through a callback and returns a :class:`CiResult`; the CLI
and the Action turn that into output and an exit code.
"""

from __future__ import annotations

import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from pipeline import RESULTS_DIR
from pipeline.build import BuildPlan, BuildResult, build_model, ensure_trainable, has_dialogue
from pipeline.data.loader import DirectorySource, FileSource, ProjectPaths, load_project
from pipeline.data.model import Project
from pipeline.decision import FINETUNE, FULL, KEEP, SKIP, Decision, DecisionOptions, decide
from pipeline.errors import ArchiveError, BrokenModelError, FinetuneRefused, Problem
from pipeline.fingerprint import compute_fingerprint, summarize_changes
from pipeline.metrics import (
    GATED_METRICS,
    INTENT_DROP_CHECK,
    MIN_INTENT_SUPPORT,
    GateCheck,
    GateResult,
    check_intent_drops,
    compare_metrics,
)
from pipeline.predictions import (
    PREDICTIONS_KEY,
    PredictionDiff,
    PredictionRow,
    build_prediction_rows,
    compute_prediction_diff,
    parse_predictions,
    render_predictions,
)
from pipeline.train import check_project

Log = Callable[[str], None]
Progress = Callable[[Mapping[str, Any]], None]

EXIT_OK, EXIT_DATA, EXIT_USAGE, EXIT_GATE, EXIT_STORE = 0, 1, 2, 3, 4
METRIC_KEYS = ("intent_f1", "intent_accuracy", "entity_f1", "story_accuracy")
#: Metrics reported only when measured (models with a ResponseSelector).
OPTIONAL_METRIC_KEYS = ("response_selection_f1",)


@contextmanager
def _section(progress: Progress | None, title: str) -> Iterator[None]:
    """Tell the adapter a long section starts and ends (a collapsible ``::group::`` in Actions)."""
    if progress is not None:
        progress({"section": title})
    try:
        yield
    finally:
        if progress is not None:
            progress({"section": None})


def _pick_metrics(metrics: Mapping[str, Any]) -> dict[str, float | None]:
    """The metrics a CI result carries: METRIC_KEYS, and the optional ones when measured."""
    picked = {k: metrics.get(k) for k in METRIC_KEYS}
    picked.update({k: metrics[k] for k in OPTIONAL_METRIC_KEYS if metrics.get(k) is not None})
    return picked


@dataclass(frozen=True)
class CiOptions:
    """Everything the CI step needs to know, from flags, action inputs or environment."""

    project_dir: Path
    store_url: str | None = None
    store_token: str | None = None
    s3_endpoint_url: str | None = None
    mode: str = "auto"
    scheduled: bool = False
    epoch_fraction: float = 0.2
    max_finetunes: int = 5
    min_intent_f1: float | None = None
    min_entity_f1: float | None = None
    min_story_accuracy: float | None = None
    max_drop: float = 0.02
    max_intent_drop: float | None = None  # per-intent gate (None: off)
    min_intent_support: int = MIN_INTENT_SUPPORT
    fallback_full: bool = True
    keep: int = 10
    upload: bool = True
    paths: ProjectPaths = ProjectPaths()
    out_dir: Path | None = None  # default: project_dir/models
    results_dir: Path | None = None  # default: project_dir/.deltatrain/results (RESULTS_DIR)
    decide_only: bool = False  # stop before training (the Action's decide phase, without TensorFlow)
    num_threads: int | None = None
    use_git: bool = True
    nlu_epochs: int | None = None  # override (tests, quick runs)
    core_epochs: int | None = None
    #: ``default``: also train deltatrain's default NLU pipeline and report its scores (pipeline.compare)
    compare_config: str | None = None


@dataclass(frozen=True)
class CiResult:
    """What the step did, for reports and outputs."""

    decision: Decision
    model_name: str | None = None
    model_path: str | None = None
    model_url: str | None = None
    previous_model: str | None = None
    metrics: Mapping[str, float | None] = field(default_factory=dict)
    previous_metrics: Mapping[str, Any] = field(default_factory=dict)
    gate: GateResult | None = None
    fell_back_to_full: bool = False
    uploaded: bool = False
    exit_code: int = EXIT_OK
    warnings: tuple[Problem, ...] = ()
    notes: tuple[str, ...] = ()
    git: Mapping[str, Any] = field(default_factory=dict)
    change_report: Mapping[str, Any] | None = None
    timings: Mapping[str, float] = field(default_factory=dict)
    report_files: tuple[str, ...] = ()
    counts: Mapping[str, Any] = field(default_factory=dict)
    broken_model: Mapping[str, str] | None = None  # {name, problem} of an unusable stored model
    orphans_removed: tuple[str, ...] = ()
    stopped_before_training: bool = False  # --decide-only and the decision trains
    #: what the new model predicts differently from the previous one (see pipeline.predictions)
    prediction_diff: PredictionDiff | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON report (``--report-json``)."""
        return {
            **self.decision.to_dict(),
            "model_name": self.model_name,
            "model_path": self.model_path,
            "model_url": self.model_url,
            "previous_model": self.previous_model,
            "metrics": dict(self.metrics),
            "previous_metrics": dict(self.previous_metrics),
            "gate": None if self.gate is None else {
                "passed": self.gate.passed,
                "checks": [c.__dict__ for c in self.gate.checks],
            },
            "fell_back_to_full": self.fell_back_to_full,
            "uploaded": self.uploaded,
            "exit_code": self.exit_code,
            "warnings": [p.render() for p in self.warnings],
            "notes": list(self.notes),
            "git": dict(self.git),
            "change_report": self.change_report,
            "timings": dict(self.timings),
            "report_files": list(self.report_files),
            "counts": dict(self.counts),
            "broken_model": dict(self.broken_model) if self.broken_model else None,
            "orphans_removed": list(self.orphans_removed),
            "stopped_before_training": self.stopped_before_training,
            "prediction_diff": None if self.prediction_diff is None else self.prediction_diff.to_dict(),
        }


def run_ci(options: CiOptions, *, log: Log = lambda _: None, progress: Progress | None = None) -> CiResult:
    """Run the whole CI step; raises DataError / StoreError / UsageError for the adapters."""
    started = time.perf_counter()
    timings: dict[str, float] = {}
    notes: list[str] = []

    # 1. load the committed data
    source, git_info, repo, state = _open_source(options, notes)
    project, warnings = _load(source, options.paths)
    fingerprint = compute_fingerprint(project)
    timings["load_seconds"] = round(time.perf_counter() - started, 3)
    log(f"loaded {fingerprint['counts']['examples']} NLU examples, {fingerprint['counts']['stories']} stories, "
        f"{fingerprint['counts']['rules']} rules" + (f" from commit {git_info['commit'][:10]}" if git_info else ""))

    # 2. previous model: fingerprint and metadata only, no download
    from pipeline.stores import open_store

    store = open_store(options.store_url, base_dir=options.project_dir, token=options.store_token,
                       s3_endpoint_url=options.s3_endpoint_url)
    # A store that cannot be read (network, auth, corrupt manifest) fails here, before
    # anything trains; a listed model that cannot be used only means a full retrain.
    previous = None
    previous_problem = None
    broken: dict[str, str] | None = None
    try:
        previous = store.read_latest()
    except BrokenModelError as exc:
        broken = _broken_entry(exc)
        previous_problem = _unusable_reason(exc)
    if previous is None and previous_problem is None:
        previous_problem = f"no previous model in the store {store.url}"
    if previous is not None and previous.newer:
        notes.append(f"the store's latest was rolled back to {previous.name} (newer models: "
                     f"{', '.join(previous.newer)}); comparing against {previous.name}")
        log(notes[-1])
    timings["store_read_seconds"] = round(time.perf_counter() - started - timings["load_seconds"], 3)

    # 3. decide
    changes = summarize_changes(previous.fingerprint, fingerprint, project) if previous else None
    dialogue = has_dialogue(project)
    decision = decide(
        previous.fingerprint if previous else None,
        previous.metadata if previous else None,
        changes,
        DecisionOptions(mode=options.mode, scheduled=options.scheduled, max_finetunes=options.max_finetunes),
        has_core=dialogue,
        previous_problem=previous_problem,
    )
    if decision.kind == SKIP and previous is not None and not decision.check_only:
        try:
            store.check_archive(previous)  # one HEAD: the model we would keep must be there
        except BrokenModelError as exc:
            broken, previous = _broken_entry(exc), None
            decision = _without_previous(_unusable_reason(exc), options, dialogue)
    log(f"decision: {decision.kind} — {decision.reason}")
    if broken is not None:
        notes.append(_broken_note(broken))
    change_report = None
    if repo is not None and state is not None:
        from pipeline.gitrepo import compute_change_report

        base = (previous.metadata.get("git") or {}).get("commit") if previous else None
        change_report = compute_change_report(repo, base, state.commit, state.prefix, project.files).to_dict()

    base_result = CiResult(
        decision=decision,
        broken_model=broken,
        previous_model=previous.name if previous else None,
        previous_metrics={k: v for k, v in previous.metrics.items() if k != PREDICTIONS_KEY} if previous else {},
        warnings=warnings,
        git=git_info or {},
        change_report=change_report,
        counts=fingerprint["counts"],
    )
    if decision.check_only:
        return replace(base_result, notes=(*notes, "check only (--mode skip-check): nothing trained"),
                       timings={**timings, "total_seconds": round(time.perf_counter() - started, 3)})
    if options.decide_only and decision.trains:
        return replace(base_result, stopped_before_training=True, notes=(*notes, "decide only: training needed"),
                       timings={**timings, "total_seconds": round(time.perf_counter() - started, 3)})
    if decision.kind == SKIP:
        return replace(
            base_result,
            model_name=previous.name if previous else None,
            model_url=previous.url if previous else None,
            metrics=_pick_metrics(previous.metrics) if previous else {},
            notes=tuple(notes),
            timings={**timings, "total_seconds": round(time.perf_counter() - started, 3)},
        )

    # 4.-5. train and test (TensorFlow is imported from here on)
    out_dir = options.out_dir or options.project_dir / "models"
    results_dir = options.results_dir or options.project_dir / RESULTS_DIR
    with tempfile.TemporaryDirectory(prefix="deltatrain-ci-") as tmp:
        previous_archive = None
        reuses = decision.nlu in (KEEP, FINETUNE) or (dialogue and decision.core in (KEEP, FINETUNE))
        if previous is not None and reuses:
            log(f"downloading previous model {previous.name}")
            try:
                previous_archive = _fetch_previous(store, previous.name, Path(tmp))
            except (BrokenModelError, ArchiveError) as exc:
                broken = _broken_entry(exc, previous.name, previous.url)
                reason = _unusable_reason(exc, previous.name)
                log(f"{reason}: training in full")
                notes.append(_broken_note(broken))
                previous = None
                decision = _without_previous(reason, options, dialogue)
                base_result = replace(base_result, decision=decision, previous_metrics={})
        if decision.nlu != KEEP:
            ensure_trainable(project)
        plan = BuildPlan(
            nlu=decision.nlu,
            core=decision.core,
            output_dir=out_dir,
            epoch_fraction=options.epoch_fraction,
            previous_archive=previous_archive,
            nlu_epochs=options.nlu_epochs,
            core_epochs=options.core_epochs,
            num_threads=options.num_threads,
            finetunes_in_a_row=decision.finetunes_in_a_row,
            extra_metadata={
                "git": git_info or {},
                "reasons": list(decision.reasons),
                "decision": decision.kind,
            },
        )
        tick = time.perf_counter()
        with _section(progress, f"deltatrain: training (NLU {plan.nlu}, dialogue {plan.core})"):
            built, fell_back, decision = _build(project, fingerprint, plan, decision, log, progress)
        timings["train_seconds"] = round(time.perf_counter() - tick, 3)
        tick = time.perf_counter()
        with _section(progress, "deltatrain: testing"):
            metrics, files, rows = _test(built, project, previous, results_dir, log)
        timings["test_seconds"] = round(time.perf_counter() - tick, 3)
        previous_rows = _previous_predictions(previous, previous_archive, project, decision, rows, log)
        diff = _prediction_diff(previous_rows, rows, project)
        gate = _gate(metrics, previous, options, diff)
        if not gate.passed and FINETUNE in (decision.nlu, decision.core) and options.fallback_full:
            log("finetuned model failed the gate: retraining in full")
            built.archive.unlink(missing_ok=True)
            decision = _as_full(decision, "finetuned model failed the quality gate: " + "; ".join(c.reason for c in gate.failures))
            plan = replace(plan, nlu=decision.nlu, core=decision.core, finetunes_in_a_row=0,
                           extra_metadata={**plan.extra_metadata, "reasons": list(decision.reasons), "decision": FULL})
            tick = time.perf_counter()
            with _section(progress, "deltatrain: training in full (fallback)"):
                built = build_model(project, fingerprint, plan, progress=progress)
            timings["train_seconds"] += round(time.perf_counter() - tick, 3)
            with _section(progress, "deltatrain: testing"):
                metrics, files, rows = _test(built, project, previous, results_dir, log)
            diff = _prediction_diff(previous_rows, rows, project)
            gate = _gate(metrics, previous, options, diff)
            fell_back = True
        if options.compare_config and decision.nlu in (FULL, FINETUNE):
            tick = time.perf_counter()
            log("training deltatrain's default NLU pipeline for --compare-config default")
            notes.append(_compare(project, metrics, options))
            timings["compare_seconds"] = round(time.perf_counter() - tick, 3)
        result = replace(
            base_result,
            decision=decision,
            model_name=built.name,
            model_path=str(built.archive),
            metrics=metrics,
            gate=gate,
            fell_back_to_full=fell_back,
            prediction_diff=diff,
            notes=tuple(notes),
            report_files=tuple(str(f) for f in files),
            broken_model=broken,
        )
        if not gate.passed:
            log("quality gate failed: the model is not uploaded")
            return replace(result, exit_code=EXIT_GATE,
                           timings={**timings, "total_seconds": round(time.perf_counter() - started, 3)})

        # 6. upload: archive, side files, manifest last
        if options.upload:
            tick = time.perf_counter()
            log(f"uploading {built.name} to {store.url}")
            from pipeline.stores.forge import ReadOnlyTokenError

            try:
                stored = store.publish(
                    built.archive,
                    name=built.name,
                    fingerprint=dict(fingerprint),
                    metadata=dict(built.metadata),
                    metrics={**metrics,
                             **({PREDICTIONS_KEY: render_predictions(rows)} if rows is not None else {})},
                    keep=options.keep,
                    committed_at=(git_info or {}).get("committed_at"),
                )
            except ReadOnlyTokenError as exc:  # a fork's pull request: report, do not fail
                log(f"not uploaded: {exc.message}")
                return replace(result, notes=(*result.notes, f"not uploaded: {exc.message}"),
                               timings={**timings,
                                        "total_seconds": round(time.perf_counter() - started, 3)})
            timings["upload_seconds"] = round(time.perf_counter() - tick, 3)
            cleanup = [f"removed orphaned files of {name} (a run that never finished publishing)"
                       for name in stored.orphans_removed]
            result = replace(result, model_url=stored.url, uploaded=True,
                             orphans_removed=stored.orphans_removed, notes=(*result.notes, *cleanup))
        else:
            result = replace(result, notes=(*result.notes, "upload disabled (--no-upload)"))
    return replace(result, timings={**timings, "total_seconds": round(time.perf_counter() - started, 3)})


def _committed_at(repo: Any, commit: str) -> str | None:
    """The commit's committer time in ISO 8601 UTC (orders models built by racing pipelines)."""
    from datetime import UTC, datetime

    try:
        seconds = repo.commit(commit).committed_date
    except Exception:  # a shallow or odd repository: the order falls back to publish order
        return None
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _open_source(options: CiOptions, notes: list[str]) -> tuple[FileSource, dict[str, Any] | None, Any, Any]:
    if options.use_git:
        from pipeline.gitrepo import GitCommitSource, open_repository, read_git_state

        repo = open_repository(options.project_dir)
        if repo is not None:
            state = read_git_state(repo, options.project_dir)
            if state.dirty_files:
                shown = ", ".join(state.dirty_files[:5]) + (" …" if len(state.dirty_files) > 5 else "")
                notes.append(
                    f"the work tree differs from commit {state.commit[:10]} ({shown}); training on the committed files"
                )
            info = {"commit": state.commit, "branch": state.branch, "prefix": state.prefix,
                    "committed_at": _committed_at(repo, state.commit)}
            return GitCommitSource(repo, state.commit, state.prefix), info, repo, state
        notes.append("not a git repository: reading the files on disk")
    return DirectorySource(options.project_dir), None, None, None


def _load(source: FileSource, paths: ProjectPaths) -> tuple[Project, tuple[Problem, ...]]:
    return check_project(*load_project(source, paths))


def _fetch_previous(store: Any, name: str, directory: Path) -> Path:
    """Download the previous model and check it reads as an archive (limits, side files)."""
    from pipeline.archive import read_archive_json

    archive: Path = store.download(name, directory)
    read_archive_json(archive)
    return archive


def _broken_entry(
    exc: BrokenModelError | ArchiveError, name: str | None = None, url: str | None = None
) -> dict[str, str]:
    """The report's description of an unusable stored model: name, and where plus what."""
    if isinstance(exc, BrokenModelError):
        where = exc.location
    else:  # an ArchiveError names the downloaded temp copy; the store URL is what one can act on
        where = url
    return {"name": exc.model_name if isinstance(exc, BrokenModelError) else name or "?",
            "problem": f"{exc.message} ({where})" if where else exc.message}


def _broken_note(broken: Mapping[str, str]) -> str:
    return f"broken model in the store: {broken['name']} ({broken['problem']})"


def _unusable_reason(exc: BrokenModelError | ArchiveError, name: str | None = None) -> str:
    model = exc.model_name if isinstance(exc, BrokenModelError) else name
    return f"previous model {model} cannot be used ({exc.message})"


def _without_previous(reason: str, options: CiOptions, dialogue: bool) -> Decision:
    """The decision when the previous model turned out unusable: full, with ``reason``."""
    return decide(
        None, None, None,
        DecisionOptions(mode=options.mode, scheduled=options.scheduled, max_finetunes=options.max_finetunes),
        has_core=dialogue,
        previous_problem=reason,
    )


def _as_full(decision: Decision, reason: str) -> Decision:
    return replace(
        decision,
        kind=FULL,
        nlu=FULL if decision.nlu == FINETUNE else decision.nlu,
        core=FULL if decision.core == FINETUNE else decision.core,
        reasons=(*decision.reasons, reason),
        finetunes_in_a_row=0,
    )


def _build(
    project: Project, fingerprint: Mapping[str, Any], plan: BuildPlan, decision: Decision, log: Log,
    progress: Progress | None,
) -> tuple[BuildResult, bool, Decision]:
    log(f"training: NLU {plan.nlu}, dialogue {plan.core}")
    try:
        return build_model(project, fingerprint, plan, progress=progress), False, decision
    except FinetuneRefused as exc:
        log(f"finetune refused ({'; '.join(exc.reasons)}): training in full")
        decision = _as_full(decision, "finetune refused: " + "; ".join(exc.reasons))
        plan = replace(plan, nlu=decision.nlu, core=decision.core, finetunes_in_a_row=0)
        return build_model(project, fingerprint, plan, progress=progress), True, decision


def _test(
    built: BuildResult, project: Project, previous: Any, results_dir: Path, log: Log
) -> tuple[dict[str, float | None], tuple[Path, ...], list[PredictionRow] | None]:
    """Metrics, report files and per-utterance predictions (``None``: no NLU test) of the built model."""
    parts = built.metadata.get("parts", {})
    trained = any(p.get("action") in (FULL, FINETUNE) for p in parts.values())
    if not trained and previous is not None:
        log("weights unchanged (repackage): metrics carried over from the previous model")
        return _pick_metrics(previous.metrics), (), parse_predictions(previous.metrics.get(PREDICTIONS_KEY))
    if not project.test_nlu.examples and not project.test_stories:
        log("no test data in tests/: the model is not tested")
        return {k: None for k in METRIC_KEYS}, (), None
    from pipeline.testing import remove_report_files, test_model

    remove_report_files(results_dir)  # only deltatrain's own files: a stale plot must not outlive its run
    tested = test_model(built.archive, project.test_nlu, project.test_stories, results_dir)
    log("tested: " + ", ".join(f"{k} {v:.3f}" for k, v in tested.metrics.items() if v is not None))
    rows = build_prediction_rows(tested.nlu.predictions) if tested.nlu is not None else None
    return _pick_metrics(tested.metrics), tested.files, rows


def _compare(project: Project, metrics: Mapping[str, float | None], options: CiOptions) -> str:
    from pipeline.compare import compare_with_default
    from pipeline.evaluation import evaluate_nlu
    from pipeline.training.nlu import train_nlu

    return compare_with_default(
        project.config,
        project.nlu,
        project.test_nlu,
        metrics,
        lambda data, config: train_nlu(data, config),
        lambda model, test: evaluate_nlu(model.parse_batch, test).headline,
        epochs=options.nlu_epochs,
    )


def _previous_predictions(
    previous: Any, archive: Path | None, project: Project, decision: Decision, rows: list[PredictionRow] | None, log: Log
) -> list[PredictionRow] | None:
    """The previous model's predictions on the tests: stored with it, or, when its archive is already
    here and the stored ones cannot cover the tests (test data changed, none stored), measured now."""
    if previous is None or rows is None:
        return None
    stored = parse_predictions(previous.metrics.get(PREDICTIONS_KEY))
    tests_changed = decision.changes is not None and decision.changes.changed("test_data")
    if archive is None or (stored is not None and not tests_changed):
        return stored
    from pipeline.testing import test_model

    log("testing the previous model on the current tests (for the prediction diff)")
    tested = test_model(archive, project.test_nlu, ())
    return build_prediction_rows(tested.nlu.predictions) if tested.nlu is not None else stored


def _prediction_diff(
    old: list[PredictionRow] | None, rows: list[PredictionRow] | None, project: Project
) -> PredictionDiff | None:
    """The new model's predictions against the previous model's (``None``: nothing to compare)."""
    if old is None or rows is None:
        return None
    return compute_prediction_diff(old, rows, (e.text for e in project.test_nlu.examples))


def _gate(
    metrics: Mapping[str, float | None], previous: Any, options: CiOptions, diff: PredictionDiff | None = None
) -> GateResult:
    # response selection is gated (drop vs the previous model) only for models with a ResponseSelector
    gated = [k for k in GATED_METRICS if k != "response_selection_f1" or metrics.get(k) is not None]
    result = compare_metrics(
        {k: metrics.get(k) for k in gated},
        {k: previous.metrics.get(k) for k in gated} if previous else None,
        max_drop=options.max_drop,
        floors={
            "intent_f1": options.min_intent_f1,
            "entity_f1": options.min_entity_f1,
            "story_accuracy": options.min_story_accuracy,
        },
    )
    if options.max_intent_drop is None:
        return result
    if diff is None:
        why = "no previous model" if previous is None else "the previous model has no stored predictions on these tests"
        check = GateCheck(INTENT_DROP_CHECK, None, None, None, options.max_intent_drop, True,
                          f"per-intent F1 not compared: {why}")
    else:
        check = check_intent_drops(
            ((i.intent, i.support, i.f1_before, i.f1_after) for i in diff.intents),
            options.max_intent_drop,
            min_support=options.min_intent_support,
        )
    checks = (*result.checks, check)
    return GateResult(all(c.passed for c in checks), checks)
