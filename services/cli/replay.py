"""`transcribe replay ...`: the nats CLI recipes of docs/operations.md without the nats CLI.

events <job>                    the events of one job, from the stream
job <job> [--force]             re-publish the job's AudioStored (force: even if completed)
audio --since T | --from-seq N  re-publish every AudioStored since a time or sequence
webhooks --since T [--until T]  re-send the webhooks of a time range (same webhook-ids)
consumers                       pending / in flight / redelivered / ack floor per consumer
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from nats.js import JetStreamContext

from libs import bus, db, params, replay
from libs.contracts import streams
from libs.errors import InvalidInput
from libs.jobs import record
from libs.observability.collector import consumer_views
from libs.outbox import published
from libs.settings import Settings

T = TypeVar("T")

# The scan of one job starts a little before the job's row was written (clock skew).
JOB_SCAN_MARGIN = timedelta(minutes=5)


class UsageError(ValueError):
    pass


def parse_time(raw: str, *, now: datetime | None = None) -> datetime:
    """libs.params' rule: ISO 8601 (no zone means UTC), or an age like 90m, 2h, 7d."""
    try:
        return params.parse_since(raw, now=now)
    except InvalidInput:
        raise UsageError(f"not a time: {raw!r} (use 2026-11-24T10:00:00Z or 2h)") from None


def with_embedded_stack(settings: Settings) -> Settings:
    """Point an unset NATS_URL / DATABASE_URL at the stack `transcribe up` runs from the same
    TRANSCRIBE_HOME (its servers record their ports there), so operator commands work beside
    the embedded stack without copying URLs around. Configured values always win."""
    import json as _json

    def port(server: str, role: str) -> int | None:
        try:
            value = _json.loads((settings.home / server / "ports.json").read_text())[role]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return value if isinstance(value, int) else None

    nats_port, pg_port = port("nats", "client"), port("postgres", "postgres")
    return settings.with_infrastructure(
        nats_url=f"nats://127.0.0.1:{nats_port}" if nats_port else None,
        database_url=f"postgresql://postgres@127.0.0.1:{pg_port}/transcribe" if pg_port else None,
    )


async def with_js(settings: Settings, fn: Callable[[JetStreamContext], Awaitable[T]]) -> T:
    nc = await bus.connect(settings.nats_servers, name="replay", connect_deadline=10.0)
    try:
        return await fn(nc.jetstream())
    finally:
        await nc.drain()


async def _job_scope(settings: Settings, audio_file_id: str) -> tuple[str | None, datetime | None]:
    """The job's tenant and creation time narrow the scan; without a database, scan it all."""
    if not settings.database_url:
        return None, None
    conn = await db.connect(settings.database_url)
    try:
        job = await record.load(conn, uuid.UUID(audio_file_id))
    finally:
        await conn.close()
    if job is None:
        raise UsageError(f"no job {audio_file_id} in the database")
    return job.tenant_prefix, job.created_at - JOB_SCAN_MARGIN


async def events(settings: Settings, audio_file_id: str) -> list[replay.StoredEvent]:
    tenant, since = await _job_scope(settings, audio_file_id)
    return await with_js(
        settings, lambda js: replay.job_events(js, audio_file_id, tenant=tenant, since=since)
    )


async def rerun_job(settings: Settings, audio_file_id: str, *, force: bool) -> str:
    """Re-publish the job's latest AudioStored; returns the new event's Nats-Msg-Id."""
    tenant, since = await _job_scope(settings, audio_file_id)

    async def go(js: JetStreamContext) -> str:
        found = [
            e
            for e in await replay.job_events(js, audio_file_id, tenant=tenant, since=since)
            if e.event_type == "audio.stored"
        ]
        if not found:
            raise UsageError(
                f"no AudioStored of {audio_file_id} left in the stream (aged out?): "
                "use POST /api/media/rerun/{id} or transcribe jobs requeue-failed"
            )
        msg_id, data, position = await replay.publish_copy(js, found[-1], force=force)
        await record_copies(settings, [((found[-1].subject, data), position)])
        return msg_id

    return await with_js(settings, go)


async def record_copies(
    settings: Settings, stored: list[tuple[tuple[str, bytes], tuple[str, int]]]
) -> None:
    """Record where the copies are (libs/outbox/published.py), so deleting their job erases
    them from the stream too; without a database, say that they are not."""
    if not stored:
        return
    if not settings.database_url:
        print(
            f"no DATABASE_URL: {len(stored)} copies not recorded, a later deletion of their "
            "jobs leaves them in the stream until its max age",
            file=sys.stderr,
        )
        return
    conn = await db.connect(settings.database_url)
    try:
        await published.record(conn, [e for e, _ in stored], [p for _, p in stored])
    finally:
        await conn.close()


async def _replayed(
    settings: Settings, fn: Callable[[JetStreamContext], Awaitable[replay.ReplayResult]]
) -> replay.ReplayResult:
    result = await with_js(settings, fn)
    await record_copies(settings, result.stored)
    return result


def _event_line(e: replay.StoredEvent) -> dict[str, Any]:
    doc = e.json()
    return {
        "seq": e.seq,
        "time": e.time.isoformat(),
        "subject": e.subject,
        "type": e.event_type,
        "event_id": doc.get("event_id"),
        "force": doc.get("force"),
        "trace_id": doc.get("trace_id"),
    }


def _result(result: replay.ReplayResult, dry_run: bool) -> dict[str, Any]:
    return {
        "scanned": result.scanned,
        "republished": result.republished,
        "dry_run": dry_run,
        "copies": [{"original_seq": s, "nats_msg_id": m} for s, m in result.copies],
    }


async def consumers(settings: Settings) -> list[dict[str, Any]]:
    async def go(js: JetStreamContext) -> list[dict[str, Any]]:
        views = []
        for stream in (streams.STREAM_NAME, streams.DEADLETTER_STREAM_NAME):
            try:
                views.extend(await consumer_views(js, stream))
            except Exception as exc:  # noqa: BLE001 - one missing stream must not hide the other
                print(f"{stream}: {exc}", file=sys.stderr)
        return [
            {
                "stream": v.stream,
                "consumer": v.consumer,
                "pending": v.pending,
                "in_flight": v.ack_pending,
                "redelivered": v.redelivered,
                "ack_floor": v.ack_floor_stream_seq,
                "delivered": v.delivered_stream_seq,
                "waiting_pulls": v.waiting,
            }
            for v in views
        ]

    return await with_js(settings, go)


def _print(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


def cmd_events(args: argparse.Namespace, settings: Settings) -> int:
    settings = with_embedded_stack(settings)
    try:
        found = asyncio.run(events(settings, args.audio_file_id))
    except UsageError as exc:
        print(exc, file=sys.stderr)
        return 2
    for e in found:
        print(e.data.decode() if args.raw else json.dumps(_event_line(e)))
    return 0 if found else 1


def cmd_job(args: argparse.Namespace, settings: Settings) -> int:
    settings = with_embedded_stack(settings)
    try:
        msg_id = asyncio.run(rerun_job(settings, args.audio_file_id, force=args.force))
    except UsageError as exc:
        print(exc, file=sys.stderr)
        return 2
    _print({"audio_file_id": args.audio_file_id, "force": args.force, "nats_msg_id": msg_id})
    return 0


def cmd_audio(args: argparse.Namespace, settings: Settings) -> int:
    settings = with_embedded_stack(settings)
    try:
        since = parse_time(args.since) if args.since else None
    except UsageError as exc:
        print(exc, file=sys.stderr)
        return 2
    if (since is None) == (args.from_seq is None):
        print("give exactly one of --since and --from-seq", file=sys.stderr)
        return 2
    result = asyncio.run(
        _replayed(
            settings,
            lambda js: replay.replay_audio(
                js,
                start_time=since,
                start_seq=args.from_seq,
                tenant=args.tenant,
                force=args.force,
                dry_run=args.dry_run,
            ),
        )
    )
    _print(_result(result, args.dry_run))
    return 0


def cmd_webhooks(args: argparse.Namespace, settings: Settings) -> int:
    settings = with_embedded_stack(settings)
    try:
        since = parse_time(args.since)
        until = parse_time(args.until) if args.until else None
    except UsageError as exc:
        print(exc, file=sys.stderr)
        return 2
    result = asyncio.run(
        _replayed(
            settings,
            lambda js: replay.resend_webhooks(
                js,
                since=since,
                until=until,
                tenant=args.tenant,
                include_failed=not args.no_failed,
                dry_run=args.dry_run,
            ),
        )
    )
    _print(_result(result, args.dry_run))
    return 0


def cmd_consumers(args: argparse.Namespace, settings: Settings) -> int:
    settings = with_embedded_stack(settings)
    rows = asyncio.run(consumers(settings))
    if args.json:
        _print(rows)
        return 0
    cols = ("stream", "consumer", "pending", "in_flight", "redelivered", "ack_floor", "delivered")
    widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in cols]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)))
    for r in rows:
        print("  ".join(str(r[c]).ljust(w) for c, w in zip(cols, widths, strict=True)))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("replay", help="replay events from the stream (no nats CLI needed)")
    rsub = p.add_subparsers(dest="replay_command", required=True)

    e = rsub.add_parser("events", help="list the events of one job")
    e.add_argument("audio_file_id")
    e.add_argument("--raw", action="store_true", help="print the event JSON as stored")
    e.set_defaults(fn=cmd_events)

    j = rsub.add_parser("job", help="re-publish one job's AudioStored")
    j.add_argument("audio_file_id")
    j.add_argument("--force", action="store_true", help="re-transcribe even if completed")
    j.set_defaults(fn=cmd_job)

    a = rsub.add_parser("audio", help="re-publish every AudioStored since a time or sequence")
    a.add_argument("--since", help="2026-11-24T10:00:00Z or an age like 2h")
    a.add_argument("--from-seq", type=int, help="a stream sequence")
    a.add_argument("--tenant", help="only this tenant prefix")
    a.add_argument("--force", action="store_true", help="re-transcribe completed jobs too")
    a.add_argument("--dry-run", action="store_true")
    a.set_defaults(fn=cmd_audio)

    w = rsub.add_parser("webhooks", help="re-send the webhooks of a time range")
    w.add_argument("--since", required=True)
    w.add_argument("--until")
    w.add_argument("--tenant")
    w.add_argument("--no-failed", action="store_true", help="only transcription.completed")
    w.add_argument("--dry-run", action="store_true")
    w.set_defaults(fn=cmd_webhooks)

    c = rsub.add_parser("consumers", help="consumer state (replaces the reference claims table)")
    c.add_argument("--json", action="store_true")
    c.set_defaults(fn=cmd_consumers)
