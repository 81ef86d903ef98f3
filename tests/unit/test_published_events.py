"""Which job an event names, as the relay records it for erasure (libs/outbox/published.py)."""

from __future__ import annotations

import uuid

from libs.contracts import (
    AudioStored,
    TranscriptionDeleted,
    TranscriptionFailed,
    encode,
    new_event_id,
    utcnow,
)
from libs.outbox.published import job_of, retry_delay


def test_every_event_naming_a_job_is_found_by_its_id() -> None:
    job = str(uuid.uuid4())
    common = {"event_id": new_event_id(), "occurred_at": utcnow(), "audio_file_id": job}
    stored = AudioStored(
        **common, tenant="t", campaign="c", storage_key="k", content_type="audio/wav", size=1,
        sha256="x", phone="+14155550123",
    )  # fmt: skip
    failed = TranscriptionFailed(
        **common, tenant="t", error_code="x", detail="y", attempts=1, permanent=True
    )
    deleted = TranscriptionDeleted(**common, tenant="t", deleted_by="key:x")
    for event in (stored, failed, deleted):
        assert job_of(encode(event)) == uuid.UUID(job)


def test_a_payload_naming_no_job_is_left_alone() -> None:
    for payload in (
        b"",
        b"not json",
        b'{"audio_file_id":"short"}',
        b'{"audio_file_id":"' + "\u00e9".encode() * 18 + b'"}',
        b'{"other":"' + str(uuid.uuid4()).encode() + b'"}',
    ):
        assert job_of(payload) is None


def test_retries_grow_to_ten_minutes() -> None:
    assert [retry_delay(n) for n in (1, 2, 3)] == [5.0, 10.0, 20.0]
    assert retry_delay(50) == 600.0
