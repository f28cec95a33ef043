"""``deltatrain`` command line: a thin adapter over the package.

The only module (with :mod:`pipeline.action`) that reads argv and the
environment, prints, and picks exit codes. TensorFlow is never imported for
``--help``, ``data validate`` or a ``skip`` decision.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Callable, Iterable, Mapping, NoReturn, Sequence, TextIO

from pipeline import RESULTS_DIR, __version__
from pipeline.compare import CompareConfig
from pipeline.decision import Mode, check_epoch_fraction
from pipeline.errors import (
    DataError,
    DeltatrainError,
    ExitCode,
    GateError,
    Problem,
    UnexpectedError,
    UsageError,
    prefix_path,
)
from pipeline.extras import Extra, require_extra
from pipeline.metrics import FLOOR_METRICS
from pipeline.safe_output import (
    CommandName,
    escape_controls,
    find_secrets,
    find_url_secrets,
    new_stop_token,
    redact,
    render_command,
    render_json,
    render_log_text,
)

if TYPE_CHECKING:
    from _typeshed import SupportsWrite

MODEL_HELP = ("model archive, folder of archives (latest used) or model store (folder or URL as in "
              "'deltatrain ci --store'; its latest model is downloaded)")
#: Output telling the Action's decide phase whether the training phase must run.
NEEDS_TRAINING_OUTPUT = "needs-training"


# ------------------------------------------------------------------ output


class Console:
    """Where the CLI writes: human lines to stderr, results to stdout, GitHub commands in Actions.

    The one output boundary of the CLI: every line goes through
    :mod:`pipeline.safe_output`, so text from data or from a store can neither
    run as a workflow command nor show a credential.
    """

    def __init__(self, environ: Mapping[str, str], out: TextIO | None = None, err: TextIO | None = None) -> None:
        self.environ = environ
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.in_actions = environ.get("GITHUB_ACTIONS") == "true"
        self.in_ci = self.in_actions or bool(environ.get("CI"))
        self.tty = self.err.isatty() and not self.in_ci
        self.secrets: tuple[str, ...] = find_secrets(environ)
        #: The project folder seen from the repository root (``-C bot``: ``bot``), put before the
        #: paths of annotations and summaries so they attach to the files of the pull request.
        self.path_prefix = ""
        #: Whether a failure also writes the step outputs ``decision=error`` and ``reason`` (``ci``, the Action).
        self.failure_outputs = False
        #: The GitLab dotenv report the outputs also go to (``--dotenv``).
        self.dotenv: str | None = None
        #: Where the inputs are documented (the Action's ``action.yml``), linked from error annotations.
        self.docs_url: str | None = None

    def add_secret_urls(self, urls: Iterable[str | None]) -> None:
        """Also hide the credentials inside these URLs (a store URL with user:password@)."""
        found = [s for url in urls if url for s in find_url_secrets(url)]
        self.secrets = tuple(dict.fromkeys(self.secrets + tuple(found)))

    def redact(self, text: str) -> str:
        """``text`` without credentials (for files and API calls; the log gets :meth:`info`)."""
        return redact(text, self.secrets)

    def info(self, text: str) -> None:
        """A line (or lines) for the reader, on stderr."""
        self._write(self.err, text)

    def result(self, text: str) -> None:
        """The command's result on stdout (a path, JSON, the summary)."""
        self._write(self.out, text)

    def json(self, value: Any, indent: int | None = 2) -> None:
        """A JSON result on stdout, inert in a CI log and with the same meaning."""
        self.out.write(render_json(value, self.secrets, indent=indent) + "\n")
        self.out.flush()

    def untrusted_block(self, text: str) -> None:
        """A block of data-laden text on stdout; in Actions between ``::stop-commands::`` lines."""
        if not self.in_actions:
            self.result(text)
            return
        token = new_stop_token()
        self.command(render_command(CommandName.STOP_COMMANDS, token))
        try:
            self.result(text)
        finally:
            self.command(f"::{token}::")

    def progress(self, text: str, *, end: str) -> None:
        """Rewrite the live progress line of a terminal."""
        print("\r" + render_log_text(text, self.secrets), end=end, file=self.err, flush=True)

    def command(self, line: str) -> None:
        """A workflow command deltatrain emits on purpose (built by ``render_command``)."""
        if "\n" in line or "\r" in line or not line.startswith("::"):
            raise ValueError(f"not a single workflow command line: {line!r}")
        print(line, file=self.out, flush=True)

    def annotate(
        self,
        level: CommandName,
        message: str,
        *,
        title: str = "deltatrain",
        file: str | None = None,
        line: int | None = None,
        col: int | None = None,
    ) -> None:
        """An ``::error``/``::warning``/``::notice`` annotation (only inside GitHub Actions)."""
        if self.in_actions:
            file = prefix_path(file, self.path_prefix) if file else None
            properties = {"file": file, "line": line if file else None, "col": col if file and line else None,
                          "title": title}
            self.command(render_command(level, message, properties, self.secrets))

    def problems(self, problems: Sequence[Problem]) -> None:
        """Data errors and warnings: ``file:line: ...`` in the log, one annotation each in Actions."""
        from pipeline.validation import render_annotation

        for problem in problems:
            self.info(problem.render())
            if self.in_actions:
                self.command(render_annotation(problem, path_prefix=self.path_prefix, secrets=self.secrets))

    def error(self, error: DeltatrainError, *, outputs: bool = True) -> None:
        """The one way a failure is shown, for the CLI and the Action alike: the log line(s), an annotation
        with the fix (one per problem of a DataError), a job-summary section saying what happened and what
        to do, and (``ci``; not with ``outputs=False``) the step outputs ``decision=error`` and ``reason``."""
        from pipeline.github import append_to_file, render_error_annotation, render_error_summary

        if isinstance(error, DataError):
            self.problems(error.problems)
            self.info(f"error: {error.message}")
        else:
            # the log line always says what to do: the error's hint, else its kind's default fix
            self.info(f"error: {error.render()}" + ("" if error.hint else f"\n    fix: {error.fix}"))
            self.annotate(CommandName.ERROR, render_error_annotation(error, self.docs_url))
        summary_path = self.environ.get("GITHUB_STEP_SUMMARY")
        if summary_path:
            append_to_file(summary_path, escape_controls(
                render_error_summary(error, self.docs_url, self.secrets, path_prefix=self.path_prefix)))
        if outputs and self.failure_outputs:
            from pipeline.report import build_error_outputs

            self.write_outputs(build_error_outputs(error))

    def write_outputs(self, outputs: Mapping[str, str], *, dotenv: bool = True) -> None:
        """Step outputs to ``$GITHUB_OUTPUT`` (in Actions) and to the GitLab dotenv report (``--dotenv``)."""
        from pipeline.github import append_to_file
        from pipeline.safe_output import render_dotenv, render_outputs

        if self.environ.get("GITHUB_OUTPUT"):
            append_to_file(self.environ["GITHUB_OUTPUT"], render_outputs(outputs, self.secrets))
        if self.dotenv and dotenv:
            path = Path(self.dotenv)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(render_dotenv(outputs, self.secrets), encoding="utf-8")

    def group(self, title: str | None) -> None:
        """Start a collapsible ``::group::`` in the Actions log (``None`` ends it); elsewhere a plain line."""
        if self.in_actions:
            if title is None:
                self.command(render_command(CommandName.END_GROUP))
            else:
                self.command(render_command(CommandName.GROUP, title, secrets=self.secrets))
        elif title is not None:
            self.info(title)

    def _write(self, stream: IO[str], text: str) -> None:
        stream.write(render_log_text(text, self.secrets) + "\n")
        stream.flush()


class ProgressPrinter:
    """Per-epoch progress: a live line on a terminal, a few lines in CI logs."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.started = time.perf_counter()
        self._last_line = 0

    def __call__(self, event: Mapping[str, Any]) -> None:
        if "section" in event:
            self.console.group(event["section"])
            return
        epoch, epochs = event.get("epoch"), event.get("epochs")
        if event.get("phase") == "warning":
            self.console.info(f"warning: {event.get('message', '')}")
            return
        if event.get("phase") == "features":
            self.console.info(
                f"{event.get('model', '')} pretrained features of {event.get('messages')} messages"
                f" in {event.get('seconds')}s [{time.perf_counter() - self.started:.0f}s]"
            )
            return
        if epoch is None or not epochs:
            return
        metrics = " ".join(
            f"{k} {v:.3f}" for k, v in event.items() if k in ("loss", "accuracy", "intent_acc", "entity_f1") and isinstance(v, (int, float))
        )
        text = f"{event.get('model', '')} {event.get('phase', 'train')} epoch {epoch}/{epochs} {metrics} [{time.perf_counter() - self.started:.0f}s]"
        if self.console.tty:
            self.console.progress(text.ljust(self._last_line), end="\n" if epoch == epochs else "")
            self._last_line = len(text)
        elif epoch == epochs or epoch == 1 or epoch % max(1, epochs // 5) == 0:
            self.console.info(text)


# ------------------------------------------------------------------ parser


def _add_data_flags(parser: argparse.ArgumentParser, *, nlu_alias: bool = False) -> None:
    names = ["--data", "-u", "--nlu"] if nlu_alias else ["--data"]
    parser.add_argument(*names, dest="data", action="append", metavar="PATH",
                        help="training data file or folder (repeatable; default: data)")
    parser.add_argument("--domain", default="domain.yml", help="domain file or folder (default: domain.yml)")
    parser.add_argument("--config", default="config.yml", help="config file (default: config.yml)")
    _add_ignore_flag(parser)


def _add_ignore_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ignore-unknown-components", action=argparse.BooleanOptionalAction, default=False,
                        help="leave out custom components (my_package.MyComponent) and those deltatrain cannot run "
                        "(spaCy, MITIE, Jieba) with a warning, instead of an error")


class _Parser(argparse.ArgumentParser):
    """argparse whose help and error messages (which quote argv) pass the output boundary."""

    def _print_message(self, message: str, file: SupportsWrite[str] | None = None) -> None:
        if message:
            (file or sys.stderr).write(render_log_text(message))

    def error(self, message: str) -> NoReturn:
        """A bad command line is a UsageError, shown like every other error (annotation, summary, outputs)."""
        self.print_usage(sys.stderr)
        raise UsageError(message, hint=f"see '{self.prog} --help'")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = _Parser(
        prog="deltatrain",
        description="Keep a Rasa-format assistant's models current: validate, diff, decide, train, test, gate, upload.",
        epilog="Run 'deltatrain COMMAND --help' for a command's options. Docs: README.md",
    )
    parser.add_argument("--version", action="version", version=f"deltatrain {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    data = sub.add_parser("data", help="validate training data, show its fingerprint")
    data_sub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    validate = data_sub.add_parser("validate", help="check the data for errors and warnings (file:line)")
    _add_data_flags(validate)
    validate.add_argument("--fail-on-warnings", action="store_true", help="exit 1 on warnings too")
    fp = data_sub.add_parser("fingerprint", help="print the sectioned fingerprint of the data as JSON")
    _add_data_flags(fp)
    fp.add_argument("--tests", action="append", metavar="PATH",
                    help="include held-out test data (repeatable; `--tests tests` gives the fingerprint "
                    "'deltatrain ci' stores)")

    train = sub.add_parser("train", help="train a model (NLU and dialogue), reusing unchanged parts")
    train.add_argument("part", nargs="?", choices=("nlu", "core"), help="train only this part")
    _add_data_flags(train, nlu_alias=True)
    train.add_argument("--stories", "-s", dest="stories", action="append", metavar="PATH", help="stories (train core)")
    train.add_argument("--out", default="models", help="folder for the model archive (default: models)")
    train.add_argument("--dry-run", action="store_true", help="only say what would be trained; exit code is Rasa's bitmask")
    train.add_argument("--force", action="store_true", help="retrain even if nothing changed")
    train.add_argument("--fixed-model-name", help="archive name instead of a timestamp")
    train.add_argument("--persist-nlu-data", action="store_true", help="store the NLU training data in the archive")
    train.add_argument("--finetune", nargs="?", const="models", metavar="MODEL",
                       help="finetune this model (or the latest in a folder; default: --out)")
    train.add_argument("--epoch-fraction", type=float, default=1.0, help="fraction of epochs when finetuning (default 1.0)")
    train.add_argument("--epochs", type=int, help="override epochs of every trained component (quick runs)")
    train.add_argument("--num-threads", type=int, help="TensorFlow threads (default: all cores)")

    test = sub.add_parser("test", help="test a model on held-out NLU data and test stories; write reports")
    test.add_argument("part", nargs="?", choices=("nlu", "core"), help="test only this part")
    test.add_argument("--model", "-m", default="models", help=MODEL_HELP)
    test.add_argument("--nlu", "-u", action="append", help="held-out NLU data file/folder (default: tests)")
    test.add_argument("--stories", "-s", action="append", help="test stories file/folder (default: tests)")
    test.add_argument("--config", default="config.yml", help="config for --cross-validation")
    _add_ignore_flag(test)
    test.add_argument("--out", default="results", help="report folder (default: results; "
                      "only deltatrain's report files in it are replaced)")
    test.add_argument("--cross-validation", action="store_true", help="k-fold cross-validation of the NLU pipeline")
    test.add_argument("--folds", "-f", type=int, default=5, help="folds for --cross-validation (default 5)")
    test.add_argument("--epochs", type=int, help="override epochs in --cross-validation")

    parse = sub.add_parser("parse", help="parse messages with a model; prints Rasa's parse JSON")
    parse.add_argument("--model", "-m", default="models", help=MODEL_HELP)
    parse.add_argument("text", nargs="?", help="message (default: one per line from stdin)")

    _add_serve_parser(sub)

    ci = sub.add_parser("ci", help="the CI step: decide skip/repackage/finetune/full, train, test, gate, upload",
                        description="Run in the assistant's repository. Reads the committed data, compares its "
                        "fingerprint with the previous model's in the store, and trains only what is needed.")
    _add_data_flags(ci)
    ci.add_argument("--tests", action="append", metavar="PATH", help="held-out test data (default: tests)")
    ci.add_argument("--store", help="model store: a folder, file://, http(s)://, s3://bucket/prefix "
                    "(default: .deltatrain/store); token from DELTATRAIN_STORE_TOKEN")
    ci.add_argument("--mode", choices=[m.value for m in Mode], default=Mode.AUTO.value,
                    help="auto: decide from the changes; full: always retrain; finetune: finetune where possible; "
                    "skip-check: decide and report only, train nothing")
    ci.add_argument("--epoch-fraction", type=float, default=0.2, help="fraction of epochs when finetuning (default 0.2)")
    ci.add_argument("--max-finetunes", type=int, default=5, help="full retrain after this many finetunes in a row (5)")
    for metric in FLOOR_METRICS:
        ci.add_argument(f"--{metric.floor_flag}", type=float, help=f"fail the gate below this {metric.name}")
    ci.add_argument("--max-drop", type=float, default=0.02, help="allowed drop vs the previous model (0.02)")
    ci.add_argument("--max-intent-drop", type=float,
                    help="fail the gate when one intent's F1 drops more than this vs the previous model (off by default)")
    ci.add_argument("--min-intent-support", type=int,
                    help="--max-intent-drop checks only intents with at least this many test utterances (default 5)")
    ci.add_argument("--fallback-full", action=argparse.BooleanOptionalAction, default=True,
                    help="retrain in full when a finetuned model fails the gate (default on)")
    ci.add_argument("--keep", type=int, default=10, help="models kept in the store (10)")
    ci.add_argument("--upload", action=argparse.BooleanOptionalAction, default=True,
                    help="upload the model (use --no-upload on pull requests)")
    ci.add_argument("--report-json", help="write the full result as JSON here")
    ci.add_argument("--out", help="folder for the model archive (default: models)")
    ci.add_argument("--results-dir", help=f"folder for the test reports (default: {RESULTS_DIR}); "
                    "only deltatrain's report files in it are replaced")
    ci.add_argument("--decide-only", action="store_true",
                    help="stop before training when the decision trains (writes needs-training=true); "
                    "runs with the core install, without TensorFlow")
    ci.add_argument("--dotenv", metavar="PATH", help="also write the outputs as a GitLab dotenv report "
                    "(DELTATRAIN_DECISION=..., DELTATRAIN_MODEL_PATH=...)")
    ci.add_argument("--working-directory", "-C", default=".", help="the assistant's folder (default: .)")
    ci.add_argument("--num-threads", type=int, help="TensorFlow threads")
    ci.add_argument("--epochs", type=int, help="override epochs of every trained component (quick runs, tests)")
    ci.add_argument("--pr-comment", action=argparse.BooleanOptionalAction, default=False,
                    help="keep one pull-request comment up to date (GitHub Actions, needs GITHUB_TOKEN)")
    ci.add_argument("--no-git", action="store_true", help="read files from disk even inside a git repository")
    ci.add_argument("--compare-config", choices=[c.value for c in CompareConfig],
                    help="default: also train deltatrain's default NLU pipeline (pretrained features) when the "
                    "config has none, and report what it would gain (costs a second NLU training)")
    from pipeline.store_commands import add_store_parser

    add_store_parser(sub)
    return parser


def _add_serve_parser(sub: Any) -> None:
    from pipeline.serve import settings as defaults

    serve = sub.add_parser("serve", help="serve Rasa's HTTP API (/model/parse, /conversations/...) over a model",
                           description="Rasa-compatible HTTP server; follows the model store and swaps in every "
                           "new model without a restart. Without --model/--store: the local store.")
    serve.add_argument("--model", "-m", help="model archive, folder of archives (latest), or a store URL")
    serve.add_argument("--store", help="model store to follow (same URLs as 'deltatrain ci'; token from "
                       "DELTATRAIN_STORE_TOKEN); default: .deltatrain/store")
    serve.add_argument("--host", default=defaults.DEFAULT_HOST, help=f"address to bind ({defaults.DEFAULT_HOST})")
    serve.add_argument("--port", "-p", type=int, default=defaults.DEFAULT_PORT, help=f"port ({defaults.DEFAULT_PORT}; 0: any free)")
    serve.add_argument("--auth-token", "-t", help=f"require this token (?token=... or Bearer); or env {defaults.TOKEN_ENV}")
    serve.add_argument("--token-name", default=defaults.DEFAULT_TOKEN_NAME, help="query parameter of the token (token)")
    serve.add_argument("--jwt-secret", help=f"also accept HS256 JWTs signed with this secret; or env {defaults.JWT_SECRET_ENV}")
    serve.add_argument("--poll-seconds", type=float, default=defaults.DEFAULT_POLL_SECONDS,
                       help=f"check for a new model this often ({defaults.DEFAULT_POLL_SECONDS:g}; 0: never)")
    serve.add_argument("--workers", type=int, default=1, help="processes sharing the port (1)")
    serve.add_argument("--max-batch", type=int, default=defaults.DEFAULT_MAX_BATCH, help="messages per parse batch")
    serve.add_argument("--max-wait-ms", type=float, default=defaults.DEFAULT_MAX_WAIT_MS,
                       help="how long a message waits for others to batch with")
    serve.add_argument("--request-timeout", type=float, default=defaults.DEFAULT_REQUEST_TIMEOUT, help="seconds per request")


# ------------------------------------------------------------------ commands


def _cmd_validate(args: argparse.Namespace, console: Console) -> int:
    from pipeline.train import load_training_project

    try:
        project, warnings = load_training_project(args.domain, args.config, args.data or ["data"],
                                                  ignore_unknown_components=args.ignore_unknown_components)
    except DataError as exc:
        console.problems(exc.problems)
        errors = sum(p.is_error for p in exc.problems)
        console.info(f"validation failed: {errors} error(s), {len(exc.problems) - errors} warning(s)")
        return ExitCode.DATA
    console.problems(warnings)
    console.info(
        f"data is valid: {len(project.nlu.examples)} examples, {len(project.nlu.intents)} intents, "
        f"{len(project.plain_stories)} stories, {len(project.rules)} rules, {len(warnings)} warning(s)"
    )
    if warnings and args.fail_on_warnings:
        console.info("failing because of warnings (--fail-on-warnings)")
        return ExitCode.DATA
    return ExitCode.OK


def _cmd_fingerprint(args: argparse.Namespace, console: Console) -> int:
    from pipeline.fingerprint import compute_fingerprint
    from pipeline.train import load_training_project

    project, _ = load_training_project(args.domain, args.config, args.data or ["data"],
                                       ignore_unknown_components=args.ignore_unknown_components,
                                       tests=tuple(args.tests or ()))
    fp = compute_fingerprint(project)
    console.json({"sections": fp["sections"], "counts": fp["counts"]})
    return ExitCode.OK


def _cmd_train(args: argparse.Namespace, console: Console) -> int:
    from pipeline.train import train

    if not args.dry_run:
        require_extra(Extra.TRAIN, "deltatrain train")
    files = (args.data or []) + (args.stories or []) or ["data"]
    extra = {"epochs": args.epochs} if args.epochs else None
    result = train(
        args.domain, args.config, files, args.out, args.dry_run, args.force, args.fixed_model_name,
        args.persist_nlu_data, extra, extra, args.finetune, args.epoch_fraction,
        progress=ProgressPrinter(console), num_threads=args.num_threads,
        parts=(args.part,) if args.part else ("nlu", "core"),
        ignore_unknown_components=args.ignore_unknown_components,
    )
    console.problems(result.warnings)
    for reason in result.dry_run_results:
        console.info(f"  - {reason}")
    if args.dry_run:
        console.info(f"dry run: code {result.code} (1 dialogue, 2 NLU, 4 responses only, 8 forced)")
        return result.code
    if result.code == 0 and result.model:
        console.info(f"nothing changed: the latest model {result.model} is up to date")
    else:
        console.info(f"model written: {result.model}")
    console.result(str(result.model or ""))
    return ExitCode.OK


def _cmd_test(args: argparse.Namespace, console: Console) -> int:
    from pipeline.data.loader import DirectorySource, ProjectPaths, load_project
    from pipeline.data.model import NluData

    require_extra(Extra.TRAIN, "deltatrain test")

    out = Path(args.out)
    tests = tuple(args.nlu or []) + tuple(args.stories or []) or ("tests",)
    ignore = args.ignore_unknown_components
    project, _ = load_project(DirectorySource(Path.cwd()),
                              ProjectPaths(data=tests, config=args.config, tests=(), ignore_unknown_components=ignore))
    nlu_data = project.nlu if args.part != "core" else NluData()
    stories = tuple(s for s in project.stories) if args.part != "nlu" else ()
    if args.cross_validation:
        from pipeline.crossval import run_cross_validation

        train_project, _ = load_project(DirectorySource(Path.cwd()),
                                        ProjectPaths(config=args.config, tests=(), ignore_unknown_components=ignore))
        metrics = run_cross_validation(train_project.nlu, train_project.config, args.folds, out,
                                       epochs=args.epochs, progress=ProgressPrinter(console))
        console.json(metrics)
        return ExitCode.OK
    from pipeline.testing import remove_report_files, test_model

    with tempfile.TemporaryDirectory(prefix="deltatrain-test-") as tmp:
        model = _resolve_model(args.model, Path(tmp), console)
        remove_report_files(out)
        result = test_model(model, nlu_data, stories, out)
    for path in result.files:
        console.info(f"wrote {path}")
    console.json(result.metrics)
    return ExitCode.OK


def _resolve_model(model: str, download_dir: Path, console: Console) -> Path:
    """An archive from ``--model``: a file, the latest archive of a folder, or the latest model of a store."""
    from pipeline.train import resolve_model_path

    if "://" in model or (Path(model) / "manifest.json").is_file():
        from pipeline.stores import open_store

        console.add_secret_urls([model])
        environ = console.environ
        store = open_store(model, base_dir=Path.cwd(), token=environ.get("DELTATRAIN_STORE_TOKEN") or None,
                           s3_endpoint_url=environ.get("DELTATRAIN_S3_ENDPOINT_URL") or None)
        latest = store.read_latest()
        if latest is None:
            raise UsageError("the model store holds no model yet", location=store.url,
                             hint="run 'deltatrain ci --store ...' to publish one, or pass an archive with --model")
        console.info(f"deltatrain: using {latest.name}, the latest model of {store.url}")
        return store.download(latest.name, download_dir)
    path = resolve_model_path(model)
    if path is None:
        raise UsageError("no model found", location=model,
                         hint="train one with 'deltatrain train', or pass --model with an archive, "
                         "a folder of archives or a model store (e.g. .deltatrain/store)")
    return path


def _cmd_parse(args: argparse.Namespace, console: Console, stdin: TextIO) -> int:
    from pipeline.archive import NLU_DIR, extract_archive

    require_extra(Extra.TRAIN, "deltatrain parse")
    with tempfile.TemporaryDirectory(prefix="deltatrain-parse-") as tmp:
        model = _resolve_model(args.model, Path(tmp) / "download", console)
        model_dir = extract_archive(model, Path(tmp) / "model")
        from pipeline.training.nlu import NluModel

        nlu = NluModel.load(model_dir / NLU_DIR)
        texts = [args.text] if args.text is not None else (line.rstrip("\n") for line in stdin)
        for text in texts:
            if text.strip():
                console.json(nlu.parse(text), indent=None)
    return ExitCode.OK


def _cmd_serve(args: argparse.Namespace, console: Console, environ: Mapping[str, str]) -> int:
    from pipeline.serve.settings import default_to_one_blas_thread

    default_to_one_blas_thread(os.environ)  # before NumPy loads: parsing is fastest with one BLAS thread
    require_extra(Extra.SERVE, "deltatrain serve")
    require_extra(Extra.TRAIN, "deltatrain serve (parsing with a model)")
    from pipeline.serve.server import configure_logging, run_server
    from pipeline.serve.settings import JWT_SECRET_ENV, TOKEN_ENV, ServeSettings
    from pipeline.serve.sources import open_source

    settings = ServeSettings(
        host=args.host, port=args.port, auth_token=args.auth_token or environ.get(TOKEN_ENV) or None,
        token_name=args.token_name, jwt_secret=args.jwt_secret or environ.get(JWT_SECRET_ENV) or None,
        poll_seconds=args.poll_seconds, workers=args.workers, max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms, request_timeout=args.request_timeout,
    )
    if problems := settings.problems():
        raise UsageError("; ".join(problems))
    store_token = environ.get("DELTATRAIN_STORE_TOKEN") or None
    s3_endpoint = environ.get("DELTATRAIN_S3_ENDPOINT_URL") or environ.get("AWS_ENDPOINT_URL") or None
    source = open_source(model=args.model, store=args.store, base_dir=Path.cwd(), store_token=store_token,
                         s3_endpoint_url=s3_endpoint)  # checked now: a bad URL fails before anything loads
    configure_logging(console.err)
    run_server(settings, lambda: source, require_model=args.model is not None)
    return ExitCode.OK


def _cmd_ci(args: argparse.Namespace, console: Console, environ: Mapping[str, str]) -> int:
    from pipeline.ci import CiOptions, run_ci
    from pipeline.data.loader import ProjectPaths
    from pipeline.report import build_outputs, render_summary

    console.failure_outputs, console.dotenv = True, args.dotenv
    console.add_secret_urls([args.store])
    project_dir = Path(args.working_directory).resolve()
    if not project_dir.is_dir():
        raise UsageError("working directory not found", location=args.working_directory)
    if environ.get("GITLAB_CI") == "true" and not args.store:
        raise UsageError(
            "no model store: in a GitLab job the default store (.deltatrain/store) lives in the job's container "
            "and is thrown away with it, so every pipeline would retrain in full and lose the model",
            hint="pass --store (the component's `store` input) with a persistent store: s3://bucket/prefix, "
            "https://... or a folder on a runner volume",
        )
    workspace = find_workspace(environ)
    console.path_prefix = prefix_of(project_dir, workspace)
    scheduled = environ.get("GITHUB_EVENT_NAME") == "schedule" or environ.get("CI_PIPELINE_SOURCE") == "schedule"
    options = CiOptions(
        project_dir=project_dir,
        store_url=args.store,
        store_token=environ.get("DELTATRAIN_STORE_TOKEN") or None,
        s3_endpoint_url=environ.get("DELTATRAIN_S3_ENDPOINT_URL") or environ.get("AWS_ENDPOINT_URL") or None,
        mode=args.mode,
        scheduled=scheduled,
        epoch_fraction=args.epoch_fraction,
        max_finetunes=args.max_finetunes,
        floors={m.key: getattr(args, str(m.floor_field)) for m in FLOOR_METRICS},
        max_drop=args.max_drop,
        max_intent_drop=args.max_intent_drop,
        **({"min_intent_support": args.min_intent_support} if args.min_intent_support is not None else {}),
        fallback_full=args.fallback_full,
        keep=args.keep,
        upload=args.upload,
        paths=ProjectPaths(
            data=tuple(args.data or ["data"]),
            domain=None if args.domain == "domain.yml" else args.domain,
            config=args.config,
            tests=tuple(args.tests or ["tests"]),
            ignore_unknown_components=args.ignore_unknown_components,
        ),
        out_dir=Path(args.out).resolve() if args.out else None,
        num_threads=args.num_threads,
        use_git=not args.no_git,
        nlu_epochs=args.epochs,
        core_epochs=args.epochs,
        results_dir=Path(args.results_dir).resolve() if args.results_dir else None,
        decide_only=args.decide_only,
        compare_config=args.compare_config,
    )
    check_epoch_fraction(options.epoch_fraction)
    if args.min_intent_support is not None and args.min_intent_support < 1:
        raise UsageError(f"--min-intent-support must be at least 1, got {args.min_intent_support}",
                         hint="e.g. --min-intent-support 5")
    fractions = (("--max-drop", args.max_drop), ("--max-intent-drop", args.max_intent_drop),
                 *((f"--{m.floor_flag}", getattr(args, str(m.floor_field))) for m in FLOOR_METRICS))
    for flag, value in fractions:
        if value is not None and not 0 <= value <= 1:  # checked before any training starts
            raise UsageError(f"{flag} must be between 0 and 1, got {value}", hint=f"use a fraction, e.g. {flag} 0.9")
    result = run_ci(options, log=lambda line: console.info(f"deltatrain: {line}"), progress=ProgressPrinter(console))
    console.problems(result.warnings)
    if result.stopped_before_training:
        console.info(f"deltatrain: {result.decision.kind} needs training: stopping here (--decide-only)")
        console.write_outputs({NEEDS_TRAINING_OUTPUT: "true"}, dotenv=False)  # the training phase writes it
        return ExitCode.OK
    summary = render_summary(result, console.path_prefix)
    console.untrusted_block(summary)
    outputs = build_outputs(result, workspace)
    if args.decide_only:
        outputs[NEEDS_TRAINING_OUTPUT] = "false"
    console.write_outputs(outputs)
    if environ.get("GITHUB_STEP_SUMMARY"):
        from pipeline.github import append_to_file

        append_to_file(environ["GITHUB_STEP_SUMMARY"], escape_controls(console.redact(summary)) + "\n")
    if result.exit_code == ExitCode.GATE and result.gate is not None:
        floors = ", ".join(f"--{m.floor_flag}" for m in FLOOR_METRICS)
        console.error(GateError(
            "quality gate failed, the model is not uploaded: " + "; ".join(c.reason for c in result.gate.failures),
            hint="improve the training data where the summary shows the drop, or, when the drop is expected, "
            f"relax the gate ({floors}, --max-drop, --max-intent-drop)",
        ), outputs=False)
    if args.report_json:
        path = Path(args.report_json)
        path = path if path.is_absolute() else project_dir / path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render_json(result.to_dict(), console.secrets) + "\n", encoding="utf-8")
    if args.pr_comment:
        _comment_on_pr(environ, console.redact(summary), console)
    return result.exit_code


def _comment_on_pr(environ: Mapping[str, str], summary: str, console: Console) -> None:
    from pipeline.github import read_github_context, upsert_pr_comment

    context = read_github_context(environ)
    if context.pr_number is None:
        console.info("deltatrain: not a pull request: no PR comment")
        return
    token = environ.get("GITHUB_TOKEN")
    if not token:
        console.info("deltatrain: GITHUB_TOKEN not set: no PR comment")
        return
    if not context.repository:
        console.info("deltatrain: GITHUB_REPOSITORY not set: no PR comment")
        return
    try:
        url = upsert_pr_comment(context.api_url, context.repository, context.pr_number, summary, token)
    except DeltatrainError as exc:  # the model is trained and stored; a missing comment is not a failure
        console.info(f"deltatrain: warning: PR comment not written: {exc.render()}")
        console.annotate(CommandName.WARNING, exc.message, title="deltatrain PR comment")
        return
    console.info(f"deltatrain: PR comment updated: {url}")


def find_workspace(environ: Mapping[str, str]) -> Path:
    """Where later steps run: ``$GITHUB_WORKSPACE``, ``$CI_PROJECT_DIR``, else the current directory.

    Output paths are relative to it (absolute when outside it), and annotation paths start there.
    """
    for variable in ("GITHUB_WORKSPACE", "CI_PROJECT_DIR"):
        if environ.get(variable):
            return Path(environ[variable]).resolve()
    return Path.cwd().resolve()


def prefix_of(project_dir: Path, workspace: Path) -> str:
    """``project_dir`` relative to ``workspace`` (``bot`` for ``-C bot``), empty when it is the root or outside."""
    try:
        relative = project_dir.resolve().relative_to(workspace)
    except ValueError:
        return ""
    return "" if relative == Path(".") else relative.as_posix()


# ------------------------------------------------------------------ entry


def _cmd_store(args: argparse.Namespace, console: Console, environ: Mapping[str, str]) -> int:
    from pipeline.store_commands import run_store_command

    console.add_secret_urls([args.store])
    return run_store_command(args, console, environ)


def main(argv: Sequence[str] | None = None, *, environ: Mapping[str, str] | None = None,
         stdin: TextIO | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 1 data errors, 2 usage, 3 gate failed, 4 store)."""
    environ = os.environ if environ is None else environ
    console = Console(environ)
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["ci"]:  # a bad `ci` command line, too, writes the failure outputs
        console.failure_outputs, console.dotenv = True, _find_option(arguments, "--dotenv")
    parser = build_parser()
    try:
        args = parser.parse_args(arguments)
    except SystemExit as exc:  # --help, --version
        return int(exc.code or 0) if isinstance(exc.code, int) else ExitCode.USAGE
    except UsageError as exc:
        console.error(exc)
        return exc.exit_code
    commands: dict[str, Callable[[], int]] = {
        "train": lambda: _cmd_train(args, console),
        "test": lambda: _cmd_test(args, console),
        "parse": lambda: _cmd_parse(args, console, stdin or sys.stdin),
        "ci": lambda: _cmd_ci(args, console, environ),
        "serve": lambda: _cmd_serve(args, console, environ),
        "store": lambda: _cmd_store(args, console, environ),
    }
    try:
        if args.command == "data":
            if args.data_command == "validate":
                return _cmd_validate(args, console)
            if args.data_command == "fingerprint":
                return _cmd_fingerprint(args, console)
            parser.parse_args(["data", "--help"])
            return ExitCode.USAGE
        if args.command not in commands:
            parser.print_help(console.err)
            return ExitCode.USAGE
        return commands[args.command]()
    except DeltatrainError as exc:
        console.error(exc)
        return exc.exit_code
    except KeyboardInterrupt:
        console.info("interrupted")
        return ExitCode.INTERRUPTED
    except Exception as exc:  # a bug: the traceback for the report, then shown like every other failure
        console.info(traceback.format_exc().rstrip())
        unexpected = UnexpectedError(exc)
        console.error(unexpected)
        return unexpected.exit_code


def _find_option(arguments: Sequence[str], flag: str) -> str | None:
    """The value of ``flag`` (``--flag=value`` or ``--flag value``) in raw arguments, else None."""
    for index, argument in enumerate(arguments):
        if argument.startswith(flag + "="):
            return argument.split("=", 1)[1]
        if argument == flag and index + 1 < len(arguments):
            return arguments[index + 1]
    return None


def exit_process(code: int) -> NoReturn:
    """End the process with ``code``. After a training run this skips the interpreter's
    teardown of TensorFlow's modules (about 1 s on 2 cores): the command has finished, so
    standard output, standard error and logging are flushed and the process exits at once."""
    if "tensorflow" not in sys.modules:
        sys.exit(code)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed or broken pipe: nothing more can be written anyway
            pass
    logging.shutdown()
    os._exit(code)


def run() -> NoReturn:
    """The ``deltatrain`` console command: :func:`main` on ``sys.argv``, then exit."""
    exit_process(main())


if __name__ == "__main__":  # pragma: no cover
    run()
