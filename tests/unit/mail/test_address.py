from __future__ import annotations

import pytest

from libs.errors import InvalidInput
from libs.mail import validate_address


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("ops@example.com", "ops@example.com"),
        ("Ops@EXAMPLE.COM", "Ops@example.com"),
        ("first.last+tag@sub.example.co.uk", "first.last+tag@sub.example.co.uk"),
        ("ops@bücher.de", "ops@xn--bcher-kva.de"),  # IDN domain: its ASCII form
    ],
)
def test_valid_addresses_are_normalised(raw: str, normalised: str) -> None:
    assert validate_address(raw) == normalised


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "ops",
        "ops@",
        "@example.com",
        "ops@localhost",
        "ops@example",
        "ops@x.test",
        "a b@example.com",
        "jörg@example.com",  # needs SMTPUTF8: refused (docs/mail.md)
        "ops@example.com\r\nBcc: x@y.com",
        "ops@example.com\x00",
        "ops\n@example.com",
        "Ops <ops@example.com>",  # an address, not a display name
        "ops@example.com, other@example.com",
        "x" * 250 + "@example.com",
        "ops@" + "a" * 64 + ".com",
        "\ud800@example.com",
    ],
)
def test_invalid_addresses_are_refused(raw: str) -> None:
    with pytest.raises(InvalidInput) as info:
        validate_address(raw)
    assert info.value.code == "invalid_email"
