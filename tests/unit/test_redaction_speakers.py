"""Redaction of conversations speaker by speaker, of the chunks saved for resuming (digit runs
at their edges masked), and the redaction record as stored."""

from __future__ import annotations

import re

import msgspec
import pytest

from libs.redaction import (
    AudioOutcome,
    Policy,
    RedactedSpan,
    RedactionRecord,
    RedactionReport,
    redact_chunk,
    redact_transcript,
)
from libs.redaction.seams import edge_runs
from libs.transcript import EngineMetadata, Segment, Transcript, Utterance, Word
from libs.transcript.conversation import from_channels
from libs.transcript.merge import ChunkTranscript, merge
from libs.transcript.render import FORMATS

PCI = Policy.parse("pci")
SPOKEN_CARD = re.compile(r"\b(four|one)\b")

Said = list[tuple[float, float, str]]


def _say(start: float, text: str, step: float = 0.4) -> Said:
    return [
        (round(start + i * step, 2), round(start + i * step + 0.3, 2), w)
        for i, w in enumerate(text.split())
    ]


def _channel(said: Said, *, words: bool = True) -> Transcript:
    """A channel as Whisper answers it: a segment per stretch of speech (a pause of more than a
    second starts a new one)."""
    groups: list[Said] = []
    for word in said:
        if not groups or word[0] - groups[-1][-1][1] > 1.0:
            groups.append([])
        groups[-1].append(word)
    return Transcript(
        text=" ".join(w for _, _, w in said),
        language="en",
        duration=14.0,
        segments=tuple(
            Segment(id=i, start=g[0][0], end=g[-1][1], text=" ".join(w for _, _, w in g))
            for i, g in enumerate(groups)
        ),
        words=tuple(Word(start=s, end=e, word=w) for s, e, w in said) if words else None,
        model="whisper-1",
        engine="openai",
    )


AGENT = _say(0.2, "can I take your card number") + _say(4.8, "got it") + _say(12.4, "thanks")
DIGITS = _say(2.6, "four one one one") + _say(
    6.4, "one one one one one one one one one one one one"
)
CUSTOMER = _say(1.2, "yes it is") + DIGITS


def _call(*, words: bool = True) -> Transcript:
    return from_channels(
        [_channel(AGENT, words=words), _channel(CUSTOMER, words=words)],
        roles=("agent", "customer"),
        duration=14.0,
    )


def _texts(t: Transcript) -> list[str]:
    out = [t.text, *(s.text for s in t.segments), *(w.word for w in t.words or ())]
    for u in t.utterances:
        out += [u.text, *(w.word for w in u.words or ())]
    out += [fmt.render(t).decode() for fmt in FORMATS.values()]
    return out


def test_a_card_interrupted_by_the_other_channel_is_one_finding_in_every_view() -> None:
    original = _call()
    assert "four one one one got it one" in original.text  # merged by time: split
    redacted, report = redact_transcript(original, PCI)
    for text in _texts(redacted):
        assert SPOKEN_CARD.search(text) is None, text
    assert report.counts == {"credit_card": 1} and report.timing == "words"
    # The beep spans the first digit to the last, across the agent's words and the pause.
    assert [(s.cls, s.start, s.end) for s in report.spans] == [
        ("credit_card", DIGITS[0][0], DIGITS[-1][1])
    ]
    # The agent's words are the agent's, untouched and in time order in the merged words.
    assert "got it" in redacted.text and "Agent: got it" in FORMATS["txt"].render(redacted).decode()
    assert redacted.words is not None
    assert [w.start for w in redacted.words] == sorted(w.start for w in redacted.words)
    card = [w for w in redacted.words if w.word == "[CREDIT_CARD]"]
    assert [(w.start, w.end) for w in card] == [(DIGITS[0][0], DIGITS[-1][1])]
    # Segments stay one per utterance, with the utterances' redacted texts.
    assert [s.text for s in redacted.segments] == [u.text for u in redacted.utterances]
    assert redacted.conversation == original.conversation


def test_without_words_the_turns_are_joined_per_speaker() -> None:
    redacted, report = redact_transcript(_call(words=False), PCI)
    for text in _texts(redacted):
        assert SPOKEN_CARD.search(text) is None, text
    assert report.timing == "segments"
    customer = [u for u in _call(words=False).utterances if u.channel == 1]
    assert [(s.start, s.end) for s in report.spans] == [(customer[0].start, customer[-1].end)]


def _diarized(*, words: bool) -> Transcript:
    """One engine response that told voices apart: utterances (and segments) with speakers;
    words, if any, only at the top level."""
    turns = [
        ("Speaker A", 0.0, 3.0, "my card is four one one one"),
        ("Speaker B", 3.2, 4.0, "got it"),
        ("Speaker A", 4.5, 9.0, "one one one one one one one one one one one one"),
        ("Speaker B", 9.5, 10.5, "and the expiry"),
    ]
    said: Said = []
    for _, start, end, text in turns:
        tokens = text.split()
        step = (end - start) / len(tokens)
        said += [(start + i * step, start + (i + 1) * step, w) for i, w in enumerate(tokens)]
    return Transcript(
        text=" ".join(t[3] for t in turns),
        language="en",
        duration=11.0,
        segments=tuple(
            Segment(id=i, start=s, end=e, text=x) for i, (_, s, e, x) in enumerate(turns)
        ),
        words=tuple(Word(start=s, end=e, word=w) for s, e, w in said) if words else None,
        model="gpt-4o-transcribe-diarize",
        engine="openai",
        utterances=tuple(Utterance(speaker=p, start=s, end=e, text=x) for p, s, e, x in turns),
    )


@pytest.mark.parametrize("words", [False, True], ids=["turns", "words"])
def test_a_diarized_transcript_is_redacted_per_speaker(words: bool) -> None:
    redacted, report = redact_transcript(_diarized(words=words), PCI)
    for text in _texts(redacted):
        assert SPOKEN_CARD.search(text) is None, text
    assert report.counts == {"credit_card": 1}
    assert [u.text for u in redacted.utterances] == [
        "my card is [CREDIT_CARD]",
        "got it",
        "",
        "and the expiry",
    ]
    assert redacted.text == "my card is [CREDIT_CARD] got it and the expiry"
    (span,) = report.spans
    if words:
        # The top-level words were given to the speaker whose turn holds them.
        assert report.timing == "words" and redacted.words is not None
        assert "[CREDIT_CARD]" in [w.word for w in redacted.words]
        assert (span.start, span.end) == pytest.approx((3 * 3.0 / 7, 9.0))
    else:
        assert report.timing == "segments" and (span.start, span.end) == (0.0, 9.0)
    assert all(u.words is None for u in redacted.utterances)


def test_a_number_across_the_chunks_of_a_long_diarized_recording_is_masked() -> None:
    # Each chunk's voices are labelled by that request: "B" of the second chunk may be "A" of
    # the first, so a card cut by the chunk boundary is two halves of two speakers.
    def chunk(turns: list[tuple[str, float, float, str]]) -> Transcript:
        return Transcript(
            text=" ".join(t[3] for t in turns),
            language="en",
            duration=10.0,
            segments=tuple(
                Segment(id=i, start=s, end=e, text=x) for i, (_, s, e, x) in enumerate(turns)
            ),
            model="gpt-4o-transcribe-diarize",
            engine="openai",
            utterances=tuple(Utterance(speaker=p, start=s, end=e, text=x) for p, s, e, x in turns),
        )

    first = chunk(
        [
            ("Speaker A", 1.0, 3.0, "go ahead"),
            ("Speaker B", 5.0, 9.5, "it is four one one one one one one one"),
        ]
    )
    second = chunk(
        [
            ("Speaker A", 0.5, 4.0, "one one one one one one one one"),
            ("Speaker B", 5.0, 6.0, "thank you very much for that information today"),
        ]
    )
    merged = merge(
        [ChunkTranscript(0.0, 10.0, first), ChunkTranscript(10.0, 20.0, second)],
        duration=20.0,
        timed=True,
    )
    assert [u.speaker for u in merged.utterances][1:3] == [
        "Speaker B (part 1)",
        "Speaker A (part 2)",
    ]
    redacted, report = redact_transcript(merged, PCI)
    for text in _texts(redacted):
        assert SPOKEN_CARD.search(text) is None, text
    assert [u.text for u in redacted.utterances] == [
        "go ahead",
        "it is [CREDIT_CARD]",
        "[CREDIT_CARD]",
        "thank you very much for that information today",
    ]
    assert report.timing == "segments" and len(report.spans) == 2


def test_a_pause_inside_a_number_does_not_split_it() -> None:
    said = (
        _say(0.0, "it is four one one one")
        + _say(5.0, "one one one one")
        + _say(9.0, "one one one one one one one one")
    )
    transcript = _channel(said)
    assert len(transcript.segments) == 3
    redacted, report = redact_transcript(transcript, PCI)
    assert redacted.text == "it is [CREDIT_CARD]"
    assert [(s.start, s.end) for s in report.spans] == [(said[2][0], said[-1][1])]


def test_a_value_the_words_do_not_show_is_still_beeped_by_its_segment() -> None:
    # The engine's words and segments disagree (digits dropped from the words, too few for a
    # card even in a card context): the text and segments redact the card, and the audio must
    # not keep it because the words did not.
    transcript = Transcript(
        text="hello. the card is 4111 1111 1111 1111 thanks",
        language="en",
        duration=9.0,
        segments=(
            Segment(id=0, start=0.0, end=1.0, text="hello."),
            Segment(id=1, start=2.0, end=8.0, text="the card is 4111 1111 1111 1111 thanks"),
        ),
        words=tuple(
            Word(start=2.0 + i, end=2.5 + i, word=w)
            for i, w in enumerate(["the", "card", "is", "4111", "1111", "thanks"])
        ),
        model="whisper-1",
        engine="openai",
    )
    redacted, report = redact_transcript(transcript, PCI)
    assert "[CREDIT_CARD]" in redacted.text and report.counts == {"credit_card": 1}
    assert report.timing == "words"
    assert [(s.start, s.end) for s in report.spans] == [(2.0, 8.0)]


# -- chunks saved for resuming ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("thanks the number is four one one one", ["four one one one"]),
        ("one one one one thanks bye", ["one one one one"]),
        ("4111 1111 hold on let me see", ["4111 1111"]),
        (
            "four one one one hold on let me see 1 1 1 1",
            ["four one one one hold on let me see 1 1 1 1"],
        ),
        ("٤١١١ ١١١١", ["٤١١١ ١١١١"]),
        ("[CREDIT_CARD] and 1 2", ["[CREDIT_CARD] and 1 2"]),
        ("so we can confirm that your order 4 5 7 8 2 ships today and that is all we need", []),
        ("4 1 1 1 sorry could you hold on let me see", ["4 1 1 1"]),
        ("thanks for calling about the account", []),
        ("I will pay for it", []),
    ],
)
def test_digit_runs_reaching_an_edge_are_found(text: str, masked: list[str]) -> None:
    assert [text[s:e] for s, e in edge_runs(text)] == masked


def test_a_saved_chunk_keeps_no_digit_said_near_its_cut() -> None:
    # The first chunk of a card read across a cut: twelve digits, no card on their own.
    said = _say(0.0, "sure my card number is four one one one one one one one one one one one")
    chunk = redact_chunk(_channel(said), Policy.parse("pci", substitution="last4"))
    for text in _texts(chunk):
        assert SPOKEN_CARD.search(text) is None, text
    assert chunk.text == "sure my card number is [CREDIT_CARD]"
    assert chunk.words is not None and chunk.words[-1] == Word(
        start=said[5][0], end=said[-1][1], word="[CREDIT_CARD]"
    )
    # The merged transcript's redaction finds the placeholder again, timed.
    _, report = redact_transcript(chunk, Policy.parse("pci"))
    assert [(s.start, s.end) for s in report.spans] == [(said[5][0], said[-1][1])]
    # Digits in the middle of a chunk are the detectors' business alone.
    middle = _channel(
        _say(
            0.0,
            "so we can confirm that your order 4 5 7 8 2 ships today thanks a lot and goodbye now",
        )
    )
    assert redact_chunk(middle, PCI).text == middle.text
    # Metadata is not speech: a request id or a model name ending in digits is kept.
    tagged = msgspec.structs.replace(
        _channel(said),
        engine_metadata=EngineMetadata(request_id="req_12", requested_model="whisper-1"),
    )
    assert redact_chunk(tagged, PCI).engine_metadata == tagged.engine_metadata
    # A policy with no digit classes masks nothing.
    assert redact_chunk(_channel(said), Policy.parse("email")).text == _channel(said).text


# -- the record ------------------------------------------------------------------------------


def test_the_record_is_stored_in_the_shape_it_always_had() -> None:
    report = RedactionReport(
        policy=PCI.spec,
        counts={"credit_card": 1},
        spans=(RedactedSpan(cls="credit_card", start=1.0, end=2.0),),
        timing="words",
    )
    audio = AudioOutcome(
        status="redacted",
        mode="beep",
        precision="words",
        spans=1,
        replaced_original=True,
    )
    record = RedactionRecord.of(report, audio=audio)
    before = msgspec.to_builtins(report) | {
        "audio": {
            "status": "redacted",
            "mode": "beep",
            "precision": "words",
            "spans": 1,
            "replaced_original": True,
        }
    }
    assert msgspec.to_builtins(record) == before
    plain = msgspec.to_builtins(RedactionRecord.of(report))
    assert plain == msgspec.to_builtins(report)
    # keep=both says the original is stored, never where (keys name the phone).
    both = msgspec.to_builtins(RedactionRecord.of(report, original_stored=True))
    assert both == msgspec.to_builtins(report) | {"original_stored": True}
    # Records stored before the type existed decode (the keys they held are ignored); so do
    # the audio outcomes they held.
    old = before | {"original_key": "u.json", "audio": {"status": "not_redacted", "reason": "x"}}
    old["audio"]["key"] = "k.redacted.wav"
    decoded = msgspec.convert(old, RedactionRecord)
    assert decoded.original_stored is None and decoded.audio == AudioOutcome(
        status="not_redacted", reason="x"
    )
    summary = decoded.summary()
    assert (summary.total, summary.audio, summary.audio_detail) == (1, "not_redacted", "x")
    assert RedactionRecord.of(report).summary().audio is None
