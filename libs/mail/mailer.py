"""What sends a mail (`Mailer`), and how it fails."""

from __future__ import annotations

from typing import Protocol

from libs.mail.headers import header_text
from libs.mail.message import Mail

# A server's reply as a reason: one line without control characters (it may be stored, listed
# and shown), at most this long.
REASON_LIMIT = 1000


class MailTemporary(Exception):
    """Not sent, and trying again later may work: a 4xx reply (451 greylisting, 452 mailbox
    full), the server unreachable (refused, timed out, disconnected) or TLS failing."""

    def __init__(self, reason: str) -> None:
        self.reason = header_text(reason, REASON_LIMIT)
        super().__init__(self.reason)


class MailPermanent(Exception):
    """Not sent, and the same mail will never be: a 5xx reply (550 unknown recipient, 554,
    535 authentication failed) or a server lacking what SMTP_URL asks for (STARTTLS, AUTH)."""

    def __init__(self, reason: str) -> None:
        self.reason = header_text(reason, REASON_LIMIT)
        super().__init__(self.reason)


class Mailer(Protocol):
    async def send(self, mail: Mail) -> str:
        """Hand `mail` to the server; the Message-ID it was sent with. Raises MailTemporary or
        MailPermanent (with the server's reply as `reason`)."""
        ...
