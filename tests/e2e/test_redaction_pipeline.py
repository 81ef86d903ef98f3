"""Issue #14's "done when", end to end on real nats-server, Postgres and SeaweedFS: a tenant whose
key redacts `pci` submits a call in which the customer reads out a card number and its CVV;
ingest, transcriber and notifier run as in production (the OpenAI engine on the fake server,
whose answer this test writes), and neither value reaches S3, any database row, the stream or
the webhook, while the evidence (counts, time spans) does.

The stack here has its own nats-server and database: the session's running stack (offline
engine) must not pick these jobs up."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import secrets
import uuid
from collections.abc import AsyncIterator
from contextlib import closing
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiobotocore.session
import aiohttp
import asyncpg
import nats
import numpy as np
import pytest
from prometheus_client import REGISTRY

from embedded import demo as demo_servers
from embedded.nats import NatsServer
from libs import apikeys
from libs.audio.decode import iter_pcm
from libs.blobstore import S3BlobStore
from libs.contracts import streams
from libs.db import create_pool
from libs.layout import redacted_audio_key, unredacted_transcript_key
from libs.provision import provision
from libs.redaction import Policy
from libs.settings import Settings
from services.ingest.sweeper import Sweeper
from tests.fakes.openai_server import FakeOpenAIServer, Fault
from tests.stack_fixtures import (
    FIXTURES,
    WebhookInbox,
    create_database,
    eventually,
    free_port,
    pipeline_mains,
    services_running,
)

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

CALL = (
    "Thanks for calling, can I take the card number please? Yes, it's four one one one, one "
    "one one one, one one one one, one one one one. And the security code on the back? Seven "
    "three seven. Lovely, your order number is 4 5 7 8 2 and it ships at three thirty."
)
# What must appear nowhere: the card and CVV as said, or as digits (as digits only where they
# stand alone: ids and timestamps may contain "737" by chance).
FORBIDDEN = ("four one one one", "one one one one", "seven three")
FORBIDDEN_DIGITS = re.compile(r"(?<![\w.:-])(4111[\s-]?1111|737)(?![\w])")
SECRET = "whsec_" + "cmVkYWN0aW9uLXRlc3Qtc2VjcmV0LXJlZGFjdGlvbi10ZXM="


@dataclass
class Stack:
    settings: Settings
    base_url: str
    inbox: WebhookInbox
    pool: asyncpg.Pool
    fake: FakeOpenAIServer


@pytest.fixture(scope="module")
async def stack(
    settings: Settings,
    postgres_server: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Stack]:

    inbox = WebhookInbox(secret=SECRET)
    async with (
        NatsServer(tmp_path_factory.mktemp("redaction-nats")) as nats_server,
        FakeOpenAIServer(fixed_text=CALL) as fake,
        demo_servers.serve(inbox.app()) as inbox_url,
    ):
        inbox.url = inbox_url + "/hooks"
        ours = replace(
            settings,
            database_url=await create_database(postgres_server, "redact"),
            nats_url=nats_server.url,
            ingest_port=free_port(),
            engine="openai",
            openai_api_key=fake.api_key,
            openai_base_url=fake.base_url,
            ssrf_allowlist=settings.ssrf_allowlist + "," + inbox_url.split("://", 1)[1],
            ingest_spool_dir_override=tmp_path_factory.mktemp("redaction-spool"),
        )
        await provision(ours)
        db = await create_pool(ours.require_database_url())
        try:
            async with services_running(ours, pipeline_mains(insights=False)) as running:
                yield Stack(ours, running.base_url, inbox, db, fake)
        finally:
            await db.close()


async def _tenant(stack: Stack, redact: str) -> tuple[str, apikeys.ApiKey]:
    async with stack.pool.acquire() as conn:
        return await apikeys.create(
            conn,
            name="redacting-tenant",
            tenant_prefix=f"rd{uuid.uuid4().hex[:8]}",
            webhook_url=stack.inbox.url,
            webhook_secret=SECRET,
            redact=redact,
        )


async def _submit(
    stack: Stack, raw_key: str, *, audio: Path = FIXTURES / "hello_campaign.wav", **fields: str
) -> str:
    form = aiohttp.FormData()
    for name, value in {"timestamps": "word", **fields}.items():
        form.add_field(name, value)
    form.add_field("file", audio.read_bytes(), filename="call" + audio.suffix)
    async with (
        aiohttp.ClientSession() as s,
        s.post(
            stack.base_url + "/api/media/transcribe", data=form, headers={"X-API-Key": raw_key}
        ) as r,
    ):
        body = await r.json()
        assert r.status == 200, body
        return str(body["audio_file_id"])


def _redactions(cls: str) -> float:
    value = REGISTRY.get_sample_value("transcribe_redactions_total", {"class": cls})
    return value or 0.0


def _clean(where: str, text: str) -> None:
    for value in FORBIDDEN:
        assert value not in text, f"{value!r} in {where}"
    found = FORBIDDEN_DIGITS.search(text)
    assert found is None, f"{found.group()!r} in {where}"


async def _every_row(pool: asyncpg.Pool) -> str:
    """Every row of every table of the gateway's schema as text (bytea decoded)."""
    tables = await pool.fetch(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'media_pipeline'"
    )
    out = []
    for (table,) in tables:
        columns = await pool.fetch(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'media_pipeline' AND table_name = $1",
            table,
        )
        exprs = [
            f"encode({c}, 'escape')" if kind == "bytea" else f"{c}::text" for c, kind in columns
        ]
        rows = await pool.fetch(f"SELECT {', '.join(exprs)} FROM media_pipeline.{table}")
        out += [" ".join(str(v) for v in row) for row in rows]
    return "\n".join(out)


async def _stream(settings: Settings) -> list[dict[str, Any]]:
    nc = await nats.connect(settings.nats_servers)
    try:
        js = nc.jetstream()
        info = await js.stream_info(streams.STREAM_NAME)
        msgs = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await js.get_msg(streams.STREAM_NAME, seq)
            _clean(f"stream message {seq}", msg.data.decode())
            msgs.append(json.loads(msg.data))
        return msgs
    finally:
        await nc.close()


async def test_pci_tenant_default_keeps_card_and_cvv_out_of_everything(stack: Stack) -> None:
    cards_before = _redactions("credit_card")
    raw, key = await _tenant(stack, Policy.parse("pci").spec)
    audio_file_id = await _submit(stack, raw)

    # The webhook: redacted transcript, counts.
    (delivery,) = await stack.inbox.wait_for(audio_file_id, timeout=120)
    data = delivery["payload"]["data"]
    _clean("webhook", json.dumps(delivery["payload"]))
    assert "[CREDIT_CARD]" in data["transcript"] and "[CVV]" in data["transcript"]
    assert "order number is 4 5 7 8 2 and it ships at three thirty" in data["transcript"]
    assert data["redaction"]["counts"] == {"credit_card": 1, "cvv": 1}

    # The metric (the services run in this process, so in this registry).
    assert _redactions("credit_card") == cards_before + 1

    # The status API.
    async with (
        aiohttp.ClientSession() as s,
        s.get(
            f"{stack.base_url}/api/media/status/{audio_file_id}", headers={"X-API-Key": raw}
        ) as r,
    ):
        status = await r.json()
    _clean("status", json.dumps(status))
    assert status["metadata"]["redaction"]["total"] == 2

    # Every transcript format in S3, and no original kept.
    meta = status["metadata"]
    async with S3BlobStore.open(stack.settings.require_s3()) as store:
        for fmt in ("json", "txt", "srt", "vtt"):
            body = (await store.get_bytes(meta[f"b2_transcript_{fmt}_key"])).decode()
            _clean(f"S3 {fmt}", body)
            assert "[CREDIT_CARD]" in body
        doc = json.loads(await store.get_bytes(meta["b2_transcript_json_key"]))
        card_words = [w for w in doc["words"] if w["word"] == "[CREDIT_CARD]"]
        assert len(card_words) == 1
        assert not await store.exists(
            unredacted_transcript_key(
                meta["b2_key"], campaign="unassigned", prefix=key.tenant_prefix
            )
        )

    # Every row of every table, and the evidence without the data.
    _clean("Postgres", await _every_row(stack.pool))
    record = await stack.pool.fetchval(
        "SELECT redaction FROM media_pipeline.transcriptions WHERE audio_file_id = $1",
        uuid.UUID(audio_file_id),
    )
    assert record["counts"] == {"credit_card": 1, "cvv": 1}
    assert record["timing"] == "words"
    spans = {s["cls"]: (s["start"], s["end"]) for s in record["spans"]}
    assert spans["credit_card"][0] < spans["credit_card"][1] <= spans["cvv"][0]
    assert await stack.pool.fetchval(
        "SELECT raw_response IS NULL FROM media_pipeline.transcriptions WHERE audio_file_id = $1",
        uuid.UUID(audio_file_id),
    )

    # Every message on the stream (what `nats stream view` shows).
    events = [m for m in await _stream(stack.settings) if m.get("audio_file_id") == audio_file_id]
    by_type = {m["type"]: m for m in events}
    assert by_type["audio.stored"]["redact"] == Policy.parse("pci").spec
    assert by_type["transcript.ready"]["redaction"]["counts"] == {"credit_card": 1, "cvv": 1}


def _phone() -> str:
    return f"+1415{secrets.randbelow(8_000_000) + 2_000_000}"


async def test_keep_both_stores_the_original_apart_and_flags_it(stack: Stack) -> None:
    raw, key = await _tenant(stack, "")
    phone = _phone()
    audio_file_id = await _submit(stack, raw, redact="pci", redact_keep="both", phone=phone)
    (delivery,) = await stack.inbox.wait_for(audio_file_id, timeout=120)
    _clean("webhook", json.dumps(delivery["payload"]))
    record = await stack.pool.fetchval(
        "SELECT redaction FROM media_pipeline.transcriptions WHERE audio_file_id = $1",
        uuid.UUID(audio_file_id),
    )
    # The record flags the original but names no key: the key names the phone (issue 24).
    assert record["original_stored"] is True and "original_key" not in record
    assert phone.lstrip("+") not in json.dumps(record)
    original_key = unredacted_transcript_key(
        delivery["payload"]["data"]["b2_audio_key"], campaign="unassigned", prefix=key.tenant_prefix
    )
    assert re.fullmatch(
        rf"{key.tenant_prefix}/unassigned/transcriptions/unredacted/{phone.lstrip('+')}/"
        rf"{audio_file_id}\.json",
        original_key,
    )
    async with S3BlobStore.open(stack.settings.require_s3()) as store:
        original = json.loads(await store.get_bytes(original_key))
    assert original["text"] == CALL


def _pcm_of(path: Path) -> np.ndarray:
    with closing(iter_pcm(path)) as chunks:
        return np.frombuffer(b"".join(chunks), dtype="<i2")


async def _job_row(stack: Stack, audio_file_id: str) -> asyncpg.Record:
    row = await stack.pool.fetchrow(
        "SELECT content_type, size_bytes, sha256 FROM media_pipeline.audio_files WHERE id = $1",
        uuid.UUID(audio_file_id),
    )
    assert row is not None
    return row


async def _audio_record(stack: Stack, audio_file_id: str) -> dict[str, Any]:
    record = await stack.pool.fetchval(
        "SELECT redaction FROM media_pipeline.transcriptions WHERE audio_file_id = $1",
        uuid.UUID(audio_file_id),
    )
    return dict(record)


async def test_redacted_audio_beeps_the_card_and_replaces_the_original(
    stack: Stack, tmp_path: Path
) -> None:
    raw, _ = await _tenant(stack, Policy.parse("pci", audio="beep").spec)
    # Segments only asked for: words are still taken from the engine, for the audio.
    audio_file_id = await _submit(stack, raw, timestamps="segment")
    (delivery,) = await stack.inbox.wait_for(audio_file_id, timeout=120)
    audio_key = delivery["payload"]["data"]["b2_audio_key"]
    record = await _audio_record(stack, audio_file_id)
    audio = record["audio"]
    assert audio["status"] == "redacted" and audio["precision"] == "words"
    assert "key" not in audio  # keys name the phone: /status recomputes it from the job's
    assert audio["replaced_original"] is True
    async with (
        aiohttp.ClientSession() as s,
        s.get(
            f"{stack.base_url}/api/media/status/{audio_file_id}", headers={"X-API-Key": raw}
        ) as r,
    ):
        shown = (await r.json())["metadata"]["redaction"]
    assert shown["audio_key"] == audio_key.removesuffix(".wav") + ".redacted.wav"
    assert delivery["payload"]["data"]["redaction"]["audio"] == "redacted"
    async with S3BlobStore.open(stack.settings.require_s3()) as store:
        copy = await store.get_bytes(redacted_audio_key(audio_key))
        # The original now holds the redacted audio (stored after the copy).
        assert await store.get_bytes(audio_key) == copy
    # ... and the job's row describes what is stored now, not the audio that held the card.
    row = await _job_row(stack, audio_file_id)
    assert (row["content_type"], row["size_bytes"]) == ("audio/wav", len(copy))
    assert row["sha256"] == hashlib.sha256(copy).hexdigest()
    async with S3BlobStore.open(stack.settings.require_s3()) as store:
        transcript = json.loads(
            await store.get_bytes(delivery["payload"]["data"]["b2_transcript_json_key"])
        )
    assert transcript.get("words") is None  # not asked for, not stored
    (tmp_path / "copy.wav").write_bytes(copy)
    redacted = _pcm_of(tmp_path / "copy.wav")
    original = _pcm_of(FIXTURES / "hello_campaign.wav")
    assert len(redacted) == len(original)
    changed = np.flatnonzero(redacted != original)
    card = next(s for s in record["spans"] if s["cls"] == "credit_card")
    cvv = next(s for s in record["spans"] if s["cls"] == "cvv")
    rate = 16_000
    # Only the (padded) spans changed, and the card's span is a 1 kHz beep.
    allowed = np.zeros(len(original), dtype=bool)
    for span in (card, cvv):
        allowed[max(0, int((span["start"] - 0.2) * rate)) : int((span["end"] + 0.2) * rate)] = True
    assert changed.size > 0 and allowed[changed].all()
    middle = redacted[int(card["start"] * rate) : int(card["end"] * rate)].astype(np.float64)
    peak_hz = np.argmax(np.abs(np.fft.rfft(middle))) * rate / len(middle)
    assert abs(peak_hz - 1000) < 5


async def test_redacted_audio_that_replaces_an_mp3_is_stored_as_wav_under_a_wav_key(
    stack: Stack,
) -> None:
    """An object's name says what it holds: the redacted WAV that replaces an MP3 goes to
    `<uuid>.wav`, the row moves there, the MP3 (which held the card) is removed, and deleting
    the job later finds every object."""
    raw, _ = await _tenant(stack, Policy.parse("pci", audio="beep").spec)
    audio_file_id = await _submit(stack, raw, audio=FIXTURES / "hello_campaign.mp3")
    (delivery,) = await stack.inbox.wait_for(audio_file_id, timeout=120)
    data = delivery["payload"]["data"]
    new_key = data["b2_audio_key"]
    assert new_key.endswith(f"/{audio_file_id}.wav"), new_key
    mp3_key = new_key.removesuffix(".wav") + ".mp3"
    record = await _audio_record(stack, audio_file_id)
    assert record["audio"]["replaced_original"] is True
    row = await stack.pool.fetchrow(
        "SELECT b2_object_key, content_type, size_bytes, sha256 FROM media_pipeline.audio_files "
        "WHERE id = $1",
        uuid.UUID(audio_file_id),
    )
    assert row is not None
    async with S3BlobStore.open(stack.settings.require_s3()) as store:
        stored = await store.get_bytes(new_key)
        assert stored[:4] == b"RIFF" and stored[8:12] == b"WAVE"
        # The record names no key: the copy's key follows from the job's (libs/layout).
        assert "key" not in record["audio"]
        assert stored == await store.get_bytes(redacted_audio_key(new_key))
        assert not await store.exists(mp3_key)
        # The transcripts keep the job's stem: no ".redacted" or extension in their keys.
        assert data["b2_transcript_json_key"].endswith(f"/{audio_file_id}.json")
        assert await store.exists(data["b2_transcript_json_key"])
    assert (row["b2_object_key"], row["content_type"]) == (new_key, "audio/wav")
    assert (row["size_bytes"], row["sha256"]) == (len(stored), hashlib.sha256(stored).hexdigest())
    async with aiohttp.ClientSession(headers={"X-API-Key": raw}) as s:
        async with s.get(f"{stack.base_url}/api/media/status/{audio_file_id}") as r:
            shown = await r.json()
        assert shown["metadata"]["b2_key"] == new_key
        async with s.delete(f"{stack.base_url}/api/media/{audio_file_id}") as r:
            deleted = await r.json()
            assert r.status == 200 and deleted["objects_removed"] is True, deleted
    keys = [new_key, mp3_key, redacted_audio_key(new_key)]
    keys += [data[f"b2_transcript_{fmt}_key"] for fmt in ("json", "txt", "srt", "vtt")]
    async with S3BlobStore.open(stack.settings.require_s3()) as store:
        assert [k for k in keys if await store.exists(k)] == []


async def test_keep_both_leaves_the_original_audio_untouched(stack: Stack) -> None:
    raw, _ = await _tenant(stack, "")
    audio_file_id = await _submit(
        stack, raw, redact="pci", redact_keep="both", redact_audio="silence"
    )
    (delivery,) = await stack.inbox.wait_for(audio_file_id, timeout=120)
    audio = (await _audio_record(stack, audio_file_id))["audio"]
    assert (audio["status"], audio["mode"], audio["replaced_original"]) == (
        "redacted",
        "silence",
        False,
    )
    async with S3BlobStore.open(stack.settings.require_s3()) as store:
        original = await store.get_bytes(delivery["payload"]["data"]["b2_audio_key"])
        assert original == (FIXTURES / "hello_campaign.wav").read_bytes()
        assert await store.exists(redacted_audio_key(delivery["payload"]["data"]["b2_audio_key"]))


async def test_without_timestamps_the_job_says_why_the_audio_was_not_redacted(
    stack: Stack,
) -> None:
    raw, _ = await _tenant(stack, Policy.parse("pci", audio="beep").spec)
    # gpt-4o models return text only: no word or segment timings.
    audio_file_id = await _submit(stack, raw, model="gpt-4o-transcribe")
    (delivery,) = await stack.inbox.wait_for(audio_file_id, timeout=120)
    _clean("webhook", json.dumps(delivery["payload"]))
    record = await _audio_record(stack, audio_file_id)
    assert record["timing"] == "none"
    assert record["audio"]["status"] == "not_redacted"
    assert "no timestamps" in record["audio"]["reason"]
    # The client is told: in the webhook and in /status.
    redaction = delivery["payload"]["data"]["redaction"]
    assert redaction["audio"] == "not_redacted" and "no timestamps" in redaction["audio_detail"]
    async with (
        aiohttp.ClientSession() as s,
        s.get(
            f"{stack.base_url}/api/media/status/{audio_file_id}", headers={"X-API-Key": raw}
        ) as r,
    ):
        status = await r.json()
    assert status["metadata"]["redaction"]["audio"] == "not_redacted"
    async with S3BlobStore.open(stack.settings.require_s3()) as store:
        original = await store.get_bytes(delivery["payload"]["data"]["b2_audio_key"])
    assert original == (FIXTURES / "hello_campaign.wav").read_bytes()


async def _objects_of(settings: Settings, audio_file_id: str) -> list[str]:
    """Every object in the bucket whose key names the job (its audio, copies, transcripts)."""
    s3 = settings.require_s3()
    async with aiobotocore.session.get_session().create_client(
        "s3",
        endpoint_url=s3.endpoint,
        region_name=s3.region,
        aws_access_key_id=s3.access_key,
        aws_secret_access_key=s3.secret_key,
    ) as client:
        found = []
        async for page in client.get_paginator("list_objects_v2").paginate(Bucket=s3.bucket):
            found += [o["Key"] for o in page.get("Contents", []) if audio_file_id in o["Key"]]
        return found


async def _transcriber_idle(settings: Settings) -> bool:
    """Every AudioStored message handled and acked (a deleted job's included)."""
    nc = await nats.connect(settings.nats_servers)
    try:
        info = await nc.jetstream().consumer_info(streams.STREAM_NAME, streams.TRANSCRIBER_DURABLE)
        return bool(info.num_ack_pending == 0 and info.num_pending == 0)
    finally:
        await nc.close()


async def test_a_delete_while_the_engine_works_leaves_nothing_of_the_job(stack: Stack) -> None:
    """Issue 24: DELETE while the engine is transcribing a keep=both job with audio redaction.
    The DELETE answers at once; the transcriber then finds the tombstone and writes nothing (no
    transcript, no unredacted copy, no beeped audio); after the sweeper nothing of the job is
    left in S3, and nothing of it but its tombstone in Postgres."""
    raw, _ = await _tenant(stack, "")
    phone = _phone()
    engine_may_answer = asyncio.Event()
    stack.fake.fail_next(Fault.held(engine_may_answer))
    asked = len(stack.fake.requests)
    audio_file_id = await _submit(
        stack, raw, redact="pci", redact_keep="both", redact_audio="beep", phone=phone
    )

    async def engine_working() -> bool:
        return len(stack.fake.requests) > asked

    await eventually(engine_working, timeout=120)
    assert len(await _objects_of(stack.settings, audio_file_id)) == 1  # the audio
    async with (
        aiohttp.ClientSession() as s,
        s.delete(f"{stack.base_url}/api/media/{audio_file_id}", headers={"X-API-Key": raw}) as r,
    ):
        body = await r.json()
    assert (r.status, body["objects_removed"]) == (200, True), body
    engine_may_answer.set()

    async def transcriber_done() -> bool:
        return await _transcriber_idle(stack.settings)

    await eventually(transcriber_done, timeout=120)
    async with S3BlobStore.open(stack.settings.require_s3()) as store:
        await Sweeper(stack.pool, store).run_until_idle()
    assert await _objects_of(stack.settings, audio_file_id) == []
    job = uuid.UUID(audio_file_id)
    for table in ("transcriptions", "transcription_chunks", "transcription_failures"):
        left = await stack.pool.fetchval(
            f"SELECT count(*) FROM media_pipeline.{table} WHERE audio_file_id = $1", job
        )
        assert left == 0, table
    results = await stack.pool.fetchval(
        "SELECT count(*) FROM media_pipeline.outbox WHERE (subject LIKE 'transcribe.transcript."
        "ready.%' OR subject LIKE 'transcribe.transcript.failed.%') AND "
        "convert_from(payload, 'UTF8') LIKE $1",
        f"%{audio_file_id}%",
    )
    assert results == 0
    rows = await _every_row(stack.pool)
    _clean("Postgres", rows)
    assert phone.lstrip("+") not in rows
    state = await stack.pool.fetchval(
        "SELECT status FROM media_pipeline.audio_files WHERE id = $1", job
    )
    assert state == "deleted"  # the tombstone
