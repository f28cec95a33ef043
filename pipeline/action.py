"""The GitHub Action adapter: action inputs in, ``deltatrain ci`` argv out.

The composite action (action.yml) hands each input to its deltatrain steps as
``INPUT_<NAME>`` with ``_`` for ``-`` (``INPUT_EPOCH_FRACTION``), and so does
the GitLab component (templates/deltatrain.yml); the hyphenated form a
container action gets (``INPUT_EPOCH-FRACTION``) is accepted too.
``DELTATRAIN_ACTION_PHASE`` picks the composite action's phase (decide or
train) and ``DELTATRAIN_DOTENV`` the GitLab dotenv report. One option has one name in three spellings: input
``epoch-fraction``, flag ``--epoch-fraction``, field ``epoch_fraction``.
Secrets never reach argv: they are masked and handed to the CLI through the
environment; credentials inside the store URL are masked too, and every line
printed here passes :mod:`pipeline.safe_output`. Everything the Action does,
``deltatrain ci`` does on a laptop.
"""

from __future__ import annotations

import enum
import os
import shlex
import sys
from typing import Mapping, MutableMapping, TextIO

from pipeline import github
from pipeline.errors import DeltatrainError, UsageError
from pipeline.metrics import FLOOR_METRICS
from pipeline.safe_output import (
    CommandName,
    find_secrets,
    find_url_secrets,
    render_command,
    render_log_text,
    render_mask_commands,
)

#: Inputs passed on as ``--<name>=<value>`` (omitted when empty).
VALUE_INPUTS: tuple[str, ...] = (
    "store",
    "mode",
    "epoch-fraction",
    "max-finetunes",
    *(str(metric.floor_flag) for metric in FLOOR_METRICS),
    "max-drop",
    "max-intent-drop",
    "min-intent-support",
    "keep",
    "report-json",
    "domain",
    "config",
    "tests",
    "out",
    "results-dir",
    "working-directory",
    "num-threads",
    "compare-config",
)

#: Inputs holding one value per line, each passed as its own ``--<name>=<line>``.
MULTILINE_INPUTS: tuple[str, ...] = ("data",)

#: Inputs ``true``/``false`` (any case), passed as ``--<name>`` / ``--no-<name>``.
BOOLEAN_INPUTS: tuple[str, ...] = ("fallback-full", "upload", "pr-comment", "ignore-unknown-components")

#: Secret inputs and the environment variable the CLI reads each from.
SECRET_INPUTS: Mapping[str, str] = {
    "store-token": "DELTATRAIN_STORE_TOKEN",
    "github-token": "GITHUB_TOKEN",
}

#: Inputs that may hold a URL with credentials (``https://user:password@host/``): masked.
URL_INPUTS: tuple[str, ...] = ("store", "store_url")

#: Deprecated input name -> current name (kept working, with a ``::warning::``).
DEPRECATED_INPUTS: Mapping[str, str] = {
    "store_url": "store",
    "min-f1": "min-intent-f1",
}

ARGV_INPUTS: tuple[str, ...] = VALUE_INPUTS + MULTILINE_INPUTS + BOOLEAN_INPUTS

#: Environment variable naming the phase of the composite action (action.yml, runs.steps).
PHASE_ENV = "DELTATRAIN_ACTION_PHASE"
#: Environment variable naming the dotenv report to write (the GitLab component, templates/deltatrain.yml).
DOTENV_ENV = "DELTATRAIN_DOTENV"


class Phase(str, enum.Enum):
    """The steps of the composite action that run deltatrain."""

    DECIDE = "decide"  # core install only: stop before training (`--decide-only`)
    TRAIN = "train"  # training packages installed: the whole `deltatrain ci`


def build_phase_argv(argv: list[str], phase: str | None) -> list[str]:
    """``argv`` for one phase: ``--decide-only`` in the decide phase; unset means the whole run."""
    if not phase:
        return argv
    try:
        chosen = Phase(phase)
    except ValueError:
        raise UsageError(
            f"{PHASE_ENV} must be one of {', '.join(p.value for p in Phase)}; received {phase!r}",
            hint=f"leave {PHASE_ENV} unset to run everything in one step",
        ) from None
    return [*argv, "--decide-only"] if chosen is Phase.DECIDE else argv
TRUE_WORDS = ("true",)
FALSE_WORDS = ("false",)


def build_ci_argv(inputs: Mapping[str, str]) -> list[str]:
    """Argv for ``pipeline.cli.main`` (starting with ``ci``) from current-name inputs."""
    unknown = sorted(set(inputs) - set(ARGV_INPUTS))
    if unknown:
        raise UsageError(
            f"unknown action input(s): {', '.join(unknown)}",
            hint="valid inputs: " + ", ".join(ARGV_INPUTS)
            + " (secrets go through the environment, not argv)",
        )
    argv = ["ci"]
    for name in ARGV_INPUTS:
        value = inputs.get(name, "").strip()
        if not value:
            continue
        if name in BOOLEAN_INPUTS:
            argv.append(f"--{name}" if parse_boolean(name, value) else f"--no-{name}")
        elif name in MULTILINE_INPUTS:
            argv.extend(f"--{name}={line.strip()}" for line in value.splitlines() if line.strip())
        else:
            if "\n" in value or "\r" in value:
                raise UsageError(
                    f"action input `{name}` takes a single line; received "
                    f"{len(value.splitlines())} lines: {value!r}",
                    location=f"input {name}",
                    hint=f"write `{name}` on one line",
                )
            argv.append(f"--{name}={value}")
    return argv


def parse_boolean(name: str, value: str) -> bool:
    """``true``/``false`` in any case; anything else is a UsageError naming the input."""
    word = value.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise UsageError(
        f"action input `{name}` must be `true` or `false` (any case); received {value!r}",
        location=f"input {name}",
        hint=f"set `{name}: true` or `{name}: false` under the step's `with:`",
    )


def resolve_deprecated_inputs(raw: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """Map deprecated names onto current ones; return the inputs and one warning per alias used."""
    inputs = {name: value for name, value in raw.items() if name not in DEPRECATED_INPUTS}
    warnings = []
    for old, new in DEPRECATED_INPUTS.items():
        old_value = raw.get(old, "").strip()
        if not old_value:
            continue
        new_value = inputs.get(new, "").strip()
        if new_value and new_value != old_value:
            raise UsageError(
                f"action inputs `{old}` (deprecated) and `{new}` disagree; "
                f"received {old}={old_value!r} and {new}={new_value!r}",
                location=f"input {old}",
                hint=f"drop `{old}` and keep only `{new}`",
            )
        inputs[new] = old_value
        warnings.append(f"The `{old}` input is deprecated; use `{new}` instead.")
    return inputs, warnings


def read_inputs(
    environ: MutableMapping[str, str], stream: TextIO | None = None
) -> dict[str, str]:
    """Read ``INPUT_*`` variables; mask secrets and move them to their env vars; return the rest.

    Masks come first, before anything else is printed: the secret inputs, and
    the user info and token-like query values of a store URL.
    """
    out = sys.stdout if stream is None else stream
    for name, env_var in SECRET_INPUTS.items():
        secret = _read_input(environ, name)
        for key in _input_keys(name):
            environ.pop(key, None)
        if not secret:
            continue
        for line in render_mask_commands(secret):
            print(line, file=out)
        environ[env_var] = secret
    for name in URL_INPUTS:
        for secret in find_url_secrets(_read_input(environ, name)):
            for line in render_mask_commands(secret):
                print(line, file=out)
    raw = {name: _read_input(environ, name) for name in ARGV_INPUTS + tuple(DEPRECATED_INPUTS)}
    inputs, warnings = resolve_deprecated_inputs(raw)
    for warning in warnings:
        print(render_command(CommandName.WARNING, warning, {"title": "deltatrain"}), file=out)
    return inputs


def find_action_secrets(environ: Mapping[str, str]) -> tuple[str, ...]:
    """Secret values to keep out of the log: secret env vars and credentials in URL inputs."""
    return find_secrets(environ, [_read_input(environ, name) for name in URL_INPUTS])


def _input_keys(name: str) -> list[str]:
    """Environment keys GitHub (or a user) may use for one input, hyphenated form first."""
    upper = name.upper()
    keys = [f"INPUT_{upper}", f"INPUT_{upper.replace('-', '_')}", f"INPUT_{upper.replace('_', '-')}"]
    return list(dict.fromkeys(keys))


def _read_input(environ: Mapping[str, str], name: str) -> str:
    for key in _input_keys(name):
        value = environ.get(key, "")
        if value.strip():
            return value.strip()
    return ""


def build_docs_url(environ: Mapping[str, str]) -> str | None:
    """Link to this action's ``action.yml`` at the version in use, when GitHub tells us."""
    repository = environ.get("GITHUB_ACTION_REPOSITORY")
    if not repository:
        return None
    server = (environ.get("GITHUB_SERVER_URL") or github.DEFAULT_SERVER_URL).rstrip("/")
    ref = environ.get("GITHUB_ACTION_REF") or "HEAD"
    return f"{server}/{repository}/blob/{ref}/action.yml"


def main(environ: MutableMapping[str, str] | None = None) -> int:
    """Run ``deltatrain ci`` from action inputs; return its exit code.

    ``environ`` defaults to ``os.environ``; the CLI gets the same mapping (with the
    secrets moved to their variables). An input error is shown the way the CLI
    shows every error of its own (:meth:`pipeline.cli.Console.error`): log,
    annotation with the fix and a link to the inputs, job summary, outputs.
    """
    from pipeline import cli

    env = os.environ if environ is None else environ
    try:
        inputs = read_inputs(env)
        argv = build_phase_argv(build_ci_argv(inputs), env.get(PHASE_ENV))
    except DeltatrainError as error:
        console = cli.Console(env)
        console.add_secret_urls(_read_input(env, name) for name in URL_INPUTS)
        console.failure_outputs, console.dotenv = True, env.get(DOTENV_ENV, "").strip() or None
        console.docs_url = build_docs_url(env)
        console.error(error)
        return error.exit_code
    if env.get(DOTENV_ENV, "").strip():
        argv.append(f"--dotenv={env[DOTENV_ENV].strip()}")
    print(render_log_text(f"deltatrain {shlex.join(argv)}", find_action_secrets(env)), flush=True)
    return cli.main(argv, environ=env)  # every error of the run is rendered there


if __name__ == "__main__":  # `python -m pipeline.action`, as the composite action runs it
    from pipeline.cli import exit_process

    exit_process(main())
