"""The mail sink of `transcribe up`: without SMTP_URL the embedded stack starts a real SMTP
server on loopback, points SMTP_URL at it, logs every message it receives and says so in the
banner; with SMTP_URL nothing is started."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from embedded.mailsink import SINK_SENDER, mail_banner, mail_sink
from embedded.stack import banner, infrastructure
from libs.mail import Mail, MailTemporary, smtp_mailer
from libs.settings import Settings

pytestmark = pytest.mark.integration


def hello() -> Mail:
    return Mail(
        to=("ops@example.com",),
        subject="3 jobs failed in campaign Spring\r\nBcc: x@y.com",
        text="3 jobs failed",
        html="<p>3 jobs failed</p>",
    )


async def test_a_message_sent_to_the_sink_is_logged() -> None:
    async with mail_sink(Settings.from_env({})) as settings:
        assert settings.smtp_url is not None and settings.smtp_url.host == "127.0.0.1"
        assert settings.smtp_url.security == "none" and settings.smtp_from == SINK_SENDER
        with capture_logs() as logs:
            message_id = await smtp_mailer(settings).send(hello())
    (received,) = [e for e in logs if e["event"] == "demo_mail_received"]
    assert received["mail_from"] == "transcribe@localhost"
    assert received["to"] == ["ops@example.com"]
    assert received["subject"] == "3 jobs failed in campaign Spring Bcc: x@y.com"
    assert received["message_id"] == message_id


async def test_the_sink_keeps_a_configured_sender() -> None:
    async with mail_sink(Settings.from_env({"SMTP_FROM": "Ops <ops@example.com>"})) as s:
        assert s.smtp_from is not None and s.smtp_from.address == "ops@example.com"


async def test_no_sink_when_smtp_url_is_set() -> None:
    configured = Settings.from_env(
        {"SMTP_URL": "smtps://mail.example.com", "SMTP_FROM": "a@example.com"}
    )
    async with mail_sink(configured) as settings:
        assert settings is configured
    assert "a local sink" not in mail_banner(configured)
    assert "off (SMTP_URL is not set)" in mail_banner(Settings.from_env({}))


async def test_transcribe_up_infrastructure_starts_the_sink_and_prints_it(
    settings: Settings, tmp_path: Path
) -> None:
    """`infrastructure()` as `transcribe up` runs it, with Postgres, NATS and S3 configured
    (the session's servers), so only the demo servers and the sink start."""
    async with infrastructure(replace(settings, home=tmp_path)) as infra:
        up = infra.settings
        assert up.smtp_url is not None and up.smtp_url.host == "127.0.0.1"
        text = banner(up, infra.sample)
        assert f"E-mail notifications go to {up.smtp_url.display}" in text
        assert "a local sink that logs each message" in text
        with capture_logs() as logs:
            await smtp_mailer(up).send(hello())
        assert [e["subject"] for e in logs if e["event"] == "demo_mail_received"] == [
            "3 jobs failed in campaign Spring Bcc: x@y.com"
        ]
    # Stopped with the stack.
    with pytest.raises(MailTemporary, match="cannot reach"):
        await smtp_mailer(up).send(hello())
