"""Which stored audio of a job may be played back: the audio as stored, the redacted copy
where the policy redacted the audio, and nothing where the policy asked for audio redaction
that is not (yet) done: an unredacted recording never leaves when the policy wanted it beeped
(fail closed)."""

from __future__ import annotations

from dataclasses import dataclass

from libs.errors import Conflict
from libs.jobs.record import Job
from libs.jobs.views import JobView
from libs.layout import redacted_audio_key
from libs.redaction.policy import Policy

WAV = "audio/wav"


@dataclass(frozen=True, slots=True)
class PlayableAudio:
    key: str
    content_type: str
    redacted: bool


def playable(job: Job, view: JobView) -> PlayableAudio:
    """The object to play; Conflict `job_deleted`, `audio_expired` (retention removed it) or
    `audio_not_redacted` (the policy's audio redaction is not done, or could not be)."""
    if job.status == "deleted":
        raise Conflict("the job was deleted", code="job_deleted")
    if view.audio_removed_at is not None:
        raise Conflict("retention removed the job's audio", code="audio_expired")
    outcome = view.redaction.audio if view.redaction is not None else None
    if outcome is not None and outcome.status == "redacted":
        if outcome.replaced_original:
            # keep=redacted: the job's audio key is the redacted .wav itself.
            return PlayableAudio(job.object_key, WAV, redacted=True)
        return PlayableAudio(redacted_audio_key(job.object_key), WAV, redacted=True)
    if outcome is not None and outcome.status == "not_redacted":
        raise Conflict(
            f"the policy asked for redacted audio, which could not be made: {outcome.reason}",
            code="audio_not_redacted",
        )
    wants_redacted = bool(job.redact) and Policy.from_spec(job.redact).audio != "none"
    if wants_redacted and (outcome is None or job.status != "completed"):
        raise Conflict(
            "the policy redacts this audio; it can be played once the job completed",
            code="audio_not_redacted",
        )
    return PlayableAudio(job.object_key, job.content_type, redacted=False)
