"""One behaviour suite, run against every backend (local folder, HTTP server, moto S3)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from pipeline.errors import BrokenModelError, StoreIntegrityError, StoreNotFoundError
from pipeline.fingerprint import summarize_changes
from pipeline.stores import StoredModel

from .conftest import StoreHarness, strip_summaries

FINGERPRINT = {"sections": {"nlu_examples": "a" * 64, "stories": "b" * 64, "config_nlu": "c" * 64},
               "examples": {"greet": ["0123456789abcdef", "fedcba9876543210"]},
               "stories": ["00112233aabbccdd"]}
#: what the manifest's summary carries: the fingerprint without its per-item digests
HEAD = {"sections": FINGERPRINT["sections"]}
METADATA = {"commit": "0123abc", "mode": "full", "trained_at": "2024-05-01T11:59:00Z"}
METRICS = {"intent_f1": 0.91, "entity_f1": 0.87}


def publish(h: StoreHarness, name: str, *, seed: int = 0, keep: int = 10) -> StoredModel:
    return h.store.publish(
        h.archive(name, seed=seed),
        name=name,
        fingerprint={**FINGERPRINT, "name": name},
        metadata=METADATA,
        metrics=METRICS,
        keep=keep,
    )


def test_empty_store_has_no_latest(harness: StoreHarness) -> None:
    assert harness.store.read_latest() is None
    assert harness.store.read_manifest() is None


def test_read_latest_returns_side_files_without_downloading_the_archive(
    harness: StoreHarness,
) -> None:
    published = publish(harness, "m1")
    harness.recorder.calls.clear()

    latest = harness.store.read_latest()

    assert latest == published
    assert latest.fingerprint == {**FINGERPRINT, "name": "m1"}
    assert latest.metadata == METADATA
    assert latest.metrics == METRICS
    assert latest.archive_key == "models/m1/model.tar.gz"
    assert latest.uploaded_at == "2024-05-01T12:01:00Z"
    assert harness.recorder.reads_of(latest.archive_key) == []
    if harness.server is not None:
        assert harness.server.requests("GET", r"model\.tar\.gz$") == []


def test_manifest_records_the_layout(harness: StoreHarness) -> None:
    archive = harness.archive("m1")
    publish(harness, "m1")

    manifest = harness.store.read_manifest()

    assert manifest == {
        "format": 1,
        "latest": "m1",
        "models": [
            {
                "name": "m1",
                "archive": "models/m1/model.tar.gz",
                "sha256": hashlib.sha256(archive.read_bytes()).hexdigest(),
                "size": archive.stat().st_size,
                "uploaded_at": "2024-05-01T12:01:00Z",
                "fingerprint": "models/m1/fingerprint.json",
                "metadata": "models/m1/metadata.json",
                "metrics": "models/m1/metrics.json",
                "summary": {
                    "fingerprint_head": {**HEAD, "name": "m1"},
                    "metadata": METADATA,
                    "metrics": METRICS,
                    "predictions": False,
                },
            }
        ],
    }


def test_download_round_trips_the_archive(harness: StoreHarness, tmp_path: Path) -> None:
    published = publish(harness, "m1", seed=7)
    dest_dir = tmp_path / "downloads"

    path = harness.store.download("m1", dest_dir)

    assert path == dest_dir / "m1.tar.gz"
    assert path.read_bytes() == harness.archive("m1", seed=7).read_bytes()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == published.sha256
    assert sorted(p.name for p in dest_dir.iterdir()) == ["m1.tar.gz"]


def test_publish_twice_makes_the_second_latest_and_lists_both(harness: StoreHarness) -> None:
    publish(harness, "m1", seed=1)
    second = publish(harness, "m2", seed=2)

    latest = harness.store.read_latest()
    manifest = harness.store.read_manifest()

    assert latest == second
    assert manifest is not None
    assert manifest["latest"] == "m2"
    assert [m["name"] for m in manifest["models"]] == ["m2", "m1"]


def test_keep_prunes_the_oldest_model(harness: StoreHarness) -> None:
    for index, name in enumerate(["m1", "m2", "m3"]):
        publish(harness, name, seed=index, keep=2)

    manifest = harness.store.read_manifest()

    assert manifest is not None
    assert [m["name"] for m in manifest["models"]] == ["m3", "m2"]
    backend = harness.recorder.inner
    for leaf in ["model.tar.gz", "fingerprint.json", "metadata.json", "metrics.json"]:
        assert not backend.exists(f"models/m1/{leaf}")
        assert backend.exists(f"models/m2/{leaf}")
        assert backend.exists(f"models/m3/{leaf}")


def test_republishing_a_name_replaces_its_entry(harness: StoreHarness, tmp_path: Path) -> None:
    publish(harness, "m1", seed=1)
    publish(harness, "m2", seed=2)
    again = publish(harness, "m1", seed=3)

    manifest = harness.store.read_manifest()

    assert manifest is not None
    assert [m["name"] for m in manifest["models"]] == ["m1", "m2"]
    assert harness.store.read_latest() == again
    assert (
        harness.store.download("m1", tmp_path / "d").read_bytes()
        == harness.archive("m1", seed=3).read_bytes()
    )


def test_corrupted_archive_fails_download_and_leaves_no_file(
    harness: StoreHarness, tmp_path: Path
) -> None:
    published = publish(harness, "m1")
    harness.recorder.inner.put_bytes(published.archive_key, b"not the archive")
    dest_dir = tmp_path / "downloads"

    with pytest.raises(StoreIntegrityError) as raised:
        harness.store.download("m1", dest_dir)

    assert published.sha256 in str(raised.value)
    assert list(dest_dir.iterdir()) == []


def test_corrupt_manifest_is_an_integrity_error(harness: StoreHarness) -> None:
    publish(harness, "m1")
    harness.recorder.inner.put_bytes("manifest.json", b'{"format": 1, "latest": "m1", "models": [')

    with pytest.raises(StoreIntegrityError, match=r"corrupt manifest\.json"):
        harness.store.read_latest()


def test_only_the_latest_entry_carries_the_summary(harness: StoreHarness) -> None:
    publish(harness, "m1", seed=1)
    publish(harness, "m2", seed=2)

    manifest = harness.store.read_manifest()

    assert manifest is not None
    assert [("summary" in m) for m in manifest["models"]] == [True, False]
    older = harness.store.read_model("m1")  # from its side files
    assert older.metrics == METRICS and older.metadata == METADATA


def test_rollback_moves_the_summary_to_the_new_latest(harness: StoreHarness) -> None:
    publish(harness, "m1", seed=1)
    publish(harness, "m2", seed=2)

    harness.store.rollback("m1")

    manifest = harness.store.read_manifest()
    assert manifest is not None and manifest["latest"] == "m1"
    assert [("summary" in m) for m in manifest["models"]] == [False, True]  # m2, m1
    assert manifest["models"][1]["summary"]["metrics"] == METRICS
    harness.recorder.calls.clear()
    latest = harness.store.read_latest()
    assert latest is not None and latest.name == "m1" and latest.newer == ("m2",)
    assert [k for m, k in harness.recorder.calls if m.startswith("get")] == ["manifest.json"]


def test_missing_side_file_of_a_legacy_entry_is_an_integrity_error(harness: StoreHarness) -> None:
    publish(harness, "m1")
    strip_summaries(harness.recorder.inner)
    harness.recorder.inner.delete("models/m1/metrics.json")

    with pytest.raises(StoreIntegrityError, match=r"metrics\.json"):
        harness.store.read_latest()


def test_a_legacy_manifest_without_summary_reads_the_side_files(harness: StoreHarness) -> None:
    published = publish(harness, "m1")
    strip_summaries(harness.recorder.inner)
    harness.recorder.calls.clear()

    latest = harness.store.read_latest()

    assert latest == published
    assert harness.recorder.reads_of("models/m1/fingerprint.json") == ["get_bytes"]
    assert harness.recorder.reads_of("models/m1/metadata.json") == ["get_bytes"]


def test_a_skip_read_with_a_summary_reads_the_manifest_only(harness: StoreHarness) -> None:
    publish(harness, "m1")
    harness.recorder.calls.clear()

    latest = harness.store.read_latest()
    changes = summarize_changes(latest.fingerprint, {**FINGERPRINT, "name": "m1"}) if latest else None

    assert latest is not None and latest.metadata == METADATA
    assert changes is not None and changes.nothing_changed
    assert [k for m, k in harness.recorder.calls if m.startswith("get")] == ["manifest.json"]


def test_per_item_digests_are_read_only_when_their_section_changed(harness: StoreHarness) -> None:
    publish(harness, "m1")
    harness.recorder.calls.clear()
    latest = harness.store.read_latest()
    assert latest is not None
    grown = {"sections": {**FINGERPRINT["sections"], "nlu_examples": "d" * 64},
             "examples": {"greet": [*FINGERPRINT["examples"]["greet"], "1111111111111111"],
                          "bye": ["2222222222222222"]},
             "stories": FINGERPRINT["stories"]}

    changes = summarize_changes(latest.fingerprint, grown)

    assert changes.changed_sections == ("nlu_examples",)
    assert changes.examples_added == {"greet": 1, "bye": 1} and changes.examples_removed == {}
    assert harness.recorder.reads_of("models/m1/fingerprint.json") == ["get_bytes"]
    assert dict(latest.fingerprint) == {**FINGERPRINT, "name": "m1"}  # loaded once, whole


def test_a_missing_fingerprint_file_breaks_the_model_only_when_its_details_are_needed(
    harness: StoreHarness,
) -> None:
    publish(harness, "m1")
    harness.recorder.inner.delete("models/m1/fingerprint.json")
    latest = harness.store.read_latest()
    assert latest is not None
    assert summarize_changes(latest.fingerprint, {**FINGERPRINT, "name": "m1"}).nothing_changed

    with pytest.raises(BrokenModelError, match=r"fingerprint\.json"):
        summarize_changes(latest.fingerprint, {**FINGERPRINT, "sections": {"nlu_examples": "d" * 64}})


def test_download_of_an_unlisted_model_is_not_found(harness: StoreHarness, tmp_path: Path) -> None:
    publish(harness, "m1")

    with pytest.raises(StoreNotFoundError, match="'nope'"):
        harness.store.download("nope", tmp_path)


def test_urls_point_into_the_store(harness: StoreHarness) -> None:
    published = publish(harness, "m1")

    assert published.url == harness.store.url_for("m1")
    assert published.url.startswith(harness.store.url)
    assert published.url.endswith("models/m1/model.tar.gz")


def test_publish_onto_a_corrupt_manifest_uploads_nothing(harness: StoreHarness) -> None:
    harness.recorder.inner.put_bytes("manifest.json", b"[]")

    with pytest.raises(StoreIntegrityError):
        publish(harness, "m1")

    assert [call for call in harness.recorder.calls if call[0] in ("put_file", "put_bytes")] == []
