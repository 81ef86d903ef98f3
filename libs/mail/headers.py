"""Text that goes into a mail, made safe by construction.

A header value built here cannot hold a line break or any other control character, whatever the
call data, campaign or file name it came from: every character of the Unicode categories Cc
(C0/C1 controls: CR, LF, NUL, TAB, NEL, ...), Cf (format: bidi overrides, zero-width
characters), Zl/Zp (U+2028, U+2029) and Cs (lone surrogates) becomes a space, runs of white space
become one space, and the value is capped in length. So `"\\r\\nBcc: x@y"` in a subject is the
text " Bcc: x@y" inside the Subject header, never a header of its own.

One more way in is closed: Python's email package decodes RFC 2047 encoded words in a header
value it is given (`=?utf-8?q?=0D=0ABcc:_x@y?=` becomes CR LF "Bcc: x@y") and, before the
CPython fixes of 2024, wrote the decoded line break out as is: a header injection through text
with no control character in it. So "=?" never stays together: it becomes "= ?", and no encoded
word can start. `build_message` checks the result once more.
"""

from __future__ import annotations

import unicodedata

# Categories that never reach a header: controls, format characters, line and paragraph
# separators, lone surrogates (which cannot even be encoded).
_UNSAFE = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
# A subject longer than this is cut (with an ellipsis); mail clients show far less anyway.
SUBJECT_LIMIT = 200
# Display names (the From's name) are shorter still.
NAME_LIMIT = 100
# Bodies: large enough for any digest, small enough that no call makes a 100 MB mail.
BODY_LIMIT = 200_000


def header_text(value: str, limit: int = SUBJECT_LIMIT) -> str:
    """`value` as one line of at most `limit` characters with no control character."""
    cleaned = "".join(" " if unicodedata.category(c) in _UNSAFE else c for c in value)
    text = " ".join(cleaned.split()).replace("=?", "= ?")
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


def has_unsafe(value: str) -> bool:
    """Whether `value` holds a character that header_text would replace."""
    return any(unicodedata.category(c) in _UNSAFE for c in value)


def body_text(value: str, limit: int = BODY_LIMIT) -> str:
    """A body: line breaks normalised to LF (U+2028/2029 too), tabs kept, every other control
    character, lone surrogate or bidi override a space; cut at `limit` characters."""
    value = value.replace("\r\n", "\n").replace("\r", "\n")
    value = value.replace("\u2028", "\n").replace("\u2029", "\n")
    cleaned = "".join(
        c if c in "\n\t" or unicodedata.category(c) not in _UNSAFE else " " for c in value
    )
    if len(cleaned) > limit:
        cleaned = cleaned[: limit - 1] + "…"
    return cleaned
