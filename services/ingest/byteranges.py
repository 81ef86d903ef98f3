"""The `Range` header of a GET (RFC 9110 section 14): one byte range, or the whole object.

- `bytes=a-b`, `bytes=a-`, `bytes=-n` (the last n bytes): one range, its end clipped to the
  object; answered 206 with Content-Range.
- A range starting at or past the end (or `-0`, or any range of an empty object): 416
  (`Unsatisfiable`), with `Content-Range: bytes */<size>`.
- Several ranges (`bytes=0-9,20-29`): the whole object, 200 (ignoring Range is always allowed;
  no player asks for several, and multipart/byteranges buys them nothing).
- Anything else (another unit, malformed, `b < a`): ignored, as RFC 9110 says: 200.
"""

from __future__ import annotations

from dataclasses import dataclass

# More digits than any object size has: refused before int() sees them.
_MAX_DIGITS = 19


class Unsatisfiable(Exception):
    pass


@dataclass(frozen=True, slots=True)
class ByteRange:
    first: int
    last: int  # inclusive

    @property
    def length(self) -> int:
        return self.last - self.first + 1

    def content_range(self, size: int) -> str:
        return f"bytes {self.first}-{self.last}/{size}"


def _number(text: str) -> int | None:
    text = text.strip()
    if not text or len(text) > _MAX_DIGITS or not (text.isascii() and text.isdigit()):
        return None
    return int(text)


def parse(header: str | None, size: int) -> ByteRange | None:
    """The one range to answer, or None for the whole object; raises Unsatisfiable."""
    if not header:
        return None
    unit, eq, spec = header.partition("=")
    if not eq or unit.strip().lower() != "bytes" or "," in spec:
        return None
    start_text, dash, end_text = spec.partition("-")
    if not dash:
        return None
    if not start_text.strip():
        suffix = _number(end_text)
        if suffix is None:
            return None
        if suffix == 0 or size == 0:
            raise Unsatisfiable
        return ByteRange(max(0, size - suffix), size - 1)
    first = _number(start_text)
    if first is None:
        return None
    if end_text.strip():
        last = _number(end_text)
        if last is None or last < first:
            return None
    else:
        last = size - 1
    if first >= size:
        raise Unsatisfiable
    return ByteRange(first, min(last, size - 1))
