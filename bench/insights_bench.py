"""ChatInsights' own overhead next to the model server's latency.

The project's OpenAI-compatible server (tests/fakes/openai_server.py, its own process) answers
every chat completion after a fixed latency (default 200 ms) with a valid structured answer.
With 8 calls in flight, the same calls are made twice per round:

- raw: the exact request body ChatInsights sends, POSTed with aiohttp, the answer read as JSON
  (what the server alone costs);
- insights: `ChatInsights.ask` (render the turns, build the strict schema, the openai SDK,
  validate with msgspec, map to libs.contracts.Insights).

Throughput is calls per second of wall time; the ratio insights/raw is the share of the
server's throughput ChatInsights keeps (target >= 0.9). Medians over --rounds, the order
of the two sides alternating between rounds.

    python -m bench.insights_bench [--calls 80] [--concurrency 8] [--latency 0.2] [--rounds 5]

Also measured: one call at a time (alternating raw and ChatInsights), the median difference
is ChatInsights' own time per call.

Result: bench/results/insights.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import structlog

from bench.report import write_results
from libs.llm import prompt
from libs.llm.insights import ChatInsights, Turn, build_client
from libs.llm.template import InsightTemplate, Question

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "insights.json"
MODEL = "bench-model"
TEMPLATE = InsightTemplate(
    outcomes=("cancelled", "retained", "escalated", "resolved"),
    questions=(
        Question(id="greeting", text="Did the agent greet the customer by name?"),
        Question(id="recording_notice", text="Did the agent read the recording notice?"),
        Question(id="offer", text="What did the agent offer?", kind="text"),
    ),
)


def call_turns(turns: int = 150) -> list[Turn]:
    """About ten minutes of talk: 150 turns of some 15 words, redacted placeholders in it."""
    out = []
    for i in range(turns):
        role = "agent" if i % 2 == 0 else "customer"
        text = (
            f"turn {i} I would like to talk about my account and the [CREDIT_CARD] on file, "
            "could you check the last payment please"
        )
        out.append(Turn(start=i * 4.0, end=i * 4.0 + 3.5, role=role, text=text))
    return out


async def start_fake(latency: float) -> tuple[asyncio.subprocess.Process, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.fakes.openai_server", "--latency", str(latency),
        "--any-model", cwd=ROOT, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    line = json.loads(await proc.stdout.readline())
    return proc, line["listening"], line["api_key"]


async def in_flight(
    calls: int, concurrency: int, one: Callable[[], Awaitable[None]]
) -> tuple[float, list[float]]:
    """Wall time of `calls` calls, `concurrency` at a time, and each call's latency."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(calls):
        queue.put_nowait(i)
    latencies: list[float] = []

    async def worker() -> None:
        while not queue.empty():
            queue.get_nowait()
            started = time.perf_counter()
            await one()
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started, latencies


def request_body(model: ChatInsights, turns: list[Turn]) -> bytes:
    """The body ChatInsights sends for this call (one part)."""
    user = prompt.user_message([prompt.line(t) for t in turns], 1, 1)
    body = {
        "model": MODEL,
        "messages": model._messages(TEMPLATE, user, in_prompt=False),
        "response_format": model._response_format(TEMPLATE),
    }
    return json.dumps(body).encode()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    proc, base_url, api_key = await start_fake(args.latency)
    turns = call_turns()
    model = ChatInsights(build_client(api_key, base_url, 60.0), model=MODEL)
    body = request_body(model, turns)
    rounds: list[dict[str, Any]] = []
    try:
        # Warm-up: connections, the schema cache, imports.
        await model.ask(TEMPLATE, turns, campaign="")
        headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
        connector = aiohttp.TCPConnector(limit=args.concurrency)
        async with aiohttp.ClientSession(connector=connector) as http:

            async def raw() -> None:
                async with http.post(
                    f"{base_url}/chat/completions", data=body, headers=headers
                ) as resp:
                    answer = await resp.json()
                    assert resp.status == 200, answer

            async def insights() -> None:
                got = await model.ask(TEMPLATE, turns, campaign="")
                assert got.outcome is not None

            await in_flight(args.concurrency, args.concurrency, raw)
            # One call at a time, alternating: ChatInsights' own time per call.
            sequential: dict[str, list[float]] = {"raw": [], "insights": []}
            cpu: dict[str, list[float]] = {"raw": [], "insights": []}
            for _ in range(args.sequential):
                for name, one in (("raw", raw), ("insights", insights)):
                    started, cpu_started = time.perf_counter(), time.process_time()
                    await one()
                    sequential[name].append(time.perf_counter() - started)
                    cpu[name].append(time.process_time() - cpu_started)
            for i in range(args.rounds):
                # Which side goes first alternates, so a busy spell on the machine hits both.
                if i % 2 == 0:
                    raw_wall, raw_lat = await in_flight(args.calls, args.concurrency, raw)
                    ins_wall, ins_lat = await in_flight(args.calls, args.concurrency, insights)
                else:
                    ins_wall, ins_lat = await in_flight(args.calls, args.concurrency, insights)
                    raw_wall, raw_lat = await in_flight(args.calls, args.concurrency, raw)
                rounds.append(
                    {
                        "raw_calls_per_s": round(args.calls / raw_wall, 2),
                        "insights_calls_per_s": round(args.calls / ins_wall, 2),
                        "raw_median_ms": round(statistics.median(raw_lat) * 1000, 1),
                        "insights_median_ms": round(statistics.median(ins_lat) * 1000, 1),
                        "ratio": round(raw_wall / ins_wall, 3),
                    }
                )
                print(json.dumps(rounds[-1]))
    finally:
        await model.aclose()
        proc.terminate()
        await proc.wait()

    def median(name: str) -> float:
        return round(statistics.median(r[name] for r in rounds), 3)

    seq_raw = statistics.median(sequential["raw"]) * 1000
    seq_ins = statistics.median(sequential["insights"]) * 1000
    return {
        "server_latency_ms": args.latency * 1000,
        "sequential_raw_median_ms": round(seq_raw, 2),
        "sequential_insights_median_ms": round(seq_ins, 2),
        "overhead_per_call_ms": round(seq_ins - seq_raw, 2),
        # This process's CPU time per call (the server runs in its own process).
        "raw_cpu_ms_per_call": round(statistics.median(cpu["raw"]) * 1000, 2),
        "insights_cpu_ms_per_call": round(statistics.median(cpu["insights"]) * 1000, 2),
        "concurrency": args.concurrency,
        "calls_per_round": args.calls,
        "rounds": rounds,
        "request_bytes": len(body),
        "raw_calls_per_s": median("raw_calls_per_s"),
        "insights_calls_per_s": median("insights_calls_per_s"),
        "raw_median_ms": median("raw_median_ms"),
        "insights_median_ms": median("insights_median_ms"),
        "ratio": median("ratio"),
        "target_ratio": 0.9,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=80, help="calls per round and side")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--latency", type=float, default=0.2, help="server seconds per answer")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sequential", type=int, default=30, help="one-at-a-time call pairs")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    result = asyncio.run(run(args))
    print(
        f"one at a time: server alone {result['sequential_raw_median_ms']} ms, ChatInsights"
        f" {result['sequential_insights_median_ms']} ms (own overhead"
        f" {result['overhead_per_call_ms']} ms per call; CPU {result['raw_cpu_ms_per_call']} ms"
        f" vs {result['insights_cpu_ms_per_call']} ms)"
    )
    print(
        f"{args.concurrency} in flight: server alone: {result['raw_calls_per_s']} calls/s (median {result['raw_median_ms']} ms);"
        f" ChatInsights: {result['insights_calls_per_s']} calls/s (median"
        f" {result['insights_median_ms']} ms); ratio {result['ratio']} (target >= 0.9)"
    )
    write_results(RESULTS, result)


if __name__ == "__main__":
    main()
