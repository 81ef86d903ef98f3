"""The console's call routes on real Postgres and SeaweedFS: the audio over HTTP Range (the
redacted copy where the policy redacted it; tenants) and speaker names applied to the
downloads (services/ingest/routes/media.py)."""

from __future__ import annotations

import asyncio
import socket
import struct
import uuid
from collections.abc import AsyncIterator

import msgspec
import pytest
from structlog.testing import capture_logs

from libs.blobstore import S3BlobStore
from libs.jobs import lifecycle
from libs.layout import redacted_audio_key, transcript_keys
from libs.redaction import RedactionRecord
from libs.redaction.record import AudioOutcome
from libs.transcript import Transcript
from libs.transcript.model import Utterance
from libs.transcript.render import render
from tests.integration.ingest.conftest import Api, Upstream, make_key
from tests.integration.ingest.console.conftest import Browser, make_user
from tests.stack_fixtures import eventually

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def store(console: Api) -> AsyncIterator[S3BlobStore]:
    async with S3BlobStore.open(console.settings.require_s3()) as s3:
        yield s3


async def _job(api: Api, upstream: Upstream, key: str, **fields: str) -> str:
    data = {"url": f"{upstream.url}/audio/{uuid.uuid4().hex}.wav", **fields}
    status, body, _ = await api.submit(data, key=key)
    assert status == 200, body
    return str(body["audio_file_id"])


def _call() -> Transcript:
    turns = (
        Utterance(speaker="Speaker A", start=0.0, end=2.0, text="Hello, how can I help?"),
        Utterance(speaker="Speaker B", start=2.5, end=4.0, text="My card was charged twice."),
        Utterance(speaker="Speaker A", start=4.5, end=6.0, text="Let me look."),
    )
    return Transcript(
        text=" ".join(u.text for u in turns),
        language="en",
        duration=6.0,
        model="whisper-1",
        engine="openai",
        utterances=turns,
    )


async def _complete(
    api: Api,
    store: S3BlobStore,
    job_id: str,
    transcript: Transcript,
    redaction: RedactionRecord | None = None,
) -> lifecycle.ProcessingJob:
    """What the transcriber does: the four objects stored, the job completed."""
    job = await lifecycle.load_job(api.pool, job_id)
    assert job is not None
    assert await lifecycle.mark_processing(api.pool, job, force=False)
    keys = transcript_keys(job.object_key, campaign=job.campaign_name, prefix=job.transcript_prefix)
    for fmt in ("json", "txt", "srt", "vtt"):
        await store.put_bytes(getattr(keys, fmt), render(transcript, fmt), "text/plain")
    assert await lifecycle.complete(
        api.pool, job, transcript, keys, force=False, trace_id=None, redaction=redaction
    )
    return job


async def _viewer(api: Api, key_id: str, role: str = "viewer") -> Browser:
    browser = Browser(api)
    status, body, _ = await browser.login((await make_user(api, key_id=key_id, role=role)).email)
    assert status == 200, body
    return browser


async def test_audio_is_served_whole_and_by_range(
    console: Api, upstream: Upstream, store: S3BlobStore
) -> None:
    raw, key = await make_key(console.pool)
    job = await _job(console, upstream, raw)
    object_key = await console.pool.fetchval(
        "SELECT b2_object_key FROM media_pipeline.audio_files WHERE id = $1", uuid.UUID(job)
    )
    stored = await store.get_bytes(object_key)
    size = len(stored)
    assert size > 1000
    browser = await _viewer(console, key.id)
    path = f"/api/media/{job}/audio"

    status, body, headers = await browser.call("GET", path)
    assert status == 200 and body == stored
    assert headers["Accept-Ranges"] == "bytes"
    assert headers["Content-Type"] == "audio/wav"
    assert headers["Content-Length"] == str(size)

    for asked, first, last in (
        ("bytes=0-99", 0, 99),
        ("bytes=100-", 100, size - 1),
        ("bytes=-10", size - 10, size - 1),
        (f"bytes=500-{size * 2}", 500, size - 1),
    ):
        status, body, headers = await browser.call("GET", path, headers={"Range": asked})
        assert status == 206, asked
        assert body == stored[first : last + 1], asked
        assert headers["Content-Range"] == f"bytes {first}-{last}/{size}"
        assert headers["Content-Length"] == str(last - first + 1)
        assert headers["Content-Type"] == "audio/wav"

    for asked in (f"bytes={size}-", f"bytes={size + 5}-{size + 10}", "bytes=-0"):
        status, body, headers = await browser.call("GET", path, headers={"Range": asked})
        assert status == 416, asked
        assert body["error"] == "range_not_satisfiable"
        assert headers["Content-Range"] == f"bytes */{size}"

    # Several ranges, or a malformed one: the whole audio.
    for asked in ("bytes=0-1,5-6", "bytes=abc", "items=0-5", "bytes=9-3"):
        status, body, _ = await browser.call("GET", path, headers={"Range": asked})
        assert (status, body == stored) == (200, True), asked

    # The key itself gets it too.
    status, body, _ = await console.request("GET", path, key=raw, headers={"Range": "bytes=0-3"})
    assert (status, body) == (206, stored[:4])


async def test_another_tenants_audio_is_404(console: Api, upstream: Upstream) -> None:
    raw_b, _ = await make_key(console.pool)
    theirs = await _job(console, upstream, raw_b)
    _, key_a = await make_key(console.pool)
    browser = await _viewer(console, key_a.id, role="admin")
    status, body, _ = await browser.call("GET", f"/api/media/{theirs}/audio")
    assert (status, body["error"]) == (404, "not_found")
    status, _, _ = await browser.call("GET", f"/api/media/{uuid.uuid4()}/audio")
    assert status == 404
    raw_a, _ = await make_key(console.pool)
    status, _, _ = await console.request("GET", f"/api/media/{theirs}/audio", key=raw_a)
    assert status == 404


async def test_the_redacted_copy_is_served_and_never_the_original_before_it(
    console: Api, upstream: Upstream, store: S3BlobStore
) -> None:
    raw, key = await make_key(console.pool)
    job = await _job(console, upstream, raw, redact="credit_card", redact_audio="beep")
    browser = await _viewer(console, key.id)
    path = f"/api/media/{job}/audio"
    # Not transcribed yet: the beeped copy does not exist, and the original is not played.
    status, body, _ = await browser.call("GET", path)
    assert (status, body["error"]) == (409, "audio_not_redacted")

    record = RedactionRecord(
        policy="credit_card;audio=beep",
        counts={"credit_card": 1},
        spans=(),
        timing="words",
        dropped_metadata=(),
        audio=AudioOutcome(status="redacted", mode="beep", replaced_original=False),
    )
    done = await _complete(console, store, job, _call(), redaction=record)
    beeped = b"RIFF-the-beeped-copy" * 100
    await store.put_bytes(redacted_audio_key(done.object_key), beeped, "audio/wav")
    status, body, headers = await browser.call("GET", path, headers={"Range": "bytes=4-23"})
    assert (status, body) == (206, beeped[4:24])
    assert headers["Content-Type"] == "audio/wav"
    assert headers["Content-Range"] == f"bytes 4-23/{len(beeped)}"


async def test_speaker_names_are_stored_shown_and_applied(
    console: Api, upstream: Upstream, store: S3BlobStore
) -> None:
    raw, key = await make_key(console.pool)
    job = await _job(console, upstream, raw)
    await _complete(console, store, job, _call())
    supervisor = await _viewer(console, key.id, role="supervisor")
    path = f"/api/media/{job}/speakers"
    names = {"Speaker A": "  Mr  Smith ", "Speaker B": "Mrs Jones"}
    status, body, _ = await supervisor.call("PUT", path, json={"names": names})
    assert status == 200, body
    assert body == {
        "audio_file_id": job,
        "speaker_names": {"Speaker A": "Mr Smith", "Speaker B": "Mrs Jones"},
    }

    status, status_body, _ = await supervisor.call("GET", f"/api/media/status/{job}")
    assert status_body["metadata"]["speaker_names"] == body["speaker_names"]
    _, txt, _ = await supervisor.call("GET", f"/api/media/transcript/{job}.txt")
    assert txt.decode() == (
        "Mr Smith: Hello, how can I help?\nMrs Jones: My card was charged twice.\n"
        "Mr Smith: Let me look.\n"
    )
    _, srt, _ = await supervisor.call("GET", f"/api/media/transcript/{job}.srt")
    assert "Mrs Jones: My card was charged twice." in srt.decode()
    assert "Speaker B" not in srt.decode()
    _, vtt, _ = await supervisor.call("GET", f"/api/media/transcript/{job}.vtt")
    assert "<v Mrs Jones>My card was charged twice." in vtt.decode()
    # The JSON keeps the labels and gains the map.
    _, document, _ = await supervisor.call("GET", f"/api/media/transcript/{job}.json")
    assert [u["speaker"] for u in document["utterances"]] == ["Speaker A", "Speaker B", "Speaker A"]
    assert document["speaker_names"] == body["speaker_names"]
    msgspec.convert(document, Transcript)  # still a transcript

    # Bad labels and names, nothing stored.
    for bad, code in (
        ({"Speaker Z": "Nobody"}, "invalid_speaker"),
        ({"Speaker A": ""}, "invalid_speaker_name"),
        ({"Speaker A": "x" * 65}, "invalid_speaker_name"),
        ({"Speaker A": "Mr\x00Smith"}, "invalid_speaker_name"),
        ({"Speaker A": "Mr\u202eSmith"}, "invalid_speaker_name"),
    ):
        status, err, _ = await supervisor.call("PUT", path, json={"names": bad})
        assert (status, err["error"]) == (400, code), bad
    status, err, _ = await supervisor.call("PUT", path, json={"nams": {}})
    assert (status, err["error"]) == (400, "invalid_json")
    status, err, _ = await supervisor.call(
        "PUT", path, data=b"\xff", headers={"Content-Type": "application/json"}
    )
    assert (status, err["error"]) == (400, "invalid_json")
    _, status_body, _ = await supervisor.call("GET", f"/api/media/status/{job}")
    assert status_body["metadata"]["speaker_names"] == body["speaker_names"]

    # A viewer may not rename; another tenant sees no such job.
    viewer = await _viewer(console, key.id)
    status, err, _ = await viewer.call("PUT", path, json={"names": {}})
    assert (status, err["error"]) == (403, "insufficient_role")
    _, other = await make_key(console.pool)
    outsider = await _viewer(console, other.id, role="admin")
    assert (await outsider.call("PUT", path, json={"names": {}}))[0] == 404

    # {} removes them; the stored objects were never rewritten.
    status, _, _ = await supervisor.call("PUT", path, json={"names": {}})
    assert status == 200
    _, txt, _ = await supervisor.call("GET", f"/api/media/transcript/{job}.txt")
    assert txt.decode().startswith("Speaker A: Hello")
    _, status_body, _ = await supervisor.call("GET", f"/api/media/status/{job}")
    assert "speaker_names" not in status_body["metadata"]


async def test_names_go_with_the_job(console: Api, upstream: Upstream, store: S3BlobStore) -> None:
    raw, _ = await make_key(console.pool)
    job = await _job(console, upstream, raw)
    await _complete(console, store, job, _call())
    status, _, _ = await console.request(
        "PUT", f"/api/media/{job}/speakers", key=raw, json={"names": {"Speaker B": "Mrs Jones"}}
    )
    assert status == 200
    assert (await console.request("DELETE", f"/api/media/{job}", key=raw))[0] in (200, 202)
    left = await console.pool.fetchval(
        "SELECT count(*) FROM media_pipeline.speaker_names WHERE audio_file_id = $1",
        uuid.UUID(job),
    )
    assert left == 0
    status, err, _ = await console.request(
        "PUT", f"/api/media/{job}/speakers", key=raw, json={"names": {}}
    )
    assert (status, err["error"]) == (409, "job_deleted")


async def test_a_player_that_goes_away_is_not_an_outage(
    console: Api, upstream: Upstream, store: S3BlobStore
) -> None:
    """A seek makes the browser drop the request it no longer needs: the server's next write
    fails with a reset connection, which is the client leaving, not Postgres or S3 down."""
    raw, _ = await make_key(console.pool)
    job = await _job(console, upstream, raw)
    object_key = await console.pool.fetchval(
        "SELECT b2_object_key FROM media_pipeline.audio_files WHERE id = $1", uuid.UUID(job)
    )
    # Far more than the sockets' buffers hold, so the server is still writing when we leave.
    await store.put_bytes(object_key, b"\0" * (48 << 20), "audio/wav")
    host, port = console.base_url.split("://", 1)[1].split(":")
    with capture_logs() as logs:
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            f"GET /api/media/{job}/audio HTTP/1.1\r\nHost: {host}\r\nX-API-Key: {raw}\r\n\r\n".encode()
        )
        await writer.drain()
        assert (await reader.readline()).startswith(b"HTTP/1.1 200")
        await reader.readexactly(1 << 16)
        # Close with RST (SO_LINGER 0), as a browser aborting a fetch may.
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.close()

        async def served() -> list[dict[str, object]]:
            return [
                e for e in logs if e.get("event") == "http_request" and job in str(e.get("path"))
            ]

        [line] = await eventually(served, timeout=60)
    assert line["status"] == 200, line
    assert not [e for e in logs if str(e.get("event", "")).startswith("dependency_")], logs
    assert [e for e in logs if e.get("event") == "audio_client_gone"]
