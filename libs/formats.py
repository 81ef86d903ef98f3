"""String formats of JSON values in typed records whose JSON Schema is published (the ingest
API's OpenAPI document): the value stays a `str` on the wire, its schema says what it holds."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

DateTime = Annotated[str, msgspec.Meta(extra_json_schema={"format": "date-time"})]
Uuid = Annotated[str, msgspec.Meta(extra_json_schema={"format": "uuid"})]
Uri = Annotated[str, msgspec.Meta(extra_json_schema={"format": "uri"})]


def described(description: str) -> Any:
    """The description of a field in the published schema."""
    return msgspec.Meta(description=description)
