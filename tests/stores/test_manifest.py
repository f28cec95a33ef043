"""Pure manifest and layout functions, tested with literals."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from pipeline.errors import StoreError, StoreIntegrityError
from pipeline.stores.layout import check_name, model_keys
from pipeline.stores.manifest import (
    Manifest,
    Publishing,
    add_entry,
    announce,
    commit_entry,
    find_stale,
    build_entry,
    parse_manifest,
    render_manifest,
)

SHA = "0" * 64


def entry(name: str):  # type: ignore[no-untyped-def]
    return build_entry(name, sha256=SHA, size=10, uploaded_at="2024-05-01T12:00:00Z")


def manifest_bytes(**overrides: object) -> bytes:
    data: dict[str, object] = {"format": 1, "latest": "m1", "models": [entry("m1").to_dict()]}
    data.update(overrides)
    return json.dumps(data).encode()


def test_render_then_parse_round_trips() -> None:
    manifest = Manifest(latest="m2", models=(entry("m2"), entry("m1")))

    assert parse_manifest(render_manifest(manifest), where="x") == manifest


@pytest.mark.parametrize(
    ("data", "detail"),
    [
        (b"{oops", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"[]", "expected a JSON object"),
        (manifest_bytes(format=2), "unsupported manifest format 2"),
        (manifest_bytes(models={}), "'models' must be a list"),
        (manifest_bytes(latest="ghost"), "'latest' is 'ghost'"),
        (manifest_bytes(models=[entry("m1").to_dict(), entry("m1").to_dict()]), "duplicate"),
        (manifest_bytes(models=[{**entry("m1").to_dict(), "size": "10"}]), "size must be int"),
        (manifest_bytes(models=[{**entry("m1").to_dict(), "sha256": "abc"}]), "not a sha256"),
        (
            manifest_bytes(models=[{**entry("m1").to_dict(), "archive": "../../etc/passwd"}]),
            "invalid store key",
        ),
        (manifest_bytes(models=[{"name": "m1"}]), "lacks archive"),
    ],
    ids=[
        "syntax",
        "encoding",
        "not-object",
        "format",
        "models-type",
        "latest-unlisted",
        "duplicate",
        "size-type",
        "sha256",
        "unsafe-key",
        "missing-fields",
    ],
)
def test_corrupt_manifests_are_integrity_errors(data: bytes, detail: str) -> None:
    with pytest.raises(StoreIntegrityError, match=detail) as raised:
        parse_manifest(data, where="s3://b/manifest.json")

    assert raised.value.location == "s3://b/manifest.json"


def test_empty_manifest_without_latest_is_valid() -> None:
    assert parse_manifest(manifest_bytes(latest=None, models=[]), where="x") == Manifest(None, ())


def test_add_entry_puts_the_new_model_first_and_prunes_beyond_keep() -> None:
    old = Manifest(latest="m2", models=(entry("m2"), entry("m1")))

    new, pruned = add_entry(old, entry("m3"), keep=2)

    assert [m.name for m in new.models] == ["m3", "m2"]
    assert new.latest == "m3"
    assert [m.name for m in pruned] == ["m1"]


def test_add_entry_replaces_a_model_of_the_same_name() -> None:
    new, pruned = add_entry(Manifest("m1", (entry("m1"),)), entry("m1"), keep=1)

    assert new.models == (entry("m1"),) and pruned == ()


def test_add_entry_needs_keep_of_at_least_one() -> None:
    with pytest.raises(StoreError, match="at least 1"):
        add_entry(None, entry("m1"), keep=0)


@pytest.mark.parametrize("name", ["", "..", "a/b", ".hidden", "a..b", "x" * 129, "spa ce"])
def test_invalid_model_names_are_refused(name: str) -> None:
    with pytest.raises(StoreError, match="invalid model name"):
        check_name(name)


def test_model_keys_follow_the_layout() -> None:
    assert model_keys("20240501-abc").all() == (
        "models/20240501-abc/model.tar.gz",
        "models/20240501-abc/fingerprint.json",
        "models/20240501-abc/metadata.json",
        "models/20240501-abc/metrics.json",
    )


# ------------------------------------------------------------------ announcements and merging

NOON = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def test_announce_then_commit_moves_the_model_from_publishing_to_models() -> None:
    announced = announce(None, "m1", NOON, grace=HOUR)
    assert announced.publishing == (Publishing("m1", "2024-05-01T12:00:00Z"),)
    assert json.loads(render_manifest(announced))["publishing"] == [
        {"name": "m1", "started_at": "2024-05-01T12:00:00Z"}
    ]

    committed, pruned = commit_entry(announced, entry("m1"), keep=10)

    assert committed == Manifest(latest="m1", models=(entry("m1"),))
    assert "publishing" not in json.loads(render_manifest(committed))
    assert pruned == ()


def test_a_name_announced_within_the_grace_period_is_refused_and_taken_over_after() -> None:
    announced = announce(None, "m1", NOON, grace=HOUR)

    with pytest.raises(StoreError, match="another run is publishing a model called 'm1'"):
        announce(announced, "m1", NOON + timedelta(minutes=59), grace=HOUR)
    later = announce(announced, "m1", NOON + HOUR, grace=HOUR)
    assert later.publishing == (Publishing("m1", "2024-05-01T13:00:00Z"),)


def test_commit_spares_protected_models_and_ends_stale_announcements() -> None:
    manifest = Manifest(
        latest="theirs",
        models=(entry("theirs"), entry("old")),
        publishing=(Publishing("dead", "2024-05-01T10:00:00Z"), Publishing("busy", "2024-05-01T11:59:00Z")),
    )
    stale = find_stale(manifest, NOON, grace=HOUR)
    assert stale == (Publishing("dead", "2024-05-01T10:00:00Z"),)

    committed, pruned = commit_entry(
        manifest, entry("ours"), keep=1, protected=frozenset({"theirs"}), stale=stale
    )

    assert [m.name for m in committed.models] == ["ours", "theirs"]
    assert [m.name for m in pruned] == ["old"]
    assert committed.publishing == (Publishing("busy", "2024-05-01T11:59:00Z"),)


@pytest.mark.parametrize(
    "publishing, detail",
    [
        ({}, "'publishing' must be a list"),
        ([{"name": "m2"}], "publishing[0] must be {name, started_at}"),
        ([{"name": "../x", "started_at": "2024-05-01T12:00:00Z"}], "publishing[0] is invalid"),
        ([{"name": "m2", "started_at": "yesterday"}], "publishing[0] is invalid"),
        ([{"name": "m2", "started_at": "2024-05-01T12:00:00"}], "has no time zone"),
    ],
    ids=["not-a-list", "no-time", "bad-name", "bad-time", "naive-time"],
)
def test_a_malformed_publishing_list_is_a_corrupt_manifest(publishing: object, detail: str) -> None:
    with pytest.raises(StoreIntegrityError) as raised:
        parse_manifest(manifest_bytes(publishing=publishing), where="x")
    assert detail in str(raised.value)
