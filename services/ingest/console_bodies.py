"""The JSON bodies of the console's routes (session, users, speakers), as msgspec Structs like
services/ingest/bodies.py, so /openapi.json takes their schema from the types the handlers
read and answer; `read_json` decodes a request body into one of them."""

from __future__ import annotations

from typing import Annotated, TypeVar

import msgspec
from aiohttp import web

from libs.errors import InvalidInput, UnsupportedMedia
from libs.formats import Uuid
from libs.params import check_json_keys
from libs.users.accounts import User as User
from libs.users.roles import Role
from services.ingest import request_body

T = TypeVar("T")
# More than any of these bodies holds (a password is at most 4096 characters).
MAX_BODY_BYTES = 64 * 1024


async def read_json(request: web.Request, body_type: type[T]) -> T:
    """The request's JSON body as `body_type`: 415 for another content type, 400
    `invalid_json` for anything that does not decode into it (the reason named)."""
    if request.content_type != "application/json":
        raise UnsupportedMedia("send the body as application/json", code="unsupported_media")
    raw = await request_body.read(request, limit=MAX_BODY_BYTES)
    try:
        body = msgspec.json.decode(raw, type=body_type)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise InvalidInput(f"the body is not valid: {exc}", code="invalid_json") from exc
    check_json_keys(raw)
    return body


class Login(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """POST /api/session: a console user's credentials."""

    email: Annotated[str, msgspec.Meta(max_length=320)]
    password: Annotated[str, msgspec.Meta(max_length=4096)]


class SessionUser(msgspec.Struct, frozen=True, kw_only=True):
    """The logged-in user: `tenant` is their key's tenant prefix ('' for an operator user)."""

    id: Uuid
    email: str
    role: Role
    tenant: str
    operator: bool


class SessionBody(msgspec.Struct, frozen=True, kw_only=True):
    """The session: its user, and the token every state-changing request sends as
    X-CSRF-Token."""

    user: SessionUser
    csrf_token: str


class UserList(msgspec.Struct, frozen=True, kw_only=True):
    """Console users (a tenant admin sees their tenant's, an operator every one)."""

    users: list[User]


class NewUser(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """POST /api/users. Without `password` one is generated and answered once. `key` (a key
    id or hint) and `operator` are for operator admins: a tenant admin's users join their own
    tenant."""

    email: Annotated[str, msgspec.Meta(max_length=320)]
    role: Role
    password: Annotated[str, msgspec.Meta(max_length=4096)] | None = None
    key: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    operator: bool = False


class CreatedUser(msgspec.Struct, frozen=True, kw_only=True):
    """The new user; `password` only when it was generated (shown this once)."""

    user: User
    password: str | None = None


class UserChange(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """PATCH /api/users/{id}: a new role, and/or disable (ends their sessions) or enable."""

    role: Role | None = None
    disabled: bool | None = None


class PasswordChange(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """POST /api/users/{id}/password: the new password, or none to have one generated (answered
    once). Every session of the user ends."""

    password: Annotated[str, msgspec.Meta(max_length=4096)] | None = None


class PasswordSet(msgspec.Struct, frozen=True, kw_only=True):
    """The password was set; `password` only when it was generated (shown this once)."""

    user_id: Uuid
    password: str | None = None


class SpeakerNames(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """PUT /api/media/{audio_file_id}/speakers: speaker label ("Speaker A", "Channel 0") or
    role ("agent") -> name, 1-64 characters; replaces the job's names ({} removes them)."""

    names: dict[str, Annotated[str, msgspec.Meta(max_length=256)]]


class Speakers(msgspec.Struct, frozen=True, kw_only=True):
    """The job's speaker names as stored (trimmed)."""

    audio_file_id: Uuid
    speaker_names: dict[str, str]
