"""Insight templates (issue #21; libs/llm/template.py): what the chat model is asked about a
key's calls, per key and optionally per campaign; and the operator's per-key off switch.

    GET    /api/insights/template[?campaign=C]   the template calls of C (or the key's) get
    PUT    /api/insights/template[?campaign=C]   JSON InsightTemplate
    DELETE /api/insights/template[?campaign=C]   back to the key's template (or the default)
    PUT    /api/insights/enabled?key=K&enabled=false   operator only

An operator key (the bootstrap key) may act on another key's templates with ?key=<id or hint>.
"""

from __future__ import annotations

import uuid

from aiohttp import web

from libs.errors import Forbidden, InvalidInput, NotFound, TooLarge, UnsupportedMedia
from libs.llm import template as templates
from libs.params import parse_bool
from services.ingest import bodies, request_body
from services.ingest.context import POOL, authenticate, named_key
from services.ingest.insights_bodies import InsightsSwitch, TemplateAnswer
from services.ingest.openapi import BOOLEAN, ApiRoutes, Param, Reply, in_query

ROUTES = ApiRoutes("insights")
PATH = "/api/insights/template"
CAMPAIGN = in_query(
    "campaign",
    "the campaign's template (omit for the key's own)",
    {"type": "string", "minLength": 1, "maxLength": templates.MAX_CAMPAIGN_CHARS},
)
KEY = in_query("key", "operator only: the key (id or hint) whose template this is")
TEMPLATE_LIMITS = (
    f"at most {templates.MAX_OUTCOMES} outcomes of {templates.MAX_OUTCOME_CHARS} characters, "
    f"{templates.MAX_QUESTIONS} questions (id {templates.QUESTION_ID_PATTERN}, text of at most "
    f"{templates.MAX_QUESTION_CHARS} characters, kind yes_no or text), "
    f"{templates.MAX_TEMPLATE_BYTES} bytes"
)
PARAMS: list[Param] = [CAMPAIGN, KEY]


def _campaign(request: web.Request) -> str:
    raw = request.query.get("campaign")
    if raw is not None and not raw:
        raise InvalidInput(
            "campaign must not be empty (omit it for the key's template)", code="invalid_campaign"
        )
    return templates.clean_campaign(raw)


async def _answer(request: web.Request, key_id: uuid.UUID, campaign: str) -> TemplateAnswer:
    pool = request.app[POOL]
    source = "campaign" if campaign else "key"
    found = await templates.get(pool, key_id, campaign)
    if found is None and campaign:
        source, found = "key", await templates.get(pool, key_id, "")
    if found is None:
        source, found = "default", templates.DEFAULT
    return TemplateAnswer(
        key_id=str(key_id),
        campaign=campaign or None,
        source=source,  # type: ignore[arg-type]
        insights_enabled=await templates.insights_enabled(pool, key_id),
        template=found,
    )


@ROUTES.get(
    PATH,
    operation_id="getInsightTemplate",
    summary="The insight template a key's calls (of a campaign) are asked with",
    params=PARAMS,
    responses={
        200: Reply("the template in force and where it comes from", TemplateAnswer),
        400: "campaign empty or not text",
        403: "key names another key and the caller is not an operator",
        404: "no such key",
    },
)
async def get_template(request: web.Request) -> web.Response:
    key = await authenticate(request)
    campaign = _campaign(request)
    key_id = await named_key(request, key)
    return bodies.answer(await _answer(request, key_id, campaign))


@ROUTES.put(
    PATH,
    operation_id="putInsightTemplate",
    summary="Set the insight template of a key (or of one of its campaigns)",
    params=PARAMS,
    json=templates.InsightTemplate,
    responses={
        200: Reply("the template stored", TemplateAnswer),
        400: f"the body is not JSON (`invalid_json`) or not a valid template "
        f"(`invalid_template`, naming the bad part): {TEMPLATE_LIMITS}",
        403: "key names another key and the caller is not an operator",
        404: "no such key",
        415: "not application/json (`unsupported_media`)",
    },
)
async def put_template(request: web.Request) -> web.Response:
    key = await authenticate(request)
    campaign = _campaign(request)
    key_id = await named_key(request, key)
    if request.content_type != "application/json":
        raise UnsupportedMedia("send the template as application/json", code="unsupported_media")
    try:
        raw = await request_body.read(request, limit=templates.MAX_TEMPLATE_BYTES)
    except TooLarge:  # documented as a bad template (400), as templates.parse says
        raise InvalidInput(
            f"a template is at most {templates.MAX_TEMPLATE_BYTES} bytes", code="invalid_template"
        ) from None
    template = templates.parse(raw)
    await templates.put(request.app[POOL], key_id, campaign, template)
    return bodies.answer(await _answer(request, key_id, campaign))


@ROUTES.delete(
    PATH,
    operation_id="deleteInsightTemplate",
    summary="Remove a key's (or a campaign's) template: its calls get the key's, else the default",
    params=PARAMS,
    responses={
        200: Reply("removed: the template now in force for those calls", TemplateAnswer),
        403: "key names another key and the caller is not an operator",
        404: "no template stored there (`no_template`), or no such key",
    },
)
async def delete_template(request: web.Request) -> web.Response:
    key = await authenticate(request)
    campaign = _campaign(request)
    key_id = await named_key(request, key)
    if not await templates.delete(request.app[POOL], key_id, campaign):
        raise NotFound("no template stored for this key and campaign", code="no_template")
    return bodies.answer(await _answer(request, key_id, campaign))


@ROUTES.put(
    "/api/insights/enabled",
    operation_id="setInsightsEnabled",
    summary="Operator only: turn LLM insights on or off for a key (off: nothing of its calls "
    "reaches the chat model; categories still run)",
    params=[
        in_query("key", "the key (id or hint)", required=True),
        in_query("enabled", "true or false", BOOLEAN, required=True),
    ],
    responses={
        200: Reply("the key's switch", InsightsSwitch),
        400: "key or enabled missing or malformed",
        403: "the caller is not an operator (`not_operator`)",
        404: "no such key",
    },
)
async def set_enabled(request: web.Request) -> web.Response:
    key = await authenticate(request)
    if not key.is_bootstrap:
        raise Forbidden("only an operator key may switch insights", code="not_operator")
    if not request.query.get("key"):
        raise InvalidInput("give the key as ?key=<id or hint>", code="missing_key")
    if not request.query.get("enabled"):
        raise InvalidInput("give enabled=true or enabled=false", code="missing_enabled")
    enabled = parse_bool(request.query.get("enabled"), "enabled")
    key_id = await named_key(request, key)
    await templates.set_enabled(request.app[POOL], key_id, enabled)
    return bodies.answer(InsightsSwitch(key_id=str(key_id), enabled=enabled))


def register(app: web.Application) -> None:
    ROUTES.register(app)
