"""Find sensitive values in transcript text: one detector per entity class, spans as offsets.

Detectors work on tokens (``spoken.tokenize``) and number runs (``spoken.number_runs``), so the
same code handles typed digits and speech. Validation comes from maintained libraries where one
exists: Luhn (``stdnum.luhn``) for card numbers, ``stdnum.us.ssn`` for written SSNs, Google's
``phonenumbers`` for phone numbers. Classes whose digits carry no checksum (CVV, expiry, date of
birth, spoken SSN) need their context ("security code is", "expires", "date of birth").

Findings never overlap: cards are found first, then the context classes, then SSN, e-mail and
phone numbers, each skipping characters an earlier class already took.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from typing import NamedTuple

import phonenumbers
from stdnum import luhn
from stdnum.us import ssn as us_ssn

from libs.redaction.policy import EntityClass
from libs.redaction.spoken import (
    FILLERS,
    SEPARATORS,
    TEENS,
    TENS,
    UNITS,
    Item,
    NumberRun,
    Token,
    number_runs,
    tokenize,
    word_number,
)


class Finding(NamedTuple):
    cls: EntityClass
    start: int  # character offsets, end exclusive
    end: int
    digits: str  # the digits said, for mask/last-4 substitution; "" for e-mail


# -- cards -----------------------------------------------------------------------------------


def is_card_number(digits: str) -> bool:
    """A plausible payment card: issuer prefix and length of the schemes, then the Luhn check."""
    n = len(digits)
    lengths = {
        "2": (16,),
        "3": (14, 15, 16, 17, 18, 19),
        "4": (13, 16, 19),
        "5": (16, 17, 18, 19),
        "6": (16, 17, 18, 19),
    }.get(digits[:1], ())
    return n in lengths and luhn.is_valid(digits)


def _cards(runs: Sequence[NumberRun]) -> list[Finding]:
    found: list[Finding] = []
    for run in runs:
        items = run.items
        start = 0
        while start < len(items):
            best: int | None = None
            digits = ""
            for end in range(start, len(items)):
                digits += items[end].digits
                if len(digits) > 19:
                    break
                if is_card_number(digits):
                    best = end
            if best is None:
                start += 1
                continue
            said = "".join(i.digits for i in items[start : best + 1])
            found.append(
                Finding(EntityClass.CREDIT_CARD, items[start].start, items[best].end, said)
            )
            start = best + 1
    return found


# -- values announced by their context ---------------------------------------------------------

_CVV_CONTEXT = (
    ("security", "code"),
    ("security", "digits"),
    ("verification", "code"),
    ("verification", "number"),
    ("cvv",),
    ("cvv2",),
    ("cvc",),
    ("csc",),
    ("c", "v", "v"),
    ("c", "v", "c"),
    ("digit", "code"),
    ("digit", "number"),
    ("digits", "on", "the", "back"),
    ("number", "on", "the", "back"),
    ("code", "on", "the", "back"),
)
_EXPIRY_CONTEXT = (
    ("expires",),
    ("expiry",),
    ("expiration",),
    ("expiring",),
    ("expire",),
    ("exp",),
    ("valid", "until"),
    ("valid", "thru"),
    ("valid", "through"),
    ("good", "thru"),
    ("good", "through"),
    ("end", "date"),
)
_DOB_CONTEXT = (
    ("date", "of", "birth"),
    ("birth", "date"),
    ("birthdate",),
    ("birthday",),
    ("born",),
    ("dob",),
    ("d", "o", "b"),
)
_SSN_CONTEXT = (
    ("social", "security"),
    ("social",),
    ("ssn",),
    ("s", "s", "n"),
)
# Words between a context phrase and its value ("the security code on the back is 1 2 3").
_GLUE = frozenset(
    {"is", "it's", "its", "it", "the", "on", "of", "at", "in", "that's", "was", "are", "my"}
    | {"number", "code", "date", "card", "back", "and", "a", "please", "s", "'s", "that"}
    | {":", ",", ".", "-", "?", "'", "’", "your", "'m", "i", "am", "front", "sure", "yes", "end"}
    | FILLERS
)
MONTHS = frozenset(
    {"january", "february", "march", "april", "may", "june", "july", "august", "september"}
    | {"october", "november", "december", "jan", "feb", "mar", "apr", "jun", "jul", "aug"}
    | {"sep", "sept", "oct", "nov", "dec"}
)
_ORDINALS = frozenset(
    {"first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth"}
    | {"tenth", "eleventh", "twelfth", "thirteenth", "fourteenth", "fifteenth", "sixteenth"}
    | {"seventeenth", "eighteenth", "nineteenth", "twentieth", "thirtieth"}
    | {"st", "nd", "rd", "th"}
)
_NUMBER_WORDS = frozenset(UNITS) | frozenset(TEENS) | frozenset(TENS) | {"hundred", "double"}
_DATE_GLUE = frozenset({"/", "-", ".", ",", "of", "the", "slash"})
# A number after these is an order, account or booking reference, not a phone number or SSN.
_REFERENCE_WORDS = frozenset(
    {"order", "reference", "ref", "account", "invoice", "ticket", "case", "tracking"}
    | {"confirmation", "booking", "policy", "member", "customer", "claim", "transaction"}
)


def _phrase_ends(tokens: Sequence[Token], phrases: Sequence[tuple[str, ...]]) -> list[int]:
    """Index just past each occurrence of any phrase."""
    ends: list[int] = []
    for i in range(len(tokens)):
        for phrase in phrases:
            if tuple(t.text for t in tokens[i : i + len(phrase)]) == phrase:
                ends.append(i + len(phrase))
                break
    return ends


def _skip_glue(tokens: Sequence[Token], i: int, limit: int = 8) -> int:
    skipped = 0
    while i < len(tokens) and tokens[i].text in _GLUE and skipped < limit:
        i += 1
        skipped += 1
    return i


def _item_at(runs: Sequence[NumberRun], token_index: int) -> tuple[NumberRun, int] | None:
    for run in runs:
        for k, item in enumerate(run.items):
            if item.first == token_index:
                return run, k
    return None


def _leading_digits(items: Sequence[Item], count: Collection[int]) -> tuple[int, str] | None:
    """The longest prefix of items whose digits have one of the wanted lengths."""
    digits = ""
    best: tuple[int, str] | None = None
    for k, item in enumerate(items):
        digits += item.digits
        if len(digits) > max(count):
            break
        if len(digits) in count:
            best = k, digits
    return best


def _context_number(
    tokens: Sequence[Token],
    runs: Sequence[NumberRun],
    phrases: Sequence[tuple[str, ...]],
    lengths: Collection[int],
    cls: EntityClass,
) -> list[Finding]:
    found: list[Finding] = []
    for end in _phrase_ends(tokens, phrases):
        at = _item_at(runs, _skip_glue(tokens, end))
        if at is None:
            continue
        run, k = at
        lead = _leading_digits(run.items[k:], lengths)
        if lead is None:
            continue
        last, digits = lead
        found.append(Finding(cls, run.items[k].start, run.items[k + last].end, digits))
    return found


def _date_after(tokens: Sequence[Token], i: int, limit: int = 10) -> tuple[int, int, str] | None:
    """The date said from token i on: (first token, last token, its digits), if it has one."""
    first = i
    last = -1
    digits = ""
    month = False
    while i < len(tokens) and i - first < limit:
        t = tokens[i].text
        said = word_number(tokens, i)
        if said is not None:
            digits += said[0]
            i = said[1]
        elif t in MONTHS:
            month = True
        elif t in _ORDINALS or t in _NUMBER_WORDS:
            digits += "#"  # a day said as an ordinal: counts as said, no digit value needed
        elif t in _DATE_GLUE or t in ("uh", "um", "er", "erm"):
            i += 1
            continue
        else:
            break
        last = i
        i += 1
    if last < first or not digits or (not month and len(digits) < 2):
        return None
    return first, last, digits.replace("#", "")


def _context_date(
    tokens: Sequence[Token], phrases: Sequence[tuple[str, ...]], cls: EntityClass
) -> list[Finding]:
    found: list[Finding] = []
    for end in _phrase_ends(tokens, phrases):
        date = _date_after(tokens, _skip_glue(tokens, end))
        if date is not None:
            first, last, digits = date
            found.append(Finding(cls, tokens[first].start, tokens[last].end, digits))
    return found


# -- SSN ---------------------------------------------------------------------------------------

_WRITTEN_SSN = re.compile(r"(?<![\d-])\d{3}-\d{2}-\d{4}(?![\d-])")


def _written_ssns(text: str) -> list[Finding]:
    return [
        Finding(EntityClass.SSN, m.start(), m.end(), m.group().replace("-", ""))
        for m in _WRITTEN_SSN.finditer(text)
        if us_ssn.is_valid(m.group())
    ]


# -- e-mail ------------------------------------------------------------------------------------

_TLDS = frozenset(
    {"com", "net", "org", "edu", "gov", "io", "co", "uk", "us", "ca", "de", "fr", "au", "nz"}
    | {"ie", "info", "biz", "me", "es", "it", "nl", "be", "ch", "in", "jp", "eu", "ai", "app"}
    | {"dev", "mail", "email", "online", "xyz", "uk"}
)
_CONNECT = {"dot": ".", ".": ".", "underscore": "_", "_": "_", "dash": "-", "hyphen": "-"}
_CONNECT["-"] = "-"


def _label(t: Token) -> bool:
    return t.text.isalnum()


def _connector(tokens: Sequence[Token], i: int) -> str | None:
    """'.', '_' or '-' if token i joins two parts of an address: a spoken word always, written
    punctuation only when glued to both neighbours (a full stop ends a sentence)."""
    t = tokens[i]
    joined = _CONNECT.get(t.text)
    if joined is None:
        return None
    if t.text.isalpha():
        return joined
    glued = 0 < i < len(tokens) - 1 and (
        tokens[i - 1].end == t.start and t.end == tokens[i + 1].start
    )
    return joined if glued else None


def _emails(tokens: Sequence[Token]) -> list[Finding]:
    found: list[Finding] = []
    for a, tok in enumerate(tokens):
        if tok.text not in ("at", "@") or a == 0:
            continue
        # domain: label (dot label)+ ending in a known top-level domain
        d = a + 1
        if d < len(tokens) and tokens[d].text == "sign":
            d += 1
        domain_end: int | None = None
        j = d
        if j < len(tokens) and _label(tokens[j]):
            while j + 2 < len(tokens) and _connector(tokens, j + 1) and _label(tokens[j + 2]):
                j += 2
                if _connector(tokens, j - 1) == "." and tokens[j].text in _TLDS:
                    domain_end = j
        if domain_end is None:
            continue
        # local part: labels joined by connectors, glued pieces, or letters spelled one by one
        k = a - 1
        if not _label(tokens[k]):
            continue
        while k > 0:
            if tokens[k].text in _NUMBER_WORDS and _label(tokens[k - 1]):
                k -= 1  # "jones eighty seven at ...": digits said after a name
            elif k >= 2 and _connector(tokens, k - 1) and _label(tokens[k - 2]):
                k -= 2
            elif _label(tokens[k - 1]) and (
                tokens[k - 1].end == tokens[k].start
                or (len(tokens[k].text) == 1 and len(tokens[k - 1].text) == 1)
            ):
                k -= 1
            else:
                break
        found.append(Finding(EntityClass.EMAIL, tokens[k].start, tokens[domain_end].end, ""))
    return found


# -- phone numbers -----------------------------------------------------------------------------

_REGIONS = ("US", "GB")


def _is_phone(digits: str, international: bool) -> bool:
    """Said digits as a valid number: with "plus", an international number; otherwise a
    national one, trunk prefix 0 for the UK, ten digits (or 1 and ten) for the NANP."""
    if international:
        candidate, region = f"+{digits}", None
    elif digits.startswith("0"):
        candidate, region = digits, "GB"
    elif len(digits) == 10 or (len(digits) == 11 and digits.startswith("1")):
        candidate, region = digits, "US"
    else:
        return False
    try:
        return bool(phonenumbers.is_valid_number(phonenumbers.parse(candidate, region)))
    except phonenumbers.NumberParseException:
        return False


def _after_reference(tokens: Sequence[Token], token_index: int) -> bool:
    window = tokens[max(0, token_index - 4) : token_index]
    return any(t.text in _REFERENCE_WORDS for t in window)


def _phones(text: str, tokens: Sequence[Token], runs: Sequence[NumberRun]) -> list[Finding]:
    found: list[Finding] = []
    for region in _REGIONS:
        for match in phonenumbers.PhoneNumberMatcher(text, region):
            digits = re.sub(r"\D", "", match.raw_string)
            found.append(Finding(EntityClass.PHONE, match.start, match.end, digits))
    for run in runs:
        items = run.items
        first_tok = items[0].first
        international = first_tok > 0 and tokens[first_tok - 1].text in ("plus", "+")
        if _after_reference(tokens, first_tok):
            continue
        for start in range(len(items)):
            hit: int | None = None
            digits = ""
            for end in range(start, len(items)):
                digits += items[end].digits
                if len(digits) > 15:
                    break
                if len(digits) >= 10 and _is_phone(digits, international and start == 0):
                    hit = end
            if hit is not None:
                said = "".join(i.digits for i in items[start : hit + 1])
                begin = items[start].start
                if international and start == 0:
                    begin = tokens[first_tok - 1].start
                found.append(Finding(EntityClass.PHONE, begin, items[hit].end, said))
                break
    return found


# -- values already redacted -------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"\[(" + "|".join(c.value.upper() for c in EntityClass) + r")\]")


def _placeholders(text: str, classes: Collection[EntityClass]) -> list[Finding]:
    """Entity-name placeholders from an earlier pass (a long recording's saved chunks are
    redacted before they are stored): found again, so they are counted, timed and substituted
    like the value they stand for."""
    found = []
    for m in _PLACEHOLDER.finditer(text):
        cls = EntityClass(m.group(1).lower())
        if cls in classes:
            found.append(Finding(cls, m.start(), m.end(), ""))
    return found


# -- all together ------------------------------------------------------------------------------


def detect(text: str, classes: Collection[EntityClass]) -> list[Finding]:
    """Non-overlapping findings of the wanted classes, in text order."""
    if not classes or not text:
        return []
    tokens = tokenize(text)
    runs = number_runs(tokens)
    ordered: list[list[Finding]] = [_placeholders(text, classes)]
    if EntityClass.CREDIT_CARD in classes:
        ordered.append(_cards(runs))
        # The other reading of "thirty oh ...", validated by Luhn like the first.
        ordered.append(_cards(number_runs(tokens, tens_take_oh=True)))
    if EntityClass.SSN in classes:
        ordered.append(_written_ssns(text))
        ordered.append(_context_number(tokens, runs, _SSN_CONTEXT, (9,), EntityClass.SSN))
    if EntityClass.CVV in classes:
        ordered.append(_context_number(tokens, runs, _CVV_CONTEXT, (3, 4), EntityClass.CVV))
    if EntityClass.EXPIRY in classes:
        ordered.append(_context_date(tokens, _EXPIRY_CONTEXT, EntityClass.EXPIRY))
    if EntityClass.DOB in classes:
        ordered.append(_context_date(tokens, _DOB_CONTEXT, EntityClass.DOB))
    if EntityClass.EMAIL in classes:
        ordered.append(_emails(tokens))
    if EntityClass.PHONE in classes:
        ordered.append(_phones(text, tokens, runs))
    taken: list[Finding] = []
    for findings in ordered:
        for f in findings:
            if all(f.end <= t.start or f.start >= t.end for t in taken):
                taken.append(f)
    return sorted(taken, key=lambda f: f.start)


__all__ = ["SEPARATORS", "Finding", "detect", "is_card_number"]
