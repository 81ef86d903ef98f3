"""The role table (services/ingest/access.py) and the Range parser (byteranges.py): pure."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web

from services.ingest import access, byteranges
from services.ingest.byteranges import ByteRange
from services.ingest.routes import ROUTE_MODULES

DOC = Path(__file__).parents[3] / "docs" / "console-api.md"


@pytest.mark.parametrize(
    ("method", "route", "level"),
    [
        ("GET", "/api/media/jobs", "viewer"),
        ("HEAD", "/api/media/{audio_file_id}/audio", "viewer"),
        ("DELETE", "/api/media/{audio_file_id}", "supervisor"),
        ("PUT", "/api/media/{audio_file_id}/speakers", "supervisor"),
        ("GET", "/api/categories", "viewer"),
        ("PUT", "/api/categories/{name}", "supervisor"),
        ("POST", "/api/categories/{name}/apply", "supervisor"),
        ("GET", "/api/insights/template", "viewer"),
        ("PUT", "/api/insights/template/{campaign}", "admin"),
        ("GET", "/api/media/insights/{audio_file_id}", "viewer"),
        ("GET", "/api/notifications/rules", "admin"),
        ("GET", "/api/webhooks/endpoint", "admin"),
        ("PATCH", "/api/users/{user_id}", "admin"),
        ("POST", "/api/ops/dead-letters/{dead_letter_id}/requeue", "operator"),
        # Not in the table: admin.
        ("GET", "/api/something/new", "admin"),
        ("POST", "/api/media/search", "admin"),
    ],
)
def test_each_route_has_its_level(method: str, route: str, level: str) -> None:
    assert access.required(method, route) == level


def test_the_documented_table_is_the_table() -> None:
    text = DOC.read_text()
    for method, route, level in access.ROUTE_LEVELS:
        assert f"| `{method}` | `{route}` | {level} |" in text


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        (None, 100, None),
        ("bytes=0-9", 100, ByteRange(0, 9)),
        ("bytes=90-", 100, ByteRange(90, 99)),
        ("bytes=-10", 100, ByteRange(90, 99)),
        ("bytes=-1000", 100, ByteRange(0, 99)),
        ("bytes=50-5000", 100, ByteRange(50, 99)),
        ("BYTES = 1-2", 100, ByteRange(1, 2)),
        ("bytes=0-1,5-6", 100, None),
        ("bytes=9-3", 100, None),
        ("bytes=abc", 100, None),
        ("bytes=+1-2", 100, None),
        ("bytes=\u0661-2", 100, None),
        ("bytes=" + "9" * 30 + "-", 100, None),
        ("items=0-1", 100, None),
        ("bytes", 100, None),
    ],
)
def test_ranges(header: str | None, size: int, expected: ByteRange | None) -> None:
    assert byteranges.parse(header, size) == expected


@pytest.mark.parametrize(
    ("header", "size"), [("bytes=100-", 100), ("bytes=-0", 100), ("bytes=0-", 0)]
)
def test_unsatisfiable(header: str, size: int) -> None:
    with pytest.raises(byteranges.Unsatisfiable):
        byteranges.parse(header, size)


# Every /api route registered and the lowest level a console user needs for it (GET/DELETE
# /api/session aside: anyone logged in). A route added later fails the test below until its
# level is looked at here (unnamed, it needs admin; is that right for it?).
REGISTERED_LEVELS = {
    ("GET", "/api/categories"): "viewer",
    ("DELETE", "/api/categories/{name}"): "supervisor",
    ("GET", "/api/categories/{name}"): "viewer",
    ("PUT", "/api/categories/{name}"): "supervisor",
    ("POST", "/api/categories/{name}/apply"): "supervisor",
    ("PUT", "/api/insights/enabled"): "operator",
    ("DELETE", "/api/insights/template"): "admin",
    ("GET", "/api/insights/template"): "viewer",
    ("PUT", "/api/insights/template"): "admin",
    ("GET", "/api/media/insights/{audio_file_id}"): "viewer",
    ("GET", "/api/media/jobs"): "viewer",
    ("POST", "/api/media/rerun/{audio_file_id}"): "supervisor",
    ("GET", "/api/media/search"): "viewer",
    ("GET", "/api/media/status/{audio_file_id}"): "viewer",
    ("POST", "/api/media/transcribe"): "supervisor",
    ("GET", "/api/media/transcript/{audio_file_id}"): "viewer",
    ("GET", "/api/media/transcript/{audio_file_id}.{fmt}"): "viewer",
    ("DELETE", "/api/media/{audio_file_id}"): "supervisor",
    ("GET", "/api/media/{audio_file_id}/audio"): "viewer",
    ("GET", "/api/media/{audio_file_id}/search"): "viewer",
    ("PUT", "/api/media/{audio_file_id}/speakers"): "supervisor",
    ("GET", "/api/notifications"): "admin",
    ("POST", "/api/notifications"): "admin",
    ("GET", "/api/notifications/deliveries"): "admin",
    ("POST", "/api/notifications/deliveries/{delivery_id}/resend"): "admin",
    ("DELETE", "/api/notifications/{rule_id}"): "admin",
    ("GET", "/api/notifications/{rule_id}"): "admin",
    ("POST", "/api/notifications/{rule_id}/enable"): "admin",
    ("POST", "/api/notifications/{rule_id}/test"): "admin",
    ("GET", "/api/ops/dead-letters"): "operator",
    ("GET", "/api/ops/dead-letters/{dead_letter_id}"): "operator",
    ("POST", "/api/ops/dead-letters/{dead_letter_id}/requeue"): "operator",
    ("GET", "/api/users"): "admin",
    ("POST", "/api/users"): "admin",
    ("PATCH", "/api/users/{user_id}"): "admin",
    ("POST", "/api/users/{user_id}/password"): "admin",
    ("GET", "/api/webhooks/deliveries"): "admin",
    ("GET", "/api/webhooks/deliveries/{delivery_id}"): "admin",
    ("POST", "/api/webhooks/deliveries/{delivery_id}/resend"): "admin",
    ("GET", "/api/webhooks/endpoint"): "admin",
    ("PUT", "/api/webhooks/endpoint"): "admin",
    ("POST", "/api/webhooks/endpoint/enable"): "admin",
    ("POST", "/api/webhooks/endpoint/finish-rotation"): "admin",
    ("PUT", "/api/webhooks/endpoint/progress"): "admin",
    ("POST", "/api/webhooks/endpoint/rotate-secret"): "admin",
    ("POST", "/api/webhooks/recover"): "admin",
    ("POST", "/api/webhooks/test"): "admin",
}


def test_every_registered_route_has_the_level_reviewed_for_it() -> None:
    app = web.Application()
    for module in ROUTE_MODULES:
        module.register(app)
    found = {
        (route.method, route.resource.canonical): access.required(
            route.method, route.resource.canonical
        )
        for route in app.router.routes()
        if route.resource is not None
        and route.method != "HEAD"
        and route.resource.canonical.startswith("/api/")
        and route.resource.canonical != "/api/session"
    }
    assert found == REGISTERED_LEVELS
