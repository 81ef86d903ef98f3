"""Categories (issue #21), the pure parts: the rule language (parse, limits, the path of the bad
part, canonical JSON) and evaluation (phrases by speaker and window, metrics, redactions,
nesting, evidence)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from libs.categories import rules
from libs.categories.call import Call, Utterance
from libs.categories.evaluate import MAX_EVIDENCE_PER_RULE, evaluate
from libs.categories.rules import Category
from libs.contracts import CategoryMatch, Evidence
from libs.errors import InvalidInput
from libs.transcript import Transcript
from libs.transcript.conversation import summarize
from libs.transcript.model import Utterance as TranscriptUtterance

ISSUE_RULE = {
    "all": [
        {"said": ["cancel my subscription", "close my account"], "by": "customer"},
        {
            "not_said": ["this call is recorded", "this call may be recorded"],
            "by": "agent",
            "first_seconds": 30,
        },
        {"metric": "silence_share", "min": 0.3},
        {"redacted": "credit_card"},
        {
            "any": [
                {"metric": "interruptions", "min": 5},
                {"not": {"said": ["thank you"], "by": "agent"}},
            ]
        },
    ]
}


def _u(start: float, end: float, role: str, text: str) -> TranscriptUtterance:
    speaker = "Channel 0" if role == "agent" else "Channel 1"
    channel = 0 if role == "agent" else 1
    return TranscriptUtterance(
        speaker=speaker, start=start, end=end, text=text, role=role, channel=channel
    )


def _call(
    utterances: list[TranscriptUtterance], duration: float, redacted: dict[str, int] | None = None
) -> Call:
    conversation = summarize(utterances, duration=duration, method="channels")
    transcript = Transcript(
        text=" ".join(u.text for u in utterances),
        language="en",
        duration=duration,
        model="m",
        engine="e",
        utterances=tuple(utterances),
        conversation=conversation,
    )
    return Call.from_transcript(transcript, conversation, redacted or {})


def _cat(name: str, rule: object) -> Category:
    return Category(name=name, rule=rules.parse(rule))


def _plain(*utterances: tuple[float, float, str | None, str]) -> Call:
    return Call(
        utterances=tuple(
            Utterance(start=s, end=e, role=r, speaker=f"S-{r}", text=t) for s, e, r, t in utterances
        ),
        duration=max((u[1] for u in utterances), default=0.0),
    )


# --- the issue's example ---------------------------------------------------------------------


def test_the_issues_call_matches_both_rules_with_the_times_of_the_evidence() -> None:
    call = _call(
        [
            _u(0.0, 4.0, "agent", "Hello, thanks for calling Acme. How can I help?"),
            _u(5.0, 9.5, "customer", "Hi. I want to cancel my subscription, please."),
            _u(60.0, 63.0, "agent", "Sure, I can do that."),
            _u(64.0, 66.0, "customer", "My card is [CREDIT_CARD]."),
        ],
        duration=120.0,
        redacted={"credit_card": 1},
    )
    categories = [
        _cat("cancel", {"said": ["cancel my subscription", "close my account"], "by": "customer"}),
        _cat(
            "no-notice",
            {
                "not_said": ["this call is recorded", "this call may be recorded"],
                "by": "agent",
                "first_seconds": 30,
            },
        ),
        _cat("everything", ISSUE_RULE),
    ]
    matches = evaluate(categories, call)
    evidence = Evidence(
        start=5.0,
        end=9.5,
        role="customer",
        speaker="Channel 1",
        text="Hi. I want to cancel my subscription, please.",
    )
    assert matches == (
        CategoryMatch(name="cancel", matches=(evidence,)),
        CategoryMatch(name="no-notice", matches=()),
        # silence share (120 s, 14.5 s of talk) is over 0.3, a card was redacted, and the agent
        # never said thank you.
        CategoryMatch(name="everything", matches=(evidence,)),
    )


def test_the_recording_notice_read_in_time_fails_the_not_said_rule() -> None:
    notice = {
        "not_said": ["this call is recorded", "this call may be recorded"],
        "by": "agent",
        "first_seconds": 30,
    }
    read = _call([_u(2.0, 6.0, "agent", "This call may be recorded for quality.")], 60.0)
    late = _call([_u(40.0, 44.0, "agent", "This call may be recorded for quality.")], 60.0)
    by_customer = _call([_u(2.0, 6.0, "customer", "This call may be recorded?")], 60.0)
    assert evaluate([_cat("n", notice)], read) == ()
    assert evaluate([_cat("n", notice)], late) == (CategoryMatch(name="n"),)
    assert evaluate([_cat("n", notice)], by_customer) == (CategoryMatch(name="n"),)


# --- phrases ---------------------------------------------------------------------------------


def test_phrases_match_whole_words_ignoring_case_and_punctuation() -> None:
    call = _plain(
        (0, 1, "customer", "I'd like to CANCEL... my   subscription!"),
        (2, 3, "customer", "cancellation of my subscriptions"),
        (4, 5, "customer", "Don’t worry"),
        (6, 7, "customer", "cancel"),
        (8, 9, "customer", "my subscription"),
    )
    found = evaluate([_cat("c", {"said": ["cancel my subscription"]})], call)
    assert [e.start for e in found[0].matches] == [0]
    # Apostrophes are dropped on both sides; a phrase never spans two utterances.
    assert evaluate([_cat("d", {"said": ["dont worry"]})], call)[0].matches[0].start == 4
    assert evaluate([_cat("d", {"said": ["don't WORRY"]})], call)[0].matches[0].start == 4
    assert evaluate([_cat("x", {"said": ["cancel my"]})], call)[0].matches[0].start == 0
    assert evaluate([_cat("x", {"said": ["cancel my subscription cancel"]})], call) == ()
    assert evaluate([_cat("x", {"said": ["subscription"]})], call)[0].matches[-1].start == 8


def test_redaction_labels_are_words() -> None:
    call = _plain((0, 1, "customer", "my card is [CREDIT_CARD], ok"))
    assert evaluate([_cat("x", {"said": ["card is credit card"]})], call)
    assert evaluate([_cat("x", {"said": ["CREDIT_CARD"]})], call)


def test_by_role_speaker_label_or_any() -> None:
    call = Call(
        utterances=(
            Utterance(start=0, end=1, role="agent", speaker="Channel 0", text="thank you"),
            Utterance(start=2, end=3, role=None, speaker="Speaker B", text="thank you"),
        ),
        duration=3,
    )

    def starts(by: str) -> list[float]:
        found = evaluate([_cat("x", {"said": ["thank you"], "by": by})], call)
        return [e.start for e in found[0].matches] if found else []

    assert starts("agent") == [0] and starts("AGENT") == [0] and starts("Channel 0") == [0]
    assert starts("Speaker B") == [2]
    assert starts("customer") == []
    assert starts("any") == [0, 2] and starts("Any") == [0, 2]


def test_windows_first_and_last_seconds() -> None:
    call = _plain((0, 5, "agent", "hello"), (25, 35, "agent", "hello"), (50, 58, "agent", "hello"))
    call = Call(utterances=call.utterances, duration=60)

    def starts(**window: float) -> list[float]:
        found = evaluate([_cat("x", {"said": ["hello"], **window})], call)
        return [e.start for e in found[0].matches] if found else []

    assert starts(first_seconds=30) == [0, 25]  # starts within the first 30 s
    assert starts(first_seconds=25) == [0]
    assert starts(last_seconds=10) == [50]  # ends within the last 10 s
    assert starts(last_seconds=30) == [25, 50]
    assert starts(first_seconds=10, last_seconds=5) == [0, 50]  # either window


def test_evidence_is_capped_per_rule_and_in_time_order() -> None:
    call = _plain(*[(float(i), i + 0.5, "agent", "ok then") for i in range(30)][::-1])
    found = evaluate([_cat("x", {"any": [{"said": ["ok"]}, {"said": ["then"]}]})], call)
    assert [e.start for e in found[0].matches] == [float(i) for i in range(MAX_EVIDENCE_PER_RULE)]


def test_nesting_evidence_only_from_what_took_part() -> None:
    call = _plain((0, 1, "agent", "thank you"), (2, 3, "customer", "bye now"))
    found = evaluate(
        [
            _cat(
                "x",
                {
                    "any": [
                        {"said": ["thank you"]},
                        {"said": ["nothing like this"]},
                        {"not": {"said": ["bye"]}},
                        {"all": [{"said": ["bye"]}, {"not_said": ["hello"]}]},
                    ]
                },
            )
        ],
        call,
    )
    assert [e.start for e in found[0].matches] == [0, 2]
    assert evaluate([_cat("x", {"not": {"said": ["bye"]}})], call) == ()
    assert evaluate([_cat("x", {"not": {"said": ["hello"]}})], call) == (CategoryMatch(name="x"),)
    assert evaluate([_cat("x", {"all": [{"said": ["bye"]}, {"said": ["hello"]}]})], call) == ()


def test_an_empty_call() -> None:
    call = Call(utterances=(), duration=0.0)
    assert evaluate([_cat("x", {"said": ["a"]})], call) == ()
    assert evaluate([_cat("x", {"not_said": ["a"]})], call) == (CategoryMatch(name="x"),)
    assert evaluate([_cat("x", {"metric": "duration", "max": 1})], call)
    assert evaluate([_cat("x", {"metric": "silence_share", "min": 0})], call) == ()


# --- metrics and redactions ------------------------------------------------------------------


def test_metrics_use_the_search_filters_definitions() -> None:
    call = _call(
        [
            _u(0.0, 10.0, "agent", "a"),
            _u(5.0, 20.0, "customer", "b"),  # interrupts the agent
            _u(30.0, 40.0, "agent", "c"),
        ],
        duration=50.0,
    )
    assert call.conversation is not None

    def matches(rule: dict[str, Any]) -> bool:
        return bool(evaluate([_cat("m", rule)], call))

    assert matches({"metric": "duration", "min": 50, "max": 50})
    assert matches({"metric": "silence_share", "min": 0.4, "max": 0.4})  # 20 s of 50
    assert matches({"metric": "interruptions", "min": 1, "max": 1})
    assert matches({"metric": "overlap", "min": 5, "max": 5})
    assert matches({"metric": "talk_ratio", "min": 0.57, "max": 0.58})  # agent 20 s of 35
    assert not matches({"metric": "interruptions", "min": 2})
    assert not matches({"metric": "duration", "max": 49.9})
    # Without a conversation only duration is known: the other metrics never match.
    plain = Call(utterances=call.utterances, duration=50.0)
    assert evaluate([_cat("m", {"metric": "duration", "min": 1})], plain)
    assert not evaluate([_cat("m", {"metric": "silence_share", "max": 1})], plain)


def test_redacted_classes() -> None:
    call = Call(utterances=(), duration=1, redacted={"credit_card": 2, "email": 0})
    assert evaluate([_cat("r", {"redacted": "credit_card"})], call)
    assert not evaluate([_cat("r", {"redacted": "email"})], call)
    assert not evaluate([_cat("r", {"redacted": "ssn"})], call)


def test_evaluation_is_deterministic_and_keeps_the_given_order() -> None:
    call = _plain((0, 1, "agent", "hello there"))
    cats = [_cat(n, {"said": ["hello"]}) for n in ("b", "a", "c")]
    assert [m.name for m in evaluate(cats, call)] == ["b", "a", "c"]
    assert evaluate(cats, call) == evaluate(cats, call)


# --- parsing ---------------------------------------------------------------------------------


def test_the_issue_rule_round_trips() -> None:
    rule = rules.parse(ISSUE_RULE)
    assert rules.dump(rule) == json.loads(json.dumps(ISSUE_RULE)) | {
        "all": [
            {"said": ["cancel my subscription", "close my account"], "by": "customer"},
            {
                "not_said": ["this call is recorded", "this call may be recorded"],
                "by": "agent",
                "first_seconds": 30.0,
            },
            {"metric": "silence_share", "min": 0.3},
            {"redacted": "credit_card"},
            {
                "any": [
                    {"metric": "interruptions", "min": 5.0},
                    {"not": {"said": ["thank you"], "by": "agent"}},
                ]
            },
        ]
    }
    assert rules.parse(rules.dump(rule)) == rule
    assert rules.phrase_count(rule) == 5


def _deep(n: int) -> dict[str, Any]:
    rule: dict[str, Any] = {"said": ["x"]}
    for _ in range(n - 1):
        rule = {"not": rule}
    return rule


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ([], "rule: must be an object"),
        ({}, "rule: must have exactly one of"),
        ({"said": ["a"], "metric": "wpm"}, "rule: must have exactly one of"),
        ({"all": [{"said": ["a"]}, {"said": ["b"], "by": 3}]}, "all[1].by: "),
        ({"all": [{"said": ["a"]}, {"said": ["b"], "by": ""}]}, "all[1].by: "),
        ({"all": [{"said": ["a"]}, {"said": ["b"], "by": "a\x00b"}]}, "all[1].by: "),
        ({"any": [{"not": {"said": ["a", 5]}}]}, "any[0].not.said[1]: must be a string"),
        ({"said": []}, "said: must be a non-empty list"),
        ({"said": "cancel"}, "said: must be a non-empty list"),
        ({"said": ["..."]}, "said[0]: must hold at least one word"),
        ({"said": ["a\nb"]}, "said[0]: must not hold control characters"),
        ({"said": ["a\udc80"]}, "said[0]: must not hold control characters"),
        ({"said": ["x" * 201]}, "said[0]: at most 200 characters"),
        ({"said": [" ".join(["w"] * 21)]}, "said[0]: at most 20 words"),
        ({"said": ["a"] * 51}, "said: at most 50 phrases"),
        ({"said": ["a"], "first_seconds": 0}, "first_seconds: must be a number"),
        ({"said": ["a"], "last_seconds": True}, "last_seconds: must be a number"),
        ({"said": ["a"], "last_seconds": float("inf")}, "last_seconds: must be a number"),
        # JSON integers have no size limit: one that no float can hold is still just too big.
        ({"said": ["a"], "first_seconds": 10**400}, "first_seconds: must be a number"),
        ({"metric": "duration", "min": 10**400}, "min: must be a number from 0"),
        ({"said": ["a"], "min": 1}, "min: unknown option of 'said'"),
        ({"said": ["a"], "bad\x00key": 1}, "?: unknown option of 'said'"),
        ({"metric": "loudness", "min": 1}, "metric: must be one of duration"),
        ({"metric": ["x"], "min": 1}, "metric: must be one of"),
        ({"metric": "wpm"}, "rule: a metric rule needs min and/or max"),
        ({"metric": "silence_share", "min": 1.5}, "min: must be a number from 0 to 1"),
        ({"metric": "silence_share", "min": 0.5, "max": 0.2}, "min: must not be above max"),
        ({"metric": "duration", "max": "5"}, "max: must be a number"),
        ({"redacted": "password"}, "redacted: must be one of credit_card"),
        ({"redacted": {"a": 1}}, "redacted: must be one of"),
        ({"all": []}, "all: must be a non-empty list of rules"),
        ({"not": [{"said": ["a"]}]}, "not: must be an object"),
        (_deep(9), "not.not.not.not.not.not.not.not: rules nest at most 8 deep"),
        ({"any": [{"said": ["a"]}] * 64}, "any[63]: a category holds at most 64 rules"),
        ({"any": [{"said": ["a"] * 50}] * 5}, "any[4].said: a category holds at most 200"),
    ],
)
def test_bad_rules_name_the_path_of_the_bad_part(raw: object, path: str) -> None:
    with pytest.raises(InvalidInput) as err:
        rules.parse(raw)
    assert err.value.code == "invalid_rule"
    assert err.value.detail.startswith(path), err.value.detail


def test_limits_are_inclusive() -> None:
    rules.parse(_deep(8))
    rules.parse({"any": [{"said": ["a"]}] * 63})
    rules.parse({"said": ["x" * 200] * 50})
    rules.parse({"said": [" ".join(["w"] * 20)]})


def test_hostile_phrases_that_are_still_words() -> None:
    rule = rules.parse(
        {"said": ["  ünïcödé\u00a0ＷＯＲＤ  ", "'; DROP TABLE x; --"], "by": " Speaker   A "}
    )
    assert isinstance(rule, rules.Said)
    assert rule.patterns == ("ünïcödé word", "drop table x")
    assert rule.phrases == ("ünïcödé ＷＯＲＤ", "'; DROP TABLE x; --")
    assert rule.by == "Speaker A"
    call = Call(
        utterances=(
            Utterance(start=0, end=1, speaker="Speaker A", text="ÜNÏCÖDÉ word"),
            Utterance(start=2, end=3, speaker="Speaker A", text="drop table x"),
            Utterance(start=4, end=5, speaker="Speaker B", text="drop table x"),
        ),
        duration=5,
    )
    assert [e.start for e in evaluate([Category(name="h", rule=rule)], call)[0].matches] == [0, 2]
    # A NUL in the call's text is a space, never an utterance boundary.
    nul = _plain((0, 1, None, "cancel\x00my subscription"), (2, 3, None, "x"))
    assert evaluate([_cat("n", {"said": ["cancel my subscription"]})], nul)


@pytest.mark.parametrize(
    "name", ["", "-a", ".a", "a b", "a/b", "a\x00", "é", "a" * 65, "a\nb", "..", 5, None]
)
def test_bad_names(name: object) -> None:
    with pytest.raises(InvalidInput) as err:
        rules.check_name(name)
    assert err.value.code == "invalid_category_name"


def test_good_names() -> None:
    for name in ("cancel", "no-notice", "QA.v2_final", "a" * 64, "0"):
        assert rules.check_name(name) == name


def test_the_ascii_fast_path_folds_as_the_unicode_one() -> None:
    import random
    import unicodedata

    def slow(text: str) -> str:
        folded = unicodedata.normalize("NFKC", text).casefold().translate(rules._UNICODE)
        return rules._NON_WORD.sub(" ", folded)

    rng = random.Random(21)
    alphabet = [chr(c) for c in range(128)]
    for _ in range(2000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        assert text.isascii() and rules.fold(text) == slow(text), repr(text)
    assert rules.fold("Don't STOP_now!!  \x00 x") == "dont stop now \x00 x"
    assert rules.fold("Don’t STOP_now!! é") == "dont stop now é"
