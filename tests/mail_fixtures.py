"""Real SMTP servers for the mail tests (aiosmtpd on free loopback ports, in the test loop):
plain, STARTTLS required, implicit TLS (SMTPS) and AUTH (over STARTTLS), each recording what it
received (envelope and the raw bytes) and answering chosen replies for chosen recipients
(`server.replies["gone@example.com"] = "550 5.1.1 no such user"`). The TLS servers use a
certificate for 127.0.0.1 from a CA this module makes (trustme); `server.settings()` trusts it
through SMTP_CA_FILE."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import trustme
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from embedded.mailsink import serve_smtp
from libs.settings import Settings

SMTP_USER = "notifier@example.com"
SMTP_PASSWORD = "s3cret:/@%"  # URL-special characters: SMTP_URL must percent-decode them
SENDER = "Gateway <gateway@example.com>"


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes  # as the client sent it (after the DATA dot-unstuffing)
    tls: bool
    user: str | None

    @property
    def message(self) -> EmailMessage:
        parsed = message_from_bytes(self.data, policy=default_policy)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class Recorder:
    """aiosmtpd handler: keeps every message; refuses the recipients in `replies`."""

    received: list[Received] = field(default_factory=list)
    replies: dict[str, str] = field(default_factory=dict)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        reply = self.replies.get(address.lower())
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.received.append(
            Received(
                mail_from=envelope.mail_from or "",
                rcpt_tos=tuple(envelope.rcpt_tos),
                data=envelope.original_content or b"",
                tls=server.transport is not None
                and server.transport.get_extra_info("ssl_object") is not None,
                user=session.auth_data.login.decode() if session.auth_data else None,
            )
        )
        return "250 Message accepted"


@dataclass
class SmtpTestServer:
    scheme: str
    port: int
    recorder: Recorder
    ca_file: Path | None = None
    host: str = "127.0.0.1"

    @property
    def received(self) -> list[Received]:
        return self.recorder.received

    @property
    def replies(self) -> dict[str, str]:
        return self.recorder.replies

    def url(self, user: str | None = None, password: str | None = None) -> str:
        auth = ""
        if user is not None:
            auth = quote(user, safe="") + (f":{quote(password, safe='')}" if password else "") + "@"
        return f"{self.scheme}://{auth}{self.host}:{self.port}"

    def settings(self, extra: Mapping[str, str] | None = None, **url: Any) -> Settings:
        env = {"SMTP_URL": self.url(**url), "SMTP_FROM": SENDER, "SMTP_TIMEOUT_SECONDS": "20"}
        if self.ca_file is not None:
            env["SMTP_CA_FILE"] = str(self.ca_file)
        return Settings.from_env({**env, **(extra or {})})


@dataclass(frozen=True)
class TestCertificates:
    ca_file: Path
    server_context: ssl.SSLContext


@pytest.fixture(scope="session")
def smtp_certificates(tmp_path_factory: pytest.TempPathFactory) -> TestCertificates:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    ca_file = tmp_path_factory.mktemp("smtp-ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return TestCertificates(ca_file=ca_file, server_context=context)


def _authenticate(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
) -> AuthResult:
    ok = (
        isinstance(data, LoginPassword)
        and data.login.decode() == SMTP_USER
        and data.password.decode() == SMTP_PASSWORD
    )
    if not ok:
        return AuthResult(success=False, handled=False)  # aiosmtpd answers 535
    return AuthResult(success=True, auth_data=data)


@pytest.fixture
async def smtp_plain() -> AsyncIterator[SmtpTestServer]:
    recorder = Recorder()
    async with serve_smtp(recorder) as port:
        yield SmtpTestServer("smtp", port, recorder)


@pytest.fixture
async def smtp_starttls(smtp_certificates: TestCertificates) -> AsyncIterator[SmtpTestServer]:
    """Refuses mail until the client ran STARTTLS."""
    recorder = Recorder()
    async with serve_smtp(
        recorder, tls_context=smtp_certificates.server_context, require_starttls=True
    ) as port:
        yield SmtpTestServer("smtp+starttls", port, recorder, smtp_certificates.ca_file)


@pytest.fixture
async def smtps(smtp_certificates: TestCertificates) -> AsyncIterator[SmtpTestServer]:
    recorder = Recorder()
    async with serve_smtp(recorder, implicit_tls=smtp_certificates.server_context) as port:
        yield SmtpTestServer("smtps", port, recorder, smtp_certificates.ca_file)


@pytest.fixture
async def smtp_auth(smtp_certificates: TestCertificates) -> AsyncIterator[SmtpTestServer]:
    """STARTTLS, then AUTH (SMTP_USER / SMTP_PASSWORD) before any mail."""
    recorder = Recorder()
    async with serve_smtp(
        recorder,
        tls_context=smtp_certificates.server_context,
        require_starttls=True,
        authenticator=_authenticate,
        auth_required=True,
        auth_require_tls=True,
    ) as port:
        yield SmtpTestServer("smtp+starttls", port, recorder, smtp_certificates.ca_file)
