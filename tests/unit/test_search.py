"""Search across calls (issue #20), the pure parts: query and parameter checks, cursors,
highlight offsets and word times, what a transcript becomes in the index, configurations."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from libs.errors import InvalidInput
from libs.search import configs, highlight, query, rows
from libs.transcript import Transcript
from libs.transcript.conversation import summarize
from libs.transcript.model import Segment, Utterance, Word

S, E = highlight.START, highlight.STOP


@pytest.mark.parametrize(
    "bad",
    ["a\x00b", "a\x07b", "a\x1bb", "a\x7fb", "a\x85b", "a\udcffb", "x" * 401],
)
def test_what_cannot_be_a_query_is_invalid_q(bad: str) -> None:
    with pytest.raises(InvalidInput) as err:
        query.clean_query(bad)
    assert err.value.code == "invalid_q"


def test_queries_are_text_with_spaces_normalized() -> None:
    assert query.clean_query(" cancel\tmy\r\nsubscription ") == "cancel my subscription"
    assert query.clean_query("x" * 400) == "x" * 400
    assert query.clean_query(':*&|!()<-> "') == ':*&|!()<-> "'  # syntax stays text
    assert query.clean_query("   ") is None
    assert query.clean_query(None) is None


def test_roles() -> None:
    assert query.clean_role("any") is None and query.clean_role(None) is None
    assert query.clean_role(" Channel  1 ") == "Channel 1"
    for bad in ("r" * 65, "a\x00", "a\udc80"):
        with pytest.raises(InvalidInput) as err:
            query.clean_role(bad)
        assert err.value.code == "invalid_role"


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"min_talk_ratio": "0.9", "max_talk_ratio": "0.1"}, "invalid_min_talk_ratio"),
        ({"min_duration": "10", "max_duration": "5"}, "invalid_min_duration"),
        ({"max_silence_share": "1.5"}, "invalid_max_silence_share"),
        ({"min_overlap": "-1"}, "invalid_min_overlap"),
        ({"min_wpm": "nan"}, "invalid_min_wpm"),
        ({"min_wpm": "inf"}, "invalid_min_wpm"),
        ({"min_interruptions": "2.5"}, "invalid_min_interruptions"),
        ({"status": "failed"}, "invalid_status"),
        ({"since": "2026-02-01", "until": "2026-01-01"}, "invalid_since"),
        ({"since": "yesterday"}, "invalid_since"),
        ({"limit": "201"}, "invalid_limit"),
        ({"campaign": "c" * 257}, "invalid_campaign"),
        ({"cursor": "bm90IGEgY3Vyc29y"}, "invalid_cursor"),
        ({"cursor": "!!"}, "invalid_cursor"),
    ],
)
def test_bad_parameters_are_invalid_name(params: dict[str, str], code: str) -> None:
    with pytest.raises(InvalidInput) as err:
        query.parse(params)
    assert err.value.code == code


def test_parameters() -> None:
    s = query.parse(
        {
            "q": "refund",
            "role": "customer",
            "min_silence_share": "0.3",
            "max_interruptions": "4",
            "status": "completed",
            "limit": "5",
        }
    )
    assert s.q == "refund" and s.role == "customer" and s.limit == 5
    assert s.ranges == (("silence_share", 0.3, None), ("interruptions", None, 4))
    assert query.parse({}).limit == query.DEFAULT_LIMIT


def test_cursors_round_trip_and_refuse_tampering() -> None:
    when = datetime(2026, 12, 1, 4, 5, 6, 123456, tzinfo=UTC)
    job = uuid.uuid4()
    cursor = query.Cursor(
        upper=query.Bound(when, job),
        lower=query.Bound(when, uuid.uuid4()),
        open_lower=False,
        after=query.Key(0.0607927, when, job),
    )
    assert query.Cursor.parse(cursor.encode()) == cursor
    assert query.Cursor.parse(query.Cursor().encode()) == query.Cursor()
    text = cursor.encode()
    for bad in (text[:-3], text + "A", "A" * 500):
        with pytest.raises(InvalidInput):
            query.Cursor.parse(bad)


def test_highlights_are_offsets_into_the_stored_text() -> None:
    text = "I want to cancel my subscription"
    marked = f"I want to {S}cancel{E} my {S}subscription{E}"
    spans = highlight.ranges(marked, text)
    assert [text[a:b] for a, b in spans] == ["cancel", "subscription"]
    # Sentinels in the text were blanked before marking: offsets still fit the text.
    odd = f"a{S}b cancel"
    assert highlight.ranges(f"a b {S}cancel{E}", odd) == [(4, 10)]
    assert highlight.ranges(f"{S}other{E}", text) == []  # not this text: nothing, never wrong
    assert highlight.ranges("😀 é", "😀 é") == []


def test_highlight_times_come_from_the_words_covered() -> None:
    text = "please cancel it"
    chars, times = rows.align_words(
        text, [Word(start=1.0, end=1.4, word=" please"), Word(start=1.5, end=2.0, word="cancel")]
    )
    assert chars == [0, 6, 7, 13]
    assert highlight.times([(7, 13)], chars, times, (0.0, 9.0)) == [(1.5, 2.0)]
    assert highlight.times([(14, 16)], chars, times, (0.0, 9.0)) == [(0.0, 9.0)]  # no word
    assert highlight.times([(7, 13)], None, None, (0.5, 9.0)) == [(0.5, 9.0)]


def test_a_word_not_in_the_text_is_skipped() -> None:
    chars, _ = rows.align_words(
        "my card is [CARD] ok", [Word(start=0, end=1, word="4111"), Word(start=1, end=2, word="ok")]
    )
    assert chars == [-1, -1, 18, 20]


def _utt(role: str, channel: int, start: float, end: float, text: str) -> Utterance:
    return Utterance(
        speaker=f"Channel {channel}", role=role, channel=channel, start=start, end=end, text=text
    )


def test_metrics_of_a_conversation() -> None:
    turns = [
        _utt("agent", 0, 0.0, 6.0, "one two three four five six"),
        _utt("customer", 1, 5.0, 8.0, "seven eight"),
    ]
    t = Transcript(
        text="",
        language="en",
        duration=10.0,
        model="m",
        engine="e",
        utterances=tuple(turns),
        conversation=summarize(turns, duration=10.0, method="channels"),
    )
    m = rows.metrics(t)
    assert m.duration == 10.0
    assert m.talk_ratio == pytest.approx(6 / 9, abs=1e-3)
    assert m.silence_share == pytest.approx(0.2)
    assert m.interruptions == 1 and m.overlap == pytest.approx(1.0)
    assert m.wpm == pytest.approx(8 / (8 / 60), abs=0.1)
    assert [r.role for r in rows.utterances(t)] == ["agent", "customer"]


def test_without_a_conversation_only_the_duration() -> None:
    t = Transcript(text="hello there", language=None, duration=3.0, model="m", engine="e")
    assert rows.metrics(t) == rows.CallMetrics(duration=3.0)
    [only] = rows.utterances(t)
    assert (only.text, only.start, only.end, only.role) == ("hello there", 0.0, 3.0, None)


def test_segments_take_the_words_of_their_time() -> None:
    t = Transcript(
        text="hello there. bye now",
        language="en",
        duration=4.0,
        model="m",
        engine="e",
        segments=(
            Segment(id=0, start=0.0, end=2.0, text="hello there."),
            Segment(id=1, start=2.0, end=4.0, text=" bye now"),
            Segment(id=2, start=4.0, end=4.0, text=" "),
        ),
        words=(
            Word(start=0.0, end=0.5, word="hello"),
            Word(start=0.6, end=1.5, word="there."),
            Word(start=2.1, end=2.5, word="bye"),
            Word(start=2.6, end=3.0, word="now"),
        ),
    )
    first, second = rows.utterances(t)
    assert first.word_chars == [0, 5, 6, 12] and second.word_chars == [1, 4, 5, 8]
    assert second.word_times == [2.1, 2.5, 2.6, 3.0] and second.seq == 1


@pytest.mark.parametrize(
    ("language", "config"),
    [
        (None, "english"),
        ("en", "english"),
        ("en-US", "english"),
        ("English", "english"),
        ("de", "german"),
        ("pt_BR", "portuguese"),
        ("ja", "simple"),
        ("klingon", "simple"),
    ],
)
def test_the_language_picks_the_configuration(language: str | None, config: str) -> None:
    assert configs.for_language(language) == config


def test_only_built_in_configurations() -> None:
    assert configs.check(" Simple ") == "simple"
    with pytest.raises(InvalidInput) as err:
        configs.check("english; DROP TABLE x")
    assert err.value.code == "invalid_config"


def test_calls_rank_by_their_best_utterance_then_newest() -> None:
    a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    old, new = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC)
    ranked = query.rank_calls([(a, old, 0.1), (a, old, 0.5), (b, new, 0.5), (c, new, 0.2)])
    assert [k.audio_file_id for k in ranked] == [b, a, c]
    assert ranked[1].rank == 0.5


def test_one_arm_per_configuration_sharing_the_query() -> None:
    s = query.parse({"q": "refund", "role": "agent", "min_wpm": "100"})
    text, args = query.matched_statement(
        s, uuid.uuid4(), ["english", "simple"], upper=None, lower=None, cap=50
    )
    assert text.count("websearch_to_tsquery") == 2 and text.count("JOIN media_pipeline") == 2
    assert args[0] == "refund" and args.count("english") == 1 and args.count(50) == 1
    assert text.count("$1)") == 2  # the query text is one parameter


def test_a_long_text_is_indexed_in_pieces_with_their_words() -> None:
    words = [f"w{k:05d}" for k in range(1000)]  # 7 characters each with its space
    text = " ".join(words)
    t = Transcript(
        text=text,
        language="en",
        duration=500.0,
        model="m",
        engine="e",
        words=tuple(Word(start=k * 0.5, end=k * 0.5 + 0.4, word=w) for k, w in enumerate(words)),
    )
    pieces = rows.utterances(t)
    assert len(pieces) == 4 and [p.seq for p in pieces] == [0, 1, 2, 3]
    assert all(len(p.text) <= rows.MAX_ROW_CHARS for p in pieces)
    assert "".join(p.text for p in pieces) == text
    second = pieces[1]
    assert second.word_chars is not None and second.word_times is not None
    first_word = second.text[second.word_chars[0] : second.word_chars[1]]
    assert first_word == words[len(pieces[0].text.split())]
    assert second.word_times[0] == 0.5 * len(pieces[0].text.split())
