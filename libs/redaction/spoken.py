"""Tokens with their character offsets, and runs of numbers as people say and engines write them.

A transcript says a card number in many ways: ``4111 1111 1111 1111``, ``4111-1111-...``,
``four one one one, one one one one``, ``forty one eleven``, ``double four``, ``triple one``,
``oh`` for zero, with fillers (``uh``, ``okay``) and Whisper's punctuation in between. A
``NumberRun`` is one such stretch: its items are the digit groups in order, each with the exact
character span it came from, so a detector can validate the digits and the redactor can replace
exactly the characters (and, through word offsets, the audio) that said them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import NamedTuple

_TOKEN = re.compile(r"\d+|[^\W\d_]+(?:'[^\W\d_]+)?|\S")


class Token(NamedTuple):
    text: str  # lower-cased
    start: int
    end: int


def tokenize(text: str) -> list[Token]:
    return [Token(m.group().lower(), m.start(), m.end()) for m in _TOKEN.finditer(text)]


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
# Said between digit groups without ending the number ("four one one one, uh, okay, one ...").
FILLERS = frozenset(
    {"uh", "um", "umm", "er", "erm", "ah", "hmm", "mm", "mhm", "okay", "ok", "yes", "yeah", "yep"}
    | {"right", "so", "then", "and", "sorry", "wait", "actually", "again"}
)
# Punctuation an engine writes inside a spoken or written number.
SEPARATORS = frozenset({",", ".", "-", "/", "(", ")", "+", "…", "–", "—", "slash"})


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


def word_number(
    tokens: Sequence[Token], i: int, *, tens_take_oh: bool = False
) -> tuple[str, int] | None:
    """The number said starting at token i, and the index of its last token; None if token i
    does not start one. ``tens_take_oh`` is the other reading of "thirty oh": one group "30"
    (the "oh" restating the zero) instead of "30" then "0"."""
    t = tokens[i].text
    nxt = tokens[i + 1].text if i + 1 < len(tokens) else ""
    if t.isdigit():
        return t, i
    if t in REPEATS:
        said = word_number(tokens, i + 1) if i + 1 < len(tokens) else None
        if said is not None and len(said[0]) == 1:
            return said[0] * REPEATS[t], said[1]
        return None
    if t in TEENS:
        return TEENS[t], i
    if t in TENS:
        # "forty one" and Whisper's "forty-one"
        j = i + 1
        if nxt == "-" and tokens[i].end == tokens[j].start:
            j += 1
        if j < len(tokens) and tokens[j].text in UNITS:
            if UNITS[tokens[j].text] != "0":
                return TENS[t] + UNITS[tokens[j].text], j
            if tens_take_oh:
                return TENS[t] + "0", j
        return TENS[t] + "0", i
    if t in UNITS:
        if nxt == "thousand" and UNITS[t] != "0":
            # "two thousand and one": a year
            j = i + 1
            if j + 1 < len(tokens) and tokens[j + 1].text == "and":
                j += 1
            rest = word_number(tokens, j + 1) if j + 1 < len(tokens) else None
            if rest is not None and len(rest[0]) <= 3 and not tokens[j + 1].text.isdigit():
                return UNITS[t] + rest[0].rjust(3, "0"), rest[1]
            return UNITS[t] + "000", i + 1
        if nxt == "hundred" and UNITS[t] != "0":
            j = i + 1
            if j + 1 < len(tokens) and tokens[j + 1].text == "and":
                j += 1
            rest = word_number(tokens, j + 1) if j + 1 < len(tokens) else None
            if rest is not None and len(rest[0]) <= 2 and not tokens[j + 1].text.isdigit():
                return UNITS[t] + rest[0].rjust(2, "0"), rest[1]
            return UNITS[t] + "00", i + 1
        return UNITS[t], i
    return None


def number_runs(tokens: Sequence[Token], *, tens_take_oh: bool = False) -> list[NumberRun]:
    """Every maximal stretch of numbers, allowing fillers and separators in between."""
    runs: list[NumberRun] = []
    items: list[Item] = []
    i = 0
    while i < len(tokens):
        said = word_number(tokens, i, tens_take_oh=tens_take_oh)
        if said is not None:
            digits, last = said
            items.append(Item(digits, tokens[i].start, tokens[last].end, i, last))
            i = last + 1
            continue
        if items and (tokens[i].text in FILLERS or tokens[i].text in SEPARATORS):
            i += 1
            continue
        if items:
            runs.append(NumberRun(tuple(items)))
            items = []
        i += 1
    if items:
        runs.append(NumberRun(tuple(items)))
    return runs
