"""How an attempt that failed ends, in one table: failure class -> (code, permanent?).

A permanent failure is recorded and announced once (TranscriptionFailed) and the message is
rejected: retrying would pay for the transcription again and fail the same way. A transient
one is recorded with a cooldown and the message retried (after JetStream's last delivery it
becomes permanent too). Credentials the engine rejects are neither: consumption pauses
(see `Transcriber._pause`), so they are not in the table.
"""

from __future__ import annotations

from dataclasses import dataclass

from libs.blobstore import BlobNotFound, BlobStoreUnavailable
from libs.db import DatabaseUnavailable
from services.transcriber.engines import EngineError, PermanentEngineError, TransientEngineError


class TranscriptRefused(Exception):
    """The object store finally refused a transcript upload (a 4xx such as a key too long or a
    policy refusal): retrying cannot help, and every retry would pay for the transcription
    again, so the job fails permanently with `storage_refused`."""


class RedactionFailed(Exception):
    """Redaction raised or did not finish in time. Nothing unredacted has been stored or sent
    (redaction comes before every write), and the same transcript would fail the same way, so
    the job fails permanently with `redaction_failed`."""


class InvalidRedaction(Exception):
    """The job's redaction policy does not parse (a row written by hand or by a newer
    version): the job cannot be redacted as asked, so it is not transcribed at all."""


# Class -> (code, permanent?); the first class the error is an instance of wins. A code of
# None: the error's own (an engine error says which one it is).
FAILURES: tuple[tuple[type[Exception], str | None, bool], ...] = (
    (InvalidRedaction, "invalid_redact", True),
    (PermanentEngineError, None, True),
    (TranscriptRefused, "storage_refused", True),
    (RedactionFailed, "redaction_failed", True),
    (BlobNotFound, "audio_missing", True),
    (TransientEngineError, None, False),
    # Dependency outages: retried with backoff, never a failed job while attempts remain.
    (BlobStoreUnavailable, "dependency_unavailable", False),
    (DatabaseUnavailable, "dependency_unavailable", False),
)
FAILURE_TYPES: tuple[type[Exception], ...] = tuple(cls for cls, _, _ in FAILURES)


@dataclass(frozen=True, slots=True)
class Failure:
    code: str
    detail: str
    permanent: bool
    # The server's Retry-After, for a transient engine error that had one.
    retry_after: float | None = None


def classify(exc: Exception) -> Failure | None:
    """What the table says about `exc`; None for an error it does not list."""
    for cls, code, permanent in FAILURES:
        if isinstance(exc, cls):
            engine = exc if isinstance(exc, EngineError) else None
            return Failure(
                code=code or (engine.code if engine is not None else "error"),
                detail=engine.detail if engine is not None else str(exc),
                permanent=permanent,
                retry_after=exc.retry_after if isinstance(exc, TransientEngineError) else None,
            )
    return None
