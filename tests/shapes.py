"""Checking a real JSON answer against the body Struct /openapi.json documents it with."""

from __future__ import annotations

from typing import Any

import msgspec


def conforms(body: Any, shape: type[msgspec.Struct]) -> None:
    """The body converts into the Struct and back to the very same JSON: no undocumented field,
    no missing one, no wrong type."""
    typed = msgspec.convert(body, shape)
    assert msgspec.to_builtins(typed) == body
