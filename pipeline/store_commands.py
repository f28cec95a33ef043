"""``deltatrain store list|show|pull|rollback|gc``: look after a model store by hand.

Same URLs and tokens as ``ci``: ``--store`` (a folder, file://, http(s)://, s3://,
github://OWNER/REPO[/TAG], gitlab://HOST/PROJECT/PACKAGE), ``DELTATRAIN_STORE_TOKEN``
(or ``GITHUB_TOKEN`` / ``CI_JOB_TOKEN`` / ``GITLAB_TOKEN`` for the forges) and
``DELTATRAIN_S3_ENDPOINT_URL``.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from pipeline.errors import ExitCode
from pipeline.limits import format_bytes
from pipeline.stores import ModelStore, StoredModel, open_store


class Output(Protocol):
    """What the commands print through (the CLI's Console)."""

    def result(self, text: str) -> None: ...

    def info(self, text: str) -> None: ...

    def json(self, value: Any, indent: int | None = 2) -> None: ...


def add_store_parser(sub: Any) -> None:
    """Register ``deltatrain store ...``."""
    store = sub.add_parser("store", help="list, show, pull, roll back and clean the model store")
    _add_location_options(store, default=None)
    # the same options after the action too (`deltatrain store list --store URL`); SUPPRESS keeps
    # a value given before the action when none is given after it
    after = argparse.ArgumentParser(add_help=False)
    _add_location_options(after, default=argparse.SUPPRESS)
    actions = store.add_subparsers(dest="store_command", metavar="ACTION")
    actions.add_parser("list", parents=[after], help="models with commit, decision, metrics, gate and size")
    show = actions.add_parser("show", parents=[after], help="one model's manifest entry and side files as JSON")
    show.add_argument("name")
    pull = actions.add_parser("pull", parents=[after], help="download a model archive (default: latest), verified")
    pull.add_argument("name", nargs="?")
    pull.add_argument("--out", default=".", help="folder to write <name>.tar.gz to (default: .)")
    rollback = actions.add_parser(
        "rollback", parents=[after], help="point latest back at an earlier model (default: the one before it)")
    rollback.add_argument("name", nargs="?")
    actions.add_parser("gc", parents=[after], help="delete files of interrupted uploads")


def _add_location_options(parser: argparse.ArgumentParser, *, default: Any) -> None:
    """``--store`` and ``-C``: where the store is (``default`` None: the top level's defaults)."""
    parser.add_argument("--store", default=default,
                        help="model store URL, as for `ci` (default: .deltatrain/store)")
    parser.add_argument("--working-directory", "-C", default="." if default is None else default,
                        help="folder the default store is relative to (default: .)")


def run_store_command(args: argparse.Namespace, out: Output, environ: Mapping[str, str]) -> int:
    """Run one ``store`` action; returns the exit code."""
    store = open_store(
        args.store,
        base_dir=Path(args.working_directory).resolve(),
        token=environ.get("DELTATRAIN_STORE_TOKEN") or None,
        s3_endpoint_url=environ.get("DELTATRAIN_S3_ENDPOINT_URL")
        or environ.get("AWS_ENDPOINT_URL") or None,
    )
    action = args.store_command
    if action == "list":
        return _list(store, out)
    if action == "show":
        model = store.read_model(args.name)
        out.json({"name": model.name, "archive": model.url, "sha256": model.sha256,
                  "size": model.size, "uploaded_at": model.uploaded_at,
                  "metadata": model.metadata, "metrics": model.metrics,
                  "fingerprint": dict(model.fingerprint)})
        return ExitCode.OK
    if action == "pull":
        name = args.name or _latest_name(store)
        path = store.download(name, Path(args.out))
        out.result(f"{path} (sha256 verified)")
        return ExitCode.OK
    if action == "rollback":
        before, target = store.rollback(args.name)
        out.result(f"latest: {before} -> {target.name} ({_commit(target)}); the next `ci` run"
                   f" compares against {target.name}")
        return ExitCode.OK
    if action == "gc":
        removed = store.collect_garbage()
        out.result("removed files of: " + ", ".join(removed) if removed else "nothing to remove")
        return ExitCode.OK
    out.info("usage: deltatrain store {list,show,pull,rollback,gc} (see --help)")
    return ExitCode.USAGE


def _latest_name(store: ModelStore) -> str:
    from pipeline.errors import StoreNotFoundError

    manifest = store.read_manifest()
    if not manifest or not manifest.get("latest"):
        raise StoreNotFoundError(f"the store {store.url} has no latest model", location=store.url)
    return str(manifest["latest"])


def _list(store: ModelStore, out: Output) -> int:
    manifest = store.read_manifest()
    if not manifest or not manifest["models"]:
        out.result(f"no models in {store.url}")
        return ExitCode.OK
    out.result(f"{'':2}{'name':<28} {'commit':<10} {'decision':<10} {'intent_f1':>9}"
               f" {'entity_f1':>9} {'gate':<7} {'size':>10}  uploaded")
    for entry in manifest["models"]:
        marker = "* " if entry["name"] == manifest["latest"] else "  "
        try:
            model = store.read_model(entry["name"])
        except Exception as exc:  # one broken model is shown as such, the list goes on
            out.result(f"{marker}{entry['name']:<28} unreadable: {getattr(exc, 'message', exc)}")
            continue
        metrics = model.metrics
        out.result(
            f"{marker}{model.name:<28} {_commit(model):<10} {_decision(model):<10}"
            f" {_metric(metrics, 'intent_f1'):>9} {_metric(metrics, 'entity_f1'):>9}"
            f" {_gate(model):<7} {format_bytes(model.size):>10}  {model.uploaded_at}"
        )
    for item in manifest.get("publishing", []):
        out.result(f"  {item['name']:<28} (upload in progress or interrupted since"
                   f" {item['started_at']})")
    out.result("* = latest")
    return ExitCode.OK


def _commit(model: StoredModel) -> str:
    commit = (model.metadata.get("git") or {}).get("commit")
    return str(commit)[:10] if commit else "-"


def _decision(model: StoredModel) -> str:
    return str(model.metadata.get("decision") or "-")


def _gate(model: StoredModel) -> str:
    gate = model.metadata.get("gate")
    if isinstance(gate, dict) and "passed" in gate:
        return "passed" if gate["passed"] else "failed"
    return "passed"  # ci uploads only models that pass their gate


def _metric(metrics: Mapping[str, Any], key: str) -> str:
    value = metrics.get(key)
    if isinstance(value, dict):
        value = value.get("f1") if "f1" in value else value.get("weighted_f1")
    return f"{value:.3f}" if isinstance(value, (int, float)) else "-"
