"""The stream and durable consumers, defined once; `transcribe up` and `db migrate` apply them."""

from __future__ import annotations

from dataclasses import dataclass

from libs.contracts import subjects

STREAM_NAME = "TRANSCRIBE"
STREAM_SUBJECTS = (f"{subjects.ROOT}.>",)

TRANSCRIBER_DURABLE = "transcriber"
NOTIFIER_DURABLE = "notifier"
INSIGHTS_DURABLE = "insights"


@dataclass(frozen=True, slots=True)
class StreamSpec:
    name: str
    subjects: tuple[str, ...]
    max_age_seconds: float
    replicas: int = 1
    # Nats-Msg-Id de-duplication window: covers an outbox relay re-publishing after a crash.
    duplicate_window_seconds: float = 120.0


@dataclass(frozen=True, slots=True)
class ConsumerSpec:
    durable: str
    filter_subjects: tuple[str, ...]
    # Long jobs extend this with in_progress() heartbeats; it only bounds how fast a dead
    # worker's messages come back.
    ack_wait_seconds: float
    max_deliver: int
    max_ack_pending: int
    description: str


def stream_spec(max_age_days: int = 30, replicas: int = 1) -> StreamSpec:
    return StreamSpec(
        name=STREAM_NAME,
        subjects=STREAM_SUBJECTS,
        max_age_seconds=max_age_days * 86400.0,
        replicas=replicas,
    )


def transcriber_consumer(scope: str | None = None, *, ack_wait: float = 60.0) -> ConsumerSpec:
    """The transcriber pool's consumer; a scoped pool gets its own durable on its tenant only.

    `ack_wait` only bounds how soon a dead worker's job is redelivered: live workers send
    in_progress() heartbeats every third of it, however long the job runs."""
    if scope is None:
        return ConsumerSpec(
            durable=TRANSCRIBER_DURABLE,
            filter_subjects=(f"{subjects.AUDIO_STORED}.>",),
            ack_wait_seconds=ack_wait,
            max_deliver=10,
            max_ack_pending=1000,
            description="Transcribes stored audio",
        )
    token = subjects.tenant_token(scope)
    return ConsumerSpec(
        durable=f"{TRANSCRIBER_DURABLE}-{token.replace('~', '_')}",
        filter_subjects=(subjects.audio_stored(scope),),
        ack_wait_seconds=ack_wait,
        max_deliver=10,
        max_ack_pending=1000,
        description=f"Transcribes stored audio of tenant {scope!r}",
    )


def notifier_consumer() -> ConsumerSpec:
    return ConsumerSpec(
        durable=NOTIFIER_DURABLE,
        filter_subjects=(
            f"{subjects.TRANSCRIPT_READY}.>",
            f"{subjects.TRANSCRIPT_FAILED}.>",
            f"{subjects.TRANSCRIPT_DELETED}.>",
            f"{subjects.JOB_PROGRESS}.>",
            # services/insights: the transcription.insights webhook.
            f"{subjects.INSIGHTS_READY}.>",
        ),
        ack_wait_seconds=30.0,
        max_deliver=20,
        max_ack_pending=1000,
        description="Schedules webhook deliveries for transcript results and insights",
    )


def insights_consumer() -> ConsumerSpec:
    """services/insights: categories and LLM insights of every completed transcript."""
    return ConsumerSpec(
        durable=INSIGHTS_DURABLE,
        filter_subjects=(f"{subjects.TRANSCRIPT_READY}.>",),
        ack_wait_seconds=60.0,
        max_deliver=10,
        max_ack_pending=1000,
        description="Evaluates categories and asks the chat model about completed transcripts",
    )


# Dead letters: JetStream announces a message it gave up on (MAX_DELIVERIES) or one a consumer
# terminated (MSG_TERMINATED) as a core-NATS advisory that nobody would see later; a stream on
# those subjects keeps them so services/deadletters records them durably.
DEADLETTER_STREAM_NAME = "TRANSCRIBE_DEADLETTERS"
DEADLETTER_DURABLE = "deadletters"
ADVISORY_MAX_DELIVERIES = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES"
ADVISORY_MSG_TERMINATED = "$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED"


def deadletter_stream_spec(max_age_days: int = 30, replicas: int = 1) -> StreamSpec:
    return StreamSpec(
        name=DEADLETTER_STREAM_NAME,
        subjects=(
            f"{ADVISORY_MAX_DELIVERIES}.{STREAM_NAME}.*",
            f"{ADVISORY_MSG_TERMINATED}.{STREAM_NAME}.*",
        ),
        max_age_seconds=max_age_days * 86400.0,
        replicas=replicas,
    )


def deadletter_consumer() -> ConsumerSpec:
    return ConsumerSpec(
        durable=DEADLETTER_DURABLE,
        filter_subjects=(),
        ack_wait_seconds=30.0,
        max_deliver=-1,
        max_ack_pending=1000,
        description="Records dead-letter advisories in Postgres",
    )
