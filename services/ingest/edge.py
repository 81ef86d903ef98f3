"""The edge checks: every header, query parameter and form value the API reads passes here
before any work starts (the error middleware and the form parsers call these), so a strange
byte is a 400 `{error, detail}` and never reaches the database, a log line or a response.

aiohttp decodes header values as UTF-8 with `surrogateescape`, so a byte that is not UTF-8
arrives as a lone surrogate (U+DC80..U+DCFF); form bodies are decoded here, strictly.

- `invalid_header` / `invalid_field`: not UTF-8, or a control character (NUL, CR, LF, TAB,
  DEL, C1 ...) in a value.
- `header_too_long` / `field_too_long`: over the value's limit.
- `duplicate_header` / `duplicate_field`: a header or field sent more than once.
- `invalid_form` / `invalid_charset`: a body that is not `application/x-www-form-urlencoded`
  UTF-8 (raw non-ASCII bytes, an unknown or non-UTF-8 charset).
- `invalid_multipart`: among others, a part (file or field alike) whose
  `Content-Transfer-Encoding` is anything but absent, `7bit`, `8bit` or `binary` (RFC 7578
  section 4.7 deprecates the header in form-data; parts are sent as they are).

`X-Request-ID` is the exception: it is echoed back and logged, so a value outside
`[A-Za-z0-9._:-]{1,128}` is replaced by a fresh id rather than refused (a tracing header
should never fail a request).
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from collections.abc import Iterable, Mapping
from urllib.parse import unquote_to_bytes

from multidict import CIMultiDictProxy, MultiDict

from libs.errors import InvalidInput

# Headers the API reads, each with its longest accepted value (characters).
HEADER_LIMITS: dict[str, int] = {
    "X-API-Key": 256,
    # The submission's own rule (1-200 characters, `invalid_idempotency_key`) applies after.
    "Idempotency-Key": 1024,
    # The console session's CSRF token (43 characters).
    "X-CSRF-Token": 128,
}
MAX_QUERY_VALUE = 2048
MAX_FIELD_CHARS = 8 * 1024
# More fields or parts than any form of the API has, by far.
MAX_FIELDS = 64
UTF8_CHARSETS = frozenset({"utf-8", "utf8", "us-ascii", "ascii"})
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


def is_clean(value: str) -> bool:
    """No control character (Unicode category Cc: C0, DEL, C1) and nothing that was not UTF-8
    (lone surrogates from `surrogateescape`)."""
    if value.isascii():
        return value.isprintable()
    return not any(unicodedata.category(ch) in ("Cc", "Cs") for ch in value)


def request_id(raw: str | None) -> str:
    """The client's X-Request-ID when it is safe to echo and log, else a fresh one."""
    if raw and _REQUEST_ID.fullmatch(raw):
        return raw
    return uuid.uuid4().hex


def check_headers(headers: CIMultiDictProxy[str]) -> None:
    for name, limit in HEADER_LIMITS.items():
        values = headers.getall(name, [])
        if len(values) > 1:
            raise InvalidInput(f"send {name} once", code="duplicate_header")
        if not values:
            continue
        value = values[0]
        if len(value) > limit:
            raise InvalidInput(f"{name} is longer than {limit} characters", code="header_too_long")
        if not is_clean(value):
            raise InvalidInput(
                f"{name} must be UTF-8 text without control characters", code="invalid_header"
            )


def check_query(raw_query: str) -> None:
    """The query string as sent (percent-encoded): decoded strictly like a form body, so a
    `%ff` is refused here rather than turned into U+FFFD by the URL parser."""
    if raw_query:
        parse_urlencoded(
            raw_query.encode("ascii", "replace"), limit=MAX_QUERY_VALUE, what="query parameter"
        )


def check_fields(
    items: Iterable[tuple[str, str]], *, limit: int = MAX_FIELD_CHARS, what: str = "field"
) -> None:
    """Names and values clean, values within `limit`, no name twice, at most MAX_FIELDS."""
    seen: set[str] = set()
    for count, (name, value) in enumerate(items, 1):
        if count > MAX_FIELDS:
            raise InvalidInput(f"more than {MAX_FIELDS} fields", code="too_many_fields")
        if not is_clean(name) or len(name) > 256:
            raise InvalidInput(f"a {what} name is not valid text", code="invalid_field")
        if name in seen:
            raise InvalidInput(f"{what} {name!r} is sent more than once", code="duplicate_field")
        seen.add(name)
        check_value(name, value, limit=limit, what=what)


def check_value(
    name: str, value: str, *, limit: int = MAX_FIELD_CHARS, what: str = "field"
) -> None:
    if len(value) > limit:
        raise InvalidInput(f"{what} {name!r} is too long", code="field_too_long")
    if not is_clean(value):
        raise InvalidInput(
            f"{what} {name!r} must be UTF-8 text without control characters",
            code="invalid_field",
        )


# The transfer encodings that transform nothing: a part's bytes are read as sent.
IDENTITY_TRANSFER_ENCODINGS = frozenset({"7bit", "8bit", "binary"})


def check_transfer_encoding(headers: CIMultiDictProxy[str]) -> None:
    """One rule for every multipart part, file or field: no Content-Transfer-Encoding other
    than the identity ones (RFC 7578 section 4.7 deprecates the header)."""
    for value in headers.getall("Content-Transfer-Encoding", ()):
        if value.strip().lower() not in IDENTITY_TRANSFER_ENCODINGS:
            raise InvalidInput(
                "Content-Transfer-Encoding is not used in form-data (RFC 7578 4.7): "
                "send every part as binary",
                code="invalid_multipart",
            )


def check_charset(charset: str | None) -> None:
    if charset is not None and charset.strip().lower() not in UTF8_CHARSETS:
        raise InvalidInput("form bodies must be UTF-8", code="invalid_charset")


def decode_text(name: str, raw: bytes, *, what: str = "field") -> str:
    """A form value's bytes as strict UTF-8."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(f"{what} {name!r} is not UTF-8", code="invalid_field") from None


def parse_urlencoded(
    body: bytes, *, limit: int = MAX_FIELD_CHARS, what: str = "field"
) -> MultiDict[str]:
    """`application/x-www-form-urlencoded`, strictly: ASCII on the wire, UTF-8 once
    percent-decoded, checked by `check_fields`."""
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        raise InvalidInput(
            "the form body must be percent-encoded ASCII", code="invalid_form"
        ) from None
    pairs: list[tuple[str, str]] = []
    for chunk in text.split("&"):
        if not chunk:
            continue
        raw_name, _, raw_value = chunk.partition("=")
        name = decode_text("?", unquote_to_bytes(raw_name.replace("+", " ")), what=what)
        value = decode_text(name, unquote_to_bytes(raw_value.replace("+", " ")), what=what)
        pairs.append((name, value))
        if len(pairs) > MAX_FIELDS:
            break
    check_fields(pairs, limit=limit, what=what)
    return MultiDict(pairs)


def check_mapping(values: Mapping[str, str]) -> None:
    check_fields(values.items())
