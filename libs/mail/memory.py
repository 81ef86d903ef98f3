"""An honest in-memory Mailer for unit tests of code that sends mail: it builds the real message
(so header safety applies) and keeps it; `fail_with` makes the next sends raise."""

from __future__ import annotations

from email.message import EmailMessage

from libs.mail.mailer import MailPermanent, MailTemporary
from libs.mail.message import Mail, build_message
from libs.settings import Sender


class MemoryMailer:
    def __init__(self, sender: Sender | None = None) -> None:
        self.sender = sender or Sender(address="gateway@example.com", name="Gateway")
        self.sent: list[tuple[Mail, EmailMessage]] = []
        self.fail_with: MailTemporary | MailPermanent | None = None

    async def send(self, mail: Mail) -> str:
        if self.fail_with is not None:
            raise self.fail_with
        message = build_message(mail, self.sender)
        self.sent.append((mail, message))
        return str(message["Message-ID"])
