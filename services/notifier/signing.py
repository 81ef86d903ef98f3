"""Standard Webhooks signatures, made with the reference `standardwebhooks` package itself so
receivers verifying with it always agree with us."""

from __future__ import annotations

from datetime import datetime

from standardwebhooks.webhooks import Webhook


def signature_header(
    secrets: list[str], msg_id: str, timestamp: datetime, body: bytes
) -> str | None:
    """`v1,<sig>` for each secret, space separated: during a rotation receivers holding either
    the old or the new secret accept the delivery."""
    if not secrets:
        return None
    payload = body.decode("utf-8")
    return " ".join(Webhook(secret).sign(msg_id, timestamp, payload) for secret in secrets)


def headers(secrets: list[str], msg_id: str, timestamp: datetime, body: bytes) -> dict[str, str]:
    out = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "content-type": "application/json",
        "user-agent": "transcription-gateway-webhooks/1",
    }
    sig = signature_header(secrets, msg_id, timestamp, body)
    if sig:
        out["webhook-signature"] = sig
    return out
