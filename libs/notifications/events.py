"""From what happened (an event on the bus, a dead letter) to the `Item` that rules notify on.
Pure: the job's facts are read by the caller (`items.job_facts`)."""

from __future__ import annotations

from datetime import datetime

from msgspec.structs import replace

from libs.contracts import InsightsReady, TranscriptionFailed, TranscriptReady
from libs.notifications.items import JobFacts
from libs.notifications.message import Evidence, Item, one_line, scrubbed

CODE_CHARS = 100
NAME_CHARS = 100


def _base(job: JobFacts, audio_file_id: str, at: datetime) -> Item:
    return Item(
        events=(),
        audio_file_id=audio_file_id,
        at=at,
        campaign=one_line(job.campaign, 200),
        recording_id=scrubbed(job.recording_id, 100) or None,
        phone=job.phone,
        duration=job.duration,
    )


def item_for(
    event: TranscriptReady | TranscriptionFailed | InsightsReady | object, job: JobFacts
) -> Item | None:
    """The item an event gives, or None for events no rule asks about (deleted, progress)."""
    if isinstance(event, TranscriptReady):
        base = _base(job, event.audio_file_id, event.occurred_at)
        return replace(base, events=("completed",), duration=event.duration)
    if isinstance(event, TranscriptionFailed):
        return replace(
            _base(job, event.audio_file_id, event.occurred_at),
            events=("failed",),
            error_code=one_line(event.error_code, CODE_CHARS),
            error_detail=scrubbed(event.detail) or None,
        )
    if isinstance(event, InsightsReady):
        return _insights_item(event, job)
    return None


def _insights_item(event: InsightsReady, job: JobFacts) -> Item | None:
    names: list[str] = []
    evidence: list[Evidence] = []
    for match in event.categories:
        name = one_line(match.name, NAME_CHARS) or ""
        if not name:
            continue
        names.append(f"category:{name}")
        if match.matches:
            first = match.matches[0]
            # Evidence is the redacted utterance; scrubbed again (digits, control characters).
            evidence.append(
                Evidence(category=name, text=scrubbed(first.text, 500), start=first.start)
            )
    outcome = None
    if event.insights is not None and event.insights.outcome:
        outcome = one_line(event.insights.outcome, NAME_CHARS)
        if outcome:
            names.append(f"outcome:{outcome}")
    if not names:
        return None
    base = _base(job, event.audio_file_id, event.occurred_at)
    return replace(
        base,
        events=tuple(dict.fromkeys(names)),
        evidence=tuple(evidence),
        outcome=outcome,
        campaign=base.campaign or one_line(event.campaign, 200),
    )


def dead_letter_item(
    job: JobFacts,
    *,
    at: datetime,
    kind: str,
    event_type: str | None,
    consumer: str,
    deliveries: int,
) -> Item:
    what = one_line(event_type, 50) or "an event"
    return replace(
        _base(job, str(job.id), at),
        events=("dead_lettered",),
        error_code=one_line(kind, CODE_CHARS),
        error_detail=scrubbed(f"{what} gave up on {consumer} after {deliveries} deliveries"),
    )
