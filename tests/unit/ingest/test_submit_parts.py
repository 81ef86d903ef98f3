"""Pure pieces of ingest: object paths as the reference states them, de-dup keys, the token
bucket arithmetic, and the lookup SQL file format."""

from __future__ import annotations

import uuid

import pytest

from libs.jobs import claims
from libs.layout import transcript_keys
from libs.ratelimit import MemoryRateLimiter, refill
from libs.settings import SettingsError
from services.ingest.lookup import BY_ID, BY_LOCATION, CAMPAIGN_NAME, LookupQueries
from services.ingest.submit import object_stem

FILE_ID = uuid.UUID("0b7e7c1e-5d2a-4c4e-9a55-7d1f1d9e2c11")


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("gateway", f"gateway/spring_renewals/audio/442079460018/{FILE_ID}"),
        ("acme/calls", f"acme/calls/spring_renewals/audio/442079460018/{FILE_ID}"),
        ("", f"spring_renewals/audio/442079460018/{FILE_ID}"),
    ],
)
def test_audio_key_is_prefix_campaign_audio_phone_uuid(prefix: str, expected: str) -> None:
    # [<b2_prefix>/]<campaign>/audio/<phone>/<uuid>.<ext>; the extension comes from sniffing.
    stem = object_stem(
        prefix=prefix, campaign="spring_renewals", phone="+442079460018", file_id=FILE_ID
    )
    assert stem == expected
    keys = transcript_keys(stem + ".wav", campaign="spring_renewals")
    # Transcripts mirror the audio path under the campaign, without the gateway prefix.
    assert keys.json == f"spring_renewals/transcriptions/json/442079460018/{FILE_ID}.json"
    assert keys.txt == f"spring_renewals/transcriptions/txt/442079460018/{FILE_ID}.txt"


def test_unknown_phone_and_campaign_have_fixed_segments() -> None:
    stem = object_stem(prefix="gateway", campaign="unassigned", phone=None, file_id=FILE_ID)
    assert stem == f"gateway/unassigned/audio/unknown/{FILE_ID}"


def test_dedup_keys_are_scoped_by_prefix() -> None:
    assert claims.dedup_keys(prefix="a", url_sha1="s", idempotency_key=None) == ["url:a:s"]
    assert claims.dedup_keys(prefix="a", url_sha1="s", idempotency_key="k") == [
        "idem:k",
        "url:a:s",
    ]
    assert claims.dedup_keys(prefix="a", url_sha1=None, idempotency_key=None) == []


def test_the_sweep_covers_every_extension_sniffing_can_produce() -> None:
    from libs.audio import SUPPORTED

    keys = claims.object_keys("p/c/audio/u/id")
    assert {f"p/c/audio/u/id.{f.ext}" for f in SUPPORTED} == set(keys)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_token_bucket_bursts_then_refills() -> None:
    clock = Clock()
    limiter = MemoryRateLimiter(clock)
    results = [(await limiter.take("k", 6)).allowed for _ in range(7)]
    assert results == [True] * 6 + [False]
    denied = await limiter.take("k", 6)
    assert not denied.allowed
    assert denied.retry_after == 10  # 6 a minute: one token every 10 s
    clock.now += 9.9
    assert not (await limiter.take("k", 6)).allowed
    clock.now += 0.2
    assert (await limiter.take("k", 6)).allowed
    # Keys have separate buckets.
    assert (await limiter.take("other", 6)).allowed


def test_refill_is_capped_at_the_limit() -> None:
    assert refill(0.0, 30.0, 60) == 30.0
    assert refill(10.0, 3600.0, 60) == 60.0
    assert refill(5.0, -1.0, 60) == 5.0  # a clock going backwards never takes tokens


def test_lookup_sql_file_format() -> None:
    queries = LookupQueries.parse(
        "-- comment before\n-- name: by_id\nSELECT 1;\n\n--name:campaign_name\nSELECT 2\n"
    )
    assert queries.by_id == "SELECT 1"
    assert queries.by_location is None  # no fallback unless the file has one
    assert queries.campaign_name == "SELECT 2"
    defaults = LookupQueries()
    assert (defaults.by_id, defaults.by_location, defaults.campaign_name) == (
        BY_ID,
        BY_LOCATION,
        CAMPAIGN_NAME,
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("SELECT 1", "before the first"),
        ("-- name: by_location\nSELECT 1", "by_id query is required"),
        ("-- name: by_id\n  \n", "empty"),
        ("-- name: by_id\nSELECT 1\n-- name: by_id\nSELECT 2", "twice"),
        ("-- name: delete_all\nDELETE FROM x", "unknown query"),
    ],
)
def test_bad_lookup_sql_files(text: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        LookupQueries.parse(text)
