"""The SMTP mailer against real SMTP servers (aiosmtpd, tests/mail_fixtures.py): what the
server received, byte for byte, and how its answers become MailTemporary / MailPermanent."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from email.utils import parsedate_to_datetime

import pytest

from embedded.ports import free_port
from libs.mail import Mail, MailPermanent, MailTemporary, render, smtp_mailer
from libs.settings import Sender, Settings
from tests.mail_fixtures import SMTP_PASSWORD, SMTP_USER, SmtpTestServer

pytestmark = pytest.mark.integration

EVIL = "\r\nBcc: x@y.com"


def notification(*to: str, subject: str = "Job failed") -> Mail:
    bodies = render(
        "A job failed",
        [f"Campaign <b>Spring{EVIL}</b>"],
        [("Job", "7f3a"), ("Error", "audio_too_long")],
    )
    return Mail(to=to or ("ops@example.com",), subject=subject, text=bodies.text, html=bodies.html)


async def test_plain_smtp_delivers_text_html_message_id_and_date(
    smtp_plain: SmtpTestServer,
) -> None:
    message_id = await smtp_mailer(smtp_plain.settings()).send(notification())
    (got,) = smtp_plain.received
    assert got.mail_from == "gateway@example.com"
    assert got.rcpt_tos == ("ops@example.com",)
    assert not got.tls
    message = got.message
    assert message["Message-ID"] == message_id and message_id.endswith("@example.com>")
    assert parsedate_to_datetime(str(message["Date"])).tzinfo is not None
    assert str(message["From"]) == "Gateway <gateway@example.com>"
    assert message.get_content_type() == "multipart/alternative"
    text, html = message.iter_parts()
    assert text.get_content_type() == "text/plain" and "audio_too_long" in text.get_content()
    assert html.get_content_type() == "text/html"
    assert "&lt;b&gt;Spring" in html.get_content() and "<b>" not in html.get_content()


@pytest.mark.parametrize("where", ["subject", "encoded word", "campaign", "display name"])
async def test_injected_bcc_reaches_nobody(smtp_plain: SmtpTestServer, where: str) -> None:
    """The bytes the server received: no Bcc header, the envelope exactly `to`."""
    settings = smtp_plain.settings()
    mail = notification(subject=f"Failed in Spring{EVIL}" if where == "subject" else "Failed")
    if where == "encoded word":  # no control character: a CR LF once decoded (docs/mail.md)
        mail = notification(subject="Failed =?utf-8?q?=0D=0ABcc:_x@y.com?=")
    if where == "campaign":
        bodies = render(f"Category matched in campaign Spring{EVIL}")
        mail = Mail(
            to=("ops@example.com",),
            subject=f"cancel requested, campaign Spring{EVIL}",
            text=bodies.text,
            html=bodies.html,
        )
    if where == "display name":
        settings = replace(settings, smtp_from=Sender("gateway@example.com", f"Gateway{EVIL}"))
    await smtp_mailer(settings).send(mail)
    (got,) = smtp_plain.received
    assert got.rcpt_tos == ("ops@example.com",)
    head = got.data.split(b"\r\n\r\n", 1)[0]
    assert [line for line in head.split(b"\r\n") if line.lower().startswith(b"bcc")] == []
    assert got.message["Bcc"] is None
    assert "x@y.com" in str(got.message["Subject"]) + str(got.message["From"])  # kept as text


async def test_starttls_is_used_and_the_fixture_ca_trusted(smtp_starttls: SmtpTestServer) -> None:
    await smtp_mailer(smtp_starttls.settings()).send(notification())
    (got,) = smtp_starttls.received
    assert got.tls


async def test_starttls_with_an_untrusted_certificate_is_temporary(
    smtp_starttls: SmtpTestServer,
) -> None:
    settings = replace(
        smtp_starttls.settings(), smtp_ca_file=None
    )  # the system's CAs do not know the test CA
    with pytest.raises(MailTemporary, match=r"^TLS failed: .*CERTIFICATE_VERIFY_FAILED"):
        await smtp_mailer(settings).send(notification())
    assert smtp_starttls.received == []


async def test_smtp_plain_against_a_server_requiring_starttls_is_refused(
    smtp_starttls: SmtpTestServer,
) -> None:
    url = f"smtp://127.0.0.1:{smtp_starttls.port}"
    settings = smtp_starttls.settings({"SMTP_URL": url})
    with pytest.raises(MailPermanent, match="530"):
        await smtp_mailer(settings).send(notification())


async def test_smtps_implicit_tls(smtps: SmtpTestServer) -> None:
    await smtp_mailer(smtps.settings()).send(notification())
    (got,) = smtps.received
    assert got.tls


async def test_auth_success_over_starttls(smtp_auth: SmtpTestServer) -> None:
    settings = smtp_auth.settings(user=SMTP_USER, password=SMTP_PASSWORD)
    await smtp_mailer(settings).send(notification())
    (got,) = smtp_auth.received
    assert got.tls and got.user == SMTP_USER


async def test_auth_failure_is_permanent_with_the_reply(smtp_auth: SmtpTestServer) -> None:
    settings = smtp_auth.settings(user=SMTP_USER, password="wrong")
    with pytest.raises(MailPermanent) as info:
        await smtp_mailer(settings).send(notification())
    assert info.value.reason.startswith("535")
    assert smtp_auth.received == []


async def test_no_credentials_where_auth_is_required_is_permanent(
    smtp_auth: SmtpTestServer,
) -> None:
    with pytest.raises(MailPermanent, match="530"):
        await smtp_mailer(smtp_auth.settings()).send(notification())


async def test_550_unknown_recipient_is_permanent(smtp_plain: SmtpTestServer) -> None:
    smtp_plain.replies["gone@example.com"] = "550 5.1.1 <gone@example.com>: no such user"
    with pytest.raises(MailPermanent) as info:
        await smtp_mailer(smtp_plain.settings()).send(notification("gone@example.com"))
    assert info.value.reason == "gone@example.com: 550 5.1.1 <gone@example.com>: no such user"
    assert smtp_plain.received == []


async def test_451_is_temporary(smtp_plain: SmtpTestServer) -> None:
    smtp_plain.replies["busy@example.com"] = "451 4.7.1 greylisted, try again later"
    with pytest.raises(MailTemporary, match=r"451 4\.7\.1 greylisted"):
        await smtp_mailer(smtp_plain.settings()).send(notification("busy@example.com"))


async def test_one_refused_recipient_of_two_still_sends(smtp_plain: SmtpTestServer) -> None:
    smtp_plain.replies["gone@example.com"] = "550 5.1.1 no such user"
    mailer = smtp_mailer(smtp_plain.settings())
    message_id = await mailer.send(notification("gone@example.com", "ops@example.com"))
    (got,) = smtp_plain.received
    assert got.rcpt_tos == ("ops@example.com",)
    assert got.message["Message-ID"] == message_id


async def test_refused_connection_is_temporary() -> None:
    port = free_port()  # nothing listens there
    settings = Settings.from_env(
        {"SMTP_URL": f"smtp://127.0.0.1:{port}", "SMTP_FROM": "gateway@example.com"}
    )
    with pytest.raises(MailTemporary, match="cannot reach"):
        await smtp_mailer(settings).send(notification())


async def test_a_silent_server_times_out_as_temporary() -> None:
    """A server that accepts the connection and never greets."""
    connections: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    settings = Settings.from_env(
        {
            "SMTP_URL": f"smtp://127.0.0.1:{port}",
            "SMTP_FROM": "gateway@example.com",
            "SMTP_TIMEOUT_SECONDS": "0.5",
        }
    )
    try:
        with pytest.raises(MailTemporary, match="timed out"):
            await smtp_mailer(settings).send(notification())
    finally:
        for writer in connections:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_a_message_that_cannot_be_built_safely_is_permanent_and_never_sent(
    smtp_plain: SmtpTestServer,
) -> None:
    # A Sender made in code rather than from SMTP_FROM (which is validated at start-up).
    settings = replace(
        smtp_plain.settings(), smtp_from=Sender("gateway@example.com\r\nBcc: x@y.com", "G")
    )
    with pytest.raises(MailPermanent, match="could not be built safely"):
        await smtp_mailer(settings).send(notification())
    assert smtp_plain.received == []
