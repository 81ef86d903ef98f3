"""Webhook delivery API: a key sees and acts on its own deliveries only (404 otherwise).

    GET  /api/webhooks/deliveries?audio_file_id=<id>    deliveries of a job, with attempts
    GET  /api/webhooks/deliveries/{delivery_id}          one delivery, with attempts
    POST /api/webhooks/deliveries/{delivery_id}/resend   a new round now (same webhook-id)
    POST /api/webhooks/recover   since=<ISO 8601>[&until=] every failed delivery since a time
    POST /api/webhooks/test      [url=...][&wait=seconds] a signed `webhook.test` event
    GET  /api/webhooks/endpoint                          the key's endpoint and its health
    POST /api/webhooks/endpoint/enable                   re-enable after 410 / auto-disable
    PUT  /api/webhooks/endpoint  url=...                 set the key's default webhook URL
    POST /api/webhooks/endpoint/rotate-secret            new secret; both sign until finished
    POST /api/webhooks/endpoint/finish-rotation          stop signing with the old secret
    PUT  /api/webhooks/endpoint/progress?enabled=true    opt in to transcription.progress

Parameters of POST routes come from the query string, a form or a JSON object.
"""

from __future__ import annotations

import asyncio
import uuid

import msgspec
from aiohttp import web

from libs.errors import InvalidInput
from libs.params import parse_bool, parse_seconds, parse_time, parse_uuid, path_int_id
from libs.webhooks import admin
from services.ingest import bodies, edge, request_body
from services.ingest.context import POOL, SETTINGS, authenticate
from services.ingest.form import parse_submit_form
from services.ingest.openapi import DATE_TIME, URI, UUID, ApiRoutes, Reply, in_path, in_query

# "Send a test event" waits this long by default for the first attempt's answer: longer than
# the notifier's POST timeout, so a slow receiver still gets a verdict.
TEST_WAIT_DEFAULT = 20.0
TEST_WAIT_MAX = 30.0

ROUTES = ApiRoutes("webhooks")
# A JSON body of these routes holds a URL and a few words.
MAX_JSON_BODY = 64 * 1024
DELIVERY_ID = in_path("delivery_id", "delivery id from the delivery list", {"type": "integer"})
NO_SUCH_DELIVERY = "no such delivery for this key"
ENDPOINT_STATE = "the key's endpoint: url, enabled, disabled reason, failure streak"
NOT_FOR_BOOTSTRAP = "the bootstrap key's endpoint comes from WEBHOOK_URL / WEBHOOK_SECRET"


async def _params(request: web.Request) -> dict[str, str]:
    """The query string, then a JSON object or form body; every value through the edge checks."""
    params: dict[str, str] = dict(request.query)
    if not request.can_read_body:
        return params
    if request.content_type == "application/json":
        try:
            body = msgspec.json.decode(await request_body.read(request, limit=MAX_JSON_BODY))
        except msgspec.DecodeError as exc:
            raise InvalidInput(f"the body is not valid JSON: {exc}", code="invalid_json") from exc
        except RecursionError:  # any JSON value: msgspec descends as deep as the client nests
            raise InvalidInput("the body nests too deep", code="invalid_json") from None
        if not isinstance(body, dict):
            raise InvalidInput("the body must be a JSON object", code="invalid_json")
        values = {str(k): str(v) for k, v in body.items() if v is not None}
        edge.check_mapping(values)
        params.update(values)
    elif request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        settings = request.app[SETTINGS]
        form = await parse_submit_form(
            request,
            max_upload_bytes=0,
            spool_dir=None,
            read_timeout=settings.ingest_body_read_timeout,
            fields=None,
            upload=None,
        )
        params.update(form.fields)
    return params


def _delivery_id(request: web.Request) -> int:
    return path_int_id(request.match_info["delivery_id"], "delivery")


@ROUTES.get(
    "/api/webhooks/deliveries",
    summary="Deliveries of a job, each with every attempt (status code, latency, error; "
    "never response bodies)",
    params=[in_query("audio_file_id", "the job", UUID, required=True)],
    responses={
        200: Reply("the job's deliveries", bodies.Deliveries),
        400: "audio_file_id missing or malformed",
        404: "no such job for this key",
    },
)
async def list_deliveries(request: web.Request) -> web.Response:
    key = await authenticate(request)
    job = parse_uuid(
        request.query.get("audio_file_id"),
        "audio_file_id",
        required=True,
        hint="give the job as ?audio_file_id=<id>",
    )
    assert job is not None
    pool = request.app[POOL]
    rows = await admin.list_for_job(pool, admin.Scope.key(key.id), job)
    return bodies.answer(bodies.Deliveries(audio_file_id=str(job), deliveries=rows))


@ROUTES.get(
    "/api/webhooks/deliveries/{delivery_id}",
    summary="One delivery with its attempts",
    params=[DELIVERY_ID],
    responses={200: Reply("the delivery", bodies.Delivery), 404: NO_SUCH_DELIVERY},
)
async def get_delivery(request: web.Request) -> web.Response:
    key = await authenticate(request)
    pool, delivery_id = request.app[POOL], _delivery_id(request)
    return bodies.answer(await admin.get(pool, admin.Scope.key(key.id), delivery_id))


@ROUTES.post(
    "/api/webhooks/deliveries/{delivery_id}/resend",
    summary="Send a delivery again now (same webhook-id, same body, a fresh retry schedule)",
    params=[DELIVERY_ID],
    responses={
        202: Reply("queued", bodies.Resending),
        404: NO_SUCH_DELIVERY,
        409: "the endpoint is disabled (`endpoint_disabled`), or the delivery's job was deleted "
        "(`job_deleted`: its body was scrubbed; a delivery waiting for its attempt in flight "
        "to end is sent after it)",
    },
)
async def resend(request: web.Request) -> web.Response:
    key = await authenticate(request)
    pool, delivery_id = request.app[POOL], _delivery_id(request)
    await admin.resend(pool, admin.Scope.key(key.id), delivery_id)
    return bodies.answer(bodies.Resending(id=delivery_id, status="pending"), status=202)


@ROUTES.post(
    "/api/webhooks/recover",
    summary="Resend every failed or cancelled delivery created since a time",
    params_in_body=True,
    params=[
        in_query(
            "since",
            "ISO 8601, zone-less means UTC (also as form or JSON field)",
            DATE_TIME,
            required=True,
        ),
        in_query("until", "ISO 8601, optional, after since", DATE_TIME),
    ],
    responses={
        202: Reply("the deliveries queued again", bodies.Recovered),
        400: "since missing or not ISO 8601, until before since, or a body that is not JSON",
    },
)
async def recover(request: web.Request) -> web.Response:
    key = await authenticate(request)
    params = await _params(request)
    since = parse_time(params.get("since"), "since", required=True)
    until = parse_time(params.get("until"), "until", required=False)
    assert since is not None
    if until is not None and until <= since:
        raise InvalidInput("until must be after since", code="invalid_until")
    pool = request.app[POOL]
    n = await admin.recover(pool, admin.Scope.key(key.id), since, until)
    return bodies.answer(bodies.Recovered(recovered=n), status=202)


@ROUTES.post(
    "/api/webhooks/test",
    summary="Send a signed webhook.test event to the key's endpoint or to url; waits up to "
    "wait seconds (default 20) for the answer",
    params_in_body=True,
    params=[
        in_query("url", "target; default the key's webhook URL", URI),
        in_query(
            "wait",
            "seconds to wait for the answer",
            {
                "type": "number",
                "minimum": 0,
                "maximum": TEST_WAIT_MAX,
                "default": TEST_WAIT_DEFAULT,
            },
        ),
    ],
    responses={
        200: Reply("the test delivery with its first attempt", bodies.Delivery),
        202: Reply("the test delivery, not attempted yet", bodies.Delivery),
        400: "url refused by the SSRF policy, bad wait, or a body that is not JSON",
        409: "no webhook URL",
    },
)
async def send_test(request: web.Request) -> web.Response:
    key = await authenticate(request)
    params = await _params(request)
    url = _checked_url(request, params["url"]) if params.get("url") else None
    wait = parse_seconds(params.get("wait"), "wait", default=TEST_WAIT_DEFAULT, high=TEST_WAIT_MAX)
    pool = request.app[POOL]
    key_id = uuid.UUID(key.id)
    delivery_id = await admin.send_test(pool, key_id, url)
    scope = admin.Scope(key_id)
    body = await admin.get(pool, scope, delivery_id)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    # The notifier attempts it at once (NOTIFY); poll the row for its first verdict.
    while not body.attempt_log and loop.time() < deadline:
        await asyncio.sleep(0.05)
        body = await admin.get(pool, scope, delivery_id)
    return bodies.answer(body, status=200 if body.attempt_log else 202)


@ROUTES.get(
    "/api/webhooks/endpoint",
    summary="The key's default webhook endpoint and its health",
    responses={200: Reply(ENDPOINT_STATE, bodies.Endpoint)},
)
async def get_endpoint(request: web.Request) -> web.Response:
    key = await authenticate(request)
    pool = request.app[POOL]
    return bodies.answer(await admin.endpoint(pool, uuid.UUID(key.id)))


@ROUTES.post(
    "/api/webhooks/endpoint/enable",
    summary="Re-enable the endpoint after 410 Gone or auto-disable (failure streak reset)",
    responses={200: Reply(ENDPOINT_STATE, bodies.Endpoint), 409: "the key has no webhook URL"},
)
async def enable_endpoint(request: web.Request) -> web.Response:
    key = await authenticate(request)
    pool, key_id = request.app[POOL], uuid.UUID(key.id)
    await admin.enable(pool, key_id)
    return bodies.answer(await admin.endpoint(pool, key_id))


def _checked_url(request: web.Request, url: str | None) -> str:
    return admin.checked_url(url, request.app[SETTINGS].ssrf_allowlist)


@ROUTES.put(
    "/api/webhooks/endpoint",
    summary="Set the key's default webhook URL (enabled; its whsec_ secret is unchanged)",
    params_in_body=True,
    params=[in_query("url", "http(s) URL (also as form or JSON field)", URI, required=True)],
    responses={
        200: Reply(ENDPOINT_STATE, bodies.Endpoint),
        400: "url missing or refused by the SSRF policy, or a body that is not JSON",
        409: NOT_FOR_BOOTSTRAP,
    },
)
async def put_endpoint(request: web.Request) -> web.Response:
    key = await authenticate(request)
    url = _checked_url(request, (await _params(request)).get("url"))
    pool, key_id = request.app[POOL], uuid.UUID(key.id)
    await admin.set_url(pool, key_id, url)
    return bodies.answer(await admin.endpoint(pool, key_id))


@ROUTES.put(
    "/api/webhooks/endpoint/progress",
    summary="Opt in (enabled=true) or out of transcription.progress webhooks for running jobs",
    params=[in_query("enabled", "true/false, 1/0, yes/no", {"type": "boolean"}, required=True)],
    responses={200: Reply(ENDPOINT_STATE, bodies.Endpoint), 400: "enabled is not a boolean"},
)
async def put_progress(request: web.Request) -> web.Response:
    key = await authenticate(request)
    raw = request.query.get("enabled")
    if raw is None or not raw.strip():
        raise InvalidInput("give enabled=true or enabled=false", code="missing_enabled")
    enabled = parse_bool(raw, "enabled")
    pool, key_id = request.app[POOL], uuid.UUID(key.id)
    await admin.set_progress(pool, key_id, enabled)
    return bodies.answer(await admin.endpoint(pool, key_id))


@ROUTES.post(
    "/api/webhooks/endpoint/rotate-secret",
    summary="New whsec_ secret; deliveries carry signatures by both until finish-rotation",
    responses={
        200: Reply("endpoint state plus webhook_secret (shown once)", bodies.Endpoint),
        409: NOT_FOR_BOOTSTRAP,
    },
)
async def rotate_secret(request: web.Request) -> web.Response:
    key = await authenticate(request)
    pool, key_id = request.app[POOL], uuid.UUID(key.id)
    secret = await admin.rotate_secret(pool, key_id)
    state = await admin.endpoint(pool, key_id)
    return bodies.answer(msgspec.structs.replace(state, webhook_secret=secret))


@ROUTES.post(
    "/api/webhooks/endpoint/finish-rotation",
    summary="Stop signing with the previous secret",
    responses={200: Reply(ENDPOINT_STATE, bodies.Endpoint), 409: NOT_FOR_BOOTSTRAP},
)
async def finish_rotation(request: web.Request) -> web.Response:
    key = await authenticate(request)
    pool, key_id = request.app[POOL], uuid.UUID(key.id)
    await admin.finish_rotation(pool, key_id)
    return bodies.answer(await admin.endpoint(pool, key_id))


def register(app: web.Application) -> None:
    ROUTES.register(app)


# This module's part of /openapi.json, {path: {method: operation}}.
OPENAPI = ROUTES.paths()
