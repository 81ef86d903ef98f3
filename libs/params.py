"""Parameters, one rule per kind, for every route of the API (query strings, form and JSON
fields) and every option of the CLI. Pure functions raising domain errors (libs.errors).

- **Times**: ISO 8601 (`2026-11-24T10:00:00Z`, `2026-11-24T10:00:00+01:00`, `2026-11-24`); a
  trailing `Z` is UTC, and **a time without a zone is UTC**. A time must lie within years
  1-9999 once converted to UTC (`0001-01-01T00:00:00+14:00` does not: it is 400 like any
  malformed time; a cursor that decodes to one is 400 `invalid_cursor`). Anything else: 400
  `invalid_<name>`; a required time that is missing: 400 `missing_<name>`.
- **Booleans**: `true/false`, `1/0`, `yes/no`, case-insensitive; absent or empty is the
  default. Anything else: 400 `invalid_<name>`.
- **Integers and limits**: ASCII decimal digits (`0-9`, nothing else: no sign, no `_`, no
  Arabic-Indic or full-width digits) within the route's bounds (inclusive); absent or empty is
  the default. Anything else: 400 `invalid_<name>`. Seconds (`wait`) are the same with an
  optional decimal part (`2.5`).
- **Durations** (retention TTLs): `<n><unit>` with unit `s`, `m`, `h` or `d` (`90m`, `7d`), or a
  number of seconds; at least 1 s, at most 100 years. Anything else: 400 `invalid_<name>`.
- **Cursors** (`cursor` of a paginated list): opaque text the previous page answered; anything
  else (tampered, truncated, not ours) is 400 `invalid_cursor`.
- **JSON bodies** name each key of an object once: `{"email": "a", "email": "b"}` is 400
  `duplicate_key` (as a form field or query parameter sent twice is `duplicate_field`), never
  silently the last one.
- **Ids**: a job (`audio_file_id`) is a UUID; a dead letter or delivery is a positive integer of
  at most 18 digits. A malformed id in a query or body is 400 `invalid_<name>`; in a path it
  names nothing, so it is 404 like any unknown id.

The HTTP layer gives the errors their status (services/ingest/errors.py); the CLI prints them.
The CLI also takes an age (`90m`, `2h`, `7d`) wherever it takes a time (`parse_since`).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from datetime import UTC, datetime, timedelta

from libs.errors import InvalidInput, NotFound

TRUE = frozenset({"true", "1", "yes"})
FALSE = frozenset({"false", "0", "no"})
MAX_ID_DIGITS = 18


def parse_time(value: str | None, name: str, *, required: bool) -> datetime | None:
    """ISO 8601; a time without a zone is UTC; it must stay within years 1-9999 in UTC."""
    if not value or not value.strip():
        if required:
            raise InvalidInput(f"give {name} as an ISO 8601 time", code=f"missing_{name}")
        return None
    try:
        when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(
            f"{name} must be an ISO 8601 time, e.g. 2026-11-24T10:00:00Z", code=f"invalid_{name}"
        ) from None
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    if not in_calendar(when):
        raise InvalidInput(
            f"{name} must lie between years 1 and 9999 in UTC", code=f"invalid_{name}"
        )
    return when


def in_calendar(when: datetime) -> bool:
    """Whether an aware time converts to UTC without leaving years 1-9999: the one rule for
    every time a client gives (query, body, cursor). `0001-01-01T00:00:00+14:00` is in year 0
    in UTC, which neither Python nor the database driver can represent (Postgres's own range
    is wider, so every time that passes fits a timestamptz)."""
    try:
        when.astimezone(UTC)
    except OverflowError:
        return False
    return True


_AGE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)([smhd])$")
_AGE_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_since(value: str, name: str = "since", *, now: datetime | None = None) -> datetime:
    """A time as `parse_time` reads it, or an age before `now`: `90m`, `2h`, `7d` (the CLI)."""
    match = _AGE.match(value.strip())
    if match:
        try:
            delta = timedelta(**{_AGE_UNITS[match.group(2)]: float(match.group(1))})
            return (now or datetime.now(UTC)) - delta
        except OverflowError:
            raise InvalidInput(f"{name} is too long ago", code=f"invalid_{name}") from None
    when = parse_time(value, name, required=True)
    assert when is not None
    return when


def parse_bool(value: str | None, name: str, *, default: bool = False) -> bool:
    """true/false, 1/0, yes/no (any case); absent or empty means the default."""
    if value is None or not value.strip():
        return default
    word = value.strip().lower()
    if word in TRUE:
        return True
    if word in FALSE:
        return False
    raise InvalidInput(f"{name} must be true or false", code=f"invalid_{name}")


# The one rule for numbers a client writes: ASCII digits only. Python's int() and float() also
# take a sign, `_` separators and any Unicode digit (`١٠`, `１０`), which no client means.
_INTEGER = re.compile(r"[0-9]{1,18}")
_DECIMAL = re.compile(r"[0-9]{1,18}(?:\.[0-9]{0,18})?|\.[0-9]{1,18}")


def parse_int(value: str | None, name: str, *, default: int, low: int, high: int) -> int:
    """A decimal integer in [low, high]; absent or empty means the default."""
    if value is None or not value.strip():
        return default
    text = value.strip()
    if not _INTEGER.fullmatch(text):
        raise InvalidInput(f"{name} must be an integer", code=f"invalid_{name}")
    number = int(text)
    if not low <= number <= high:
        raise InvalidInput(f"{name} must be between {low} and {high}", code=f"invalid_{name}")
    return number


def parse_seconds(value: str | None, name: str, *, default: float, high: float) -> float:
    """A number of seconds in [0, high]; absent or empty means the default."""
    if value is None or not value.strip():
        return default
    text = value.strip()
    if not _DECIMAL.fullmatch(text):
        raise InvalidInput(f"{name} must be a number of seconds", code=f"invalid_{name}")
    number = float(text)
    if not 0 <= number <= high:
        raise InvalidInput(f"{name} must be between 0 and {high}", code=f"invalid_{name}")
    return number


def parse_uuid(value: str | None, name: str, *, required: bool, hint: str = "") -> uuid.UUID | None:
    """A UUID from a query string or body; malformed (or missing when required) is 400."""
    if not value:
        if not required:
            return None
    else:
        try:
            return uuid.UUID(value)
        except ValueError:
            pass
    raise InvalidInput(hint or f"{name} must be a UUID", code=f"invalid_{name}")


def path_uuid(value: str, what: str) -> uuid.UUID:
    """A UUID from the path: anything else names no `what` (404)."""
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound(f"no such {what}") from None


def path_int_id(value: str, what: str) -> int:
    """A numeric id from the path: anything else names no `what` (404)."""
    if not (value.isascii() and value.isdigit()) or len(value) > MAX_ID_DIGITS:
        raise NotFound(f"no such {what}")
    return int(value)


_CURSOR_MAX = 200


def encode_cursor(created_at: datetime, job_id: uuid.UUID) -> str:
    """The opaque cursor after the job (created_at, id): base64url of `<iso time>|<uuid>`."""
    raw = f"{created_at.isoformat()}|{job_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def parse_cursor(value: str | None, name: str = "cursor") -> tuple[datetime, uuid.UUID] | None:
    """A cursor made by `encode_cursor`; absent or empty is None (the first page)."""
    if value is None or not value.strip():
        return None
    bad = InvalidInput(f"{name} must be a cursor from a previous page", code=f"invalid_{name}")
    text = value.strip()
    if len(text) > _CURSOR_MAX or not re.fullmatch(r"[A-Za-z0-9_-]+", text):
        raise bad
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
        when_text, _, id_text = raw.partition("|")
        when = datetime.fromisoformat(when_text)
        job_id = uuid.UUID(id_text)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise bad from None
    if when.tzinfo is None or not in_calendar(when):
        raise bad
    return when, job_id


_DURATION = re.compile(r"^([0-9]{1,12})([smhd]?)$")
_DURATION_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_DURATION_SECONDS = 100 * 365 * 86400


def parse_duration(value: str | None, name: str) -> int | None:
    """Whole seconds from `7d`, `36h`, `90m`, `45s` or `3600`; absent or empty is None."""
    if value is None or not value.strip():
        return None
    match = _DURATION.match(value.strip())
    if match is None:
        raise InvalidInput(
            f"{name} must be a duration such as 7d, 36h, 90m or a number of seconds",
            code=f"invalid_{name}",
        )
    seconds = int(match.group(1)) * _DURATION_SECONDS[match.group(2)]
    if not 1 <= seconds <= MAX_DURATION_SECONDS:
        raise InvalidInput(f"{name} must be between 1s and 100 years", code=f"invalid_{name}")
    return seconds


def check_json_keys(raw: bytes, what: str = "the body") -> None:
    """400 `duplicate_key` when an object of the JSON document `raw` names a key twice (JSON
    decoders keep the last one, so two readers of one body could disagree). Call it once the
    body decoded: what is not JSON is the decoder's to name."""

    def pairs(items: list[tuple[str, object]]) -> None:
        seen: set[str] = set()
        for key, _ in items:
            if key in seen:
                raise InvalidInput(
                    f"{what} gives the key {key[:40]!a} more than once", code="duplicate_key"
                )
            seen.add(key)

    try:
        json.loads(raw, object_pairs_hook=pairs)
    except (ValueError, RecursionError):
        return
