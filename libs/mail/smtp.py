"""The SMTP mailer: aiosmtplib, one connection per mail (plain, STARTTLS or implicit TLS, AUTH
when SMTP_URL has a user), the driver's errors translated here into MailTemporary /
MailPermanent, with the server's reply as the reason."""

from __future__ import annotations

import ssl

import aiosmtplib
import structlog

from libs.mail.mailer import MailPermanent, MailTemporary
from libs.mail.message import Mail, build_message
from libs.settings import Sender, Settings, SettingsError, SmtpServer

log = structlog.get_logger()


class SmtpMailer:
    def __init__(
        self,
        server: SmtpServer,
        sender: Sender,
        *,
        timeout: float,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self.server = server
        self.sender = sender
        self._timeout = timeout
        self._tls = tls_context

    async def send(self, mail: Mail) -> str:
        try:
            message = build_message(mail, self.sender)
        except ValueError as exc:  # the last header check (libs.mail.message): never sent
            raise MailPermanent(f"the message could not be built safely: {exc}") from exc
        message_id = str(message["Message-ID"])
        client = aiosmtplib.SMTP(
            hostname=self.server.host,
            port=self.server.port,
            username=self.server.username,
            password=self.server.password,
            use_tls=self.server.security == "tls",
            # smtp:// never upgrades; smtp+starttls:// insists (refused without STARTTLS).
            start_tls=self.server.security == "starttls",
            tls_context=self._tls if self.server.security != "none" else None,
            timeout=self._timeout,
        )
        try:
            async with client:
                # Recipients given explicitly: the envelope is exactly `mail.to`, whatever the
                # headers say.
                refused, _ = await client.send_message(
                    message, sender=self.sender.address, recipients=list(mail.to)
                )
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            error = translate(exc)
            log.warning(
                "mail_not_sent",
                message_id=message_id,
                recipients=len(mail.to),
                server=self.server.display,
                temporary=isinstance(error, MailTemporary),
                reason=error.reason,
            )
            raise error from exc
        # Some recipients accepted: the mail is out, so this is a success (sending again would
        # repeat it to those); the refused ones are logged, one line each.
        for recipient, response in refused.items():
            log.warning(
                "mail_recipient_refused",
                message_id=message_id,
                recipient=recipient,
                reason=f"{response.code} {response.message}",
            )
        log.info(
            "mail_sent",
            message_id=message_id,
            recipients=len(mail.to) - len(refused),
            server=self.server.display,
        )
        return message_id


def translate(exc: BaseException) -> MailTemporary | MailPermanent:
    """aiosmtplib's (and the socket's) errors as the two the callers know."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        # Every recipient refused: temporary if any of them may accept later.
        reason = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
        if any(400 <= r.code < 500 for r in exc.recipients):
            return MailTemporary(reason)
        return MailPermanent(reason)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        reason = f"{exc.code} {exc.message}"
        return MailPermanent(reason) if 500 <= exc.code < 600 else MailTemporary(reason)
    if isinstance(exc, aiosmtplib.SMTPTimeoutError | TimeoutError):
        return MailTemporary(f"timed out: {exc}")
    if isinstance(exc, aiosmtplib.SMTPConnectError | aiosmtplib.SMTPServerDisconnected):
        return MailTemporary(f"cannot reach the SMTP server: {exc}")
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return MailTemporary(f"TLS failed: {exc}")
    if isinstance(exc, OSError):
        return MailTemporary(f"cannot reach the SMTP server: {exc}")
    # The server lacks what SMTP_URL asks for (STARTTLS, an AUTH mechanism we speak), or
    # SMTPUTF8: the same mail will fail the same way.
    return MailPermanent(str(exc))


def tls_context(settings: Settings) -> ssl.SSLContext:
    """Certificates verified, against SMTP_CA_FILE when set, else the system's CAs."""
    if settings.smtp_ca_file is not None:
        return ssl.create_default_context(cafile=str(settings.smtp_ca_file))
    return ssl.create_default_context()


def smtp_mailer(settings: Settings) -> SmtpMailer:
    """The mailer SMTP_URL and SMTP_FROM describe; SettingsError when either is missing."""
    if settings.smtp_url is None:
        raise SettingsError("SMTP_URL is not set")
    if settings.smtp_from is None:
        raise SettingsError("SMTP_URL is set but SMTP_FROM is not (the From of every mail)")
    return SmtpMailer(
        settings.smtp_url,
        settings.smtp_from,
        timeout=settings.smtp_timeout,
        tls_context=tls_context(settings) if settings.smtp_url.security != "none" else None,
    )
