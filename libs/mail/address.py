"""E-mail addresses: validated by email-validator (RFC 5321/5322 syntax, IDNA domains), never by
a hand-written regex.

Decision on internationalised addresses: a non-ASCII domain (IDN, `ops@bücher.de`) is accepted
and returned in its ASCII form (`ops@xn--bcher-kva.de`), which every SMTP server takes; a
non-ASCII local part (`jörg@example.com`) is refused, since it needs the SMTPUTF8 extension,
which many servers (and relays between them) do not offer, so such a mail could fail at send
time long after the address was accepted.
"""

from __future__ import annotations

import email_validator

from libs.errors import InvalidInput

# RFC 5321: a path is at most 256 octets, the address 254; checked before validating so an
# enormous value costs nothing.
MAX_ADDRESS_LENGTH = 254


def validate_address(raw: str) -> str:
    """The normalised address (domain lower-cased, in ASCII), or InvalidInput saying why."""
    if not isinstance(raw, str) or not raw:
        raise InvalidInput("an e-mail address is required", code="invalid_email")
    if len(raw) > MAX_ADDRESS_LENGTH:
        raise InvalidInput(
            f"an e-mail address is at most {MAX_ADDRESS_LENGTH} characters", code="invalid_email"
        )
    try:
        valid = email_validator.validate_email(
            raw, allow_smtputf8=False, check_deliverability=False
        )
    except email_validator.EmailNotValidError as exc:
        raise InvalidInput(f"not a valid e-mail address: {exc}", code="invalid_email") from None
    assert valid.ascii_email is not None  # allow_smtputf8=False: always set
    return valid.ascii_email
