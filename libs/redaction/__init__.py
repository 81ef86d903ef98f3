"""PCI/PII redaction of transcripts: policies, detectors, and their application to every field.

``Policy`` says what to redact (entity classes), how to substitute it and what to keep;
``detect`` finds values in text (typed or spoken); ``redact_transcript`` applies a policy to a
whole transcript (a conversation speaker by speaker) and returns the evidence (class, count,
time spans, never the values); ``redact_chunk`` is what a chunk saved for resuming may hold;
``RedactionRecord`` is that evidence as a job stores it.
"""

from libs.redaction.apply import (
    TIMED_FIELDS,
    RedactedSpan,
    RedactionReport,
    redact_chunk,
    redact_field,
    redact_text,
    redact_transcript,
    substitute,
)
from libs.redaction.deadline import RedactionTimeout
from libs.redaction.detect import Finding, detect, is_card_number
from libs.redaction.policy import NO_REDACTION, EntityClass, Policy
from libs.redaction.record import AudioOutcome, RedactionRecord

__all__ = [
    "NO_REDACTION",
    "TIMED_FIELDS",
    "AudioOutcome",
    "EntityClass",
    "Finding",
    "Policy",
    "RedactedSpan",
    "RedactionRecord",
    "RedactionReport",
    "RedactionTimeout",
    "detect",
    "is_card_number",
    "redact_chunk",
    "redact_field",
    "redact_text",
    "redact_transcript",
    "substitute",
]
