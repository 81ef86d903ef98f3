"""The JSON services/insights stores beside a job's transcripts
(`[<prefix>/]<campaign>/insights/<uuid>.json`, libs.layout.insights_key)."""

from __future__ import annotations

from datetime import datetime

import msgspec

from libs.contracts import CategoryMatch, Insights, InsightsReady


class InsightsDocument(msgspec.Struct, frozen=True, kw_only=True):
    """A job's categories and insights as stored in the bucket: what its InsightsReady says,
    without the event's envelope. Redacted text only (evidence quotes the redacted transcript)."""

    audio_file_id: str
    status: str
    reason: str | None = None
    campaign: str | None = None
    recording_id: str | None = None
    categories: tuple[CategoryMatch, ...] = ()
    insights: Insights | None = None
    evaluated_at: datetime

    @classmethod
    def of(cls, event: InsightsReady) -> InsightsDocument:
        return cls(
            audio_file_id=event.audio_file_id,
            status=event.status,
            reason=event.reason,
            campaign=event.campaign,
            recording_id=event.recording_id,
            categories=event.categories,
            insights=event.insights,
            evaluated_at=event.occurred_at,
        )
