"""libs.redaction on hostile input (issue 24): no recursion whatever the text repeats, every
value of a long repetition still found, and a deadline that fails closed.

Correctness only: the time each input takes per size is bench/redaction_pathological.py's.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from libs.errors import DomainError
from libs.redaction import (
    EntityClass,
    Policy,
    RedactionTimeout,
    detect,
    redact_text,
    redact_transcript,
)
from libs.redaction.apply import redact_pieces
from libs.redaction.deadline import Clock
from libs.redaction.detect import _emails, _phones
from libs.redaction.spoken import number_runs, read_homophones, tokenize
from libs.transcript.model import Segment, Transcript, Word

ALL = frozenset(EntityClass)
PII = Policy(classes=ALL)


def _past() -> float:
    return time.monotonic() - 1.0


# -- no recursion ---------------------------------------------------------------------------


def test_ten_thousand_doubles_do_not_recurse() -> None:
    text = "double " * 12_000 + "four"
    assert detect(text, ALL) == []
    redacted, _ = redact_text(text, PII)
    assert redacted == text


def test_one_thousand_pairs_do_not_recurse() -> None:
    text = "one thousand " * 6_000
    runs = number_runs(tokenize(text))
    assert [len(r.items) for r in runs] == [6_000]
    assert {item.digits for item in runs[0].items} == {"1000"}
    redact_text(text, PII)


def test_triples_and_hundreds_repeated_do_not_recurse() -> None:
    for unit in ("triple ", "two hundred ", "nine thousand nine hundred and ", "double triple "):
        redact_text(unit * 5_000, PII)


def test_every_cvv_of_a_long_repetition_is_found() -> None:
    text = "cvv one two three " * 5_000
    findings = detect(text, {EntityClass.CVV})
    assert len(findings) == 5_000
    assert {text[f.start : f.end] for f in findings} == {"one two three"}


def test_every_expiry_of_a_long_repetition_is_found() -> None:
    text = "expires oh four twenty seven. " * 5_000
    findings = detect(text, {EntityClass.EXPIRY})
    assert len(findings) == 5_000
    redacted, _ = redact_text(text, Policy(classes=frozenset({EntityClass.EXPIRY})))
    assert "twenty" not in redacted


def test_a_long_spoken_card_run_is_redacted_whole() -> None:
    card = "four one one one " + "one one one one " * 3
    text = "hold on, ".join([card] * 2_000)
    redacted, findings = redact_text(text, Policy(classes=frozenset({EntityClass.CREDIT_CARD})))
    assert len(findings) == 2_000
    assert "one" not in redacted and "four" not in redacted


def test_a_transcript_of_many_words_and_findings_redacts_every_word() -> None:
    said = "cvv one two three and " * 4_000
    words = said.split()
    transcript = Transcript(
        text=said,
        language="en",
        duration=float(len(words)),
        segments=(Segment(id=0, start=0.0, end=float(len(words)), text=said),),
        words=tuple(Word(start=float(i), end=i + 0.5, word=w) for i, w in enumerate(words)),
        model="m",
        engine="e",
    )
    redacted, report = redact_transcript(transcript, Policy.parse("cvv"))
    assert report.counts == {"cvv": 4_000}
    assert redacted.words is not None
    assert [w.word for w in redacted.words[:3]] == ["cvv", "[CVV]", "and"]
    assert len(redacted.words) == 3 * 4_000
    assert "one" not in redacted.text


# -- deadline -------------------------------------------------------------------------------


def test_redaction_timeout_is_a_domain_error_with_its_code() -> None:
    assert issubclass(RedactionTimeout, DomainError)
    assert RedactionTimeout().code == "redaction_timeout"


def test_a_passed_deadline_raises_before_anything_is_returned() -> None:
    text = "card 4111 1111 1111 1111"
    with pytest.raises(RedactionTimeout):
        detect(text, ALL, deadline=_past())
    with pytest.raises(RedactionTimeout):
        redact_text(text, PII, deadline=_past())
    with pytest.raises(RedactionTimeout):
        redact_pieces(text.split(), PII, deadline=_past())
    transcript = Transcript(text=text, language="en", duration=1.0, model="m", engine="e")
    with pytest.raises(RedactionTimeout):
        redact_transcript(transcript, PII, deadline=_past())


def test_a_deadline_not_reached_changes_nothing() -> None:
    text = "card 4111 1111 1111 1111, security code 123, expires 09/28"
    later = time.monotonic() + 3600
    assert redact_text(text, PII, deadline=later) == redact_text(text, PII)


@pytest.mark.parametrize(
    "step",
    ["tokenize", "homophones", "number_runs", "emails", "phones"],
)
def test_each_pass_checks_the_deadline_as_it_goes(step: str) -> None:
    # A clock whose deadline has passed raises at its first check, which a pass over more
    # tokens than the check interval must reach: the passes are bounded, not only the entry.
    text = "for one one one at x dot com " * 200
    tokens = tokenize(text)
    runs = number_runs(tokens)
    clock = Clock(_past(), every=64)
    passes: dict[str, Callable[[], object]] = {
        "tokenize": lambda: tokenize(text, clock),
        "homophones": lambda: read_homophones(tokens, clock),
        "number_runs": lambda: number_runs(tokens, clock=clock),
        "emails": lambda: _emails(tokens, clock),
        "phones": lambda: _phones(text, tokens, runs, clock),
    }
    with pytest.raises(RedactionTimeout):
        passes[step]()


def test_clock_without_deadline_never_raises() -> None:
    clock = Clock(None, every=1)
    for _ in range(1000):
        clock.tick()
    clock.check()


# -- numbers the way an engine writes them ----------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "I went to the shop for two hours and got back at four.",
        "I called two times, then three times.",
        "Order 12 items for 9.99 each, 2 for 10.",
        "From 1999 to 2004, open nine to five.",
        "It's too late to go for it.",
    ],
)
def test_homophones_outside_digit_runs_are_words(text: str) -> None:
    tokens = tokenize(text)
    assert read_homophones(tokens) == tokens
    assert redact_text(text, PII)[0] == text


def test_homophones_inside_digit_runs_are_digits() -> None:
    runs = number_runs(read_homophones(tokenize("for one one one, to to oh oh, too one nine")))
    assert runs[0].digits == "4111" + "2200" + "219"


def test_non_ascii_digits_are_validated_and_keep_their_offsets() -> None:
    for text in ("رقم ٤١١١ ١١١١ ١١١١ ١١١١ شكرا", "番号４１１１－１１１１－１１１１－１１１１です"):
        (finding,) = detect(text, ALL)
        assert finding.cls is EntityClass.CREDIT_CARD
        assert finding.digits == "4111111111111111"
        assert text[finding.start : finding.end].startswith(("٤", "４"))
        assert redact_text(text, PII)[0].count("[CREDIT_CARD]") == 1


def test_card_context_redacts_a_run_that_fails_luhn() -> None:
    misheard = "4111 1111 1111 1112"
    (finding,) = detect(f"The card number is {misheard}.", ALL)
    assert finding.cls is EntityClass.CREDIT_CARD and finding.digits == "4111111111111112"
    # Under twelve digits a card context redacts nothing: a last four, a partial read.
    assert detect("The number on the card ends 4 1 1 1.", ALL) == []
    # Without a context, 16 digits (more than a phone number) are a card too; 12 are not.
    (bare,) = detect(f"I think it's {misheard} but let me check.", ALL)
    assert bare.cls is EntityClass.CREDIT_CARD
    assert detect("I think it's 4111 1111 1112 but let me check.", ALL) == []


def test_digits_continuing_a_card_are_absorbed_and_a_second_card_kept_apart() -> None:
    text = "4111 1111 1111 1111 1 1, and 5555 5555 5555 4444 4"
    findings = detect(text, {EntityClass.CREDIT_CARD})
    assert [text[f.start : f.end] for f in findings] == [
        "4111 1111 1111 1111 1 1",
        "5555 5555 5555 4444 4",
    ]


def test_interjections_do_not_split_a_number() -> None:
    for said in ("hold on", "let me see", "got it", "sorry", "okay", "uh", "bear with me"):
        text = f"4111 1111, {said}, 1111 1111"
        (finding,) = detect(text, ALL)
        assert finding.cls is EntityClass.CREDIT_CARD, said
        assert (finding.start, finding.end) == (0, len(text))


def test_card_context_joins_two_runs_a_few_words_apart() -> None:
    first, second = "5200 8282", "8282 8210"
    said = f"The card number is {first}, hang on, I need my glasses, {second}."
    (finding,) = detect(said, ALL)
    assert said[finding.start : finding.end] == f"{first}, hang on, I need my glasses, {second}"
    assert finding.digits == "5200828282828210"
    # Without a card context, 16 digits that close together are a card as well (the context
    # may be the other party's); 12 are not, and further apart they stay two numbers.
    (bare,) = detect(f"Room {first}, hang on, I need my glasses, {second}.", ALL)
    assert bare.cls is EntityClass.CREDIT_CARD
    assert detect("Room 5200 8282, hang on, I need my glasses, 8210.", ALL) == []
    far = f"The card number is {first}, and then I went out to get my glasses, {second}."
    assert detect(far, ALL) == []


def test_a_pause_said_with_a_number_word_does_not_end_the_number() -> None:
    text = "four oh oh oh, oh oh two seven, one sec, six oh oh oh, three one eight four"
    (finding,) = detect(text, ALL)
    assert finding.digits == "4000002760003184"


@pytest.mark.parametrize("offset", [4096 - 90, 4096 - 80, 4096 - 10, 4096, 8192 - 85])
def test_a_written_phone_number_at_a_window_edge_is_found_whole(offset: int) -> None:
    # The phone matcher reads long text in windows (so the deadline is checked between them).
    number = "(415) 555-2671"
    text = "x" * (offset - 1) + " " + number + " and more words" * 400
    found = [f for f in detect(text, {EntityClass.PHONE}) if f.start < offset + 20]
    assert [text[f.start : f.end] for f in found] == [number]


@pytest.mark.parametrize("between", ["and", "hold on,", "sorry,"])
def test_two_phone_numbers_in_one_run_are_both_found(between: str) -> None:
    first = "two oh two five five five oh one four three"
    second = "three one oh five five five oh one four seven"
    text = f"call {first} {between} {second}"
    found = [text[f.start : f.end] for f in detect(text, ALL)]
    assert found == [first, second]


# -- a card without its context (issue 24: the context is often the other party's) ----------

PCI_PII = Policy.parse("pii")


@pytest.mark.parametrize(
    "said",
    [
        # What the offline engine wrote for a customer reading 16 ones after a 4, with extras
        # and a quote it left where the customer paused for the agent's "got it".
        'Yes, it is 4-1-1-1-1-1-1-1-1-1" 1-1-1-1-1-1-1-1-1.',
        "Yes it is 4-1-1-1-1-1-1-1-1-1. Sorry. 1-1-1-1-1-1-1-1-1.",
        # A digit misheard: 16 digits failing Luhn, no "card" in this speaker's words.
        "I think it is 4111 1111 1111 1112 but let me check.",
        "five five five five, five five five five, five five five five, four four four five",
    ],
)
def test_more_digits_than_a_phone_number_are_a_card_without_context(said: str) -> None:
    redacted, findings = redact_text(said, PCI_PII)
    assert [f.cls for f in findings] == [EntityClass.CREDIT_CARD]
    assert not any(c.isdigit() for c in redacted)
    assert "one one" not in redacted and "five five" not in redacted


@pytest.mark.parametrize(
    ("said", "kept"),
    [
        ("Your account number is 1234 5678 9012 3456, keep it safe.", "1234 5678 9012 3456"),
        ("The transaction reference is 7730 2291 8845 1190.", "7730 2291 8845 1190"),
        ("order 1234 5678 and 9012 3456 7890", "9012 3456 7890"),
    ],
)
def test_a_labelled_reference_is_not_taken_for_a_card(said: str, kept: str) -> None:
    assert kept in redact_text(said, PCI_PII)[0]


def test_two_phone_numbers_in_a_row_stay_phone_numbers() -> None:
    for said in ("I called 202 456 1111 and then 212 736 3100", "202-456-1111, 212-736-3100"):
        _, findings = redact_text(said, PCI_PII)
        assert [f.cls for f in findings] == [EntityClass.PHONE, EntityClass.PHONE], said


CARDS_ONLY = Policy(classes=frozenset({EntityClass.CREDIT_CARD}))


@pytest.mark.parametrize(
    "said",
    [
        # A 16-digit test card with one digit dropped, and with two: no reading validates it,
        # and the "card number?" was the agent's, on the other channel.
        "Yeah, it's four one one one, one one one one, one one one one, one one one.",
        "Okay, 4242 4242 4242 42.",
        "It's 3714 496353 9843.",  # an Amex (15) with a digit dropped
    ],
)
def test_a_card_with_a_digit_dropped_is_a_card_without_context(said: str) -> None:
    redacted, findings = redact_text(said, CARDS_ONLY)
    assert [f.cls for f in findings] == [EntityClass.CREDIT_CARD]
    assert not any(c.isdigit() for c in redacted) and "one one" not in redacted


@pytest.mark.parametrize(
    ("said", "under_pii"),
    [
        ("Or my mobile, double oh four four, seven nine one one, one two three, four five six.", 1),
        ("Dial oh one one, four four, two oh, seven nine four six, oh nine five eight.", 1),
        ("In Brazil it's five five, one one, nine eight seven six, five four three two one.", 1),
        ("It's 4111 1111 1111.", 0),  # twelve digits: shorter than a card with a digit dropped
    ],
)
def test_a_phone_number_with_its_country_code_is_not_a_card(said: str, under_pii: int) -> None:
    # Under pii it is one phone number, whole. Under a card-only policy nothing would redact
    # it as a phone number: 13 digits or more are a card, failing closed (a card with a digit
    # dropped may read as such a number, test_a_card_that_reads_as_a_number_abroad...).
    redacted, findings = redact_text(said, CARDS_ONLY)
    assert [f.cls for f in findings] == [EntityClass.CREDIT_CARD] * under_pii
    if not under_pii:
        assert redacted == said
    redacted, findings = redact_text(said, PCI_PII)
    assert [f.cls for f in findings] == [EntityClass.PHONE] * under_pii
    if under_pii:
        words = set(redacted.replace(",", " ").replace(".", " ").split())
        assert not words & {"oh", "double", "one", "two", "four", "five", "seven", "nine"}


@pytest.mark.parametrize(
    "said",
    [
        # Visa test-like numbers with one digit dropped whose 15 digits read as German numbers
        # (+49), and a Discover (6011) with its 6 dropped, after the NANP's 011.
        "Yeah so it's four nine zero seven four three nine one five zero zero zero eight zero "
        "eight, thanks.",
        "It's 4996 2283 0388 365.",
        "Right, it's oh one one nine one eight seven seven nine five two four eight nine eight.",
    ],
)
@pytest.mark.parametrize("policy", [Policy.parse("pci"), CARDS_ONLY], ids=["pci", "credit_card"])
def test_a_card_that_reads_as_a_number_abroad_is_a_card_when_phones_are_not_redacted(
    said: str, policy: Policy
) -> None:
    """No "plus" and no card context: under pii the run is redacted as a phone number, but a
    policy without phone numbers left the card's digits in clear."""
    redacted, findings = redact_text(said, policy)
    assert [f.cls for f in findings] == [EntityClass.CREDIT_CARD]
    words = set(redacted.replace(",", " ").replace(".", " ").split())
    assert not any(c.isdigit() for c in redacted)
    assert not words & {"oh", "one", "two", "four", "five", "seven", "eight", "nine", "zero"}
    _, findings = redact_text(said, PCI_PII)
    assert len(findings) == 1  # a phone number or a card: redacted either way


@pytest.mark.parametrize(
    "said",
    [
        "I don't have my social with me, but my mobile is oh seven seven oh oh nine oh oh one "
        "two three.",
        "What's your social? My phone is oh two oh seven nine four six oh nine five eight.",
        "Social media? Yes, call me on two oh two, four five six, one one one one.",
    ],
)
def test_a_phone_number_a_few_words_after_social_is_redacted_whole(said: str) -> None:
    """An SSN may come up to eight words after "social"; a phone number said there is not one:
    its first nine digits taken as an SSN left the others in clear ("[SSN] five eight")."""
    redacted, findings = redact_text(said, PII)
    assert [f.cls for f in findings] == [EntityClass.PHONE], redacted
    words = set(redacted.replace(",", " ").replace(".", " ").split())
    assert not words & {"oh", "one", "two", "three", "five", "six", "seven", "eight", "nine"}


def test_an_ssn_a_few_words_after_social_is_still_found() -> None:
    said = "Your social to verify? Sure, two one nine, oh nine, nine nine nine nine."
    redacted, findings = redact_text(said, PII)
    assert [f.cls for f in findings] == [EntityClass.SSN]
    assert redacted == "Your social to verify? Sure, [SSN]."


@pytest.mark.parametrize(
    "said",
    [
        "My card's four five three two, one five one nine, one two three four, and that's it.",
        "My card's 4532 1519 1234.",
        "Okay my card's four five three two, one five one nine, the next ones are one two three "
        "four five.",
    ],
)
@pytest.mark.parametrize("policy", [Policy.parse("pci"), PII], ids=["pci", "pii"])
def test_card_s_is_still_a_card_context(said: str, policy: Policy) -> None:
    """'s is now read off context words ("expiry's"): "card's", a card context of its own, was
    read as "card" and matched nothing, so 12 digits of a card after it stayed in clear."""
    redacted, findings = redact_text(said, policy)
    assert [f.cls for f in findings] == [EntityClass.CREDIT_CARD], redacted
    assert not any(c.isdigit() for c in redacted) and "five" not in redacted


@pytest.mark.parametrize(
    "said",
    [
        "Yes it's four five three two one five, is that right, oh four one two three four five "
        "six seven eight.",
        "Sure, 4532 15, you got that?, 0412 345 678.",
    ],
)
@pytest.mark.parametrize("policy", [Policy.parse("pci"), PII], ids=["pci", "pii"])
def test_a_card_read_in_two_whose_second_part_reads_as_a_phone_abroad(
    said: str, policy: Policy
) -> None:
    """Two runs a few words apart with 16 digits are a card unless one of them is a phone
    number; with trunk-0 numbers of five more countries, a second part "oh four ..." read as an
    Australian mobile: the card's first digits stayed in clear (all of it under pci)."""
    redacted, findings = redact_text(said, policy)
    assert [f.cls for f in findings] == [EntityClass.CREDIT_CARD], redacted
    assert not any(c.isdigit() for c in redacted) and "five" not in redacted
