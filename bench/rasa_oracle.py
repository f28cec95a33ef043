"""Rasa's verdict on projects: run by bench/rasa_compat.py with *Rasa's* Python (never imported by deltatrain).

    /path/to/rasa-venv/bin/python bench/rasa_oracle.py projects.json > verdicts.json

``projects.json`` is a list of ``{"name", "domain", "config", "data": [paths]}``. For each
project, in one process (Rasa and TensorFlow are imported once):

* ``validate``: what ``rasa data validate`` does (``rasa.cli.utils.validate_files``: domain,
  NLU, story structure), exit code and the error lines it logged;
* ``rules``: what ``rasa train core`` does with the project's RulePolicy (the policy's own
  ``train`` on the trackers ``rasa train`` generates): ``InvalidRule`` and its message, or ok.
  Skipped (``null``) when the config has no RulePolicy or the project does not load.

Prints one JSON object ``{name: {"validate": {...}, "rules": {...}}}``.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import sys
import tempfile
import traceback
import warnings
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("SQLALCHEMY_SILENCE_UBER_WARNING", "1")


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(f"{record.levelname}: {record.getMessage()}")


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def _validate(project: dict[str, Any]) -> dict[str, Any]:
    import rasa.cli.utils
    from rasa.shared.importers.importer import TrainingDataImporter

    handler = _Collect()
    logging.getLogger().addHandler(handler)
    out, err = io.StringIO(), io.StringIO()
    code, exception = 0, None
    with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        warnings.simplefilter("always")
        try:
            importer = TrainingDataImporter.load_from_config(project["config"], project["domain"], project["data"])
            rasa.cli.utils.validate_files(False, None, importer)
        except SystemExit as exc:
            code = int(exc.code or 0)
        except Exception as exc:  # noqa: BLE001 - every failure is a verdict
            code, exception = 1, f"{type(exc).__name__}: {exc}"
    logging.getLogger().removeHandler(handler)
    user_warnings = [
        f"{w.category.__name__}: {w.message}" for w in caught
        if not issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning)) and "rasa" in str(w.filename)
    ]
    errors = [r for r in handler.records if r.startswith(("ERROR", "CRITICAL"))]
    return {
        "code": code,
        "exception": exception,
        "errors": errors + ([exception] if exception else []),
        "warnings": [r for r in handler.records if r.startswith("WARNING")] + user_warnings,
        "output": _lines(out.getvalue() + err.getvalue())[-20:],
    }


def _rules(project: dict[str, Any]) -> dict[str, Any] | None:
    from rasa.core.policies.rule_policy import InvalidRule, RulePolicy
    from rasa.engine.graph import ExecutionContext, GraphSchema
    from rasa.engine.storage.local_model_storage import LocalModelStorage
    from rasa.engine.storage.resource import Resource
    from rasa.shared.core.generator import TrainingDataGenerator
    from rasa.shared.importers.importer import TrainingDataImporter

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            importer = TrainingDataImporter.load_from_config(project["config"], project["domain"], project["data"])
            policies = importer.get_config().get("policies") or []
            options = next((dict(p) for p in policies if p.get("name") == "RulePolicy"), None)
            if options is None:
                return None
            options.pop("name")
            domain = importer.get_domain()
            trackers = TrainingDataGenerator(importer.get_stories(), domain, augmentation_factor=0).generate()
            if not any(t.is_rule_tracker for t in trackers):
                return {"status": "ok", "message": "no rules"}
            storage = LocalModelStorage(Path(tempfile.mkdtemp(prefix="oracle-")))
            config = {**RulePolicy.get_default_config(), **options}
            policy = RulePolicy.create(config, storage, Resource("rules"), ExecutionContext(GraphSchema({}), "oracle"))
            policy.train(trackers, domain)
            return {"status": "ok", "message": f"{len(policy.lookup.get('rules', {}))} rule keys"}
        except InvalidRule as exc:
            return {"status": "invalid", "message": str(exc)}
        except Exception as exc:  # noqa: BLE001 - every failure is a verdict
            return {"status": "error", "message": f"{type(exc).__name__}: {exc}",
                    "trace": traceback.format_exc().splitlines()[-3:]}


def main() -> None:
    projects = json.loads(Path(sys.argv[1]).read_text())
    logging.disable(logging.NOTSET)
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    logging.getLogger().setLevel(logging.WARNING)
    verdicts = {}
    for project in projects:
        verdicts[project["name"]] = {"validate": _validate(project), "rules": _rules(project)}
        print(f"oracle: {project['name']}", file=sys.stderr, flush=True)
    sys.stdout.write(json.dumps(verdicts, indent=1))


if __name__ == "__main__":
    main()
