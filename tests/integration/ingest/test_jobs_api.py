"""Status, rerun and transcript downloads: shapes, tenant isolation and their 4xx."""

from __future__ import annotations

import json
import uuid

import pytest

from libs.contracts import AudioStored
from tests.integration.ingest.conftest import Api, Upstream, make_key, unique_prefix

pytestmark = pytest.mark.integration


async def _job(api: Api, upstream: Upstream, key: str | None = None) -> str:
    data = {"url": f"{upstream.url}/audio/{uuid.uuid4().hex}.wav"}
    if key is None:
        status, body, _ = await api.submit(data | {"b2_prefix": unique_prefix()})
    else:
        status, body, _ = await api.submit(data, key=key)
    assert status == 200, body
    return str(body["audio_file_id"])


async def _set_status(api: Api, file_id: str, status: str) -> None:
    await api.pool.execute(
        "UPDATE media_pipeline.audio_files SET status = $2 WHERE id = $1",
        uuid.UUID(file_id),
        status,
    )


async def _forced_events(api: Api, file_id: str) -> list[AudioStored]:
    import msgspec

    rows = await api.pool.fetch(
        "SELECT payload FROM media_pipeline.outbox WHERE convert_from(payload, 'UTF8') LIKE $1",
        f"%{file_id}%",
    )
    events = [msgspec.json.decode(r["payload"], type=AudioStored) for r in rows]
    return [e for e in events if e.force]


async def test_status_of_a_new_job_is_pending(api: Api, upstream: Upstream) -> None:
    file_id = await _job(api, upstream)
    await _set_status(api, file_id, "queued")
    status, body, _ = await api.request("GET", f"/api/media/status/{file_id}")
    assert status == 200
    assert body["status"] == "pending"
    assert body["transcript"] is None
    assert body["metadata"]["audio_file_id"] == file_id


async def test_status_of_a_failed_job_carries_the_error(api: Api, upstream: Upstream) -> None:
    file_id = await _job(api, upstream)
    await _set_status(api, file_id, "failed")
    await api.pool.execute(
        "INSERT INTO media_pipeline.transcription_failures (audio_file_id, status, error_code, "
        "error) VALUES ($1, 'permanent', 'invalid_media', 'not decodable')",
        uuid.UUID(file_id),
    )
    status, body, _ = await api.request("GET", f"/api/media/status/{file_id}")
    assert status == 200
    assert body["status"] == "failed"
    assert body["metadata"]["error"]["code"] == "invalid_media"


@pytest.mark.parametrize("path", ["status/{id}", "transcript/{id}.txt"])
async def test_unknown_or_malformed_job_is_404(api: Api, path: str) -> None:
    for job in (str(uuid.uuid4()), "not-a-uuid"):
        status, body, _ = await api.request("GET", "/api/media/" + path.format(id=job))
        assert status == 404, body
    status, _, _ = await api.request("POST", f"/api/media/rerun/{uuid.uuid4()}")
    assert status == 404


async def test_a_key_sees_only_its_own_jobs(api: Api, upstream: Upstream) -> None:
    raw, _ = await make_key(api.pool, tenant_prefix=unique_prefix())
    mine = await _job(api, upstream, key=raw)
    theirs = await _job(api, upstream)
    assert (await api.request("GET", f"/api/media/status/{mine}", key=raw))[0] == 200
    for method, path in [
        ("GET", f"/api/media/status/{theirs}"),
        ("POST", f"/api/media/rerun/{theirs}"),
        ("GET", f"/api/media/transcript/{theirs}.json"),
    ]:
        status, _, _ = await api.request(method, path, key=raw)
        assert status == 404, path
    # The operator's bootstrap key (and operator console users) reads every tenant's jobs, as
    # search does; writes stay with the owning key.
    assert (await api.request("GET", f"/api/media/status/{mine}"))[0] == 200
    status, listed, _ = await api.request("GET", "/api/media/jobs?limit=200")
    assert status == 200
    assert mine in {job["metadata"]["audio_file_id"] for job in listed["jobs"]}
    assert (await api.request("POST", f"/api/media/rerun/{mine}"))[0] == 404


async def test_failed_job_can_be_rerun_once(api: Api, upstream: Upstream) -> None:
    file_id = await _job(api, upstream)
    await _set_status(api, file_id, "failed")
    await api.pool.execute(
        "INSERT INTO media_pipeline.transcription_failures (audio_file_id, status, error_code, "
        "error) VALUES ($1, 'permanent', 'x', 'y')",
        uuid.UUID(file_id),
    )
    status, body, _ = await api.request("POST", f"/api/media/rerun/{file_id}")
    assert status == 200, body
    assert body == {"audio_file_id": file_id, "status": "QUEUED"}
    assert len(await _forced_events(api, file_id)) == 1
    row = await api.pool.fetchrow(
        "SELECT a.status, f.audio_file_id AS failure FROM media_pipeline.audio_files a "
        "LEFT JOIN media_pipeline.transcription_failures f ON f.audio_file_id = a.id "
        "WHERE a.id = $1",
        uuid.UUID(file_id),
    )
    assert row["status"] == "queued" and row["failure"] is None
    # A second rerun while the first is still queued does not queue another transcription.
    status, body, _ = await api.request("POST", f"/api/media/rerun/{file_id}")
    assert status == 409, body
    assert body["error"] == "job_active"
    assert len(await _forced_events(api, file_id)) == 1


async def test_completed_job_rerun_and_running_job_needs_force(
    api: Api, upstream: Upstream
) -> None:
    file_id = await _job(api, upstream)
    await _set_status(api, file_id, "processing")
    status, body, _ = await api.request("POST", f"/api/media/rerun/{file_id}")
    assert status == 409, body
    assert await _forced_events(api, file_id) == []
    status, body, _ = await api.request("POST", f"/api/media/rerun/{file_id}?force=true")
    assert status == 200, body
    assert len(await _forced_events(api, file_id)) == 1
    await _set_status(api, file_id, "completed")
    assert (await api.request("POST", f"/api/media/rerun/{file_id}"))[0] == 200
    assert len(await _forced_events(api, file_id)) == 2


async def test_transcript_of_a_pending_job_is_409_and_bad_format_400(
    api: Api, upstream: Upstream
) -> None:
    file_id = await _job(api, upstream)
    await _set_status(api, file_id, "queued")
    status, body, _ = await api.request("GET", f"/api/media/transcript/{file_id}.txt")
    assert status == 409, body
    assert body["error"] == "not_completed"
    status, body, _ = await api.request("GET", f"/api/media/transcript/{file_id}.pdf")
    assert status == 400, body
    status, body, _ = await api.request("GET", f"/api/media/transcript/{file_id}?format=doc")
    assert status == 400, body


async def test_transcript_downloads_in_every_format(api: Api, upstream: Upstream) -> None:
    from libs.blobstore import S3BlobStore

    file_id = await _job(api, upstream)
    keys = {fmt: f"t/transcriptions/{fmt}/{file_id}.{fmt}" for fmt in ("json", "txt", "srt", "vtt")}
    bodies = {
        "json": json.dumps({"text": "hi"}).encode(),
        "txt": b"hi\n",
        "srt": b"1\n00:00:00,000 --> 00:00:01,000\nhi\n",
        "vtt": b"WEBVTT\n\n00:00.000 --> 00:01.000\nhi\n",
    }
    async with S3BlobStore.open(api.settings.require_s3()) as store:
        for fmt, key in keys.items():
            await store.put_bytes(key, bodies[fmt], "text/plain")
    await api.pool.execute(
        "INSERT INTO media_pipeline.transcriptions (audio_file_id, model, engine, text, "
        "b2_transcript_json_key, b2_transcript_txt_key, b2_transcript_srt_key, "
        "b2_transcript_vtt_key) VALUES ($1, 'offline', 'offline', 'hi', $2, $3, $4, $5)",
        uuid.UUID(file_id),
        keys["json"],
        keys["txt"],
        keys["srt"],
        keys["vtt"],
    )
    await _set_status(api, file_id, "completed")
    for fmt, expected in bodies.items():
        async with api.session.get(
            f"{api.base_url}/api/media/transcript/{file_id}.{fmt}",
            headers={"X-API-Key": "test-bootstrap-key"},
        ) as resp:
            assert resp.status == 200
            assert await resp.read() == expected
    status, body, _ = await api.request("GET", f"/api/media/status/{file_id}")
    assert status == 200
    assert body["status"] == "completed"
    assert body["transcript"] == "hi"
    assert body["metadata"]["b2_transcript_json_key"] == keys["json"]
    assert body["metadata"]["b2_transcript_txt_key"] == keys["txt"]
