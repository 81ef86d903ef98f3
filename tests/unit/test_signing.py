"""Webhook signatures must verify with the reference `standardwebhooks` package."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from libs.apikeys import generate_webhook_secret
from services.notifier import signing
from services.notifier.worker import MAX_ATTEMPTS, RETRY_SCHEDULE, next_delay


def test_signature_verifies_with_reference_package() -> None:
    secret = generate_webhook_secret()
    body = b'{"type":"transcription.completed","data":{"x":1}}'
    headers = signing.headers([secret], "msg_1", datetime.now(UTC), body)
    assert Webhook(secret).verify(body, headers) == {
        "type": "transcription.completed",
        "data": {"x": 1},
    }


def test_rotation_sends_both_signatures() -> None:
    old, new = generate_webhook_secret(), generate_webhook_secret()
    body = b'{"a":1}'
    headers = signing.headers([new, old], "msg_2", datetime.now(UTC), body)
    assert len(headers["webhook-signature"].split(" ")) == 2
    Webhook(old).verify(body, headers)
    Webhook(new).verify(body, headers)


def test_tampered_body_fails_verification() -> None:
    secret = generate_webhook_secret()
    headers = signing.headers([secret], "msg_3", datetime.now(UTC), b'{"a":1}')
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(b'{"a":2}', headers)


def test_retry_schedule() -> None:
    assert MAX_ATTEMPTS == 8
    first = next_delay(1, None)
    assert first is not None and 4.5 <= first <= 5.5
    assert next_delay(MAX_ATTEMPTS, None) is None
    # A Retry-After longer than the schedule wins; a shorter one does not shorten it.
    later = next_delay(1, 120.0)
    assert later == 120.0
    assert RETRY_SCHEDULE[-1] == 36000.0


def test_no_secret_means_no_headers_at_all() -> None:
    # Every webhook is signed: the unsigned request this used to build no longer exists.
    with pytest.raises(signing.Unsigned):
        signing.headers([], "msg_4", datetime.now(UTC), b'{"a":1}')
