"""The edge checks (services/ingest/edge.py): pure functions, one rule per kind of bad value."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from libs.errors import InvalidInput
from libs.settings import Settings
from services.ingest import edge


@pytest.mark.parametrize(
    ("value", "clean"),
    [
        ("abc", True),
        ("é😀 ok", True),
        ("", True),
        ("a\x00b", False),
        ("a\tb", False),
        ("a\x7f", False),
        ("a\x85", False),  # C1 control
        ("tgw_\udcff", False),  # a byte that was not UTF-8 (surrogateescape)
    ],
)
def test_is_clean(value: str, clean: bool) -> None:
    assert edge.is_clean(value) is clean


def _headers(*pairs: tuple[str, str]) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict(pairs))


@pytest.mark.parametrize(
    ("pairs", "code"),
    [
        ((("X-API-Key", "a"), ("x-api-key", "b")), "duplicate_header"),
        ((("X-API-Key", "a" * 257),), "header_too_long"),
        ((("Idempotency-Key", "k\udcff"),), "invalid_header"),
    ],
)
def test_bad_headers(pairs: tuple[tuple[str, str], ...], code: str) -> None:
    with pytest.raises(InvalidInput) as err:
        edge.check_headers(_headers(*pairs))
    assert err.value.code == code


def test_good_headers_pass() -> None:
    edge.check_headers(_headers(("X-API-Key", "tgw_abc"), ("Idempotency-Key", "é-1")))


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"a=%ff", "invalid_field"),
        (b"a=\xff", "invalid_form"),
        (b"a=1&a=2", "duplicate_field"),
        (b"a=%00", "invalid_field"),
        (b"a=" + b"x" * (edge.MAX_FIELD_CHARS + 1), "field_too_long"),
        (b"&".join(b"f%d=1" % i for i in range(edge.MAX_FIELDS + 1)), "too_many_fields"),
    ],
)
def test_bad_urlencoded(body: bytes, code: str) -> None:
    with pytest.raises(InvalidInput) as err:
        edge.parse_urlencoded(body)
    assert err.value.code == code


def test_urlencoded_is_utf8() -> None:
    form = edge.parse_urlencoded(b"a=caf%C3%A9+x&b=&&c")
    assert dict(form) == {"a": "café x", "b": "", "c": ""}


@pytest.mark.parametrize("charset", [None, "utf-8", "UTF8", "us-ascii"])
def test_utf8_charsets_pass(charset: str | None) -> None:
    edge.check_charset(charset)


def test_other_charsets_are_400() -> None:
    with pytest.raises(InvalidInput) as err:
        edge.check_charset("latin-1")
    assert err.value.code == "invalid_charset"


@pytest.mark.parametrize("raw", [None, "", "a b", "r" * 129, "<x>", "\udcff"])
def test_unsafe_request_ids_are_replaced(raw: str | None) -> None:
    fresh = edge.request_id(raw)
    assert fresh != raw and len(fresh) == 32


def test_safe_request_ids_are_kept() -> None:
    assert edge.request_id("trace-1.2:3_x") == "trace-1.2:3_x"


def test_hardening_settings_from_env() -> None:
    s = Settings.from_env(
        {
            "INGEST_IDLE_TIMEOUT": "5",
            "INGEST_BODY_READ_TIMEOUT": "60",
            "INGEST_MAX_CONNECTIONS": "10",
            "INGEST_SPOOL_DIR": "/var/spool/ingest",
            "INGEST_PORT": "9000",
        }
    )
    assert (s.ingest_idle_timeout, s.ingest_body_read_timeout, s.ingest_max_connections) == (
        5.0,
        60.0,
        10,
    )
    assert str(s.ingest_spool_dir) == "/var/spool/ingest"
    default = Settings.from_env({"INGEST_PORT": "9000"})
    assert default.ingest_spool_dir.name == "transcribe-ingest-9000"


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("a=%ff", "invalid_field"),
        ("a=%00", "invalid_field"),
        ("a=1&a=2", "duplicate_field"),
        ("a=" + "x" * (edge.MAX_QUERY_VALUE + 1), "field_too_long"),
    ],
)
def test_bad_query_strings(raw: str, code: str) -> None:
    with pytest.raises(InvalidInput) as err:
        edge.check_query(raw)
    assert err.value.code == code
    assert "query parameter" in err.value.detail


def test_good_query_strings_pass() -> None:
    edge.check_query("")
    edge.check_query("since=2026-11-24T10%3A00%3A00%2B01%3A00&limit=5&q=caf%C3%A9+x")
