"""Standard Webhooks signatures, made with the reference `standardwebhooks` package itself so
receivers verifying with it always agree with us. There is no unsigned request: without a
secret there are no headers to send (`Unsigned`)."""

from __future__ import annotations

from datetime import datetime

from standardwebhooks.webhooks import Webhook


class Unsigned(ValueError):
    """No signing secret: the delivery must not be sent."""


def signature_header(secrets: list[str], msg_id: str, timestamp: datetime, body: bytes) -> str:
    """`v1,<sig>` for each secret, space separated: during a rotation receivers holding either
    the old or the new secret accept the delivery. Raises Unsigned without a secret."""
    if not secrets:
        raise Unsigned("no signing secret")
    payload = body.decode("utf-8")
    return " ".join(Webhook(secret).sign(msg_id, timestamp, payload) for secret in secrets)


def headers(secrets: list[str], msg_id: str, timestamp: datetime, body: bytes) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": signature_header(secrets, msg_id, timestamp, body),
        "content-type": "application/json",
        "user-agent": "transcription-gateway-webhooks/1",
    }
