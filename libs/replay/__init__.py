"""Replaying events from the TRANSCRIBE stream with nats-py: the operations of the `nats` CLI
recipes in docs/operations.md, for operators without the nats CLI (`transcribe replay ...`)
and for the tests that keep those recipes honest."""

from libs.replay.operations import (
    ReplayResult,
    job_events,
    publish_copy,
    replay_audio,
    republish,
    resend_webhooks,
)
from libs.replay.scan import StoredEvent, scan

__all__ = [
    "ReplayResult",
    "StoredEvent",
    "job_events",
    "publish_copy",
    "replay_audio",
    "republish",
    "resend_webhooks",
    "scan",
]
