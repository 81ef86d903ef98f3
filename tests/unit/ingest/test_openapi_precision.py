"""The OpenAPI document is precise: every parameter of every route has a type (ids `uuid` or
integer, times `date-time`, flags boolean, URLs `uri`), every documented response has a schema,
every error an authenticated route documents is the ErrorBody, and POST /api/media/transcribe
requires exactly one of recording_id / url / file in both encodings (`oneOf`)."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import combinations
from typing import Any

import pytest
from openapi_spec_validator import validate

from libs.settings import Settings
from services.ingest import openapi
from services.ingest.app import create_app

ERROR_REF = "#/components/schemas/ErrorBody"
TIMES = {"since", "until"}
FLAGS = {"force", "open"}
URLS = {"url"}


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    document = openapi.build(create_app(Settings()))
    validate(document)
    return document


def _operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            yield path, method, op


def test_every_parameter_has_a_type_and_the_format_of_its_kind(spec: dict[str, Any]) -> None:
    seen: set[str] = set()
    for path, method, op in _operations(spec):
        for param in op.get("parameters", []):
            where = (method, path, param["name"])
            schema = param["schema"]
            assert schema.get("type") in {"string", "integer", "number", "boolean"}, where
            name = param["name"]
            seen.add(name)
            if name.endswith("_id"):
                # Job ids are UUIDs; dead-letter and delivery ids are numbers.
                assert schema in (
                    {"type": "string", "format": "uuid"},
                    {"type": "integer"},
                ), where
                if name == "audio_file_id":
                    assert schema["format"] == "uuid", where
            if name in TIMES:
                assert schema == {"type": "string", "format": "date-time"}, where
            if name in FLAGS:
                assert schema == {"type": "boolean"}, where
            if name in URLS:
                assert schema == {"type": "string", "format": "uri"}, where
            if param["in"] == "path":
                assert param["required"] is True, where
                assert "{" + name + "}" in path, where
    assert {"audio_file_id", "dead_letter_id", "delivery_id", "since", "force", "open"} <= seen


def test_every_documented_response_has_a_schema(spec: dict[str, Any]) -> None:
    for path, method, op in _operations(spec):
        assert op["responses"], (method, path)
        for code, response in op["responses"].items():
            where = (method, path, code)
            assert code != "default", where
            assert response["description"], where
            content = response.get("content")
            if code == "204":  # No Content, by definition (DELETE /api/session)
                assert content is None, where
                continue
            assert content, where
            for media in content.values():
                assert media.get("schema"), where


def test_every_error_of_an_authenticated_route_is_the_error_body(spec: dict[str, Any]) -> None:
    for path, method, op in _operations(spec):
        if op.get("security") == []:
            continue
        codes = {int(code) for code in op["responses"]}
        assert {401, 429, 503} <= codes, (method, path)
        for code, response in op["responses"].items():
            if int(code) < 400:
                continue
            assert response["content"] == {"application/json": {"schema": {"$ref": ERROR_REF}}}
        # A route reading a path id answers 404 for an unknown (or malformed) one; a route
        # reading query parameters or a body documents 400.
        if "{" in path:
            assert 404 in codes, (method, path)
        if any(p["in"] == "query" for p in op.get("parameters", [])):
            assert 400 in codes, (method, path)


def test_the_dead_letter_and_webhook_routes_are_documented(spec: dict[str, Any]) -> None:
    paths = set(spec["paths"])
    assert {
        "/api/ops/dead-letters",
        "/api/ops/dead-letters/{dead_letter_id}",
        "/api/ops/dead-letters/{dead_letter_id}/requeue",
        "/api/webhooks/deliveries",
        "/api/webhooks/test",
    } <= paths


def _holds(one_of: list[dict[str, Any]], fields: set[str]) -> int:
    return sum(set(alt["required"]) <= fields for alt in one_of)


@pytest.mark.parametrize(
    ("media", "sources"),
    [
        ("application/x-www-form-urlencoded", ("recording_id", "url")),
        ("multipart/form-data", ("recording_id", "url", "file")),
    ],
)
def test_submit_requires_exactly_one_source(
    spec: dict[str, Any], media: str, sources: tuple[str, ...]
) -> None:
    body = spec["paths"]["/api/media/transcribe"]["post"]["requestBody"]
    schema = body["content"][media]["schema"]
    assert body["required"] is True
    one_of = schema["oneOf"]
    assert [alt["required"] for alt in one_of] == [[s] for s in sources]
    for name in sources:
        assert name in schema["properties"]
    # oneOf semantics: valid exactly when exactly one alternative holds.
    assert _holds(one_of, {"b2_prefix"}) == 0
    for source in sources:
        assert _holds(one_of, {source, "b2_prefix", "callback_url"}) == 1
    for pair in combinations(sources, 2):
        assert _holds(one_of, set(pair)) == 2


def test_body_fields_are_typed_by_kind(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    for name, schema in schemas.items():
        for field, prop in schema.get("properties", {}).items():
            where = f"{name}.{field}"
            if field.endswith("_at") or field in {"at", "failing_since"}:
                assert prop.get("format") == "date-time", where
            if field in {"audio_file_id", "webhook_id"}:
                assert prop.get("format") == "uuid", where
            if field.endswith("_url") or field == "url":
                assert prop.get("format") == "uri", where
            if field in {"signed", "enabled", "permanent", "secret_rotation_in_progress"}:
                assert prop.get("type") == "boolean", where


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/api/webhooks/recover"),
        ("post", "/api/webhooks/test"),
        ("put", "/api/webhooks/endpoint"),
    ],
)
def test_webhook_posts_document_their_parameters_as_a_body_too(
    spec: dict[str, Any], method: str, path: str
) -> None:
    op = spec["paths"][path][method]
    body = op["requestBody"]
    assert body["required"] is False
    query = {p["name"]: p["schema"] for p in op["parameters"] if p["in"] == "query"}
    for media in ("application/json", "application/x-www-form-urlencoded"):
        assert body["content"][media]["schema"] == {"type": "object", "properties": query}
