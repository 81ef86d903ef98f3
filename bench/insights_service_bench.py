"""services/insights' own overhead next to the chat model's latency (issue 21; ChatInsights'
own overhead next to the raw HTTP request is bench/insights_bench.py).

The chat model is the project's fake OpenAI-compatible server answering every chat completion
in a fixed time (--latency). Two runs of --calls calls, both with --in-flight calls at once:

- the server alone: `ChatInsights.ask` on the turns of one call, --in-flight at a time;
- the service: --calls completed jobs (transcript JSON in SeaweedFS, TranscriptReady published
  through the outbox relay), the `insights` durable consumer as `transcribe insights run` runs it
  with INSIGHTS_CONCURRENCY = --in-flight (at most that many requests at the model, twice as
  many handlers): load the job, read the transcript, evaluate 20 categories, ask the same model,
  write the JSON, then matches + insights row + InsightsReady in one transaction. A call counts
  when its row exists.

Prints calls/s of both and their ratio (target >= 0.9). Embedded Postgres, nats-server and
SeaweedFS in a temp dir; everything in this process (uvloop).

    python -m bench.insights_service_bench [--calls 400] [--in-flight 8] [--latency 0.25]

Result: bench/results/insights_service.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import uvloop

from bench.infra import infrastructure
from libs import apikeys, bus, db
from libs.blobstore import S3BlobStore
from libs.categories import rules
from libs.categories import store as categories
from libs.contracts import streams
from libs.jobs import lifecycle
from libs.layout import transcript_keys
from libs.llm.insights import ChatInsights, Turn, build_client
from libs.llm.template import InsightTemplate
from libs.outbox import OutboxRelay
from libs.settings import Settings
from libs.transcript import Transcript, Utterance
from libs.transcript.render import render_json
from services.insights.main import PREFETCH
from services.insights.worker import InsightsWorker
from tests.fakes.openai_server import FakeOpenAIServer

RESULTS = Path(__file__).resolve().parent / "results" / "insights_service.json"
INSERT_JOB = """
INSERT INTO media_pipeline.audio_files
    (id, api_key_id, tenant_prefix, campaign_name, bucket, b2_object_key, content_type,
     size_bytes, sha256, transcript_prefix)
VALUES ($1, $2, 'bench', 'winback', 'bench', $3, 'audio/wav', 1, 'x', 'bench')
"""
LINES = (
    ("agent", "Thanks for calling Acme, this call is recorded, how can I help you today?"),
    ("customer", "Hi, I want to cancel my subscription, it is too expensive for me."),
    ("agent", "I am sorry to hear that. Can I offer you a discount for the next six months?"),
    ("customer", "Maybe, how much would that be per month?"),
    ("agent", "It would be half price, so nine ninety nine a month."),
    ("customer", "Alright, that sounds fair, let us do that then. Thank you."),
)


def _call(repeat: int = 5) -> Transcript:
    utterances = []
    t = 0.0
    for _ in range(repeat):
        for role, text in LINES:
            utterances.append(Utterance(speaker=role, role=role, start=t, end=t + 4.0, text=text))
            t += 4.5
    return Transcript(
        text=" ".join(u.text for u in utterances),
        language="en",
        duration=t,
        model="whisper-1",
        engine="openai",
        utterances=tuple(utterances),
    )


async def _server_alone(model: ChatInsights, calls: int, in_flight: int) -> float:
    call = _call()
    turns = [
        Turn(start=u.start, end=u.end, role=u.role, speaker=u.speaker, text=u.text)
        for u in call.utterances
    ]
    slots = asyncio.Semaphore(in_flight)

    async def one() -> None:
        async with slots:
            await model.ask(InsightTemplate(), turns, campaign="winback")

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(calls)))
    return calls / (time.perf_counter() - started)


async def _jobs(settings: Settings, pool: db.Pool, store: S3BlobStore, calls: int) -> uuid.UUID:
    async with pool.acquire() as conn:
        _, key = await apikeys.create(conn, name="bench", tenant_prefix="bench")
        key_id = uuid.UUID(key.id)
        for n in range(20):
            rule = rules.parse({"said": [f"phrase number {n}", "cancel my subscription"]})
            await categories.put(conn, key_id, f"category-{n}", rule)
    call = _call()
    body = render_json(call)
    for _ in range(calls):
        job_id = uuid.uuid4()
        object_key = f"bench/winback/audio/unknown/{job_id}.wav"
        await pool.execute(INSERT_JOB, job_id, key_id, object_key)
        job = await lifecycle.load_job(pool, str(job_id))
        assert job is not None
        assert await lifecycle.mark_processing(pool, job, force=False)
        keys = transcript_keys(object_key, campaign="winback", prefix="bench")
        await store.put_bytes(keys.json, body, "application/json")
        assert await lifecycle.complete(pool, job, call, keys, force=False, trace_id=None)
    return key_id


async def _service(
    settings: Settings, model: ChatInsights, calls: int, in_flight: int
) -> tuple[float, float]:
    pool = await db.create_pool(settings.require_database_url(), max_size=max(4, in_flight))
    nc = await bus.connect(settings.nats_servers, name="bench")
    try:
        js = nc.jetstream()
        async with S3BlobStore.open(settings.require_s3()) as store:
            await _jobs(settings, pool, store, calls)
            relay = OutboxRelay(pool, js)
            await relay.run_until_idle()
            worker = InsightsWorker(pool, store, model=model, model_slots=in_flight)
            done = asyncio.Event()
            handled = 0

            async def handle(delivery: bus.Delivery) -> None:
                nonlocal handled
                await worker.handle(delivery)
                handled += 1
                if handled == calls:
                    done.set()

            consumer = bus.PullConsumer(
                js,
                stream=streams.STREAM_NAME,
                durable=streams.INSIGHTS_DURABLE,
                handler=handle,
                concurrency=in_flight * PREFETCH,
                name="insights",
            )
            stop = asyncio.Event()
            cpu = time.process_time()
            started = time.perf_counter()
            running = asyncio.create_task(consumer.run(stop))
            await done.wait()
            elapsed = time.perf_counter() - started
            cpu_per_call = (time.process_time() - cpu) / calls
            stop.set()
            await running
            stored = await pool.fetchval(
                "SELECT count(*) FROM media_pipeline.insights WHERE status = 'completed'"
            )
            assert stored == calls, f"{stored} of {calls} calls have insights"
            return calls / elapsed, cpu_per_call
    finally:
        await nc.drain()
        await pool.close()


async def main(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="insights-bench-") as tmp:
        async with (
            infrastructure(Path(tmp), api_key="bench-key") as settings,
            FakeOpenAIServer(latency=args.latency) as chat,
        ):
            model = ChatInsights(
                build_client(chat.api_key, chat.base_url, 60.0), model="gpt-4o-mini"
            )
            try:
                await _server_alone(model, min(args.calls, 2 * args.in_flight), args.in_flight)
                alone = await _server_alone(model, args.calls, args.in_flight)
                service, cpu = await _service(settings, model, args.calls, args.in_flight)
            finally:
                await model.aclose()
    result = {
        "calls": args.calls,
        "in_flight": args.in_flight,
        "server_latency_s": args.latency,
        "server_alone_calls_per_s": round(alone, 2),
        "service_calls_per_s": round(service, 2),
        "ratio": round(service / alone, 3),
        "service_cpu_ms_per_call": round(cpu * 1000, 2),
        "load": [round(x, 2) for x in os.getloadavg()],
    }
    return result


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--in-flight", type=int, default=8)
    parser.add_argument("--latency", type=float, default=0.25)
    args = parser.parse_args()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        result = runner.run(main(args))
    print(json.dumps(result, indent=2))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    cli()
