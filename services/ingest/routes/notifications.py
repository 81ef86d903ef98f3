"""Notification rules (docs/notifications.md): a key sees and changes its own rules only (404
otherwise); the bootstrap (operator) key sees every rule.

    GET    /api/notifications                       the rules
    POST   /api/notifications                       JSON NewRule -> 201 the rule
    GET    /api/notifications/{rule_id}             one rule
    DELETE /api/notifications/{rule_id}             remove it (200 {id, removed})
    POST   /api/notifications/{rule_id}/test        a test message now
    POST   /api/notifications/{rule_id}/enable      enable again (after Slack disabled it)
    GET    /api/notifications/deliveries[?rule_id=] the messages sent, with every attempt
    POST   /api/notifications/deliveries/{id}/resend  send a message again
"""

from __future__ import annotations

import uuid

import msgspec
from aiohttp import web

from libs.errors import InvalidInput
from libs.formats import Uuid
from libs.notifications import items, rules
from libs.params import check_json_keys, parse_uuid, path_int_id, path_uuid
from libs.webhooks import admin
from services.ingest import bodies, request_body
from services.ingest.context import POOL, SETTINGS, authenticate, tenant_scope
from services.ingest.openapi import UUID, ApiRoutes, Reply, in_path, in_query

ROUTES = ApiRoutes("notifications")
RULE_ID = in_path("rule_id", "the rule's id", UUID)
DELIVERY_ID = in_path("delivery_id", "delivery id from the list", {"type": "integer"})
NO_SUCH_RULE = "no such rule for this key"
MAX_BODY = 64 * 1024
LIST_LIMIT = 200


class NotificationRules(msgspec.Struct):
    rules: list[rules.Rule]


class NotificationRemoved(msgspec.Struct):
    id: Uuid
    removed: bool


class NotificationDeliveries(msgspec.Struct):
    """Notification messages, newest first, each with every attempt."""

    deliveries: list[admin.Delivery]


_new_rule_decoder = msgspec.json.Decoder(rules.NewRule)


def _rule_id(request: web.Request) -> uuid.UUID:
    return path_uuid(request.match_info["rule_id"], "rule")


async def _new_rule(request: web.Request) -> rules.NewRule:
    if request.content_type != "application/json":
        raise InvalidInput("send the rule as a JSON object", code="invalid_json")
    raw = await request_body.read(request, limit=MAX_BODY, what="a rule")
    try:
        rule = _new_rule_decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise InvalidInput(f"the rule is not valid: {exc}", code="invalid_rule") from exc
    except msgspec.DecodeError as exc:
        raise InvalidInput("the body is not a JSON object", code="invalid_json") from exc
    check_json_keys(raw, "the rule")
    return rule.checked(request.app[SETTINGS].ssrf_allowlist)


@ROUTES.get(
    "/api/notifications",
    summary="The key's notification rules (the bootstrap key: every rule)",
    responses={200: Reply("the rules", NotificationRules)},
)
async def list_notification_rules(request: web.Request) -> web.Response:
    key = await authenticate(request)
    found = await rules.list_(request.app[POOL], tenant_scope(key))
    return bodies.answer(NotificationRules(rules=found))


@ROUTES.post(
    "/api/notifications",
    summary="Create a rule: which events (failed, dead_lettered, completed, category:<name>, "
    "outcome:<value>) notify a Slack incoming webhook or e-mail addresses",
    json=rules.NewRule,
    responses={
        201: Reply("the rule", rules.Rule),
        400: "an unknown event, no or two targets, a refused URL, an invalid address, "
        "or a body that is not a JSON rule",
        409: "the key has too many rules",
        413: "the body is too large",
    },
)
async def create_notification_rule(request: web.Request) -> web.Response:
    key = await authenticate(request)
    new = await _new_rule(request)
    rule = await rules.create(request.app[POOL], uuid.UUID(key.id), new)
    return bodies.answer(rule, status=201)


@ROUTES.get(
    "/api/notifications/deliveries",
    summary="Notification messages sent (Slack, e-mail), newest first, with every attempt",
    params=[in_query("rule_id", "only this rule's", UUID)],
    responses={
        200: Reply("the messages", NotificationDeliveries),
        400: "rule_id is not a uuid",
        404: NO_SUCH_RULE,
    },
)
async def list_notification_deliveries(request: web.Request) -> web.Response:
    key = await authenticate(request)
    pool, scope = request.app[POOL], tenant_scope(key)
    rule_id = parse_uuid(request.query.get("rule_id"), "rule_id", required=False)
    if rule_id is not None:
        await rules.get(pool, rule_id, scope)
    found = await admin.list_notifications(pool, admin.Scope(scope), rule_id, LIST_LIMIT)
    return bodies.answer(NotificationDeliveries(deliveries=found))


@ROUTES.post(
    "/api/notifications/deliveries/{delivery_id}/resend",
    summary="Send a notification message again now (same content, a fresh retry schedule)",
    params=[DELIVERY_ID],
    responses={202: Reply("queued", bodies.Resending), 404: "no such delivery for this key"},
)
async def resend_notification(request: web.Request) -> web.Response:
    key = await authenticate(request)
    pool = request.app[POOL]
    delivery_id = path_int_id(request.match_info["delivery_id"], "delivery")
    scope = admin.Scope(tenant_scope(key))
    delivery = await admin.get(pool, scope, delivery_id)
    if not delivery.event_type.startswith("notification."):
        raise admin.NotFound("no such notification delivery")
    await admin.resend(pool, scope, delivery_id)
    return bodies.answer(bodies.Resending(id=delivery_id, status="pending"), status=202)


@ROUTES.get(
    "/api/notifications/{rule_id}",
    summary="One notification rule",
    params=[RULE_ID],
    responses={200: Reply("the rule", rules.Rule), 404: NO_SUCH_RULE},
)
async def get_notification_rule(request: web.Request) -> web.Response:
    key = await authenticate(request)
    rule = await rules.get(request.app[POOL], _rule_id(request), tenant_scope(key))
    return bodies.answer(rule)


@ROUTES.delete(
    "/api/notifications/{rule_id}",
    summary="Remove a rule (what it still had queued is dropped; its sent messages stay listed)",
    params=[RULE_ID],
    responses={200: Reply("removed", NotificationRemoved), 404: NO_SUCH_RULE},
)
async def delete_notification_rule(request: web.Request) -> web.Response:
    key = await authenticate(request)
    rule_id = _rule_id(request)
    await rules.delete(request.app[POOL], rule_id, tenant_scope(key))
    return bodies.answer(NotificationRemoved(id=str(rule_id), removed=True))


@ROUTES.post(
    "/api/notifications/{rule_id}/test",
    summary="Send the rule a test message now (outside its storm interval)",
    params=[RULE_ID],
    responses={202: Reply("the test message, queued", admin.Delivery), 404: NO_SUCH_RULE},
)
async def test_notification_rule(request: web.Request) -> web.Response:
    key = await authenticate(request)
    pool, scope = request.app[POOL], tenant_scope(key)
    rule_id = _rule_id(request)
    await rules.get(pool, rule_id, scope)
    base = request.app[SETTINGS].public_base_url
    delivery_id = await items.queue_test(pool, rule_id, public_base_url=base)
    return bodies.answer(await admin.get(pool, admin.Scope(scope), delivery_id), status=202)


@ROUTES.post(
    "/api/notifications/{rule_id}/enable",
    summary="Enable a rule again (after Slack's answer disabled it)",
    params=[RULE_ID],
    responses={200: Reply("the rule", rules.Rule), 404: NO_SUCH_RULE},
)
async def enable_notification_rule(request: web.Request) -> web.Response:
    key = await authenticate(request)
    pool, scope = request.app[POOL], tenant_scope(key)
    rule_id = _rule_id(request)
    await rules.enable(pool, rule_id, scope)
    return bodies.answer(await rules.get(pool, rule_id, scope))


def register(app: web.Application) -> None:
    ROUTES.register(app)


# This module's part of /openapi.json, {path: {method: operation}}.
OPENAPI = ROUTES.paths()
