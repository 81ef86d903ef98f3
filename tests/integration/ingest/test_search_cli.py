"""`transcribe search` as a user runs it (subprocesses) against the real ingest app: JSON lines
paged with --all; `search reindex` indexing completed jobs the index does not hold from their
stored transcripts; `search config`. And paging across the relevance windows."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from pathlib import Path

import pytest

from libs.blobstore import S3BlobStore
from libs.jobs import lifecycle
from libs.layout import transcript_keys
from libs.search import query
from libs.transcript import Transcript
from libs.transcript.model import Utterance
from libs.transcript.render import FORMATS
from tests.integration.ingest.conftest import Api, Upstream, make_key

pytestmark = pytest.mark.integration

TRANSCRIBE = str(Path(sys.executable).parent / "transcribe")


async def _cli(api: Api, key: str | None, *args: str) -> tuple[int, str, str]:
    s3 = api.settings.require_s3()
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": "/tmp",
        "TRANSCRIBE_API_URL": api.base_url,
        "DATABASE_URL": api.settings.require_database_url(),
        "BACKBLAZE_B2_S3_ENDPOINT": s3.endpoint,
        "BACKBLAZE_B2_BUCKET": s3.bucket,
        "BACKBLAZE_B2_KEY_ID": s3.access_key,
        "BACKBLAZE_B2_APPLICATION_KEY": s3.secret_key,
        "BACKBLAZE_B2_REGION": s3.region,
    }
    if key is not None:
        env["TRANSCRIBE_API_KEY"] = key
    proc = await asyncio.create_subprocess_exec(
        TRANSCRIBE,
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def _call(role: str, text: str) -> Transcript:
    turn = Utterance(speaker="Channel 1", role=role, channel=1, start=1.0, end=3.0, text=text)
    return Transcript(
        text=text, language="en", duration=5.0, model="m", engine="e", utterances=(turn,)
    )


async def _job(api: Api, upstream: Upstream, key: str) -> str:
    url = f"{upstream.url}/audio/{uuid.uuid4().hex}.wav"
    status, body, _ = await api.submit({"url": url, "campaign": "Spring"}, key=key)
    assert status == 200, body
    return str(body["audio_file_id"])


async def _complete(api: Api, file_id: str, transcript: Transcript, *, upload: bool) -> None:
    job = await lifecycle.load_job(api.pool, file_id)
    assert job is not None and await lifecycle.mark_processing(api.pool, job, force=False)
    keys = transcript_keys(job.object_key, campaign=job.campaign_name, prefix=job.transcript_prefix)
    if upload:
        async with S3BlobStore.open(api.settings.require_s3()) as store:
            for fmt, (render, content_type, _ext) in FORMATS.items():
                await store.put_bytes(getattr(keys, fmt), render(transcript), content_type)
    assert await lifecycle.complete(api.pool, job, transcript, keys, force=False, trace_id=None)


async def test_search_prints_a_json_line_per_call_through_every_page(
    api: Api, upstream: Upstream
) -> None:
    raw, _ = await make_key(api.pool)
    token = f"zq{uuid.uuid4().hex[:8]}"
    ids = [await _job(api, upstream, raw) for _ in range(3)]
    for job in ids:
        await _complete(
            api, job, _call("customer", f"cancel my subscription {token}"), upload=False
        )
    code, out, err = await _cli(
        api,
        raw,
        "search",
        f'"subscription {token}"',
        "--role",
        "customer",
        "--since",
        "7d",
        "--limit",
        "2",
        "--all",
    )
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert sorted(h["audio_file_id"] for h in lines) == sorted(ids)
    assert lines[0]["matches"][0]["highlights"]
    code, out, err = await _cli(api, raw, "search", token, "--role", "agent")
    assert (code, out) == (0, "")
    code, out, err = await _cli(api, raw, "search", token, "--min-talk-ratio", "2")
    assert code == 1 and "invalid_min_talk_ratio" in err


async def test_reindex_indexes_what_completed_before_the_index(
    api: Api, upstream: Upstream
) -> None:
    raw, _ = await make_key(api.pool)
    token = f"zq{uuid.uuid4().hex[:8]}"
    job = await _job(api, upstream, raw)
    await _complete(api, job, _call("agent", f"we can offer a refund {token}"), upload=True)
    # As if completed before the index existed.
    await api.pool.execute(
        "DELETE FROM media_pipeline.search_utterances WHERE audio_file_id = $1", uuid.UUID(job)
    )
    await api.pool.execute(
        "DELETE FROM media_pipeline.search_calls WHERE audio_file_id = $1", uuid.UUID(job)
    )
    code, out, err = await _cli(api, raw, "search", token)
    assert (code, out) == (0, "")
    status, body, _ = await api.request("GET", f"/api/media/{job}/search?q={token}", key=raw)
    assert (status, body["error"]) == (409, "not_indexed")

    code, out, err = await _cli(api, None, "search", "reindex", "--batch", "2")
    assert code == 0, err
    assert json.loads(out.splitlines()[-1])["done"]["indexed"] >= 1
    code, out, err = await _cli(api, raw, "search", token, "--role", "agent")
    assert code == 0, err
    [hit] = [json.loads(line) for line in out.splitlines()]
    assert hit["audio_file_id"] == job
    # Run again: nothing left to do for this job.
    code, out, err = await _cli(api, None, "search", "reindex")
    assert code == 0, err
    rows = await api.pool.fetchval(
        "SELECT count(*) FROM media_pipeline.search_utterances WHERE audio_file_id = $1",
        uuid.UUID(job),
    )
    assert rows == 1


async def test_config_sets_a_keys_configuration(api: Api) -> None:
    _, key = await make_key(api.pool)
    code, _, err = await _cli(api, None, "search", "config", key.key_hint, "simple")
    assert code == 0, err
    stored = await api.pool.fetchval(
        "SELECT config::text FROM media_pipeline.search_key_configs WHERE api_key_id = $1",
        uuid.UUID(key.id),
    )
    assert stored == "simple"
    code, _, err = await _cli(api, None, "search", "config", key.key_hint, "klingon")
    assert code == 2 and "config must be one of" in err
    code, _, err = await _cli(api, None, "search", "config", key.key_hint, "--clear")
    assert code == 0, err


async def test_paging_across_relevance_windows_returns_every_call_once(
    api: Api, upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With windows of 3 matches: every call once, the first page ranked within the newest
    window, and a call completed meanwhile shifts nothing."""
    monkeypatch.setattr(query, "RANK_WINDOW", 3)
    raw, _ = await make_key(api.pool)
    token = f"zq{uuid.uuid4().hex[:8]}"
    ids = [await _job(api, upstream, raw) for _ in range(7)]
    for n, job in enumerate(ids):
        # The oldest call says it three times (the best rank), outside the newest window.
        words = " ".join([token] * (3 if n == 0 else 1))
        await _complete(api, job, _call("customer", f"about {words}"), upload=False)

    async def pages(**extra: str) -> list[list[str]]:
        out, cursor = [], None
        while True:
            params = {"q": token, "limit": "2", **extra} | ({"cursor": cursor} if cursor else {})
            qs = "&".join(f"{k}={v}" for k, v in params.items())
            status, body, _ = await api.request("GET", f"/api/media/search?{qs}", key=raw)
            assert status == 200, body
            out.append([h["audio_file_id"] for h in body["hits"]])
            cursor = body["next_cursor"]
            if cursor is None:
                return out
            if len(out) == 2:  # a call completes while the client pages
                late = await _job(api, upstream, raw)
                await _complete(api, late, _call("customer", f"late {token}"), upload=False)

    seen = await pages()
    flat = [job for page in seen for job in page]
    assert sorted(flat) == sorted(ids)  # each call once; the late one (newest) is not on a page
    # Window 1 = the newest 3 matches, whose oldest call opens window 2: ranked within it.
    assert flat[:2] == [ids[6], ids[5]]
    assert ids[0] in flat[2:]
