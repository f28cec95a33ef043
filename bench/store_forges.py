"""Upload and latest-read wall time per store backend for an HWU64-sized archive, and the
requests a skip decision makes (run by hand, over loopback).

    PYTHONPATH=. .venv/bin/python bench/store_forges.py --size-mb 40 --repeat 3

Backends: a folder, the test suite's HTTP store (ETag/If-Match), S3 on a moto server, and
the local fakes of the GitHub Releases and GitLab generic-package APIs
(tests/fake_forges.py). The archive is random (incompressible) bytes. The skip path is
what ``deltatrain ci`` reads before it skips: ``read_latest()`` then ``check_archive()``,
once from a fresh ModelStore (a new CI process) and once more from the same one (the
conditional manifest read of a warm process). Requests are counted at the servers (S3:
boto3 API calls). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.fingerprint import summarize_changes  # noqa: E402
from pipeline.stores import ModelStore, open_store  # noqa: E402
from pipeline.stores.s3 import S3Backend  # noqa: E402
from tests.fake_forges import (  # noqa: E402
    GITHUB_TOKEN,
    GITLAB_TOKEN,
    FakeGitHubReleases,
    FakeGitLabPackages,
)
from tests.stores.fake_http import FakeStoreServer  # noqa: E402


def _timed(action: Callable[[], Any]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def _s3_store(endpoint: str) -> tuple[ModelStore, Callable[[], int], Callable[[], ModelStore]]:
    """An S3 store on a moto server, counting API calls through boto3's event hooks."""
    import boto3

    client = boto3.session.Session().client(
        "s3", endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id="bench", aws_secret_access_key="bench")
    client.create_bucket(Bucket="bench")
    calls = [0]

    def count(**_: Any) -> None:
        calls[0] += 1

    client.meta.events.register("before-call.s3", count)

    def fresh() -> ModelStore:
        return ModelStore(S3Backend(client, "bench", "store"))

    return fresh(), lambda: calls[0], fresh


def run(size_mb: int, repeat: int, intents: int, examples: int) -> list[dict[str, Any]]:
    from moto.server import ThreadedMotoServer

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        archive = work / "model.tar.gz"
        with open(archive, "wb") as out:
            for _ in range(size_mb):
                out.write(os.urandom(1024 * 1024))
        fingerprint = _fingerprint(intents, max(1, examples // intents))
        http = FakeStoreServer().start()
        github = FakeGitHubReleases().start()
        gitlab = FakeGitLabPackages().start()
        moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        moto.start()
        host, port = moto.get_host_and_port()
        os.environ.update({"GITHUB_API_URL": github.api_url, "GITHUB_TOKEN": GITHUB_TOKEN,
                           "CI_API_V4_URL": gitlab.api_url, "GITLAB_TOKEN": GITLAB_TOKEN})
        urls = {
            "local": str(work / "store"),
            "http": http.url("/store/"),
            "github": "github://octo/assistant",
            "gitlab": f"gitlab://{gitlab.origin.split('://')[1]}/acme/assistant/models",
        }
        stores: dict[str, tuple[Callable[[], ModelStore], Callable[[], int]]] = {
            kind: (lambda url=url: open_store(url, base_dir=work), counter)
            for (kind, url), counter in zip(urls.items(), [
                lambda: 0, lambda: len(http.log), lambda: len(github.log), lambda: len(gitlab.log)])
        }
        _, s3_count, s3_fresh = _s3_store(f"http://{host}:{port}")
        stores = {**dict(list(stores.items())[:2]), "s3": (s3_fresh, s3_count),
                  **dict(list(stores.items())[2:])}
        try:
            for kind, (fresh, count) in stores.items():
                store = fresh()
                uploads, reads, downloads = [], [], []
                cold = warm = 0
                for index in range(repeat):
                    name = f"m{index}"
                    uploads.append(_timed(lambda store=store, name=name: store.publish(
                        archive, name=name, fingerprint=fingerprint,
                        metadata={"name": name, "git": {"commit": "0" * 40}},
                        metrics={"intent_f1": 0.9, "entity_f1": 0.8})))
                    reader = fresh()  # a fresh CI process
                    before = count()
                    reads.append(_timed(lambda reader=reader: _skip(reader, fingerprint)))
                    cold = count() - before
                    before = count()
                    _skip(reader, fingerprint)  # the same process again: conditional read
                    warm = count() - before
                    downloads.append(_timed(
                        lambda store=store, name=name, kind=kind: store.download(name, work / "dl" / kind)))
                rows.append({
                    "backend": kind,
                    "upload_s": statistics.median(uploads),
                    "skip_read_s": statistics.median(reads),
                    "download_s": statistics.median(downloads),
                    "cold": cold if kind != "local" else "-",
                    "warm": warm if kind != "local" else "-",
                    "manifest_kib": len(store.backend.get_bytes("manifest.json")) / 1024,
                })
        finally:
            http.stop()
            github.stop()
            gitlab.stop()
            moto.stop()
    return rows


def _skip(store: ModelStore, fingerprint: dict[str, Any]) -> None:
    """What ``deltatrain ci`` reads before it skips: the latest model, the comparison of its
    fingerprint with the data's (the same here), the archive check."""
    latest = store.read_latest()
    assert latest is not None
    assert summarize_changes(latest.fingerprint, fingerprint).nothing_changed
    store.check_archive(latest)


def _fingerprint(intents: int, examples_per_intent: int) -> dict[str, Any]:
    """A fingerprint shaped like deltatrain's: one 16-hex digest per training example."""
    examples = {f"intent_{i}": [f"{i:04x}{j:012x}" for j in range(examples_per_intent)]
                for i in range(intents)}
    return {"fingerprint_format": 1, "sections": {"nlu_examples": "a" * 64, "config_core": "b" * 64},
            "labels": {"intents": sorted(examples)}, "examples": examples}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--intents", type=int, default=40, help="HWU64: 64")
    parser.add_argument("--examples", type=int, default=1000, help="HWU64 train: about 10000")
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
    rows = run(args.size_mb, args.repeat, args.intents, args.examples)
    print(f"archive {args.size_mb} MiB, fingerprint of {args.examples} examples in {args.intents}"
          f" intents, median of {args.repeat}\n")
    print("| backend | upload (s) | skip read, fresh process (s) | download+verify (s) |"
          " requests per skip: fresh process | same process again | manifest (KiB) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['backend']} | {row['upload_s']:.2f} | {row['skip_read_s']:.3f} |"
              f" {row['download_s']:.2f} | {row['cold']} | {row['warm']} | {row['manifest_kib']:.1f} |")


if __name__ == "__main__":
    main()
