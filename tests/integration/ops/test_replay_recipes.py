"""The nats CLI recipes of docs/operations.md, performed step by step with nats-py against the
real stack.

Each test names the CLI command next to the JetStream operation it stands for, so a change to
subjects, payloads or headers that would break a recipe breaks a test here.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from nats.js import JetStreamContext
from nats.js import api as js_api

from libs.contracts import streams
from libs.contracts import subjects as subj
from tests.integration.ops.conftest import (
    bootstrap_key_id,
    insert_job,
    new_job,
    submit,
    wait_completed,
)
from tests.stack_fixtures import RunningStack, WebhookInbox, eventually

pytestmark = pytest.mark.integration


def _tenant() -> str:
    return f"rcp{uuid.uuid4().hex[:8]}"


async def _stream_view(
    js: JetStreamContext, subject: str, since: datetime, stream: str = streams.STREAM_NAME
) -> list[tuple[int, str, bytes]]:
    """`nats sub <subject> --stream <stream> --since <age> --raw --terminate-at-end`: an
    ephemeral consumer from a start time, read to the end of the stream."""
    info = await js.stream_info(stream)
    last = info.state.last_seq
    name = f"view{uuid.uuid4().hex[:10]}"
    await js.add_consumer(
        stream,
        js_api.ConsumerConfig(
            name=name,
            deliver_policy=js_api.DeliverPolicy.BY_START_TIME,
            opt_start_time=since,
            ack_policy=js_api.AckPolicy.NONE,
            filter_subject=subject,
            inactive_threshold=30,
        ),
    )
    sub = await js.pull_subscribe_bind(stream=stream, name=name)
    out: list[tuple[int, str, bytes]] = []
    try:
        while True:
            try:
                msgs = await sub.fetch(100, timeout=1)
            except TimeoutError:
                break
            out.extend((m.metadata.sequence.stream, m.subject, m.data) for m in msgs)
            if not msgs or msgs[-1].metadata.num_pending == 0:
                break
    finally:
        await js.delete_consumer(stream, name)
    return [o for o in out if o[0] <= last]


def _grep(lines: list[tuple[int, str, bytes]], audio_file_id: str) -> list[tuple[int, str, bytes]]:
    # `| grep '"audio_file_id":"<id>"'`: msgspec writes compact JSON, so this exact text matches.
    needle = f'"audio_file_id":"{audio_file_id}"'.encode()
    return [line for line in lines if needle in line[2]]


async def test_recipe_list_the_events_of_one_job(
    running_stack: RunningStack, samples_url: str, webhook_inbox: WebhookInbox, js: JetStreamContext
) -> None:
    tenant = _tenant()
    started = datetime.now(UTC) - timedelta(seconds=5)
    job = await submit(running_stack.base_url, samples_url, tenant)
    await webhook_inbox.wait_for(job, timeout=120)
    # nats sub 'transcribe.*.*.<tenant>' --stream TRANSCRIBE --since 24h --raw -T | grep ...
    found = _grep(await _stream_view(js, f"transcribe.*.*.{tenant}", started), job)
    types = [json.loads(data)["type"] for _, _, data in found]
    assert types == ["audio.stored", "transcript.ready"]
    assert [s for _, s, _ in found] == [subj.audio_stored(tenant), subj.transcript_ready(tenant)]


async def test_recipe_rerun_one_job_needs_a_new_msg_id(
    running_stack: RunningStack,
    samples_url: str,
    webhook_inbox: WebhookInbox,
    js: JetStreamContext,
    pool: asyncpg.Pool,
) -> None:
    tenant = _tenant()
    started = datetime.now(UTC) - timedelta(seconds=5)
    job = await submit(running_stack.base_url, samples_url, tenant)
    await webhook_inbox.wait_for(job, timeout=120)
    before = await pool.fetchval(
        "SELECT updated_at FROM media_pipeline.transcriptions WHERE audio_file_id = $1",
        uuid.UUID(job),
    )
    # EV=$(nats sub ... --stream TRANSCRIBE --since 24h --raw -T | grep '"audio_file_id":"<id>"')
    ((_, subject, raw),) = _grep(
        await _stream_view(js, f"transcribe.audio.stored.{tenant}", started), job
    )
    original = json.loads(raw)

    # Re-publishing the event as it is, with its own Nats-Msg-Id, is dropped as a duplicate.
    ack = await js.publish(subject, raw, headers={"Nats-Msg-Id": original["event_id"]})
    assert ack.duplicate

    # NEW=$(cat /proc/sys/kernel/random/uuid)
    # nats pub --jetstream -H "Nats-Msg-Id:$NEW" transcribe.audio.stored.<tenant> \
    #     "$(echo "$EV" | jq -c --arg id "$NEW" '.event_id=$id | .force=true')"
    new_id = str(uuid.uuid4())
    copy = dict(original, event_id=new_id, force=True)
    ack = await js.publish(
        subject, json.dumps(copy, separators=(",", ":")).encode(), headers={"Nats-Msg-Id": new_id}
    )
    assert not ack.duplicate

    async def retranscribed() -> bool:
        after = await pool.fetchval(
            "SELECT updated_at FROM media_pipeline.transcriptions WHERE audio_file_id = $1",
            uuid.UUID(job),
        )
        return bool(after > before)

    await eventually(retranscribed, timeout=120)
    await webhook_inbox.wait_for(job, count=2, timeout=60)


async def test_recipe_rerun_every_audio_stored_since_a_time(
    running_stack: RunningStack,
    samples_url: str,
    webhook_inbox: WebhookInbox,
    js: JetStreamContext,
    pool: asyncpg.Pool,
) -> None:
    """A replay consumer from a start time: not-completed jobs are transcribed again, completed
    ones are left alone (no force)."""
    tenant = _tenant()
    since = datetime.now(UTC) - timedelta(seconds=5)
    kept = await submit(running_stack.base_url, samples_url, tenant)
    lost = await submit(running_stack.base_url, samples_url, tenant)
    for job in (kept, lost):
        await wait_completed(pool, job)
    kept_at = await pool.fetchval(
        "SELECT updated_at FROM media_pipeline.transcriptions WHERE audio_file_id = $1",
        uuid.UUID(kept),
    )
    # "Lost" result, as after restoring a database backup: the job is queued again.
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "DELETE FROM media_pipeline.transcriptions WHERE audio_file_id = $1", uuid.UUID(lost)
        )
        await conn.execute(
            "UPDATE media_pipeline.audio_files SET status = 'queued' WHERE id = $1",
            uuid.UUID(lost),
        )

    # nats consumer add TRANSCRIBE replay-audio --pull --filter 'transcribe.audio.stored.<t>' \
    #     --deliver <since> --ack none --replay instant --defaults
    durable = f"replay-audio-{uuid.uuid4().hex[:6]}"
    await js.add_consumer(
        streams.STREAM_NAME,
        js_api.ConsumerConfig(
            durable_name=durable,
            deliver_policy=js_api.DeliverPolicy.BY_START_TIME,
            opt_start_time=since,
            ack_policy=js_api.AckPolicy.NONE,
            filter_subject=f"transcribe.audio.stored.{tenant}",
            replay_policy=js_api.ReplayPolicy.INSTANT,
        ),
    )
    # nats consumer info TRANSCRIBE replay-audio   ("Unprocessed Messages": N)
    pending = (await js.consumer_info(streams.STREAM_NAME, durable)).num_pending
    assert pending == 2
    # nats consumer next TRANSCRIBE replay-audio --count N --raw > audio.jsonl
    sub = await js.pull_subscribe_bind(durable, streams.STREAM_NAME)
    msgs = await sub.fetch(pending, timeout=5)
    # nats consumer rm -f TRANSCRIBE replay-audio
    await js.delete_consumer(streams.STREAM_NAME, durable)
    # while read -r ev; do NEW=...; nats pub --jetstream -H "Nats-Msg-Id:$NEW" \
    #     "transcribe.audio.stored.$(jq -r .tenant <<<"$ev")" "$(jq -c --arg id $NEW '.event_id=$id' <<<"$ev")"; done
    seqs = []
    for msg in msgs:
        ev = json.loads(msg.data)
        new_id = str(uuid.uuid4())
        ack = await js.publish(
            f"transcribe.audio.stored.{ev['tenant']}",
            json.dumps(dict(ev, event_id=new_id)).encode(),
            headers={"Nats-Msg-Id": new_id},
        )
        seqs.append(ack.seq)

    await wait_completed(pool, lost)

    async def consumed() -> bool:
        info = await js.consumer_info(streams.STREAM_NAME, streams.TRANSCRIBER_DURABLE)
        return bool(info.ack_floor.stream_seq >= max(seqs))

    await eventually(consumed, timeout=60)
    assert kept_at == await pool.fetchval(
        "SELECT updated_at FROM media_pipeline.transcriptions WHERE audio_file_id = $1",
        uuid.UUID(kept),
    )


async def test_recipe_resend_webhooks_for_a_time_range(
    running_stack: RunningStack,
    samples_url: str,
    webhook_inbox: WebhookInbox,
    js: JetStreamContext,
) -> None:
    tenant = _tenant()
    since = datetime.now(UTC) - timedelta(seconds=5)
    job = await submit(running_stack.base_url, samples_url, tenant)
    (first,) = await webhook_inbox.wait_for(job, timeout=120)
    until = datetime.now(UTC)
    # nats consumer add TRANSCRIBE replay-hooks --pull --filter 'transcribe.transcript.*.<t>' \
    #     --deliver <since> --ack none --defaults; nats consumer next ... --raw > results.jsonl
    results = await _stream_view(js, f"transcribe.transcript.*.{tenant}", since)
    # jq -c 'select(.occurred_at <= "<until>")'
    in_range = [
        r
        for r in results
        if json.loads(r[2])["occurred_at"] <= until.isoformat().replace("+00:00", "Z")
    ]
    assert len(in_range) == 1
    # nats pub --jetstream -H "Nats-Msg-Id:replay-$(uuid)" "transcribe.$(jq -r .type)...." "$ev"
    for _, subject, raw in in_range:
        ack = await js.publish(subject, raw, headers={"Nats-Msg-Id": f"replay-{uuid.uuid4()}"})
        assert not ack.duplicate
    deliveries = await webhook_inbox.wait_for(job, count=2, timeout=60)
    assert deliveries[1]["headers"]["webhook-id"] == first["headers"]["webhook-id"]


async def test_recipe_inspect_dead_letters(
    running_stack: RunningStack, js: JetStreamContext, pool: asyncpg.Pool
) -> None:
    # A job whose audio is missing: the transcriber terminates its message.
    since = datetime.now(UTC) - timedelta(seconds=5)
    job = new_job(await bootstrap_key_id(pool), tenant=_tenant())
    await insert_job(pool, job, publish=True)

    async def advisories() -> list[dict[str, object]]:
        # nats sub '$JS.EVENT.ADVISORY.CONSUMER.*.TRANSCRIBE.*' --stream TRANSCRIBE_DEADLETTERS ...
        found = []
        for _, _, raw in await _stream_view(
            js, "$JS.EVENT.ADVISORY.CONSUMER.*.TRANSCRIBE.*", since, streams.DEADLETTER_STREAM_NAME
        ):
            adv = json.loads(raw)
            # nats stream get TRANSCRIBE <stream_seq>
            original = await js.get_msg(streams.STREAM_NAME, adv["stream_seq"])
            if str(job.id).encode() in original.data:
                found.append(adv)
        return found

    (adv,) = await eventually(advisories, timeout=60)
    assert adv["type"] == "io.nats.jetstream.advisory.v1.terminated"
    assert adv["consumer"] == streams.TRANSCRIBER_DURABLE
