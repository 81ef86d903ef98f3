"""/openapi.json is produced from the route tables and body Structs: every route of the real app
is documented there (dead letters and webhooks included), and enums come from the code."""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web
from openapi_spec_validator import validate

from libs.settings import Settings
from services.ingest import bodies, openapi
from services.ingest.app import create_app
from services.ingest.form import TEXT_FIELDS
from services.ingest.routes.jobs import FORMATS
from services.ingest.submission import MODELS, TIMESTAMPS


def _spec() -> tuple[web.Application, dict[str, Any]]:
    app = create_app(Settings())
    return app, openapi.build(app)


def test_every_registered_route_is_documented_by_its_route_table() -> None:
    app, spec = _spec()
    validate(spec)
    assert openapi.undocumented(app) == []
    seen = set()
    for route in app.router.routes():
        if route.resource is None or route.method == "HEAD":
            continue
        path, method = route.resource.canonical, route.method.lower()
        op = spec["paths"][path][method]
        assert op["summary"] and op["operationId"], (path, method)
        assert "default" not in op["responses"], (path, method)  # not the docstring fallback
        seen.add((path, method))
    assert {
        ("/api/ops/dead-letters", "get"),
        ("/api/ops/dead-letters/{dead_letter_id}", "get"),
        ("/api/ops/dead-letters/{dead_letter_id}/requeue", "post"),
        ("/api/webhooks/endpoint", "put"),
    } <= seen
    ids = [op["operationId"] for ops in spec["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids))


def test_authenticated_routes_document_the_common_errors_with_the_error_body() -> None:
    _, spec = _spec()
    error_ref = "#/components/schemas/ErrorBody"
    for path, ops in spec["paths"].items():
        for op in ops.values():
            if op.get("security") == []:
                continue
            for code in ("401", "429", "503"):
                content = op["responses"][code]["content"]["application/json"]
                assert content["schema"]["$ref"] == error_ref, (path, code)
    assert spec["components"]["schemas"]["ErrorBody"]["required"] == ["error", "detail"]


def test_schemas_are_the_body_structs_and_enums_come_from_the_code() -> None:
    _, spec = _spec()
    schemas = spec["components"]["schemas"]
    submit = spec["paths"]["/api/media/transcribe"]["post"]
    form = submit["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"]
    assert set(form["properties"]) == set(TEXT_FIELDS) == set(bodies.SubmitFields.__struct_fields__)
    assert form["properties"]["model"]["enum"] == sorted(MODELS)
    assert form["properties"]["timestamps"]["enum"] == sorted(TIMESTAMPS)
    multipart = submit["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert multipart["properties"]["file"] == {"type": "string", "format": "binary"}
    ok = submit["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/Accepted"}
    # The reference shape is required; what a replay may add (callback_url_ignored, detail) is not.
    assert schemas["Accepted"]["required"] == ["audio_file_id", "status", "b2_key", "b2_url"]
    assert set(schemas["Accepted"]["properties"]) == set(bodies.Accepted.__struct_fields__)
    fmt = spec["paths"]["/api/media/transcript/{audio_file_id}.{fmt}"]["get"]["parameters"][1]
    assert fmt["schema"]["enum"] == sorted(FORMATS)
    dead = spec["paths"]["/api/ops/dead-letters"]["get"]["responses"]["200"]
    assert dead["content"]["application/json"]["schema"]["$ref"].endswith("/DeadLetters")
    # OpenAPI 3.0 has no null type and no $defs: nullable fields say so.
    text = msgspec.json.encode(spec).decode()
    assert '"type":"null"' not in text and "$defs" not in text
    assert schemas["Status"]["properties"]["transcript"] == {"type": "string", "nullable": True}


def test_handlers_answer_with_the_documented_structs() -> None:
    accepted = bodies.Accepted(audio_file_id="a", status="QUEUED", b2_key="k", b2_url="u")
    assert msgspec.to_builtins(accepted) == {
        "audio_file_id": "a",
        "status": "QUEUED",
        "b2_key": "k",
        "b2_url": "u",
    }
    endpoint = bodies.Endpoint(
        webhook_url=None,
        signed=False,
        secret_rotation_in_progress=False,
        enabled=False,
        disabled_at=None,
        disabled_reason=None,
        failing_since=None,
        consecutive_failures=0,
        progress=False,
    )
    assert "webhook_secret" not in msgspec.to_builtins(endpoint)  # unset: left out


def test_submit_documents_the_idempotent_replayed_header_and_the_422() -> None:
    _, spec = _spec()
    responses = spec["paths"]["/api/media/transcribe"]["post"]["responses"]
    assert "Idempotent-Replayed" in responses["200"]["headers"]
    assert "idempotency_key_reused" in responses["422"]["description"]
