"""The CI step, the one orchestrator, in named phases::

    load → read previous → decide → train, test and gate (one fallback to full) → publish → report

It sequences the pure core (fingerprint, decision, metrics) and the I/O leaves
(git, store, trainer, tester, report files). It never prints and never exits: it
reports progress through a callback and returns a :class:`CiResult`; the CLI
and the Action turn that into output and an exit code. The trainer and the
tester are passed in (:class:`Trainer`, :class:`Tester`; by default the real
:func:`~pipeline.build.build_model` and :func:`~pipeline.testing.test_model`), so
every branch is tested in milliseconds with fakes (tests/test_orchestrator.py).
"""

from __future__ import annotations

import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Protocol, Sequence

from pipeline import RESULTS_DIR
from pipeline.build import BuildPlan, BuildResult, build_model, ensure_trainable, has_dialogue
from pipeline.data.loader import DirectorySource, FileSource, ProjectPaths, load_project
from pipeline.data.model import NluData, Project, Story
from pipeline.decision import FINETUNE, FULL, KEEP, SKIP, Decision, DecisionOptions, decide, without_finetune
from pipeline.errors import ArchiveError, BrokenModelError, ExitCode, FinetuneRefused, Problem
from pipeline.fingerprint import Section, compute_fingerprint, summarize_changes
from pipeline.metrics import (
    CI_METRICS,
    FLOOR_METRICS,
    GATED_METRICS,
    INTENT_DROP_CHECK,
    MIN_INTENT_SUPPORT,
    GateCheck,
    GateResult,
    check_intent_drops,
    compare_metrics,
    pick_ci_metrics,
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

if TYPE_CHECKING:  # the store and the tester are imported where used: a decision needs neither requests nor NumPy
    from pipeline.gitrepo import GitState
    from pipeline.stores.model_store import ModelStore, StoredModel
    from pipeline.testing import ModelTestResult

Log = Callable[[str], None]
Progress = Callable[[Mapping[str, Any]], None]


class Trainer(Protocol):
    """Builds one model archive from a plan (the real one: :func:`pipeline.build.build_model`)."""

    def __call__(
        self, project: Project, fingerprint: Mapping[str, Any], plan: BuildPlan, *, progress: Progress | None = None
    ) -> BuildResult: ...


class Tester(Protocol):
    """Tests an archive on held-out data (the real one: :func:`pipeline.testing.test_model`)."""

    def __call__(
        self, archive: Path, test_nlu: NluData, test_stories: Sequence[Story], out_dir: Path | None = None
    ) -> ModelTestResult: ...


def run_model_tests(
    archive: Path, test_nlu: NluData, test_stories: Sequence[Story], out_dir: Path | None = None
) -> ModelTestResult:
    """The real tester, :func:`pipeline.testing.test_model`, imported on first use (NumPy, TensorFlow)."""
    from pipeline.testing import test_model

    return test_model(archive, test_nlu, test_stories, out_dir)


class Stopwatch:
    """The timings of one run: each phase a lap (laps of one name add up), plus the total."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self._started = clock()
        self._laps: dict[str, float] = {}

    @contextmanager
    def lap(self, name: str) -> Iterator[None]:
        """Time the block as ``<name>_seconds``."""
        tick = self._clock()
        try:
            yield
        finally:
            self._laps[name] = self._laps.get(name, 0.0) + self._clock() - tick

    def timings(self) -> dict[str, float]:
        """Seconds per lap, in the order first started, and ``total_seconds``, rounded to ms."""
        laps = {f"{name}_seconds": round(seconds, 3) for name, seconds in self._laps.items()}
        return {**laps, "total_seconds": round(self._clock() - self._started, 3)}


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
    #: the gate's floors by metric key (``{"intent_f1": 0.8}``); see ``FLOOR_METRICS``
    floors: Mapping[str, float | None] = field(default_factory=dict)
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
    exit_code: int = ExitCode.OK
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
    #: Rasa 3.6 defaults that deltatrain changes for options the NLU config leaves unset (issue 18)
    rasa_defaults_differing: tuple[str, ...] = ()

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
            "exit_code": int(self.exit_code),
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
            "rasa_defaults_differing": list(self.rasa_defaults_differing),
        }


@dataclass(frozen=True)
class Loaded:
    """The committed data and where it came from."""

    project: Project
    fingerprint: Mapping[str, Any]
    warnings: tuple[Problem, ...]
    git_info: Mapping[str, Any] | None = None
    repo: Any = None  # a git.Repo (gitpython is imported only when the project is in one)
    state: GitState | None = None


@dataclass(frozen=True)
class Previous:
    """The store's latest model as far as the decision can use it: the model, or why there is none."""

    model: StoredModel | None
    problem: str | None = None  # why there is no usable previous model (a reason for a full retrain)
    broken: Mapping[str, str] | None = None  # {name, problem} of an unusable stored model

    def without_model(self, exc: BrokenModelError | ArchiveError) -> Previous:
        """The same store after the model turned out unusable: no model, and the reason why."""
        name = self.model.name if self.model is not None else None
        url = self.model.url if self.model is not None else None
        return Previous(None, _unusable_reason(exc, name), _broken_entry(exc, name, url))


@dataclass(frozen=True)
class Tested:
    """A built model, tested and gated."""

    built: BuildResult
    decision: Decision  # the decision the model was built by (full after a fallback)
    metrics: dict[str, float | None]
    files: tuple[Path, ...]
    diff: PredictionDiff | None
    gate: GateResult
    rows: list[PredictionRow] | None
    fell_back: bool = False


@dataclass
class _Run:
    """What every phase of one run shares."""

    options: CiOptions
    log: Log
    progress: Progress | None
    trainer: Trainer
    tester: Tester
    clock: Stopwatch
    notes: list[str]


def run_ci(
    options: CiOptions,
    *,
    log: Log = lambda _: None,
    progress: Progress | None = None,
    trainer: Trainer = build_model,
    tester: Tester = run_model_tests,
    store: ModelStore | None = None,
) -> CiResult:
    """Run the whole CI step; raises DataError / StoreError / UsageError for the adapters.

    ``store`` defaults to the one ``options.store_url`` names.
    """
    run = _Run(options, log, progress, trainer, tester, Stopwatch(), [])
    with run.clock.lap("load"):
        loaded = _load(run)
    with run.clock.lap("store_read"):
        # A store that cannot be read (network, auth, corrupt manifest) fails here, before
        # anything trains; a listed model that cannot be used only means a full retrain.
        store = store if store is not None else _open_store(options)
        previous = _read_previous(run, store)
    previous, decision = _decide(run, loaded, previous, store)
    result = _base_result(run, loaded, previous, decision)
    if decision.check_only:
        return _finish(run, result, "check only (--mode skip-check): nothing trained")
    if options.decide_only and decision.trains:
        return _finish(run, replace(result, stopped_before_training=True), "decide only: training needed")
    if decision.kind == SKIP:
        kept = previous.model
        return _finish(run, replace(
            result,
            model_name=kept.name if kept else None,
            model_url=kept.url if kept else None,
            metrics=pick_ci_metrics(kept.metrics) if kept else {},
        ))
    with tempfile.TemporaryDirectory(prefix="deltatrain-ci-") as tmp:
        previous, decision, previous_archive = _fetch_previous_archive(run, store, previous, decision, loaded, Path(tmp))
        if previous.model is None and result.previous_metrics:
            result = replace(result, previous_metrics={})
        tested = _train_test_gate(run, loaded, previous, decision, previous_archive)
        if options.compare_config and tested.decision.nlu in (FULL, FINETUNE):
            with run.clock.lap("compare"):
                log("training deltatrain's default NLU pipeline for --compare-config default")
                run.notes.append(_compare(loaded.project, tested.metrics, options))
        result = replace(
            result,
            decision=tested.decision,
            model_name=tested.built.name,
            model_path=str(tested.built.archive),
            metrics=tested.metrics,
            gate=tested.gate,
            fell_back_to_full=tested.fell_back,
            prediction_diff=tested.diff,
            report_files=tuple(str(f) for f in tested.files),
            broken_model=previous.broken,
            rasa_defaults_differing=rasa_defaults_differing(tested.built.metadata),
        )
        if not tested.gate.passed:
            log("quality gate failed: the model is not uploaded")
            return _finish(run, replace(result, exit_code=ExitCode.GATE))
        result = _publish(run, store, loaded, tested, result)
    return _finish(run, result)


def rasa_defaults_differing(metadata: Mapping[str, Any]) -> tuple[str, ...]:
    """The lines of the NLU training summary naming Rasa defaults deltatrain changed (empty when the
    NLU model was not trained in this run or the config is deltatrain's own)."""
    nlu = (metadata.get("parts") or {}).get("nlu") or {}
    if nlu.get("action") not in (FULL, FINETUNE):
        return ()
    lines = (nlu.get("summary") or {}).get("rasa_defaults_differing") or ()
    return tuple(str(line) for line in lines)


# ------------------------------------------------------------------ phases


def _finish(run: _Run, result: CiResult, *notes: str) -> CiResult:
    """The result with the run's notes and timings (the report phase's input)."""
    return replace(result, notes=(*run.notes, *notes), timings=run.clock.timings())


def _load(run: _Run) -> Loaded:
    """Phase 1: the committed data (or the files on disk), checked, and its fingerprint."""
    source, git_info, repo, state = _open_source(run.options, run.notes)
    project, warnings = check_project(*load_project(source, run.options.paths))
    fingerprint = compute_fingerprint(project)
    counts = fingerprint["counts"]
    run.log(f"loaded {counts['examples']} NLU examples, {counts['stories']} stories, {counts['rules']} rules"
            + (f" from commit {git_info['commit'][:10]}" if git_info else ""))
    return Loaded(project, fingerprint, warnings, git_info, repo, state)


def _open_store(options: CiOptions) -> ModelStore:
    from pipeline.stores import open_store

    return open_store(options.store_url, base_dir=options.project_dir, token=options.store_token,
                      s3_endpoint_url=options.s3_endpoint_url)


def _read_previous(run: _Run, store: ModelStore) -> Previous:
    """Phase 2: the previous model's fingerprint and metadata, no download."""
    try:
        model = store.read_latest()
    except BrokenModelError as exc:
        return Previous(None, _unusable_reason(exc), _broken_entry(exc))
    if model is None:
        return Previous(None, f"no previous model in the store {store.url}")
    if model.newer:
        run.notes.append(f"the store's latest was rolled back to {model.name} (newer models: "
                         f"{', '.join(model.newer)}); comparing against {model.name}")
        run.log(run.notes[-1])
    return Previous(model)


def _decide(run: _Run, loaded: Loaded, previous: Previous, store: ModelStore) -> tuple[Previous, Decision]:
    """Phase 3: what to train and why; a skip checks that the model it keeps is still there."""
    model, options = previous.model, run.options
    try:  # reads the previous fingerprint's per-item digests only for a section that changed
        changes = summarize_changes(model.fingerprint, loaded.fingerprint, loaded.project) if model else None
    except BrokenModelError as exc:  # its fingerprint.json is missing or damaged
        previous = previous.without_model(exc)
        decision = _without_previous(previous, run.options, loaded.project)
    else:
        decision = decide(
            model.fingerprint if model else None,
            model.metadata if model else None,
            changes,
            DecisionOptions(mode=options.mode, scheduled=options.scheduled, max_finetunes=options.max_finetunes),
            has_core=has_dialogue(loaded.project),
            previous_problem=previous.problem,
        )
        if decision.kind == SKIP and model is not None and not decision.check_only:
            try:
                store.check_archive(model)  # one HEAD: the model we would keep must be there
            except BrokenModelError as exc:
                previous = previous.without_model(exc)
                decision = _without_previous(previous, run.options, loaded.project)
    run.log(f"decision: {decision.kind} — {decision.reason}")
    if previous.broken is not None:
        run.notes.append(_broken_note(previous.broken))
    return previous, decision


def _base_result(run: _Run, loaded: Loaded, previous: Previous, decision: Decision) -> CiResult:
    """What is known before training: the decision, the previous model, the changes."""
    change_report = None
    model = previous.model
    if loaded.repo is not None and loaded.state is not None:
        from pipeline.gitrepo import compute_change_report

        base = (model.metadata.get("git") or {}).get("commit") if model else None
        change_report = compute_change_report(
            loaded.repo, base, loaded.state.commit, loaded.state.prefix, loaded.project.files
        ).to_dict()
    return CiResult(
        decision=decision,
        broken_model=previous.broken,
        previous_model=model.name if model else None,
        previous_metrics={k: v for k, v in model.metrics.items() if k != PREDICTIONS_KEY} if model else {},
        warnings=loaded.warnings,
        git=loaded.git_info or {},
        change_report=change_report,
        counts=loaded.fingerprint["counts"],
    )


def _fetch_previous_archive(
    run: _Run, store: ModelStore, previous: Previous, decision: Decision, loaded: Loaded, directory: Path
) -> tuple[Previous, Decision, Path | None]:
    """Phase 4a: download the previous model when a part is kept or finetuned; unusable means full."""
    model = previous.model
    dialogue = has_dialogue(loaded.project)
    reuses = decision.nlu in (KEEP, FINETUNE) or (dialogue and decision.core in (KEEP, FINETUNE))
    if model is None or not reuses:
        return previous, decision, None
    run.log(f"downloading previous model {model.name}")
    try:
        return previous, decision, _fetch_previous(store, model.name, directory)
    except (BrokenModelError, ArchiveError) as exc:
        previous = previous.without_model(exc)
        assert previous.broken is not None and previous.problem is not None
        run.log(f"{previous.problem}: training in full")
        run.notes.append(_broken_note(previous.broken))
        return previous, _without_previous(previous, run.options, loaded.project), None


def _train_test_gate(
    run: _Run, loaded: Loaded, previous: Previous, decision: Decision, previous_archive: Path | None
) -> Tested:
    """Phase 4b: train, test and gate; one fallback to full, for a refused finetune and a failed gate alike."""
    options, project = run.options, loaded.project
    if decision.nlu != KEEP:
        ensure_trainable(project)
    plan = BuildPlan(
        nlu=decision.nlu,
        core=decision.core,
        output_dir=options.out_dir or options.project_dir / "models",
        epoch_fraction=options.epoch_fraction,
        previous_archive=previous_archive,
        nlu_epochs=options.nlu_epochs,
        core_epochs=options.core_epochs,
        num_threads=options.num_threads,
        finetunes_in_a_row=decision.finetunes_in_a_row,
        extra_metadata={"git": dict(loaded.git_info or {}), "reasons": list(decision.reasons),
                        "decision": decision.kind},
    )
    run.log(f"training: NLU {plan.nlu}, dialogue {plan.core}")
    previous_rows: list[PredictionRow] | None = None
    with _section(run.progress, f"deltatrain: training (NLU {plan.nlu}, dialogue {plan.core})"), run.clock.lap("train"):
        try:
            built: BuildResult | None = run.trainer(project, loaded.fingerprint, plan, progress=run.progress)
        except FinetuneRefused as exc:
            built, fallback = None, "finetune refused: " + "; ".join(exc.reasons)
            run.log(f"finetune refused ({'; '.join(exc.reasons)}): training in full")
    if built is not None:
        tested = _test_and_gate(run, loaded, previous, decision, built, previous_archive, None)
        previous_rows = tested.previous_rows
        if tested.gate.passed or FINETUNE not in (decision.nlu, decision.core) or not options.fallback_full:
            return tested.done
        run.log("finetuned model failed the gate: retraining in full")
        built.archive.unlink(missing_ok=True)
        fallback = "finetuned model failed the quality gate: " + "; ".join(c.reason for c in tested.gate.failures)
    decision = _as_full(decision, fallback)
    plan = replace(plan, nlu=decision.nlu, core=decision.core, finetunes_in_a_row=0,
                   extra_metadata={**plan.extra_metadata, "reasons": list(decision.reasons), "decision": FULL})
    with _section(run.progress, "deltatrain: training in full (fallback)"), run.clock.lap("train"):
        built = run.trainer(project, loaded.fingerprint, plan, progress=run.progress)
    tested = _test_and_gate(run, loaded, previous, decision, built, previous_archive, previous_rows)
    return replace(tested.done, fell_back=True)


@dataclass(frozen=True)
class _Attempt:
    done: Tested
    previous_rows: list[PredictionRow] | None

    @property
    def gate(self) -> GateResult:
        return self.done.gate


def _test_and_gate(
    run: _Run, loaded: Loaded, previous: Previous, decision: Decision, built: BuildResult,
    previous_archive: Path | None, previous_rows: list[PredictionRow] | None,
) -> _Attempt:
    """Test one built model, compare its predictions with the previous model's, and gate it."""
    options = run.options
    with _section(run.progress, "deltatrain: testing"), run.clock.lap("test"):
        metrics, files, rows = _test(run, built, loaded.project, previous.model,
                                     options.results_dir or options.project_dir / RESULTS_DIR)
    if previous_rows is None:
        previous_rows = _previous_predictions(run, previous.model, previous_archive, loaded.project, decision, rows)
    diff = _prediction_diff(previous_rows, rows, loaded.project)
    gate = _gate(metrics, previous.model, options, diff)
    return _Attempt(Tested(built, decision, metrics, files, diff, gate, rows), previous_rows)


def _publish(run: _Run, store: ModelStore, loaded: Loaded, tested: Tested, result: CiResult) -> CiResult:
    """Phase 5: upload archive and side files, manifest last; a read-only token only skips it."""
    if not run.options.upload:
        run.notes.append("upload disabled (--no-upload)")
        return result
    from pipeline.stores.forge import ReadOnlyTokenError

    built = tested.built
    run.log(f"uploading {built.name} to {store.url}")
    try:
        with run.clock.lap("upload"):
            stored = store.publish(
                built.archive,
                name=built.name,
                fingerprint=dict(loaded.fingerprint),
                metadata=dict(built.metadata),
                metrics={**tested.metrics,
                         **({PREDICTIONS_KEY: render_predictions(tested.rows)} if tested.rows is not None else {})},
                keep=run.options.keep,
                committed_at=(loaded.git_info or {}).get("committed_at"),
            )
    except ReadOnlyTokenError as exc:  # a fork's pull request: report, do not fail
        run.log(f"not uploaded: {exc.message}")
        run.notes.append(f"not uploaded: {exc.message}")
        return result
    run.notes.extend(f"removed orphaned files of {name} (a run that never finished publishing)"
                     for name in stored.orphans_removed)
    return replace(result, model_url=stored.url, uploaded=True, orphans_removed=stored.orphans_removed)


# ------------------------------------------------------------------ helpers


def _committed_at(repo: Any, commit: str) -> str | None:
    """The commit's committer time in ISO 8601 UTC (orders models built by racing pipelines)."""
    from datetime import UTC, datetime

    try:
        seconds = repo.commit(commit).committed_date
    except Exception:  # a shallow or odd repository: the order falls back to publish order
        return None
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _open_source(
    options: CiOptions, notes: list[str]
) -> tuple[FileSource, dict[str, Any] | None, Any, GitState | None]:
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


def _fetch_previous(store: ModelStore, name: str, directory: Path) -> Path:
    """Download the previous model and check it reads as an archive (limits, side files)."""
    from pipeline.archive import read_archive_json

    archive = store.download(name, directory)
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


def _without_previous(previous: Previous, options: CiOptions, project: Project) -> Decision:
    """The decision when the previous model turned out unusable: full, with the reason why."""
    return decide(
        None, None, None,
        DecisionOptions(mode=options.mode, scheduled=options.scheduled, max_finetunes=options.max_finetunes),
        has_core=has_dialogue(project),
        previous_problem=previous.problem,
    )


def _as_full(decision: Decision, reason: str) -> Decision:
    """The decision of the fallback: every finetuned part trained in full, with ``reason`` added."""
    return without_finetune(decision, reason)


def _test(
    run: _Run, built: BuildResult, project: Project, previous: StoredModel | None, results_dir: Path
) -> tuple[dict[str, float | None], tuple[Path, ...], list[PredictionRow] | None]:
    """Metrics, report files and per-utterance predictions (``None``: no NLU test) of the built model."""
    parts = built.metadata.get("parts", {})
    trained = any(p.get("action") in (FULL, FINETUNE) for p in parts.values())
    if not trained and previous is not None:
        run.log("weights unchanged (repackage): metrics carried over from the previous model")
        return pick_ci_metrics(previous.metrics), (), parse_predictions(previous.metrics.get(PREDICTIONS_KEY))
    if not project.test_nlu.examples and not project.test_stories:
        run.log("no test data in tests/: the model is not tested")
        return pick_ci_metrics({}), (), None
    from pipeline.testing import remove_report_files

    remove_report_files(results_dir)  # only deltatrain's own files: a stale plot must not outlive its run
    tested = run.tester(built.archive, project.test_nlu, project.test_stories, results_dir)
    run.log("tested: " + ", ".join(f"{k} {v:.3f}" for k, v in tested.metrics.items() if v is not None))
    rows = build_prediction_rows(tested.nlu.predictions) if tested.nlu is not None else None
    return pick_ci_metrics(tested.metrics), tested.files, rows


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
    run: _Run, previous: StoredModel | None, archive: Path | None, project: Project, decision: Decision,
    rows: list[PredictionRow] | None,
) -> list[PredictionRow] | None:
    """The previous model's predictions on the tests: stored with it, or, when its archive is already
    here and the stored ones cannot cover the tests (test data changed, none stored), measured now."""
    if previous is None or rows is None:
        return None
    stored = parse_predictions(previous.metrics.get(PREDICTIONS_KEY))
    tests_changed = decision.changes is not None and decision.changes.changed(Section.TEST_DATA)
    if archive is None or (stored is not None and not tests_changed):
        return stored
    run.log("testing the previous model on the current tests (for the prediction diff)")
    tested = run.tester(archive, project.test_nlu, ())
    return build_prediction_rows(tested.nlu.predictions) if tested.nlu is not None else stored


def _prediction_diff(
    old: list[PredictionRow] | None, rows: list[PredictionRow] | None, project: Project
) -> PredictionDiff | None:
    """The new model's predictions against the previous model's (``None``: nothing to compare)."""
    if old is None or rows is None:
        return None
    return compute_prediction_diff(old, rows, (e.text for e in project.test_nlu.examples))


def _gate(
    metrics: Mapping[str, float | None], previous: StoredModel | None, options: CiOptions,
    diff: PredictionDiff | None = None,
) -> GateResult:
    """The quality gate over the gated metrics (an optional one only when measured) and, when on, per intent."""
    optional = {m.key for m in CI_METRICS if m.optional}
    gated = [k for k in GATED_METRICS if k not in optional or metrics.get(k) is not None]
    result = compare_metrics(
        {k: metrics.get(k) for k in gated},
        {k: previous.metrics.get(k) for k in gated} if previous else None,
        max_drop=options.max_drop,
        floors={m.key: options.floors.get(m.key) for m in FLOOR_METRICS},
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
