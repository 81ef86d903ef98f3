"""Object keys exactly as the reference states them."""

from __future__ import annotations

import pytest

from libs import layout
from libs.layout import InvalidPrefix, audio_key, transcript_keys, validate_prefix


def test_audio_key_with_prefix() -> None:
    key = audio_key(
        prefix="gateway", campaign="spring_renewals", phone="+442079460018", file_id="u1", ext="wav"
    )
    assert key == "gateway/spring_renewals/audio/442079460018/u1.wav"


def test_audio_key_without_prefix() -> None:
    key = audio_key(prefix="", campaign="winback", phone="+14155550132", file_id="u2", ext="mp3")
    assert key == "winback/audio/14155550132/u2.mp3"


def test_transcripts_mirror_the_audio_path_without_the_prefix() -> None:
    key = "gateway/spring_renewals/audio/442079460018/u1.wav"
    keys = transcript_keys(key, campaign="spring_renewals")
    assert keys.json == "spring_renewals/transcriptions/json/442079460018/u1.json"
    assert keys.txt == "spring_renewals/transcriptions/txt/442079460018/u1.txt"
    assert keys.srt == "spring_renewals/transcriptions/srt/442079460018/u1.srt"
    assert keys.vtt == "spring_renewals/transcriptions/vtt/442079460018/u1.vtt"


def test_nested_prefix_and_unsafe_segments() -> None:
    key = audio_key(
        prefix="acme/east", campaign="Spring / Renewals", phone=None, file_id="u3", ext="ogg"
    )
    assert key == "acme/east/Spring_Renewals/audio/unknown/u3.ogg"
    keys = transcript_keys(key, campaign="Spring / Renewals")
    assert keys.txt == "Spring_Renewals/transcriptions/txt/unknown/u3.txt"


@pytest.mark.parametrize("bad", ["../x", "a/../b", "/abs", "a//b", "a b", "a/./b", "é", "a?b"])
def test_bad_prefixes_are_refused(bad: str) -> None:
    with pytest.raises(InvalidPrefix):
        validate_prefix(bad)


@pytest.mark.parametrize(
    ("given", "expected"),
    [("gateway", "gateway"), ("gateway/", "gateway"), ("", ""), ("a/b-c.d", "a/b-c.d")],
)
def test_good_prefixes(given: str, expected: str) -> None:
    assert validate_prefix(given) == expected


def test_a_tenant_transcript_prefix_goes_in_front_of_the_campaign() -> None:
    key = "acme/east/spring/audio/442079460018/u4.wav"
    keys = transcript_keys(key, campaign="spring", prefix="acme/east")
    assert keys.json == "acme/east/spring/transcriptions/json/442079460018/u4.json"
    assert keys.vtt == "acme/east/spring/transcriptions/vtt/442079460018/u4.vtt"
    # '' is the reference layout.
    assert transcript_keys(key, campaign="spring", prefix="").txt == (
        "spring/transcriptions/txt/442079460018/u4.txt"
    )


def test_oversized_keys_are_measured_in_utf8_bytes() -> None:
    from libs.layout import MAX_KEY_BYTES, oversized

    assert oversized(["a" * MAX_KEY_BYTES, None]) == []
    assert oversized(["é" * (MAX_KEY_BYTES // 2 + 1)]) == ["é" * (MAX_KEY_BYTES // 2 + 1)]


def test_replaced_audio_says_it_is_wav_and_keeps_the_stem() -> None:
    key = "t1/Spring/audio/15550001/0b7c.mp3"
    assert layout.replaced_audio_key(key) == "t1/Spring/audio/15550001/0b7c.wav"
    assert layout.replaced_audio_key("t1/Spring/audio/1/x.wav") == "t1/Spring/audio/1/x.wav"
    assert layout.replaced_audio_key("t1/a.b/audio/1/x") == "t1/a.b/audio/1/x.wav"
    replaced = layout.replaced_audio_key(key)
    assert layout.transcript_keys(replaced, campaign="Spring") == layout.transcript_keys(
        key, campaign="Spring"
    )


def test_insights_sit_beside_the_transcripts_under_the_job_prefix() -> None:
    job = "0b7c1e2a-5d7e-4a51-9b9f-2b7c1e2a5d7e"
    assert layout.insights_key(job, campaign="Spring", prefix="t1/sub") == (
        f"t1/sub/Spring/insights/{job}.json"
    )
    # The reference layout (operator keys): no prefix, like their transcripts.
    assert layout.insights_key(job, campaign="Spring") == f"Spring/insights/{job}.json"
    # Campaign names become one safe segment, as for every key.
    assert layout.insights_key(job, campaign="../a b", prefix="") == f"a_b/insights/{job}.json"
    assert (
        layout.insights_key(job, campaign="", prefix="t1/") == f"t1/unassigned/insights/{job}.json"
    )
