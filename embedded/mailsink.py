"""The local SMTP sink of `transcribe up`: when SMTP_URL is not set, mail goes to a real SMTP
server (aiosmtpd) on loopback that accepts every message and logs it (one line: from, to,
subject, Message-ID), so a newcomer sees a notification arrive without a mail server.

`serve_smtp` is the one way this project runs aiosmtpd in the current event loop; the mail test
fixtures start theirs (STARTTLS, implicit TLS, AUTH) with it too.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from email import message_from_bytes
from email.policy import default as default_policy
from typing import TYPE_CHECKING, Any

import structlog

from embedded.ports import LOOPBACK
from libs.settings import Sender, Settings, SmtpServer

if TYPE_CHECKING:
    from aiosmtpd.smtp import SMTP, Envelope, Session

log = structlog.get_logger()

# The From of the embedded stack's mail when SMTP_FROM is not set.
SINK_SENDER = Sender(address="transcribe@localhost", name="Transcription gateway")
# The sinks running in this process (for the banner).
_running_sinks: set[SmtpServer] = set()


@asynccontextmanager
async def serve_smtp(
    handler: Any,
    host: str = LOOPBACK,
    port: int = 0,
    *,
    implicit_tls: ssl.SSLContext | None = None,
    **smtp_options: Any,
) -> AsyncIterator[int]:
    """Run an aiosmtpd server for `handler` on host:port (0: any free port) in this event
    loop until the block ends; yields the bound port. `implicit_tls`: TLS from the first byte
    (SMTPS); `smtp_options` go to aiosmtpd's SMTP (tls_context for STARTTLS, authenticator,
    auth_required, require_starttls, ...)."""
    # Imported here: aiosmtpd is in the embedded extra, and this module is imported by the CLI.
    from aiosmtpd.smtp import SMTP

    loop = asyncio.get_running_loop()
    smtp_options.setdefault("hostname", "localhost")
    server = await loop.create_server(
        lambda: SMTP(handler, loop=loop, **smtp_options), host, port, ssl=implicit_tls
    )
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        await server.wait_closed()


class SinkHandler:
    """Accepts every message and logs it."""

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        message = message_from_bytes(raw, policy=default_policy)
        log.info(
            "demo_mail_received",
            mail_from=envelope.mail_from,
            to=list(envelope.rcpt_tos),
            subject=str(message.get("Subject", "")),
            message_id=str(message.get("Message-ID", "")),
            size=len(raw),
        )
        return "250 OK: logged by the transcribe up mail sink"


def mail_banner(settings: Settings) -> str:
    """The banner's lines about mail (`transcribe up`)."""
    if settings.smtp_url is None:
        return "  E-mail notifications: off (SMTP_URL is not set)\n"
    sender = settings.smtp_from.address if settings.smtp_from else "nobody: SMTP_FROM is not set"
    lines = f"  E-mail notifications go to {settings.smtp_url.display}, from {sender}\n"
    if settings.smtp_url in _running_sinks:
        lines += (
            "    a local sink that logs each message (demo_mail_received);"
            " set SMTP_URL for a real server\n"
        )
    return lines


@asynccontextmanager
async def mail_sink(settings: Settings, port: int = 0) -> AsyncIterator[Settings]:
    """Without SMTP_URL: a sink on loopback, and `settings` completed to send to it (SMTP_FROM
    defaults to SINK_SENDER). With SMTP_URL: nothing started, `settings` as they are."""
    if settings.smtp_url is not None:
        yield settings
        return
    async with serve_smtp(SinkHandler(), LOOPBACK, port) as bound:
        sink = SmtpServer(security="none", host=LOOPBACK, port=bound)
        _running_sinks.add(sink)
        try:
            yield replace(settings, smtp_url=sink, smtp_from=settings.smtp_from or SINK_SENDER)
        finally:
            _running_sinks.discard(sink)
