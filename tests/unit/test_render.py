from __future__ import annotations

import msgspec
import pytest

from libs.transcript import ChunkInfo, EngineMetadata, Segment, Transcript, Word
from libs.transcript.render import (
    FORMATS,
    render,
    render_json,
    render_srt,
    render_txt,
    render_vtt,
)


def _transcript(
    segments: tuple[Segment, ...] = (), text: str = "", duration: float = 0.0
) -> Transcript:
    return Transcript(
        text=text,
        language="en",
        duration=duration,
        segments=segments,
        model="test-model",
        engine="test",
    )


EDGES = _transcript(
    text="Hello there. General Kenobi! <b>Bold</b> & co --> done",
    duration=3725.5,
    segments=(
        Segment(id=0, start=0.0, end=1.5, text="Hello there."),
        # Rounds up across the minute boundary: must carry, never print ",1000".
        Segment(id=1, start=59.9996, end=61.0004, text="General Kenobi!"),
        # Empty cue text would end the block early: skipped, numbering stays consecutive.
        Segment(id=2, start=62.0, end=63.0, text="   "),
        # An end before its start (an engine bug) becomes a zero-length cue, not a negative one.
        Segment(id=3, start=70.25, end=69.0, text="  <b>Bold</b> & co\n\n--> done  "),
        # Carries into the hour; half a millisecond rounds up.
        Segment(id=4, start=3599.99951, end=3725.4996, text="Last one."),
    ),
)


def test_srt_exact() -> None:
    assert render_srt(EDGES).decode() == (
        "1\n"
        "00:00:00,000 --> 00:00:01,500\n"
        "Hello there.\n"
        "\n"
        "2\n"
        "00:01:00,000 --> 00:01:01,000\n"
        "General Kenobi!\n"
        "\n"
        "3\n"
        "00:01:10,250 --> 00:01:10,250\n"
        "<b>Bold</b> & co\n"
        "--> done\n"
        "\n"
        "4\n"
        "01:00:00,000 --> 01:02:05,500\n"
        "Last one.\n"
    )


def test_vtt_exact() -> None:
    assert render_vtt(EDGES).decode() == (
        "WEBVTT\n"
        "\n"
        "00:00:00.000 --> 00:00:01.500\n"
        "Hello there.\n"
        "\n"
        "00:01:00.000 --> 00:01:01.000\n"
        "General Kenobi!\n"
        "\n"
        "00:01:10.250 --> 00:01:10.250\n"
        "&lt;b&gt;Bold&lt;/b&gt; &amp; co\n"
        "--&gt; done\n"
        "\n"
        "01:00:00.000 --> 01:02:05.500\n"
        "Last one.\n"
    )


@pytest.mark.parametrize(
    ("seconds", "stamp"),
    [
        (0.0, "00:00:00,000"),
        (0.0004, "00:00:00,000"),
        (0.0006, "00:00:00,001"),
        (0.999, "00:00:00,999"),
        (0.9996, "00:00:01,000"),
        (59.9996, "00:01:00,000"),
        (3599.9996, "01:00:00,000"),
        (36000.0, "10:00:00,000"),
        (-1.0, "00:00:00,000"),
        (float("nan"), "00:00:00,000"),
    ],
)
def test_srt_timestamp_rounding(seconds: float, stamp: str) -> None:
    transcript = _transcript(segments=(Segment(id=0, start=seconds, end=seconds, text="x"),))
    assert render_srt(transcript).decode().splitlines()[1] == f"{stamp} --> {stamp}"


def test_cue_never_ends_before_it_starts_after_rounding() -> None:
    # Both round to the same millisecond from different sides; end must not drop below start.
    transcript = _transcript(segments=(Segment(id=0, start=1.2346, end=1.2344, text="x"),))
    assert render_srt(transcript).decode().splitlines()[1] == "00:00:01,235 --> 00:00:01,235"


def test_text_without_segments_is_one_cue_over_the_whole_duration() -> None:
    transcript = _transcript(text="Just text.", duration=12.3456)
    assert render_srt(transcript) == b"1\n00:00:00,000 --> 00:00:12,346\nJust text.\n"
    assert render_vtt(transcript) == b"WEBVTT\n\n00:00:00.000 --> 00:00:12.346\nJust text.\n"


def test_empty_transcript() -> None:
    transcript = _transcript()
    assert render_srt(transcript) == b""
    assert render_vtt(transcript) == b"WEBVTT\n"
    assert render_txt(transcript) == b""


def test_txt_is_the_text_newline_terminated() -> None:
    assert render_txt(_transcript(text="  Hello, world.\n\n")) == b"Hello, world.\n"
    assert render_txt(EDGES).endswith(b"done\n")


def test_utf8_output() -> None:
    transcript = _transcript(
        text="Où est la café ? 東京", segments=(Segment(0, 0, 1, "Où est la café ? 東京"),)
    )
    assert "東京".encode() in render_srt(transcript)
    assert "東京".encode() in render_vtt(transcript)
    assert render_txt(transcript).decode("utf-8") == "Où est la café ? 東京\n"


def test_json_round_trips_and_is_deterministic() -> None:
    transcript = Transcript(
        text="hi there",
        language="en",
        duration=1.25,
        segments=(Segment(id=0, start=0.0, end=1.25, text="hi there"),),
        words=(Word(start=0.0, end=0.5, word="hi"), Word(start=0.5, end=1.25, word="there")),
        model="m",
        engine="e",
        engine_metadata=EngineMetadata(request_id="r", raw_response={"zeta": 1, "alpha": {"b": 2}}),
    )
    encoded = render_json(transcript)
    assert isinstance(encoded, bytes)
    assert msgspec.json.decode(encoded, type=Transcript) == transcript
    # Metadata keys are sorted, so equal transcripts always produce equal bytes.
    assert encoded.index(b'"raw_response"') < encoded.index(b'"request_id"')
    assert encoded.index(b'"alpha"') < encoded.index(b'"zeta"')
    reordered = msgspec.structs.replace(
        transcript,
        engine_metadata=EngineMetadata(request_id="r", raw_response={"alpha": {"b": 2}, "zeta": 1}),
    )
    assert render_json(reordered) == encoded


def test_engine_metadata_writes_the_json_of_the_dict_it_replaced() -> None:
    # The keys engines set, as they were written when the metadata was a dict: unset fields
    # absent, a missing request id null, False and empty lists written.
    metadata = EngineMetadata(
        raw_response={"text": "x", "b": [1]},
        request_id=None,
        latency_ms=12.5,
        processing_ms=7,
        response_format="json",
        prompt="sent",
        chunks=(ChunkInfo(index=0, start=0.0, cut=1.0, end=1.5, request_id=None),),
        chunks_reused=0,
        channels=(EngineMetadata(channel=0, chunks=(), turns=0),),
        vad=False,
        speakers="channels",
    )
    as_dict = {
        "raw_response": {"text": "x", "b": [1]},
        "request_id": None,
        "latency_ms": 12.5,
        "processing_ms": 7,
        "response_format": "json",
        "prompt": "sent",
        "chunks": [{"index": 0, "start": 0.0, "cut": 1.0, "end": 1.5, "request_id": None}],
        "chunks_reused": 0,
        "channels": [{"channel": 0, "chunks": [], "turns": 0}],
        "vad": False,
        "speakers": "channels",
    }
    transcript = Transcript(
        text="", language=None, duration=1.5, model="m", engine="e", engine_metadata=metadata
    )
    old = msgspec.json.encode(msgspec.structs.replace(transcript, engine_metadata=EngineMetadata()))
    old = old.replace(b'"engine_metadata":{}', b'"engine_metadata":' + msgspec.json.encode(as_dict))
    assert render_json(transcript) == render_json(msgspec.json.decode(old, type=Transcript))
    as_json = msgspec.json.encode(as_dict, order="deterministic")
    assert msgspec.json.encode(metadata, order="deterministic") == as_json
    assert b'"engine_metadata":' + as_json in render_json(transcript)
    # What older transcripts carry beyond today's fields is ignored, not an error.
    unknown = msgspec.json.encode(as_dict | {"model": "whisper-1", "zeta": {"a": 1}})
    assert msgspec.json.decode(unknown, type=EngineMetadata) == metadata
    assert msgspec.json.encode(EngineMetadata()) == b"{}"
    # Every field, not only those above, is written where the sorted dict had it.
    for struct in (EngineMetadata, ChunkInfo):
        assert list(struct.__struct_fields__) == sorted(struct.__struct_fields__)
    assert EngineMetadata().request is None and metadata.request is None


def test_formats_table() -> None:
    assert set(FORMATS) == {"json", "txt", "srt", "vtt"}
    expected_types = {
        "json": "application/json",
        "txt": "text/plain; charset=utf-8",
        "srt": "application/x-subrip; charset=utf-8",
        "vtt": "text/vtt; charset=utf-8",
    }
    for name, (renderer, content_type, extension) in FORMATS.items():
        assert extension == name
        assert content_type == expected_types[name]
        output = renderer(EDGES)
        assert isinstance(output, bytes)
        assert render(EDGES, name) == output
    with pytest.raises(TypeError):
        FORMATS["pdf"] = FORMATS["txt"]  # type: ignore[index]


def test_word_timings_only_when_asked() -> None:
    from libs.transcript import Utterance, with_asked_timings

    words = (Word(start=0.0, end=0.5, word="hi"),)
    utterance = Utterance(speaker="Channel 0", start=0.0, end=0.5, text="hi", words=words)
    worded = Transcript(
        text="hi",
        language="en",
        duration=1.0,
        model="m",
        engine="e",
        words=words,
        utterances=(utterance,),
    )
    assert with_asked_timings(worded, "word") is worded
    for asked in ("segment", "none"):
        plain = with_asked_timings(worded, asked)
        assert plain.words is None and [u.words for u in plain.utterances] == [None]
        assert plain.utterances[0].text == "hi" and plain.text == "hi"
        assert with_asked_timings(plain, asked) is plain
