"""Who may call what with a console session: the ONE table mapping each route (method and
route template, `*` matching any characters) to the lowest level that may call it, and the
CSRF check of cookie-authenticated requests.

Levels (libs.users.roles): viewer < supervisor < admin < operator (an operator user with the
admin role). A viewer lists, reads, searches and listens; a supervisor also uploads, reruns,
deletes, renames speakers and edits categories; an admin also manages webhooks, notifications
and users; an operator admin also sees and requeues dead letters. A route no row names needs
`admin` (fail closed). The first matching row wins.

API keys are not limited by this table (X-API-Key requests behave as they always did: a key is
the admin of its tenant, the bootstrap key the operator)."""

from __future__ import annotations

from fnmatch import fnmatchcase
from urllib.parse import urlsplit

from aiohttp import web

from libs.errors import Forbidden
from libs.users import sessions
from libs.users.roles import Level, allows

DEFAULT_LEVEL: Level = "admin"

# (method, route template glob, lowest level). HEAD is checked as GET.
ROUTE_LEVELS: tuple[tuple[str, str, Level], ...] = (
    # the session itself: anyone logged in
    ("GET", "/api/session", "viewer"),
    ("DELETE", "/api/session", "viewer"),
    # calls: read, list, search, listen
    ("GET", "/api/media/jobs", "viewer"),
    ("GET", "/api/media/status/{audio_file_id}", "viewer"),
    ("GET", "/api/media/transcript/{audio_file_id}", "viewer"),
    ("GET", "/api/media/transcript/{audio_file_id}.{fmt}", "viewer"),
    ("GET", "/api/media/search", "viewer"),
    ("GET", "/api/media/{audio_file_id}/search", "viewer"),
    ("GET", "/api/media/{audio_file_id}/audio", "viewer"),
    ("GET", "/api/media/insights/*", "viewer"),
    # calls: upload, rerun, delete, rename speakers
    ("POST", "/api/media/transcribe", "supervisor"),
    ("POST", "/api/media/rerun/{audio_file_id}", "supervisor"),
    ("DELETE", "/api/media/{audio_file_id}", "supervisor"),
    ("PUT", "/api/media/{audio_file_id}/speakers", "supervisor"),
    # categories: read as a viewer, edit and apply as a supervisor
    ("GET", "/api/categories*", "viewer"),
    ("PUT", "/api/categories*", "supervisor"),
    ("POST", "/api/categories*", "supervisor"),
    ("DELETE", "/api/categories*", "supervisor"),
    # insights templates: read as a viewer, change as an admin
    ("GET", "/api/insights/template*", "viewer"),
    ("PUT", "/api/insights/template*", "admin"),
    ("DELETE", "/api/insights/template*", "admin"),
    # administration
    ("*", "/api/notifications*", "admin"),
    ("*", "/api/webhooks/*", "admin"),
    ("*", "/api/users*", "admin"),
    # operator admins only
    ("*", "/api/ops/*", "operator"),
)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "X-CSRF-Token"


def required(method: str, template: str) -> Level:
    """The lowest level that may call `method` on the route `template` (admin when no row
    names it)."""
    method = "GET" if method == "HEAD" else method
    for row_method, pattern, level in ROUTE_LEVELS:
        if row_method in ("*", method) and fnmatchcase(template, pattern):
            return level
    return DEFAULT_LEVEL


def template_of(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource else request.path


def check_level(request: web.Request, level: Level) -> None:
    need = required(request.method, template_of(request))
    if not allows(level, need):
        raise Forbidden(f"this needs the {need} role; you are {level}", code="insufficient_role")


def _origin(url: str) -> tuple[str, str, int] | None:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return parts.scheme, parts.hostname.lower(), port or (443 if parts.scheme == "https" else 80)


def origin_allowed(request: web.Request, public_base_url: str) -> bool:
    """The request's Origin (or, without one, its Referer) is the gateway's: PUBLIC_BASE_URL's
    origin or the origin the request itself was sent to. Neither header: refused."""
    sent = request.headers.get("Origin") or request.headers.get("Referer")
    if not sent:
        return False
    theirs = _origin(sent)
    if theirs is None:
        return False
    ours = {_origin(public_base_url), _origin(f"{request.scheme}://{request.host}")}
    return theirs in ours


def check_origin(request: web.Request, public_base_url: str) -> None:
    if not origin_allowed(request, public_base_url):
        raise Forbidden("the request's Origin is not this gateway's", code="csrf_failed")


def check_csrf(request: web.Request, token: str, public_base_url: str) -> None:
    """A state-changing request authenticated by the session cookie carries the session's
    X-CSRF-Token and comes from the gateway's own origin; else 403 `csrf_failed`."""
    if request.method in SAFE_METHODS:
        return
    sent = request.headers.get(CSRF_HEADER, "")
    if not sent or not sessions.csrf_matches(token, sent):
        raise Forbidden(f"send the session's {CSRF_HEADER} header", code="csrf_failed")
    check_origin(request, public_base_url)
