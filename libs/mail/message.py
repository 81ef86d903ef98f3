"""A mail to send (`Mail`) and the RFC 5322 message built from it (`build_message`).

Header safety is a property of the types, not of the call sites: a `Mail` cannot hold a subject
with a control character (`headers.header_text` runs when it is constructed) nor a recipient
that email-validator did not accept; the From comes from SMTP_FROM, checked at start-up; every
other header (Date, Message-ID, MIME) is made here from no call data at all.
"""

from __future__ import annotations

import datetime as dt
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid

import msgspec

from libs.errors import InvalidInput
from libs.mail.address import validate_address
from libs.mail.headers import NAME_LIMIT, body_text, has_unsafe, header_text
from libs.settings import Sender

# One mail, one audience: notification rules name a handful of people.
MAX_RECIPIENTS = 50


class Mail(msgspec.Struct, frozen=True, kw_only=True):
    """One mail. On construction the subject becomes one safe line (`header_text`), the bodies
    lose control characters other than line breaks and tabs (`body_text`), and `to` becomes the
    validated, normalised, de-duplicated addresses (InvalidInput when one is not an address, or
    there is none). `html` is a complete HTML document whose values the caller escaped
    (`libs.mail.render` does)."""

    to: tuple[str, ...]
    subject: str
    text: str
    html: str

    def __post_init__(self) -> None:
        recipients = tuple(dict.fromkeys(validate_address(a) for a in self.to))
        if not recipients:
            raise InvalidInput("a mail needs at least one recipient", code="invalid_email")
        if len(recipients) > MAX_RECIPIENTS:
            raise InvalidInput(
                f"a mail goes to at most {MAX_RECIPIENTS} recipients", code="invalid_email"
            )
        msgspec.structs.force_setattr(self, "to", recipients)
        msgspec.structs.force_setattr(self, "subject", header_text(self.subject))
        msgspec.structs.force_setattr(self, "text", body_text(self.text))
        msgspec.structs.force_setattr(self, "html", body_text(self.html))


def build_message(mail: Mail, sender: Sender, *, now: dt.datetime | None = None) -> EmailMessage:
    """multipart/alternative (text, then HTML), with From, To, Subject, Date and a Message-ID
    in the sender's domain. CRLF line endings (policy SMTP)."""
    message = EmailMessage(policy=SMTP)
    message["From"] = Address(
        display_name=header_text(sender.name, NAME_LIMIT), addr_spec=sender.address
    )
    message["To"] = tuple(Address(addr_spec=a) for a in mail.to)
    message["Subject"] = header_text(mail.subject)  # already clean; cleaning twice is a no-op
    message["Date"] = format_datetime(now or dt.datetime.now(dt.UTC))
    message["Message-ID"] = make_msgid(domain=sender.domain)
    message.set_content(mail.text)
    message.add_alternative(mail.html, subtype="html")
    _check_headers(message)
    return message


def _check_headers(message: EmailMessage) -> None:
    """Defence in depth: every header as the email package will write it is one line without
    control characters (what header_text guarantees for our values; this catches a parser
    that decodes something into a line break)."""
    for name, value in message.items():
        if has_unsafe(str(value)):
            raise ValueError(f"the {name} header would contain a control character")
