"""Find sensitive values in transcript text: one detector per entity class, spans as offsets.

Detectors work on tokens (``spoken.tokenize``) and number runs (``spoken.number_runs``), so the
same code handles typed digits and speech. Validation comes from maintained libraries where one
exists: Luhn (``stdnum.luhn``) for card numbers, ``stdnum.us.ssn`` for written SSNs, Google's
``phonenumbers`` for phone numbers. Classes whose digits carry no checksum (CVV, expiry, date of
birth, spoken SSN) need their context ("security code is", "expires", "date of birth").

Card numbers carry a checksum, but an engine mishears: in a card context ("card number", "long
number", "on the front", "the number on the card") a run of 12 or more digits is a card even
when it fails Luhn, and digits that continue a card in the same run (a digit doubled, extras an
engine hallucinated after it) are taken with it.

Findings never overlap: cards are found first, then the context classes, then SSN, e-mail and
phone numbers, each skipping characters an earlier class already took.

Every detector is one pass over the tokens and runs (phrases indexed by their first word, runs by
their first token, taken characters in a bytearray), so detection is linear in the text; a
``deadline`` (``time.monotonic()`` seconds) is checked as it goes and raises
``RedactionTimeout`` when passed.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Collection, Sequence
from typing import Any, NamedTuple

import phonenumbers
from stdnum import luhn
from stdnum.us import ssn as us_ssn

from libs.redaction.deadline import NO_DEADLINE, Clock
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
    ascii_digits,
    filler_at,
    number_runs,
    read_homophones,
    tokenize,
    word_number,
)


class Finding(NamedTuple):
    cls: EntityClass
    start: int  # character offsets, end exclusive
    end: int
    digits: str  # the digits said, for mask/last-4 substitution; "" for e-mail


# -- phrases -----------------------------------------------------------------------------------


def _bare(word: str) -> str:
    """The word without a trailing 's (is, has, or the possessive)."""
    if len(word) > 2 and word[-2:] in ("'s", "’s"):
        return word[:-2]
    return word


class Phrases:
    """Phrases of one or more words, indexed by their first word so that finding every
    occurrence is one pass over the tokens. A phrase is not counted after a word in
    ``not_after`` ("security number" after "social" is an SSN's context, not a CVV's)."""

    def __init__(self, phrases: Sequence[tuple[str, ...]], not_after: Collection[str] = ()) -> None:
        self.by_first: dict[str, list[tuple[str, ...]]] = {}
        for phrase in phrases:
            self.by_first.setdefault(phrase[0], []).append(phrase)
        self.not_after = frozenset(not_after)

    def ends(self, tokens: Sequence[Token], clock: Clock = NO_DEADLINE) -> list[int]:
        """Index just past each occurrence of any phrase (the first phrase listed wins). A word
        with 's ("expiry's", "birthday's", "social's") counts as the word."""
        ends: list[int] = []
        for i, token in enumerate(tokens):
            clock.tick()
            # The word as said first: a phrase of its own ("card's") is not lost to its bare
            # word's phrases ("card number").
            candidates = self.by_first.get(token.text) or self.by_first.get(_bare(token.text))
            if candidates is None or (i > 0 and tokens[i - 1].text in self.not_after):
                continue
            for phrase in candidates:
                n = len(phrase)
                if i + n <= len(tokens) and all(
                    _bare(tokens[i + k].text) == phrase[k] for k in range(1, n)
                ):
                    ends.append(i + n)
                    break
        return ends


# -- cards -----------------------------------------------------------------------------------


_CARD_LENGTHS = {
    "2": (16,),
    "3": (14, 15, 16, 17, 18, 19),
    "4": (13, 16, 19),
    "5": (16, 17, 18, 19),
    "6": (16, 17, 18, 19),
}


def is_card_number(digits: str) -> bool:
    """A plausible payment card: issuer prefix and length of the schemes, then the Luhn check."""
    return len(digits) in _CARD_LENGTHS.get(digits[:1], ()) and luhn.is_valid(digits)


_CARD_CONTEXT = Phrases(
    (
        ("card", "number"),
        ("card", "no"),
        ("card", "is"),
        ("card", "details"),
        ("card's",),
        ("credit", "card"),
        ("debit", "card"),
        ("long", "number"),
        ("on", "the", "front"),
        ("across", "the", "front"),
        ("number", "on", "the", "card"),
        ("number", "on", "your", "card"),
        ("number", "on", "my", "card"),
        ("number", "of", "the", "card"),
        ("sixteen", "digit"),
        ("sixteen", "digits"),
        ("16", "digit"),
        ("16", "digits"),
    )
)
# A card context counts for a run that starts within this many tokens after it.
_CARD_CONTEXT_REACH = 12
# In a card context, a run of this many digits is a card even when it fails Luhn.
MIN_CONTEXT_CARD_DIGITS = 12
# Anywhere, a run of this many digits (more than any phone number, E.164 has at most 15) with no
# valid card in it is a card nonetheless.
MIN_BARE_CARD_DIGITS = 16
# ... and so is a shorter run down to this many (a card with a digit or two dropped, which no
# reading validates) unless it is a phone number with its country code (see _is_dialled_abroad).
MIN_SHORT_BARE_CARD_DIGITS = 13
# ... and two runs a few words apart (see _CARD_CONTEXT_GAP) that together say 16 to this many.
MAX_BARE_CARD_DIGITS = 24
# ... and two runs at most this many words apart are read as one number.
_CARD_CONTEXT_GAP = 6


def _card_contexts(tokens: Sequence[Token], clock: Clock) -> bytearray:
    """For each token index, 1 if a card context phrase ends just before it."""
    marks = bytearray(len(tokens) + 1)
    for end in _CARD_CONTEXT.ends(tokens, clock):
        marks[end] = 1
    return marks


def _in_card_context(marks: bytearray, first: int, not_before: int) -> bool:
    """A context phrase ends between ``not_before`` (just after the previous run) and token
    ``first`` where the run starts, at most _CARD_CONTEXT_REACH tokens before it."""
    lo = max(not_before, first - _CARD_CONTEXT_REACH)
    return marks.find(1, lo, first + 1) != -1


def _valid_cards(items: Sequence[Item], clock: Clock) -> list[tuple[int, int]]:
    """First and last item of each Luhn-valid card in a run, longest first, left to right."""
    hits: list[tuple[int, int]] = []
    start = 0
    while start < len(items):
        clock.tick()
        best: int | None = None
        digits = ""
        for end in range(start, len(items)):
            digits += items[end].digits
            if len(digits) > 19:
                break
            if len(digits) >= 13 and is_card_number(digits):
                best = end
        if best is None:
            start += 1
            continue
        hits.append((start, best))
        start = best + 1
    return hits


def _all_phones(items: Sequence[Item], trunk_regions: tuple[str, ...] | None = None) -> bool:
    """The run is valid phone numbers one after another ("202 456 1111 and 212 736 3100"):
    long, but not a card. `trunk_regions`: where a number with a trunk 0 may be from (default:
    every region _phones knows)."""
    digits = ""
    for item in items:
        digits += item.digits
        if len(digits) > 11:
            return False
        if _is_phone(digits, False, trunk_regions):
            digits = ""
    return digits == "" and bool(items)


def _count(items: Sequence[Item]) -> int:
    return sum(len(i.digits) for i in items)


def _words_between(tokens: Sequence[Token], a: int, b: int) -> int:
    """Words (not punctuation) among tokens a to b (exclusive); more than the gap allowed
    without counting when there are too many tokens."""
    if b - a > 2 * _CARD_CONTEXT_GAP:
        return _CARD_CONTEXT_GAP + 1
    return sum(1 for t in tokens[a:b] if t.text[0].isalnum())


def _cards(
    tokens: Sequence[Token],
    runs: Sequence[NumberRun],
    contexts: bytearray | None = None,
    clock: Clock = NO_DEADLINE,
    *,
    bare: bool = False,
    phones: bool = True,
) -> list[Finding]:
    """Luhn-valid card numbers in each run, each taking the digits that continue it in the
    same run. With ``bare`` (a last pass, after every reading had its chance to validate), a
    run of 16 or more digits without a valid number is one card anywhere (no phone number is
    that long) unless a reference label ("order", "account", ...) announces it or it is phone
    numbers in a row; so are two runs a few words apart that together say 16 to 24. In a card context (``contexts``, from ``_card_contexts``) a run of 12 or more
    digits holding at most one valid number is one card from its first digit to its last, and
    so are two runs without a valid number that together say 12 to 19 digits a few words
    apart ("five two oh oh, eight two eight two, hang on, I need my glasses, eight two ...")."""
    found: list[Finding] = []
    previous_end = 0
    r = 0
    while r < len(runs):
        items = runs[r].items
        hits = _valid_cards(items, clock)
        in_context = (
            contexts is not None
            and len(hits) <= 1
            and _in_card_context(contexts, items[0].first, previous_end)
        )
        previous_end = items[-1].last + 1
        if _whole_run_is_card(tokens, items, hits, in_context=in_context, bare=bare, phones=phones):
            hits = [(0, len(items) - 1)]
        elif not hits and r + 1 < len(runs):
            pair = _card_across(
                tokens, runs[r], runs[r + 1], clock, in_context=in_context, bare=bare
            )
            if pair is not None:
                found.append(pair)
                previous_end = runs[r + 1].items[-1].last + 1
                r += 2
                continue
        found.extend(_hit_findings(items, hits))
        r += 1
    return found


def _whole_run_is_card(
    tokens: Sequence[Token],
    items: Sequence[Item],
    hits: Sequence[tuple[int, int]],
    *,
    in_context: bool,
    bare: bool,
    phones: bool = True,
) -> bool:
    """Whether the run is one card from its first digit to its last (see ``_cards``). Without
    ``phones`` (the policy does not redact phone numbers), a short run that reads as a phone
    number with its country code is a card all the same: nothing else would redact it."""
    if in_context and _count(items) >= MIN_CONTEXT_CARD_DIGITS:
        return True
    # Longer than any phone number and no valid card in it: a card misheard (or read
    # across the other party's words, whose "card number?" is not in this speaker's
    # text). As long as a card with a digit or two dropped and not a phone number said with
    # its country code: the same. Failing closed.
    if not bare or hits:
        return False
    count = _count(items)
    return (
        (
            count >= MIN_BARE_CARD_DIGITS
            or (
                count >= MIN_SHORT_BARE_CARD_DIGITS
                and not (phones and _is_dialled_abroad("".join(i.digits for i in items)))
            )
        )
        and not _after_reference(tokens, items[0].first)
        and not _all_phones(items)
    )


def _card_across(
    tokens: Sequence[Token],
    run: NumberRun,
    following: NumberRun,
    clock: Clock,
    *,
    in_context: bool,
    bare: bool,
) -> Finding | None:
    """One card said as two runs a few words apart (see ``_cards``), or None."""
    items = run.items
    after = following.items
    near = _words_between(tokens, items[-1].last + 1, after[0].first) <= _CARD_CONTEXT_GAP
    digits = _count(items) + _count(after)
    # In a card context, 12 to 19 digits; anywhere (the context may be the other
    # party's, on their channel), more digits than a phone number has, up to a card
    # and the extras an engine hallucinates after it.
    card_like = (
        MIN_CONTEXT_CARD_DIGITS <= digits <= 19
        if in_context
        else bare
        and MIN_BARE_CARD_DIGITS <= digits <= MAX_BARE_CARD_DIGITS
        and not _after_reference(tokens, items[0].first)
        and not _all_phones(items, _CARD_PART_TRUNK_REGIONS)
        and not _all_phones(after, _CARD_PART_TRUNK_REGIONS)
    )
    if near and card_like and not _valid_cards(after, clock):
        said = run.digits + following.digits
        return Finding(EntityClass.CREDIT_CARD, items[0].start, after[-1].end, said)
    return None


def _hit_findings(items: Sequence[Item], hits: Sequence[tuple[int, int]]) -> list[Finding]:
    """A finding per valid card in the run, each running up to the next one."""
    found: list[Finding] = []
    for n, (first, last) in enumerate(hits):
        # What follows a card in its run, up to the next card, is more of it (a doubled
        # digit, an engine's hallucinated extras): redacted with it.
        last = hits[n + 1][0] - 1 if n + 1 < len(hits) else len(items) - 1
        said = "".join(i.digits for i in items[first : last + 1])
        found.append(Finding(EntityClass.CREDIT_CARD, items[first].start, items[last].end, said))
    return found


# -- values announced by their context ---------------------------------------------------------

_CVV_CONTEXT = Phrases(
    (
        ("security", "code"),
        ("security", "digits"),
        ("security", "number"),
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
        ("on", "the", "back"),
        ("the", "code", "is"),
        ("the", "code", "on", "it", "is"),
        ("signature", "strip"),
        ("signature", "panel"),
        ("signature", "box"),
    ),
    not_after={"social"},
)
_EXPIRY_CONTEXT = Phrases(
    (
        ("expires",),
        ("expiry",),
        ("expiration",),
        ("expiring",),
        ("expire",),
        ("exp",),
        ("valid", "until"),
        ("valid", "till"),
        ("valid", "thru"),
        ("valid", "through"),
        ("valid", "to"),
        ("good", "thru"),
        ("good", "through"),
        ("good", "until"),
        ("good", "till"),
        ("end", "date"),
        ("runs", "out"),
        ("run", "out"),
    )
)
_DOB_CONTEXT = Phrases(
    (
        ("date", "of", "birth"),
        ("birth", "date"),
        ("birthdate",),
        ("birthday",),
        ("born",),
        ("dob",),
        ("d", "o", "b"),
    )
)
_SSN_CONTEXT = Phrases(
    (
        ("social", "security"),
        ("social",),
        ("ssn",),
        ("s", "s", "n"),
    )
)
# An SSN (nine digits) may start this many tokens after its context and the glue words.
_SSN_REACH = 8
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


def _skip_glue(tokens: Sequence[Token], i: int, limit: int = 8) -> int:
    """Past the words between a context phrase and its value (fillers said in more than one
    word, "hold on", count as one)."""
    skipped = 0
    while i < len(tokens) and skipped < limit:
        if tokens[i].text in _GLUE:
            i += 1
        else:
            n = filler_at(tokens, i)
            if not n:
                break
            i += n
        skipped += 1
    return i


class _RunIndex:
    """Where each run item starts, by token index: one dict for the whole text."""

    def __init__(self, runs: Sequence[NumberRun]) -> None:
        self.at: dict[int, tuple[NumberRun, int]] = {
            item.first: (run, k) for run in runs for k, item in enumerate(run.items)
        }


def _context_number(
    tokens: Sequence[Token],
    index: _RunIndex,
    phrases: Phrases,
    lengths: Collection[int],
    cls: EntityClass,
    clock: Clock,
    reach: int = 0,
) -> list[Finding]:
    found: list[Finding] = []
    longest = max(lengths)
    for end in phrases.ends(tokens, clock):
        start = _skip_glue(tokens, end)
        at = index.at.get(start)
        # A value as distinctive as an SSN may come a few words later ("your social to verify?
        # Sure, two one nine ..."): the first number that starts within `reach` tokens.
        for j in range(start + 1, min(start + reach, len(tokens)) + 1):
            if at is not None:
                break
            at = index.at.get(j)
        if at is None:
            continue
        run, k = at
        # The longest stretch of items from k whose digits have one of the wanted lengths.
        digits = ""
        best: tuple[int, str] | None = None
        for last in range(k, len(run.items)):
            digits += run.items[last].digits
            if len(digits) > longest:
                break
            if len(digits) in lengths:
                best = last, digits
        if best is not None:
            found.append(Finding(cls, run.items[k].start, run.items[best[0]].end, best[1]))
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
    tokens: Sequence[Token], phrases: Phrases, cls: EntityClass, clock: Clock
) -> list[Finding]:
    found: list[Finding] = []
    for end in phrases.ends(tokens, clock):
        date = _date_after(tokens, _skip_glue(tokens, end))
        if date is not None:
            first, last, digits = date
            found.append(Finding(cls, tokens[first].start, tokens[last].end, digits))
    return found


# -- SSN ---------------------------------------------------------------------------------------

_WRITTEN_SSN = re.compile(r"(?<![\d-])\d{3}-\d{2}-\d{4}(?![\d-])")


def _written_ssns(text: str) -> list[Finding]:
    found = []
    for m in _WRITTEN_SSN.finditer(text):
        said = ascii_digits(m.group())
        if us_ssn.is_valid(said):
            found.append(Finding(EntityClass.SSN, m.start(), m.end(), said.replace("-", "")))
    return found


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


def _emails(tokens: Sequence[Token], clock: Clock = NO_DEADLINE) -> list[Finding]:
    """Each scan from an "at" stops at the next or previous "at" (it is neither a label glued
    to its neighbours nor a connector), so all of them together read the text about once."""
    found: list[Finding] = []
    for a, tok in enumerate(tokens):
        clock.tick()
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
                clock.tick()
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
            clock.tick()
            if (
                tokens[k].text in _NUMBER_WORDS
                and _label(tokens[k - 1])
                and tokens[k - 1].text not in _CONNECT
            ):
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


@functools.lru_cache(maxsize=4096)
def _is_phone(
    digits: str, international: bool, trunk_regions: tuple[str, ...] | None = None
) -> bool:
    """Said digits as a valid number: with "plus", an international number; otherwise a
    national one, trunk prefix 0 for the _TRUNK_REGIONS (or `trunk_regions`), ten digits (or 1
    and ten) for the NANP."""
    return any(
        _check_number(digits, region, phonenumbers.is_valid_number)
        for region in _regions_for(digits, international, trunk_regions)
    )


@functools.lru_cache(maxsize=4096)
def _is_possible_phone(digits: str) -> bool:
    """Said digits with the length and shape of a national number (the number itself may be
    one the validator does not know, such as Ofcom's drama range): only after a phone
    context ("my mobile is ...")."""
    return any(
        _check_number(digits, region, phonenumbers.is_possible_number)
        for region in _regions_for(digits, False)
    )


# National numbers with a trunk 0: the UK's (10 or 11 digits) and those of the other countries
# whose callers an English-speaking contact centre hears most (9 to 11 digits).
_TRUNK_REGIONS = ("GB", "IE", "AU", "NZ", "ZA", "IN")
# ... but the part of a card read in two (_card_across) that a phone number excuses is the UK's
# only: a card's second part starts with 0 one time in ten, and ten digits from 0 are often a
# valid number in one of the others (an Australian mobile 04...), which left the card in clear.
_CARD_PART_TRUNK_REGIONS = ("GB",)


def _regions_for(
    digits: str, international: bool, trunk_regions: tuple[str, ...] | None = None
) -> tuple[str | None, ...]:
    """Where said digits may be a phone number: with "plus", anywhere; a trunk 0, the
    _TRUNK_REGIONS; ten digits (or 1 and ten), the NANP; else nowhere."""
    if international:
        return (None,)
    if digits.startswith("0"):
        return (trunk_regions or _TRUNK_REGIONS) if 9 <= len(digits) <= 11 else ()
    if len(digits) == 10 or (len(digits) == 11 and digits.startswith("1")):
        # No NANP area code starts with 0 or 1.
        return () if digits[-10] in "01" else ("US",)
    return ()


def _check_number(digits: str, region: str | None, test: Callable[[Any], bool]) -> bool:
    try:
        return bool(test(phonenumbers.parse(digits if region else f"+{digits}", region)))
    except phonenumbers.NumberParseException:
        return False


# Words that announce a phone number; its digits start within _PHONE_CONTEXT_REACH tokens.
_PHONE_CONTEXT = Phrases(
    (
        ("mobile",),
        ("phone",),
        ("cell",),
        ("landline",),
        ("telephone",),
        ("my", "number"),
        ("best", "number"),
        ("contact", "number"),
        ("call", "me", "on"),
        ("call", "me", "at"),
        ("reach", "me", "on"),
        ("reach", "me", "at"),
    )
)
_PHONE_CONTEXT_REACH = 6
# At most this many digits left in a run after a phone number are taken as part of it.
_PHONE_TAIL_DIGITS = 3

# The international call prefixes said before a country code: 00 (most of the world) and 011
# (the NANP), longest first.
_IDD_PREFIXES = ("011", "00")
# A number said with its country code and no "plus" has at least this many digits.
_MIN_ABROAD_DIGITS = 11


def _is_dialled_abroad(digits: str) -> bool:
    """Said digits as a phone number with its country code but no "plus": after 00 or 011
    ("double oh four four, seven seven ..."), or the country code straight away ("four nine,
    one five one, ...")."""
    for prefix in _IDD_PREFIXES:
        if digits.startswith(prefix):
            rest = digits[len(prefix) :]
            return len(rest) >= _MIN_ABROAD_DIGITS - 1 and _is_phone(rest, True)
    return len(digits) >= _MIN_ABROAD_DIGITS and _is_phone(digits, True)


# The matcher reads the text in windows of about this many characters, so that the deadline is
# checked between them (it cannot be inside the library). Windows overlap by more than the
# longest written number: a match starting in the overlap is left to the next window, which
# sees all of it, and a match overlapping one already taken (a tail cut by the window's
# start) is dropped.
_WINDOW = 4096
_OVERLAP = 80


def _written_phones(text: str, clock: Clock) -> list[Finding]:
    found: list[Finding] = []
    reached = dict.fromkeys(_REGIONS, 0)
    at = 0
    while at < len(text):
        end = len(text) if len(text) - at <= _WINDOW else at + _WINDOW
        begin = max(0, at - _OVERLAP)
        piece = text[begin:end]
        for region in _REGIONS:
            for match in phonenumbers.PhoneNumberMatcher(piece, region):
                start, stop = begin + match.start, begin + match.end
                if start < reached[region] or (end < len(text) and start >= end - _OVERLAP):
                    continue
                reached[region] = stop
                digits = ascii_digits(re.sub(r"\D", "", match.raw_string))
                found.append(Finding(EntityClass.PHONE, start, stop, digits))
            clock.check()
        at = end
    found.sort(key=lambda f: f.start)
    return found


def _after_reference(tokens: Sequence[Token], token_index: int) -> bool:
    window = tokens[max(0, token_index - 4) : token_index]
    return any(t.text in _REFERENCE_WORDS for t in window)


def _phones(
    text: str, tokens: Sequence[Token], runs: Sequence[NumberRun], clock: Clock = NO_DEADLINE
) -> list[Finding]:
    found = _written_phones(text, clock)
    contexts = bytearray(len(tokens) + 1)
    for end in _PHONE_CONTEXT.ends(tokens, clock):
        contexts[end] = 1
    previous_end = 0
    for run in runs:
        items = run.items
        first_tok = items[0].first
        international = first_tok > 0 and tokens[first_tok - 1].text in ("plus", "+")
        lo = max(previous_end, first_tok - _PHONE_CONTEXT_REACH)
        in_context = contexts.find(1, lo, first_tok + 1) != -1
        previous_end = items[-1].last + 1
        if _after_reference(tokens, first_tok):
            continue
        if not international and _is_dialled_abroad(run.digits):
            # The whole run is one number said with its country code and no "plus".
            found.append(Finding(EntityClass.PHONE, items[0].start, items[-1].end, run.digits))
            continue
        # Every number in the run, not only the first: fillers ("and", "hold on") join two
        # numbers said one after the other into one run.
        start = 0
        while start < len(items):
            clock.tick()
            hit: int | None = None
            digits = ""
            for end in range(start, len(items)):
                digits += items[end].digits
                if len(digits) > 18:  # 011 and the longest E.164 number
                    break
                if len(digits) >= 9 and (
                    _is_phone(digits, international and start == 0)
                    or (
                        not international
                        and digits.startswith(_IDD_PREFIXES)
                        and _is_dialled_abroad(digits)
                    )
                    or (in_context and start == 0 and _is_possible_phone(digits))
                ):
                    hit = end
            if hit is None:
                start += 1
                continue
            left = len(items) - hit - 1  # items, each at least one digit
            if 0 < left <= _PHONE_TAIL_DIGITS and _count(items[hit + 1 :]) <= _PHONE_TAIL_DIGITS:
                # A digit or two left after a number the validator knows one digit shorter
                # ("oh two oh, seven nine four six, oh double oh one eight"): part of it.
                hit = len(items) - 1
            said = "".join(i.digits for i in items[start : hit + 1])
            begin = items[start].start
            if international and start == 0:
                begin = tokens[first_tok - 1].start
            found.append(Finding(EntityClass.PHONE, begin, items[hit].end, said))
            start = hit + 1
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


def detect(
    text: str, classes: Collection[EntityClass], *, deadline: float | None = None
) -> list[Finding]:
    """Non-overlapping findings of the wanted classes, in text order.

    ``deadline`` is a ``time.monotonic()`` value: checked on entry and every few hundred tokens
    of work, ``RedactionTimeout`` once it has passed (the caller must then keep nothing)."""
    clock = Clock(deadline)
    clock.check()
    if not classes or not text:
        return []
    tokens = read_homophones(tokenize(text, clock), clock)
    runs = number_runs(tokens, clock=clock)
    index = _RunIndex(runs)
    ordered: list[list[Finding]] = [_placeholders(text, classes)]
    if EntityClass.CREDIT_CARD in classes:
        contexts = _card_contexts(tokens, clock)
        ordered.append(_cards(tokens, runs, contexts, clock))
        # The other reading of "thirty oh ...", validated by Luhn like the first.
        other_reading = number_runs(tokens, tens_take_oh=True, clock=clock)
        ordered.append(_cards(tokens, other_reading, None, clock))
        # Last, what neither reading validates but is too long to be anything else.
        ordered.append(
            _cards(tokens, runs, contexts, clock, bare=True, phones=EntityClass.PHONE in classes)
        )
    if EntityClass.SSN in classes:
        ordered.append(_written_ssns(text))
        ordered.append(_context_number(tokens, index, _SSN_CONTEXT, (9,), EntityClass.SSN, clock))
    if EntityClass.CVV in classes:
        # Two digits too: an engine drops one of a code said in three ("seven three seven" as
        # "73"), and what is left of a security code is still card data.
        ordered.append(
            _context_number(tokens, index, _CVV_CONTEXT, (2, 3, 4), EntityClass.CVV, clock)
        )
    if EntityClass.EXPIRY in classes:
        ordered.append(_context_date(tokens, _EXPIRY_CONTEXT, EntityClass.EXPIRY, clock))
    if EntityClass.DOB in classes:
        ordered.append(_context_date(tokens, _DOB_CONTEXT, EntityClass.DOB, clock))
    if EntityClass.EMAIL in classes:
        ordered.append(_emails(tokens, clock))
    if EntityClass.PHONE in classes:
        ordered.append(_phones(text, tokens, runs, clock))
    if EntityClass.SSN in classes:
        # An SSN a few words after its context, after the phone numbers: the first nine digits
        # of a phone number said there ("your social? my phone is oh two oh ...") are not one
        # (taken as one, they left the number's other digits in clear).
        ordered.append(
            _context_number(
                tokens, index, _SSN_CONTEXT, (9,), EntityClass.SSN, clock, reach=_SSN_REACH
            )
        )
    # Earlier classes win: a finding is kept only if none of its characters is taken.
    taken = bytearray(len(text))
    kept: list[Finding] = []
    for findings in ordered:
        for f in findings:
            clock.tick()
            if taken.find(1, f.start, f.end) == -1:
                taken[f.start : f.end] = b"\x01" * (f.end - f.start)
                kept.append(f)
    return sorted(kept, key=lambda f: f.start)


__all__ = ["SEPARATORS", "Finding", "detect", "is_card_number"]
