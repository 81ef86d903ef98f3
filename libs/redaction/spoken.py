"""Tokens with their character offsets, and runs of numbers as people say and engines write them.

A transcript says a card number in many ways: ``4111 1111 1111 1111``, ``4111-1111-...``,
``4-1-1-1-...``, ``4111*1111``, ``four one one one, one one one one``, ``forty one eleven``,
``double four``, ``triple one``, ``oh`` for zero, ``for``/``to``/``too`` for four and two inside
a run of digits, digits of any script (Arabic-Indic, full-width), with fillers (``uh``,
``okay``, ``hold on``, ``let me see``), spoken ``dash`` and Whisper's punctuation in between. A
``NumberRun`` is one such stretch: its items are the digit groups in order, each with the exact
character span it came from, so a detector can validate the digits and the redactor can replace
exactly the characters (and, through word offsets, the audio) that said them.

Everything here is one pass over the tokens, without recursion: the work is linear in the text
whatever it repeats, and a ``Clock`` is ticked as it goes so a caller's deadline is kept.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from typing import NamedTuple

from libs.redaction.deadline import NO_DEADLINE, Clock

_TOKEN = re.compile(r"\d+|[^\W\d_]+(?:'[^\W\d_]+)?|\S")


class Token(NamedTuple):
    text: str  # lower-cased; digits of any script as ASCII digits
    start: int  # character offsets in the original text
    end: int


def ascii_digits(text: str) -> str:
    """Decimal digits of any script (``٤``, ``４``) as ASCII, one for one, so offsets hold;
    other characters unchanged."""
    if text.isascii():
        return text
    return "".join(str(int(c)) if c.isdecimal() else c for c in text)


def tokenize(text: str, clock: Clock = NO_DEADLINE) -> list[Token]:
    tokens: list[Token] = []
    for m in _TOKEN.finditer(text):
        word = m.group()
        if word[0].isdigit():
            word = ascii_digits(word)
        else:
            # Full-width and compatibility forms ("－", "：") as their plain selves.
            word = (word if word.isascii() else unicodedata.normalize("NFKC", word)).lower()
        tokens.append(Token(word, m.start(), m.end()))
        clock.tick()
    return tokens


UNITS = {
    "zero": "0",
    "oh": "0",
    "o": "0",
    "nought": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
}
TEENS = {
    "ten": "10",
    "eleven": "11",
    "twelve": "12",
    "thirteen": "13",
    "fourteen": "14",
    "fifteen": "15",
    "sixteen": "16",
    "seventeen": "17",
    "eighteen": "18",
    "nineteen": "19",
}
TENS = {
    "twenty": "2",
    "thirty": "3",
    "forty": "4",
    "fourty": "4",
    "fifty": "5",
    "sixty": "6",
    "seventy": "7",
    "eighty": "8",
    "ninety": "9",
}
REPEATS = {"double": 2, "triple": 3}
# What an engine writes for a digit it heard ("for one one one", "to to oh oh"): read as that
# digit only inside a run of digits said one by one (see ``read_homophones``).
HOMOPHONES = {"for": "four", "fore": "four", "to": "two", "too": "two"}
# Said between digit groups without ending the number ("four one one one, uh, okay, one ...").
FILLERS = frozenset(
    {"uh", "um", "umm", "er", "erm", "ah", "hmm", "mm", "mhm", "okay", "ok", "yes", "yeah", "yep"}
    | {"right", "so", "then", "and", "sorry", "wait", "actually", "again", "alright", "huh"}
)
# The same, in more than one word: the other party ("got it") or the caller ("hold on, let me
# see") talking between the groups of one number.
FILLER_PHRASES: tuple[tuple[str, ...], ...] = (
    ("hold", "on"),
    ("hang", "on"),
    ("let", "me", "see"),
    ("let", "me", "check"),
    ("let", "me", "just", "check"),
    ("got", "it"),
    ("i", "got", "it"),
    ("just", "a", "second"),
    ("just", "a", "sec"),
    ("just", "a", "moment"),
    ("bear", "with", "me"),
    ("i", "mean"),
    ("that's", "right"),
    ("mm", "hmm"),
    ("uh", "huh"),
    # said with a number word, so read before the number ("... two seven, one sec, six ...")
    ("one", "sec"),
    ("one", "second"),
    ("one", "moment"),
    ("one", "minute"),
)
_FILLER_PHRASE_FIRST = frozenset(p[0] for p in FILLER_PHRASES)
# The fillers above that begin with a number word: read before the number.
_PAUSES = frozenset(p for p in FILLER_PHRASES if p[0] in UNITS and len(p) == 2)
# Punctuation an engine writes inside a spoken or written number.
SEPARATORS = frozenset(
    {",", ".", "-", "/", "(", ")", "+", "…", "–", "—", "‐", "−", "،", "、", "。", "·"}
    | {"slash", "dash", "hyphen", "*", "_"}
    # Quotes and marks an engine leaves inside a number ('4-1-1-1" 1-1-1-1').
    | {'"', "'", "“", "”", "‘", "’", "«", "»", ";", ":", "!", "?"}
)


def filler_at(tokens: Sequence[Token], i: int) -> int:
    """How many tokens from i on are filler said inside a number (0 if none)."""
    t = tokens[i].text
    if t in FILLERS or t in SEPARATORS:
        return 1
    if t in _FILLER_PHRASE_FIRST:
        for phrase in FILLER_PHRASES:
            n = len(phrase)
            if phrase[0] == t and tuple(x.text for x in tokens[i : i + n]) == phrase:
                return n
    return 0


def _single_digit(t: str) -> bool:
    return t in UNITS or (len(t) == 1 and t.isdigit())


def _singles(tokens: Sequence[Token], i: int, step: int) -> int:
    """How many digits said one by one lie next to token i (exclusive) going ``step`` (-1 or
    +1), across separators; counts up to 2, which is all a caller needs."""
    count = 0
    i += step
    while 0 <= i < len(tokens) and count < 2:
        t = tokens[i].text
        if _single_digit(t) or t in REPEATS:
            count += 1
        elif t not in SEPARATORS:
            break
        i += step
    return count


def read_homophones(tokens: list[Token], clock: Clock = NO_DEADLINE) -> list[Token]:
    """The tokens with "for", "to" and "too" read as four and two where an engine wrote them
    for digits: a group of them next to at least two digits said one by one ("for one one one",
    "to to oh oh", "too one nine"), but not "went to the shop", "for two hours", "nine to
    five", "2 for 10" or "1999 to 2004"."""
    out = tokens
    i = 0
    n = len(tokens)
    while i < n:
        clock.tick()
        if tokens[i].text not in HOMOPHONES:
            i += 1
            continue
        j = i
        while j < n and tokens[j].text in HOMOPHONES:
            j += 1
        if _singles(tokens, i, -1) >= 2 or _singles(tokens, j - 1, +1) >= 2:
            if out is tokens:
                out = list(tokens)
            for k in range(i, j):
                out[k] = Token(HOMOPHONES[tokens[k].text], tokens[k].start, tokens[k].end)
        i = j
    return out


class Item(NamedTuple):
    digits: str
    start: int  # character offsets in the text
    end: int
    first: int  # token indexes, inclusive
    last: int


class NumberRun(NamedTuple):
    items: tuple[Item, ...]

    @property
    def digits(self) -> str:
        return "".join(i.digits for i in self.items)


def _scaled(tokens: Sequence[Token], i: int) -> bool:
    """Token i is a non-zero unit followed by "hundred" or "thousand" (a bigger number)."""
    return (
        i + 1 < len(tokens)
        and tokens[i + 1].text in ("hundred", "thousand")
        and UNITS.get(tokens[i].text, "0") != "0"
    )


def _small(tokens: Sequence[Token], i: int) -> tuple[str, int] | None:
    """A number below 100 said in words from token i (a unit, a teen, tens with their unit, a
    repeated unit), without "hundred" or "thousand"; None otherwise."""
    t = tokens[i].text
    if t in REPEATS:
        said = tokens[i + 1].text if i + 1 < len(tokens) else ""
        if len(said) == 1 and said.isdigit():
            return said * REPEATS[t], i + 1
        if said in UNITS and not _scaled(tokens, i + 1):
            return UNITS[said] * REPEATS[t], i + 1
        return None
    if t in TEENS:
        return TEENS[t], i
    if t in TENS:
        return _tens(tokens, i, tens_take_oh=False)
    if t in UNITS and not _scaled(tokens, i):
        return UNITS[t], i
    return None


def _tens(tokens: Sequence[Token], i: int, *, tens_take_oh: bool) -> tuple[str, int]:
    """ "forty one" and Whisper's "forty-one"; "forty" alone is 40."""
    t = tokens[i].text
    j = i + 1
    if j < len(tokens) and tokens[j].text == "-" and tokens[i].end == tokens[j].start:
        j += 1
    if j < len(tokens) and tokens[j].text in UNITS:
        if UNITS[tokens[j].text] != "0":
            return TENS[t] + UNITS[tokens[j].text], j
        if tens_take_oh:
            return TENS[t] + "0", j
    return TENS[t] + "0", i


def _scale_rest(tokens: Sequence[Token], j: int, width: int) -> tuple[str, int] | None:
    """What follows "hundred"/"thousand" (and an optional "and") at token j, if it is said in
    words and fits in ``width`` digits: "hundred and five", "thousand two hundred"."""
    if j >= len(tokens) or tokens[j].text.isdigit():
        return None
    if width == 3 and _scaled(tokens, j) and tokens[j + 1].text == "hundred":
        k = j + 1
        if k + 1 < len(tokens) and tokens[k + 1].text == "and":
            k += 1
        rest = _scale_rest(tokens, k + 1, 2)
        if rest is not None and len(rest[0]) <= 2:
            return UNITS[tokens[j].text] + rest[0].rjust(2, "0"), rest[1]
        return UNITS[tokens[j].text] + "00", j + 1
    return _small(tokens, j)


def _hundreds(tokens: Sequence[Token], said: str, last: int) -> tuple[str, int]:
    """A teen or tens said before "hundred" is hundreds: "thirty-three hundred" 3300, "nineteen
    hundred and five" 1905, as a card or a year is read in groups."""
    j = last + 1
    if j >= len(tokens) or tokens[j].text != "hundred":
        return said, last
    if j + 1 < len(tokens) and tokens[j + 1].text == "and":
        j += 1
    rest = _scale_rest(tokens, j + 1, 2)
    if rest is not None and len(rest[0]) <= 2:
        return said + rest[0].rjust(2, "0"), rest[1]
    return said + "00", last + 1


def word_number(
    tokens: Sequence[Token], i: int, *, tens_take_oh: bool = False
) -> tuple[str, int] | None:
    """The number said starting at token i, and the index of its last token; None if token i
    does not start one. ``tens_take_oh`` is the other reading of "thirty oh": one group "30"
    (the "oh" restating the zero) instead of "30" then "0". Reads a bounded number of tokens
    (at most "nine thousand nine hundred and ninety nine"), never recursing."""
    t = tokens[i].text
    if t.isdigit():
        return t, i
    if t in REPEATS:
        return _small(tokens, i)
    if t in TEENS:
        return _hundreds(tokens, TEENS[t], i)
    if t in TENS:
        tens, last = _tens(tokens, i, tens_take_oh=tens_take_oh)
        return _hundreds(tokens, tens, last)
    if t in UNITS:
        if _scaled(tokens, i):
            # "two thousand and one": a year; "three hundred and five"
            width = 3 if tokens[i + 1].text == "thousand" else 2
            j = i + 1
            if j + 1 < len(tokens) and tokens[j + 1].text == "and":
                j += 1
            rest = _scale_rest(tokens, j + 1, width)
            if rest is not None and len(rest[0]) <= width:
                return UNITS[t] + rest[0].rjust(width, "0"), rest[1]
            return UNITS[t] + "0" * width, i + 1
        return UNITS[t], i
    return None


def number_runs(
    tokens: Sequence[Token], *, tens_take_oh: bool = False, clock: Clock = NO_DEADLINE
) -> list[NumberRun]:
    """Every maximal stretch of numbers, allowing fillers and separators in between."""
    runs: list[NumberRun] = []
    items: list[Item] = []
    i = 0
    while i < len(tokens):
        clock.tick()
        if items and i + 1 < len(tokens) and (tokens[i].text, tokens[i + 1].text) in _PAUSES:
            i += 2
            continue
        said = word_number(tokens, i, tens_take_oh=tens_take_oh)
        if said is not None:
            digits, last = said
            items.append(Item(digits, tokens[i].start, tokens[last].end, i, last))
            i = last + 1
            continue
        if items:
            skip = filler_at(tokens, i)
            if skip:
                i += skip
                continue
            runs.append(NumberRun(tuple(items)))
            items = []
        i += 1
    if items:
        runs.append(NumberRun(tuple(items)))
    return runs
