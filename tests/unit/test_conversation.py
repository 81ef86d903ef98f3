"""Utterances in the canonical transcript, their renderings, and the conversation metrics."""

from __future__ import annotations

import msgspec
import pytest

from libs.transcript import EngineMetadata, Segment, Transcript, Utterance, Word
from libs.transcript.conversation import summarize
from libs.transcript.render import render_json, render_srt, render_txt, render_vtt


def _u(speaker: str, start: float, end: float, text: str, **kw: object) -> Utterance:
    return Utterance(speaker=speaker, start=start, end=end, text=text, **kw)  # type: ignore[arg-type]


AGENT = {"role": "agent", "channel": 0}
CUSTOMER = {"role": "customer", "channel": 1}

CALL = Transcript(
    text="Hello, how can I help? My card <is> lost & gone. Let me check.",
    language="en",
    duration=12.0,
    segments=(Segment(id=0, start=0.0, end=12.0, text="whole"),),
    model="m",
    engine="e",
    utterances=(
        _u("Channel 0", 0.5, 2.0, "Hello, how can I help?", **AGENT),
        _u("Channel 1", 3.0, 6.5, "My card <is>\n\nlost & gone.", **CUSTOMER),
        _u("Channel 0", 6.0, 8.0, "Let me check.", **AGENT),
        _u("Channel 1", 9.0, 9.0, "   ", **CUSTOMER),
    ),
)


def test_old_transcripts_decode_without_utterances() -> None:
    old = b'{"text":"hi","language":"en","duration":1.0,"segments":[],"words":null,'
    old += b'"model":"m","engine":"e","engine_metadata":{}}'
    transcript = msgspec.json.decode(old, type=Transcript)
    assert transcript.utterances == ()
    assert transcript.conversation is None
    assert render_txt(transcript) == b"hi\n"


def test_utterances_round_trip_through_json() -> None:
    words = (Word(0.5, 0.9, "Hello"),)
    transcript = msgspec.structs.replace(
        CALL,
        utterances=(_u("A", 0.5, 0.9, "Hello", words=words),),
        conversation=summarize(CALL.utterances, duration=12.0, method="channels"),
    )
    decoded = msgspec.json.decode(render_json(transcript), type=Transcript)
    assert decoded == transcript
    assert decoded.utterances[0].words == words


def test_txt_one_role_line_per_utterance() -> None:
    assert render_txt(CALL).decode() == (
        "Agent: Hello, how can I help?\nCustomer: My card <is> lost & gone.\nAgent: Let me check.\n"
    )


def test_label_falls_back_to_the_speaker() -> None:
    transcript = msgspec.structs.replace(CALL, utterances=(_u("Speaker A", 0, 1, "Hi"),))
    assert render_txt(transcript) == b"Speaker A: Hi\n"


def test_srt_prefixes_the_speaker() -> None:
    assert render_srt(CALL).decode() == (
        "1\n00:00:00,500 --> 00:00:02,000\nAgent: Hello, how can I help?\n\n"
        "2\n00:00:03,000 --> 00:00:06,500\nCustomer: My card <is>\nlost & gone.\n\n"
        "3\n00:00:06,000 --> 00:00:08,000\nAgent: Let me check.\n"
    )


def test_vtt_voice_spans_escaped() -> None:
    transcript = msgspec.structs.replace(
        CALL, utterances=(*CALL.utterances[:3], _u("Bob <x> & \n co", 9, 10, "Bye"))
    )
    assert render_vtt(transcript).decode() == (
        "WEBVTT\n\n"
        "00:00:00.500 --> 00:00:02.000\n<v Agent>Hello, how can I help?\n\n"
        "00:00:03.000 --> 00:00:06.500\n<v Customer>My card &lt;is&gt;\nlost &amp; gone.\n\n"
        "00:00:06.000 --> 00:00:08.000\n<v Agent>Let me check.\n\n"
        "00:00:09.000 --> 00:00:10.000\n<v Bob &lt;x&gt; &amp; co>Bye\n"
    )


def test_metrics_of_a_call_with_an_interruption() -> None:
    c = summarize(CALL.utterances, duration=12.0, method="channels")
    assert c.method == "channels"
    agent, customer = c.speakers
    assert (agent.speaker, agent.role, agent.channel) == ("Channel 0", "agent", 0)
    assert agent.talk_time == 3.5  # 1.5 + 2.0
    assert customer.talk_time == 3.5  # 3.5; the empty zero-length utterance adds nothing
    assert agent.talk_ratio == customer.talk_ratio == 0.5
    assert c.talk_time == 7.0 - 0.5  # union: [0.5, 2] + [3, 8]
    assert c.silence_time == pytest.approx(12.0 - 6.5)
    assert c.silence_ratio == pytest.approx(5.5 / 12, abs=1e-4)
    assert c.overlap_time == 0.5  # [6.0, 6.5]
    # The agent starts at 6.0 while the customer talks until 6.5.
    assert (agent.interruptions, customer.interruptions, c.interruptions) == (1, 0, 1)
    assert agent.words == 8 and customer.words == 5
    assert agent.words_per_minute == pytest.approx(8 / (3.5 / 60), abs=0.1)
    assert customer.longest_monologue == 3.5
    assert agent.longest_monologue == 2.0
    assert c.longest_monologue == 3.5


def test_monologue_spans_consecutive_utterances_of_one_speaker() -> None:
    utterances = [
        _u("A", 0, 2, "one two"),
        _u("A", 3, 5, "three"),
        _u("B", 6, 7, "four"),
        _u("A", 8, 9, "five"),
    ]
    c = summarize(utterances, duration=10, method="diarization")
    assert c.longest_monologue == 5.0
    assert [s.longest_monologue for s in c.speakers] == [5.0, 1.0]
    assert c.interruptions == 0 and c.overlap_time == 0.0


def test_touching_turns_are_neither_overlap_nor_interruption() -> None:
    c = summarize([_u("A", 0, 2, "a"), _u("B", 2, 4, "b")], duration=4, method="channels")
    assert c.overlap_time == 0.0 and c.interruptions == 0 and c.silence_time == 0.0


def test_simultaneous_starts_are_not_interruptions() -> None:
    c = summarize([_u("A", 1, 3, "a"), _u("B", 1, 2, "b")], duration=4, method="channels")
    assert c.interruptions == 0
    assert c.overlap_time == 1.0


def test_one_speakers_overlapping_utterances_are_not_overlap() -> None:
    c = summarize([_u("A", 0, 3, "a"), _u("A", 2, 4, "b")], duration=4, method="channels")
    assert c.overlap_time == 0.0 and c.interruptions == 0
    assert c.speakers[0].talk_time == 4.0


def test_no_speech() -> None:
    c = summarize([], duration=5, method="channels")
    assert c.speakers == () and c.silence_time == 5 and c.silence_ratio == 1.0
    assert c.longest_monologue == 0.0
    assert summarize([], duration=0, method="channels").silence_ratio == 0.0


def test_speaker_without_talk_time_has_no_words_per_minute() -> None:
    c = summarize([_u("A", 1, 1, "hi")], duration=2, method="channels")
    assert c.speakers[0].words_per_minute is None
    assert c.speakers[0].talk_ratio == 0.0


def _channel(
    *segments: tuple[float, float, str], words: tuple[Word, ...] | None = None
) -> Transcript:
    return Transcript(
        text=" ".join(s[2] for s in segments),
        language="en",
        duration=20.0,
        segments=tuple(
            Segment(id=i, start=a, end=b, text=t) for i, (a, b, t) in enumerate(segments)
        ),
        words=words,
        model="m",
        engine="e",
    )


def test_channels_merge_by_time_and_join_a_speakers_breaths() -> None:
    left = _channel(
        (0.5, 2.0, " Hello."),
        (2.5, 3.0, " How can I help?"),  # 0.5 s later, nobody in between: the same turn
        (9.0, 10.0, " Sure."),
        words=(Word(0.5, 1.0, "Hello"), Word(2.5, 2.7, "How"), Word(9.0, 9.5, "Sure")),
    )
    right = _channel((4.0, 8.0, "My card."), (8.5, 9.5, "Thanks."), words=(Word(4.1, 4.5, "My"),))
    from libs.transcript.conversation import from_channels

    t = from_channels(
        [left, right], roles=("agent", "customer"), duration=12.0, metadata=EngineMetadata(turns=1)
    )
    assert [(u.label, u.start, u.end, u.text) for u in t.utterances] == [
        ("Agent", 0.5, 3.0, "Hello. How can I help?"),
        ("Customer", 4.0, 9.5, "My card. Thanks."),
        ("Agent", 9.0, 10.0, "Sure."),
    ]
    assert [len(u.words or ()) for u in t.utterances] == [2, 1, 1]
    assert t.words is not None and [w.word for w in t.words] == ["Hello", "How", "My", "Sure"]
    assert [s.text for s in t.segments] == [u.text for u in t.utterances]
    assert t.text == "Hello. How can I help? My card. Thanks. Sure."
    assert t.engine_metadata == EngineMetadata(turns=1) and t.duration == 12.0
    assert t.conversation is not None and t.conversation.interruptions == 1


def test_channels_without_timings_or_roles() -> None:
    from libs.transcript.conversation import from_channels

    text_only = Transcript(text="hi there", language=None, duration=5.0, model="m", engine="e")
    silent = Transcript(text="", language="en", duration=5.0, model="m", engine="e")
    t = from_channels([text_only, silent, text_only], roles=("agent",), duration=5.0)
    assert [(u.label, u.start, u.end) for u in t.utterances] == [
        ("Agent", 0.0, 5.0),
        ("Channel 2", 0.0, 5.0),
    ]
    assert t.words is None and t.language == "en"
    with pytest.raises(ValueError, match="no channels"):
        from_channels([], roles=(), duration=1.0)


def test_speaker_labels() -> None:
    from libs.transcript.conversation import speaker_label

    assert speaker_label("A") == "Speaker A"
    assert speaker_label(" agent ") == "agent"
    assert speaker_label("") == "Speaker ?"


def test_diarized_chunks_merge_with_per_part_labels() -> None:
    from libs.transcript.merge import ChunkTranscript, merge

    def chunk(*utterances: Utterance) -> Transcript:
        return Transcript(
            text=" ".join(u.text for u in utterances),
            language=None,
            duration=10.0,
            segments=tuple(
                Segment(id=i, start=u.start, end=u.end, text=u.text)
                for i, u in enumerate(utterances)
            ),
            model="m",
            engine="e",
            utterances=utterances,
        )

    first = chunk(_u("Speaker A", 0, 4, "one"), _u("Speaker B", 5, 9.5, "two"))
    # The second chunk starts at 9 s (1 s overlap): "two" is heard again and dropped.
    second = chunk(_u("Speaker A", 0.1, 0.5, "two"), _u("Speaker A", 2, 4, "three"))
    merged = merge(
        [ChunkTranscript(0.0, 9.0, first), ChunkTranscript(9.0, 19.0, second)],
        duration=19.0,
        timed=True,
    )
    assert [(u.speaker, u.start, u.text) for u in merged.utterances] == [
        ("Speaker A (part 1)", 0.0, "one"),
        ("Speaker B (part 1)", 5.0, "two"),
        ("Speaker A (part 2)", 11.0, "three"),
    ]
    single = merge([ChunkTranscript(0.0, 10.0, first)], duration=10.0, timed=True)
    assert [u.speaker for u in single.utterances] == ["Speaker A", "Speaker B"]
