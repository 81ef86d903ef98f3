"""The replay operations. Semantics (docs/operations.md, "Replay with the nats CLI"):

* A replayed AudioStored re-transcribes only a job that is not completed, unless it says
  `force`. Every copy gets a NEW event_id and Nats-Msg-Id: it is a new event, and JetStream's
  duplicate window would silently drop a copy that reused the old Nats-Msg-Id.
* A replayed TranscriptReady / TranscriptionFailed keeps its bytes, so its event_id and hence
  the webhook-id stay the same (the notifier re-arms the same delivery); only the Nats-Msg-Id
  is new, for the same duplicate-window reason.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import datetime

import msgspec
from nats.js import JetStreamContext

from libs.bus import jetstream
from libs.contracts import audio_stored_decoder, encode, new_event_id, subjects, utcnow
from libs.replay.scan import StoredEvent, scan

PUBLISH_WINDOW = 64


@dataclass(slots=True)
class ReplayResult:
    scanned: int = 0
    republished: int = 0
    # (stream seq of the original, Nats-Msg-Id of the copy)
    copies: list[tuple[int, str]] = field(default_factory=list)
    # Each copy's (subject, data) and (stream, seq): for libs.outbox.published.record, so a
    # deletion erases the copies too.
    stored: list[tuple[tuple[str, bytes], tuple[str, int]]] = field(default_factory=list)


def _token(tenant: str | None) -> str:
    return "*" if tenant is None else subjects.tenant_token(tenant)


def job_filter(tenant: str | None) -> str:
    """Every event subject of one tenant: the tenant is the last token, the job id is not in
    the subject, so a job's events are found by this filter plus its audio_file_id."""
    return f"{subjects.ROOT}.*.*.{_token(tenant)}"


async def job_events(
    js: JetStreamContext,
    audio_file_id: str,
    *,
    tenant: str | None = None,
    since: datetime | None = None,
) -> list[StoredEvent]:
    """The events of one job, oldest first (`since`: the job's creation time narrows the scan)."""
    return [
        e
        async for e in scan(js, job_filter(tenant), start_time=since)
        if e.json().get("audio_file_id") == audio_file_id
    ]


def replay_copy(event: StoredEvent, *, force: bool = False) -> tuple[bytes, str]:
    """The payload and Nats-Msg-Id of a replayed copy of `event` (see the module docstring)."""
    if event.event_type == "audio.stored":
        original = audio_stored_decoder.decode(event.data)
        copy = msgspec.structs.replace(
            original,
            event_id=new_event_id(),
            occurred_at=utcnow(),
            force=original.force or force,
        )
        return encode(copy), copy.event_id
    if force:
        raise ValueError("force applies to AudioStored only")
    return event.data, f"replay-{uuid.uuid4()}"


async def republish(js: JetStreamContext, event: StoredEvent, *, force: bool = False) -> str:
    msg_id, _data, _position = await publish_copy(js, event, force=force)
    return msg_id


async def publish_copy(
    js: JetStreamContext, event: StoredEvent, *, force: bool = False
) -> tuple[str, bytes, tuple[str, int]]:
    """Publish a copy of `event`: its Nats-Msg-Id, its bytes and its (stream, seq)."""
    data, msg_id = replay_copy(event, force=force)
    headers = {"Nats-Msg-Id": msg_id}
    trace = event.headers.get("Trace-Id")
    if trace:
        headers["Trace-Id"] = trace
    position = await jetstream.publish(js, event.subject, data, headers=headers)
    return msg_id, data, position


async def replay_audio(
    js: JetStreamContext,
    *,
    start_time: datetime | None = None,
    start_seq: int | None = None,
    tenant: str | None = None,
    force: bool = False,
    dry_run: bool = False,
) -> ReplayResult:
    """Re-publish every AudioStored from a time or sequence (one copy per job: its latest)."""
    result = ReplayResult()
    latest: dict[str, StoredEvent] = {}
    async for event in scan(
        js,
        f"{subjects.AUDIO_STORED}.{_token(tenant)}",
        start_time=start_time,
        start_seq=start_seq,
    ):
        result.scanned += 1
        job = event.json().get("audio_file_id")
        if isinstance(job, str):
            latest[job] = event
    await _republish_all(
        js, sorted(latest.values(), key=lambda e: e.seq), result, force=force, dry_run=dry_run
    )
    return result


async def _republish_all(
    js: JetStreamContext,
    events: list[StoredEvent],
    result: ReplayResult,
    *,
    force: bool,
    dry_run: bool,
) -> None:
    # In windows, so a big replay does not wait for one PubAck at a time.
    for i in range(0, len(events), PUBLISH_WINDOW):
        window = events[i : i + PUBLISH_WINDOW]
        if dry_run:
            ids = ["(dry run)"] * len(window)
        else:
            copies = await asyncio.gather(*(publish_copy(js, e, force=force) for e in window))
            ids = [msg_id for msg_id, _, _ in copies]
            result.republished += len(window)
            result.stored.extend(
                ((e.subject, data), position)
                for e, (_, data, position) in zip(window, copies, strict=True)
            )
        result.copies.extend((e.seq, msg_id) for e, msg_id in zip(window, ids, strict=True))


async def resend_webhooks(
    js: JetStreamContext,
    *,
    since: datetime,
    until: datetime | None = None,
    tenant: str | None = None,
    include_failed: bool = True,
    dry_run: bool = False,
) -> ReplayResult:
    """Re-publish every transcript result of a time range: the same webhook-ids are sent again."""
    result = ReplayResult()
    seen: set[str] = set()
    chosen: list[StoredEvent] = []
    async for event in scan(
        js, f"{subjects.ROOT}.transcript.*.{_token(tenant)}", start_time=since, until=until
    ):
        result.scanned += 1
        if event.event_type == "transcript.failed" and not include_failed:
            continue
        event_id = event.json().get("event_id")
        if not isinstance(event_id, str) or event_id in seen:
            continue  # an earlier replay's copy of an event already being re-sent
        seen.add(event_id)
        chosen.append(event)
    await _republish_all(js, chosen, result, force=False, dry_run=dry_run)
    return result
