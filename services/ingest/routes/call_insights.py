"""Call insights of one job (issue 21; services/insights writes them, libs/insights stores them;
the insight templates' routes are in routes/insights.py).

A key sees its own jobs only (the bootstrap key, the operator's, sees every job): another
key's job answers 404 as an unknown one does."""

from __future__ import annotations

from aiohttp import web

from libs.categories import store as categories
from libs.errors import Conflict, NotFound
from libs.insights import store
from libs.jobs import record
from services.ingest import bodies, insights_bodies
from services.ingest.context import POOL, authenticate, job_id, tenant_scope
from services.ingest.openapi import UUID, ApiRoutes, Reply, in_path

ROUTES = ApiRoutes("insights")
JOB_ID = in_path("audio_file_id", "the job", UUID)


@ROUTES.get(
    "/api/media/insights/{audio_file_id}",
    operation_id="insights",
    summary="A completed call's categories and insights (status pending until services/insights "
    "has evaluated it)",
    params=[JOB_ID],
    responses={
        200: Reply("the call's categories and insights", insights_bodies.InsightsAnswer),
        404: "no such job for this key",
        409: "the transcript is not completed (`not_completed`), or the job was deleted "
        "(`job_deleted`)",
    },
)
async def get_insights(request: web.Request) -> web.Response:
    key = await authenticate(request)
    pool = request.app[POOL]
    owner = tenant_scope(key)
    job = await record.load(pool, job_id(request), api_key_id=owner)
    if job is None:
        raise NotFound("no such job")
    if job.status == "deleted":
        raise Conflict("the job was deleted", code="job_deleted")
    if job.status != "completed":
        raise Conflict("the transcript is not completed", code="not_completed")
    async with pool.acquire() as conn:
        row = await store.load(conn, job.id)
        matches = list(await categories.matches_for(conn, job.id)) if row is not None else []
    return bodies.answer(answer(str(job.id), row, matches))


def answer(
    audio_file_id: str,
    row: store.InsightsRow | None,
    matches: insights_bodies.CategoryMatches,
) -> insights_bodies.InsightsAnswer:
    if row is None:
        return insights_bodies.InsightsAnswer(
            audio_file_id=audio_file_id,
            status="pending",
            reason=None,
            categories=[],
            insights=None,
            model=None,
            usage=None,
            updated_at=None,
        )
    return insights_bodies.InsightsAnswer(
        audio_file_id=audio_file_id,
        status=row.status,
        reason=row.reason,
        categories=matches,
        insights=row.insights,
        model=row.model,
        usage=None if row.insights is None else row.insights.usage,
        updated_at=row.updated_at.isoformat(),
    )


def register(app: web.Application) -> None:
    ROUTES.register(app)
