"""The console's session: log in, who am I, log out.

    POST   /api/session   {"email", "password"} -> the user and the CSRF token; sets the cookie
    GET    /api/session   the session's user and CSRF token (401 without a live session)
    DELETE /api/session   logout: the session ends on the server; the cookie is cleared

The cookie `tg_session` is HttpOnly, SameSite=Strict, Path=/ and Secure when PUBLIC_BASE_URL
is https; it holds a random token whose sha256 alone is stored (libs/users/sessions.py).
Every login opens a new session, and ends the one the request's cookie named, if any."""

from __future__ import annotations

from datetime import timedelta

from aiohttp import web

from libs import apikeys
from libs.errors import Unauthenticated
from libs.users import sessions
from libs.users.login import LoginPolicy, login
from libs.users.sessions import Session
from services.ingest import access, bodies, console_bodies
from services.ingest.console_bodies import SessionBody, SessionUser
from services.ingest.context import (
    POOL,
    PRINCIPAL,
    SESSION_COOKIE,
    SETTINGS,
    now,
    session_key,
)
from services.ingest.openapi import HEADER_ERRORS, ApiRoutes, Reply

ROUTES = ApiRoutes("session")
HEADERS = f"a header the API reads: {HEADER_ERRORS}"
UNAVAILABLE = "Postgres unavailable, or the process is overloaded; retry after Retry-After"
NO_STORE = {"Cache-Control": "no-store"}


def _secure(request: web.Request) -> bool:
    return request.app[SETTINGS].public_base_url.lower().startswith("https://")


def _body(session_user: SessionUser, token: str) -> SessionBody:
    return SessionBody(user=session_user, csrf_token=sessions.csrf_token(token))


def _user(session: Session, key: apikeys.ApiKey) -> SessionUser:
    return SessionUser(
        id=str(session.user_id),
        email=session.email,
        role=session.role,
        tenant="" if session.operator else key.tenant_prefix,
        operator=session.operator,
    )


@ROUTES.post(
    "/api/session",
    operation_id="login",
    summary="Log in to the console: sets the session cookie tg_session",
    json=console_bodies.Login,
    authenticated=False,
    responses={
        200: Reply(
            "logged in (a new session); the cookie is set",
            SessionBody,
            headers={"Set-Cookie": "tg_session=<token>; HttpOnly; SameSite=Strict; Path=/"},
        ),
        400: "the body is not the JSON object {email, password} (`invalid_json`), or " + HEADERS,
        401: "`invalid_credentials`: the same for an unknown e-mail, a wrong password, a "
        "disabled user and a user whose key was revoked",
        403: "`csrf_failed`: an Origin header that is not this gateway's",
        415: "not application/json",
        429: "too many failed logins for this account or from this address; see Retry-After",
        503: UNAVAILABLE,
    },
)
async def post_session(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    if "Origin" in request.headers:
        access.check_origin(request, settings.public_base_url)
    credentials = await console_bodies.read_json(request, console_bodies.Login)
    pool, at = request.app[POOL], now(request)
    previous = request.cookies.get(SESSION_COOKIE)
    if previous:
        await sessions.end(pool, previous, now=at)
    logged = await login(
        pool,
        credentials.email,
        credentials.password,
        address=request.remote or "",
        now=at,
        policy=LoginPolicy(
            session_lifetime=timedelta(hours=settings.console_session_hours),
            attempts=settings.console_login_attempts,
            window=timedelta(minutes=settings.console_login_window_minutes),
        ),
    )
    user = logged.user
    body = _body(
        SessionUser(
            id=user.id, email=user.email, role=user.role, tenant=user.tenant, operator=user.operator
        ),
        logged.token,
    )
    response = bodies.answer(body, headers=NO_STORE)
    response.set_cookie(
        SESSION_COOKIE,
        logged.token,
        httponly=True,
        samesite="Strict",
        path="/",
        secure=_secure(request),
    )
    return response


@ROUTES.get(
    "/api/session",
    operation_id="getSession",
    summary="The console session's user and its CSRF token",
    authenticated=False,
    responses={
        200: Reply("the live session", SessionBody),
        400: HEADERS,
        401: "no session cookie (`no_session`), or the session ended (`session_expired`)",
        503: UNAVAILABLE,
    },
)
async def get_session(request: web.Request) -> web.Response:
    token = request.cookies.get(SESSION_COOKIE, "")
    if not token:
        raise Unauthenticated("log in first: POST /api/session", code="no_session")
    key = await session_key(request, token)
    session = request[PRINCIPAL].session
    assert session is not None
    return bodies.answer(_body(_user(session, key), token), headers=NO_STORE)


@ROUTES.delete(
    "/api/session",
    operation_id="logout",
    summary="Log out: the session ends on the server and the cookie is cleared",
    authenticated=False,
    responses={
        204: Reply("logged out (also without a live session)"),
        400: HEADERS,
        403: "`csrf_failed`: X-CSRF-Token missing or wrong, or a foreign Origin",
        503: UNAVAILABLE,
    },
)
async def delete_session(request: web.Request) -> web.Response:
    token = request.cookies.get(SESSION_COOKIE, "")
    if token:
        access.check_csrf(request, token, request.app[SETTINGS].public_base_url)
        await sessions.end(request.app[POOL], token, now=now(request))
    response = web.Response(status=204, headers=NO_STORE)
    response.del_cookie(
        SESSION_COOKIE, path="/", secure=_secure(request), httponly=True, samesite="Strict"
    )
    return response


def register(app: web.Application) -> None:
    ROUTES.register(app)
