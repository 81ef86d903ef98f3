"""The SMTP settings' values: the server of SMTP_URL and the sender of SMTP_FROM, each parsed and
checked once at start-up (libs/settings/settings.py declares them). libs/mail sends with them.

The password is kept out of every repr and display: `SmtpServer.display` is the URL without it.
The parsers raise ValueError, which the settings table reports as "SMTP_URL <why>".
"""

from __future__ import annotations

import ipaddress
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import quote, unquote, urlsplit

import email_validator

# smtp://: no TLS at all; smtp+starttls://: STARTTLS required (refused if the server does not
# offer it); smtps://: TLS from the first byte (implicit TLS, RFC 8314).
Security = Literal["none", "starttls", "tls"]

_SCHEMES: dict[str, tuple[Security, int]] = {
    "smtp": ("none", 25),
    "smtp+starttls": ("starttls", 587),
    "smtps": ("tls", 465),
}
_LOOPBACK_NAMES = ("localhost",)


@dataclass(frozen=True, slots=True)
class SmtpServer:
    """Where mail goes: SMTP_URL parsed. `password` never appears in repr()."""

    security: Security
    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def display(self) -> str:
        """The URL without the password, for logs and banners."""
        scheme = next(s for s, (sec, _) in _SCHEMES.items() if sec == self.security)
        user = f"{quote(self.username, safe='')}@" if self.username else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{user}{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Sender:
    """SMTP_FROM parsed: the envelope and From address (ASCII: an IDN domain in its xn-- form)
    and an optional display name."""

    address: str
    name: str = ""

    @property
    def domain(self) -> str:
        return self.address.rsplit("@", 1)[1]


def parse_smtp_url(raw: str) -> SmtpServer:
    """`smtp://`, `smtp+starttls://` or `smtps://[user[:password]@]host[:port]`; user and
    password percent-decoded; the port defaults to 25, 587 and 465."""
    if _has_control(raw):
        raise ValueError("must not contain control characters")
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"is not a valid URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        raise ValueError(
            f"must start with smtp://, smtp+starttls:// or smtps://, got {scheme + '://'!r}"
        )
    if not parts.hostname:
        raise ValueError("must name a host (smtp+starttls://user:password@host:587)")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("must be scheme://[user:password@]host[:port], nothing after it")
    security, default_port = _SCHEMES[scheme]
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    if password is not None and not username:
        raise ValueError("has a password but no user name")
    if username and not password:
        raise ValueError("has a user name but no password (user:password@host)")
    if username and security == "none" and not _is_loopback(parts.hostname):
        raise ValueError(
            "sends its password only over TLS: use smtp+starttls:// or smtps:// "
            "(smtp:// with a password is accepted for a server on this machine only)"
        )
    return SmtpServer(
        security=security,
        host=parts.hostname,
        port=port or default_port,
        username=username,
        password=password,
    )


def parse_sender(raw: str) -> Sender:
    """`gateway@example.com` or `Transcription gateway <gateway@example.com>`."""
    if _has_control(raw):
        raise ValueError("must not contain control characters")
    try:
        valid = email_validator.validate_email(
            raw,
            allow_display_name=True,
            allow_smtputf8=False,
            check_deliverability=False,
            # The operator's own domain may be an internal one (mail.internal, localhost).
            globally_deliverable=False,
        )
    except email_validator.EmailNotValidError as exc:
        raise ValueError(f"must be an e-mail address, optionally with a name ({exc})") from None
    assert valid.ascii_email is not None  # allow_smtputf8=False: always ASCII
    return Sender(address=valid.ascii_email, name=(valid.display_name or "").strip())


def readable_file(path: Path) -> str | None:
    """The check of SMTP_CA_FILE."""
    return None if path.is_file() else f"must be a readable file, got {str(path)!r}"


def _has_control(value: str) -> bool:
    return any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp", "Cs") for c in value)


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
