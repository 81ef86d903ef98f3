"""PCI/PII redaction of transcripts: policies, detectors, and their application to every field.

``Policy`` says what to redact (entity classes), how to substitute it and what to keep;
``detect`` finds values in text (typed or spoken); ``redact_transcript`` applies a policy to a
whole transcript and returns the evidence (class, count, time spans, never the values).
Both take an optional ``deadline`` (``time.monotonic()`` seconds) and raise ``RedactionTimeout``
past it, so a caller can fail closed.
"""

from libs.redaction.apply import (
    TIMED_FIELDS,
    RedactedSpan,
    RedactionReport,
    redact_text,
    redact_transcript,
    substitute,
)
from libs.redaction.deadline import RedactionTimeout
from libs.redaction.detect import Finding, detect, is_card_number
from libs.redaction.policy import NO_REDACTION, EntityClass, Policy

__all__ = [
    "NO_REDACTION",
    "TIMED_FIELDS",
    "EntityClass",
    "Finding",
    "Policy",
    "RedactedSpan",
    "RedactionReport",
    "RedactionTimeout",
    "detect",
    "is_card_number",
    "redact_text",
    "redact_transcript",
    "substitute",
]
