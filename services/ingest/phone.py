"""Phone numbers to E.164 with Google's libphonenumber metadata."""

from __future__ import annotations

import phonenumbers


def to_e164(raw: str | None, default_region: str) -> str | None:
    """E.164 for a valid number, None when there is nothing usable (never a guess)."""
    if raw is None or not raw.strip():
        return None
    try:
        parsed = phonenumbers.parse(raw.strip(), default_region.upper() or None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(parsed):
        return None
    return str(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164))
