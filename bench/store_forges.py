"""Upload and latest-read wall time per store backend for an HWU64-sized archive, and the
HTTP requests a skip decision makes (run by hand, over loopback).

    PYTHONPATH=. .venv/bin/python bench/store_forges.py --size-mb 40 --repeat 3

Backends: a folder, the test suite's HTTP store (ETag/If-Match), and the local fakes of
the GitHub Releases and GitLab generic-package APIs (tests/fake_forges.py). The archive
is random (incompressible) bytes. "skip decision" is what ``deltatrain ci`` reads before
it decides to skip: ``read_latest()`` (manifest + fingerprint/metadata/metrics, no
archive) and ``check_archive()`` (the archive's size); "manifest read" is the manifest
alone. Requests are counted at the fake servers. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.stores import ModelStore, open_store  # noqa: E402
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


def run(size_mb: int, repeat: int) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        archive = work / "model.tar.gz"
        with open(archive, "wb") as out:
            for _ in range(size_mb):
                out.write(os.urandom(1024 * 1024))
        http = FakeStoreServer().start()
        github = FakeGitHubReleases().start()
        gitlab = FakeGitLabPackages().start()
        os.environ.update({"GITHUB_API_URL": github.api_url, "GITHUB_TOKEN": GITHUB_TOKEN,
                           "CI_API_V4_URL": gitlab.api_url, "GITLAB_TOKEN": GITLAB_TOKEN})
        counters: dict[str, Callable[[], int]] = {
            "local": lambda: 0,
            "http": lambda: len(http.log),
            "github": lambda: len(github.log),
            "gitlab": lambda: len(gitlab.log),
        }
        urls = {
            "local": str(work / "store"),
            "http": http.url("/store/"),
            "github": "github://octo/assistant",
            "gitlab": f"gitlab://{gitlab.origin.split('://')[1]}/acme/assistant/models",
        }
        try:
            for kind, url in urls.items():
                store: ModelStore = open_store(url, base_dir=work)
                uploads, reads, downloads = [], [], []
                skip_requests = manifest_requests = 0
                for index in range(repeat):
                    name = f"m{index}"
                    uploads.append(_timed(lambda store=store, name=name: store.publish(
                        archive, name=name, fingerprint={"sections": {"nlu": "a" * 64}},
                        metadata={"name": name}, metrics={"intent_f1": 0.9})))
                    reads.append(_timed(store.read_latest))
                    downloads.append(_timed(lambda store=store, name=name, kind=kind: store.download(name, work / "dl" / kind)))
                    before = counters[kind]()
                    latest = store.read_latest()
                    assert latest is not None
                    store.check_archive(latest)
                    skip_requests = counters[kind]() - before
                    before = counters[kind]()
                    store.read_manifest()
                    manifest_requests = counters[kind]() - before
                rows.append({
                    "backend": kind,
                    "upload_s": statistics.median(uploads),
                    "read_latest_s": statistics.median(reads),
                    "download_s": statistics.median(downloads),
                    "skip_requests": skip_requests if kind != "local" else "-",
                    "manifest_requests": manifest_requests if kind != "local" else "-",
                })
        finally:
            http.stop()
            github.stop()
            gitlab.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rows = run(args.size_mb, args.repeat)
    print(f"archive {args.size_mb} MiB, median of {args.repeat}\n")
    print("| backend | upload (s) | latest read (s) | download+verify (s) |"
          " HTTP requests: skip decision | HTTP requests: manifest read |")
    print("|---|---:|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['backend']} | {row['upload_s']:.2f} | {row['read_latest_s']:.3f} |"
              f" {row['download_s']:.2f} | {row['skip_requests']} | {row['manifest_requests']} |")


if __name__ == "__main__":
    main()
