"""/openapi.json documents what webhook receivers get: every body Struct of libs.webhooks.payload
is a schema, and every pinned body (tests/golden/webhook_*.json) is valid against the schema of
its `type` (OpenAPI 3.0 rules: `nullable`, `required`, enums)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest
from jsonschema import validators
from openapi_schema_validator import OAS30Validator
from openapi_spec_validator import validate

from libs.settings import Settings
from libs.webhooks import payload
from services.ingest import openapi
from services.ingest.app import create_app

GOLDEN = Path(__file__).parents[2] / "golden"
REF = "#/components/schemas/{}"


def _nullable_all_of(validator: Any, all_of: Any, instance: Any, schema: Any) -> Any:
    """`{allOf: [$ref], nullable: true}` (how the document writes an optional Struct, as
    generators read it): null is valid. A strict reading of OpenAPI 3.0.3 would refuse it."""
    if instance is None and schema.get("nullable") is True:
        return
    yield from OAS30Validator.VALIDATORS["allOf"](validator, all_of, instance, schema)


Validator = validators.extend(OAS30Validator, {"allOf": _nullable_all_of})


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    document = openapi.build(create_app(Settings()))
    validate(document)
    return document


def test_every_webhook_body_is_a_schema_of_type_timestamp_and_data(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    for body in payload.WEBHOOKS:
        schema = schemas[body.__name__]
        assert list(schema["properties"]) == ["type", "timestamp", "data"], body.__name__
        assert schema["properties"]["type"]["enum"] == [body.__struct_config__.tag]
        assert schema["properties"]["timestamp"]["format"] == "date-time"
        data = schema["properties"]["data"]["$ref"].rsplit("/", 1)[1]
        assert data in schemas and schema["required"] == ["type", "timestamp", "data"]


def test_only_conversation_and_redaction_may_be_absent(spec: dict[str, Any]) -> None:
    completed = spec["components"]["schemas"]["TranscriptionCompletedData"]
    absent = set(completed["properties"]) - set(completed["required"])
    assert absent == {"conversation", "redaction"}
    assert completed["properties"]["transcript"]["nullable"] is True
    for name in (
        "TranscriptionFailedData",
        "TranscriptionDeletedData",
        "TranscriptionProgressData",
    ):
        schema = spec["components"]["schemas"][name]
        assert set(schema["properties"]) == set(schema["required"]), name


@pytest.mark.parametrize("golden", sorted(GOLDEN.glob("webhook_*.json")), ids=lambda p: p.name)
def test_every_pinned_body_is_valid_against_its_documented_schema(
    spec: dict[str, Any], golden: Path
) -> None:
    body = msgspec.json.decode(golden.read_bytes())
    name = {b.__struct_config__.tag: b.__name__ for b in payload.WEBHOOKS}[body["type"]]
    root = {"$ref": REF.format(name), "components": spec["components"]}
    Validator(root).validate(body)  # raises on a missing key, a wrong type or a stray null


def test_a_body_that_breaks_the_schema_is_refused(spec: dict[str, Any]) -> None:
    body = msgspec.json.decode((GOLDEN / "webhook_failed_v1.json").read_bytes())
    root = {"$ref": REF.format("TranscriptionFailedWebhook"), "components": spec["components"]}
    del body["data"]["phone"]
    assert not Validator(root).is_valid(body)
    body = msgspec.json.decode((GOLDEN / "webhook_completed_v1.json").read_bytes())
    root = {"$ref": REF.format("TranscriptionCompletedWebhook"), "components": spec["components"]}
    body["data"]["duration"] = None
    assert not Validator(root).is_valid(body)
