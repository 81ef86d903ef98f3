"""The transcriber's failure table: each failure class ends an attempt one way."""

from __future__ import annotations

import pytest

from libs.blobstore import BlobNotFound, BlobStoreUnavailable
from libs.db import DatabaseUnavailable
from services.transcriber.engines import (
    EngineAuthError,
    PermanentEngineError,
    TransientEngineError,
)
from services.transcriber.failures import (
    Failure,
    InvalidRedaction,
    RedactionFailed,
    TranscriptRefused,
    classify,
)


@pytest.mark.parametrize(
    ("exc", "code", "permanent"),
    [
        (RedactionFailed("redaction did not finish within 60 s"), "redaction_failed", True),
        (TranscriptRefused("refused"), "storage_refused", True),
        (InvalidRedaction("bad"), "invalid_redact", True),
        (BlobNotFound("k"), "audio_missing", True),
        (PermanentEngineError("undecodable", code="invalid_media"), "invalid_media", True),
        (PermanentEngineError("too many", code="too_many_channels"), "too_many_channels", True),
        (TransientEngineError("busy"), "engine_unavailable", False),
        (BlobStoreUnavailable("down"), "dependency_unavailable", False),
        (DatabaseUnavailable("down"), "dependency_unavailable", False),
    ],
)
def test_each_failure_has_one_code_and_one_fate(exc: Exception, code: str, permanent: bool) -> None:
    failure = classify(exc)
    assert failure is not None
    assert (failure.code, failure.permanent) == (code, permanent)


def test_a_transient_engine_error_keeps_the_servers_retry_after() -> None:
    exc = TransientEngineError("slow down", code="rate_limited", retry_after=7.0)
    assert classify(exc) == Failure("rate_limited", "slow down", False, 7.0)


def test_what_the_table_does_not_list_is_not_classified() -> None:
    # Rejected credentials pause the consumer; anything unexpected is the consumer's to decide.
    assert classify(EngineAuthError("bad key")) is None
    assert classify(ValueError("bug")) is None
