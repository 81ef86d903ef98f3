"""E-mail: `Mail` (header-safe by construction), `validate_address`, `build_message`, and the
SMTP `Mailer` (`smtp_mailer(settings)`) with its two failures. Settings: SMTP_URL, SMTP_FROM,
SMTP_TIMEOUT_SECONDS, SMTP_CA_FILE (docs/mail.md)."""

from libs.mail.address import validate_address
from libs.mail.headers import body_text, header_text
from libs.mail.mailer import Mailer, MailPermanent, MailTemporary
from libs.mail.memory import MemoryMailer
from libs.mail.message import Mail, build_message
from libs.mail.render import Bodies, render
from libs.mail.smtp import SmtpMailer, smtp_mailer

__all__ = [
    "Bodies",
    "Mail",
    "MailPermanent",
    "MailTemporary",
    "Mailer",
    "MemoryMailer",
    "SmtpMailer",
    "body_text",
    "build_message",
    "header_text",
    "render",
    "smtp_mailer",
    "validate_address",
]
