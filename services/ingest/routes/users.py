"""Console users over the API (admins only; services/ingest/access.py):

    GET   /api/users                  the tenant's users (an operator: every user)
    POST  /api/users                  {email, role, password?, key?, operator?}
    PATCH /api/users/{user_id}        {role?, disabled?}  (disabling ends their sessions;
                                      not your own: 409 own_account)
    POST  /api/users/{user_id}/password  {password?}      (ends their sessions)

A tenant admin (a key, or an admin user of its tenant) manages its own tenant's users: 404 for
anyone else's, 403 for `key`/`operator` on creation. The operator (the bootstrap key, or an
operator admin user) manages every user, and says whose a new user is (`key` id or hint, or
`operator`). A password left out is generated and answered once."""

from __future__ import annotations

import uuid

from aiohttp import web

from libs import apikeys, params
from libs.errors import Conflict, Forbidden, InvalidInput, NotFound
from libs.users import accounts, passwords
from services.ingest import bodies, console_bodies
from services.ingest.context import POOL, PRINCIPAL, authenticate, now
from services.ingest.openapi import UUID, ApiRoutes, Reply, in_path

ROUTES = ApiRoutes("users")
USER_ID = in_path("user_id", "the user", UUID)
NO_SUCH_USER = "no such user for this admin"


def _scope(request: web.Request, key: apikeys.ApiKey) -> uuid.UUID | None:
    """Whose users the caller manages: its key's (None: every user, for the operator)."""
    return None if request[PRINCIPAL].operator else uuid.UUID(key.id)


async def _target(request: web.Request, key: apikeys.ApiKey) -> accounts.User:
    user_id = params.path_uuid(request.match_info["user_id"], "user")
    user = await accounts.get(request.app[POOL], user_id)
    scope = _scope(request, key)
    if user is None or (scope is not None and user.key_id != str(scope)):
        raise NotFound("no such user")
    return user


@ROUTES.get(
    "/api/users",
    operation_id="listUsers",
    summary="Console users: the tenant's (an operator: every user)",
    responses={200: Reply("the users", console_bodies.UserList), 403: "not an admin"},
)
async def list_users(request: web.Request) -> web.Response:
    key = await authenticate(request)
    users = await accounts.list_users(request.app[POOL], _scope(request, key))
    return bodies.answer(console_bodies.UserList(users=users))


@ROUTES.post(
    "/api/users",
    operation_id="createUser",
    summary="Create a console user (a password left out is generated and answered once)",
    json=console_bodies.NewUser,
    responses={
        200: Reply("the user", console_bodies.CreatedUser),
        400: "bad body (`invalid_json`), e-mail (`invalid_email`), password "
        "(`invalid_password`: 10-1024 characters, no control characters) or key (`invalid_key`)",
        403: "not an admin, or a tenant admin asking for another key or an operator user",
        409: "a user with this e-mail exists (`email_taken`)",
        415: "not application/json",
    },
)
async def post_user(request: web.Request) -> web.Response:
    key = await authenticate(request)
    body = await console_bodies.read_json(request, console_bodies.NewUser)
    pool = request.app[POOL]
    operator = request[PRINCIPAL].operator
    if not operator and (body.key is not None or body.operator):
        raise Forbidden("a tenant admin creates users of their own tenant only")
    owner: uuid.UUID | None = uuid.UUID(key.id)
    if operator:
        if body.operator == (body.key is not None):
            raise InvalidInput(
                "give exactly one of key (id or hint) or operator", code="invalid_key"
            )
        if body.key is not None:
            found = await apikeys.find(pool, body.key)
            if found is None:
                raise InvalidInput("no active key with that id or hint", code="invalid_key")
            owner = uuid.UUID(found.id)
        else:
            owner = None
    generated = body.password is None
    password = passwords.generate() if body.password is None else body.password
    async with pool.acquire() as conn:
        user = await accounts.create(
            conn,
            email=body.email,
            password=password,
            role=body.role,
            api_key_id=owner,
            operator=owner is None,
            now=now(request),
        )
    return bodies.answer(
        console_bodies.CreatedUser(user=user, password=password if generated else None),
        headers={"Cache-Control": "no-store"},
    )


@ROUTES.patch(
    "/api/users/{user_id}",
    operation_id="changeUser",
    summary="Change a user's role, or disable (ending their sessions) or enable them",
    params=[USER_ID],
    json=console_bodies.UserChange,
    responses={
        200: Reply("the user", accounts.User),
        400: "bad body (`invalid_json`)",
        403: "not an admin",
        404: NO_SUCH_USER,
        409: "`own_account`: disabling yourself or changing your own role",
        415: "not application/json",
    },
)
async def patch_user(request: web.Request) -> web.Response:
    key = await authenticate(request)
    user = await _target(request, key)
    body = await console_bodies.read_json(request, console_bodies.UserChange)
    _not_a_lockout(request, user, body)
    pool = request.app[POOL]
    async with pool.acquire() as conn:
        await accounts.update(
            conn, uuid.UUID(user.id), role=body.role, disabled=body.disabled, now=now(request)
        )
    changed = await accounts.get(pool, uuid.UUID(user.id))
    assert changed is not None
    return bodies.answer(changed)


def _not_a_lockout(
    request: web.Request, user: accounts.User, body: console_bodies.UserChange
) -> None:
    """A user may not disable themselves or change their own role: it would end or cut the
    session doing it, and could leave the tenant (or the operator) without an admin."""
    session = request[PRINCIPAL].session
    if session is None or str(session.user_id) != user.id:
        return
    if body.disabled or (body.role is not None and body.role != user.role):
        raise Conflict(
            "you cannot disable yourself or change your own role; another admin can",
            code="own_account",
        )


@ROUTES.post(
    "/api/users/{user_id}/password",
    operation_id="setUserPassword",
    summary="Set a user's password (generated and answered once when left out); every session "
    "of theirs ends",
    params=[USER_ID],
    json=console_bodies.PasswordChange,
    responses={
        200: Reply("set", console_bodies.PasswordSet),
        400: "bad body (`invalid_json`) or password (`invalid_password`)",
        403: "not an admin",
        404: NO_SUCH_USER,
        415: "not application/json",
    },
)
async def post_password(request: web.Request) -> web.Response:
    key = await authenticate(request)
    user = await _target(request, key)
    body = await console_bodies.read_json(request, console_bodies.PasswordChange)
    generated = body.password is None
    password = passwords.generate() if body.password is None else body.password
    async with request.app[POOL].acquire() as conn:
        await accounts.set_password(conn, uuid.UUID(user.id), password, now=now(request))
    return bodies.answer(
        console_bodies.PasswordSet(user_id=user.id, password=password if generated else None),
        headers={"Cache-Control": "no-store"},
    )


def register(app: web.Application) -> None:
    ROUTES.register(app)
