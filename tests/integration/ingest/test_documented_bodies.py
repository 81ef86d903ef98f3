"""Real answers have the documented shapes: each converts into the body Struct that
/openapi.json takes its schema from, and back to the very same JSON (no undocumented field,
no missing one, no wrong type)."""

from __future__ import annotations

import uuid

import pytest

from services.ingest import bodies
from tests.integration.ingest.conftest import Api, Upstream, unique_prefix
from tests.shapes import conforms

pytestmark = pytest.mark.integration


async def _documented(api: Api, path: str, method: str, status: int) -> str:
    _, spec, _ = await api.request("GET", "/openapi.json", key=None)
    content = spec["paths"][path][method]["responses"][str(status)]["content"]
    ref: str = content["application/json"]["schema"]["$ref"]
    return ref.rsplit("/", 1)[1]


async def test_submit_status_and_errors_answer_the_documented_bodies(
    api: Api, upstream: Upstream
) -> None:
    status, body, _ = await api.submit(
        {"url": f"{upstream.url}/audio/{uuid.uuid4().hex}.wav", "b2_prefix": unique_prefix()}
    )
    assert status == 200
    conforms(body, bodies.Accepted)
    assert await _documented(api, "/api/media/transcribe", "post", 200) == "Accepted"
    file_id = body["audio_file_id"]

    status, body, _ = await api.request("GET", f"/api/media/status/{file_id}")
    assert status == 200 and body["status"] == "pending"
    conforms(body, bodies.Status)
    assert await _documented(api, "/api/media/status/{audio_file_id}", "get", 200) == "Status"

    # Completed, with a transcript and its keys.
    await api.pool.execute(
        "INSERT INTO media_pipeline.transcriptions (audio_file_id, model, engine, text, "
        "duration_seconds, b2_transcript_json_key, b2_transcript_txt_key) "
        "VALUES ($1, 'offline', 'offline', 'hi', 1.5, 'j', 't')",
        uuid.UUID(file_id),
    )
    await api.pool.execute(
        "UPDATE media_pipeline.audio_files SET status = 'completed' WHERE id = $1",
        uuid.UUID(file_id),
    )
    status, body, _ = await api.request("GET", f"/api/media/status/{file_id}")
    assert status == 200 and body["status"] == "completed"
    conforms(body, bodies.Status)

    status, body, _ = await api.request("POST", f"/api/media/rerun/{file_id}")
    assert status == 200
    conforms(body, bodies.Requeued)

    for method, path, expected in [
        ("GET", f"/api/media/status/{uuid.uuid4()}", 404),
        ("POST", f"/api/media/rerun/{file_id}?force=perhaps", 400),
    ]:
        status, body, _ = await api.request(method, path)
        assert status == expected, body
        conforms(body, bodies.ErrorBody)
    status, body, _ = await api.submit({"url": "http://example.com/a.wav", "model": "gpt-5"})
    assert status == 400 and body["error"] == "invalid_model"
    conforms(body, bodies.ErrorBody)


async def test_failed_status_answers_the_documented_body(api: Api, upstream: Upstream) -> None:
    status, body, _ = await api.submit(
        {"url": f"{upstream.url}/audio/{uuid.uuid4().hex}.wav", "b2_prefix": unique_prefix()}
    )
    file_id = uuid.UUID(body["audio_file_id"])
    await api.pool.execute(
        "UPDATE media_pipeline.audio_files SET status = 'failed' WHERE id = $1", file_id
    )
    await api.pool.execute(
        "INSERT INTO media_pipeline.transcription_failures (audio_file_id, status, error_code, "
        "error) VALUES ($1, 'permanent', 'invalid_media', 'not decodable')",
        file_id,
    )
    status, body, _ = await api.request("GET", f"/api/media/status/{file_id}")
    assert status == 200 and body["status"] == "failed"
    conforms(body, bodies.Status)


async def test_health_answers_the_documented_bodies(api: Api) -> None:
    status, body, _ = await api.request("GET", "/healthz", key=None)
    assert status == 200
    conforms(body, bodies.Alive)
    status, body, _ = await api.request("GET", "/readyz", key=None)
    assert status in (200, 503)
    conforms(body, bodies.Readiness)
