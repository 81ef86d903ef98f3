"""Categories (issue #21): the time to evaluate a key's 20 categories on a one-hour call's text,
in the bench process (pure code, no servers). Target < 5 ms per call.

    python -m bench.categories_bench [--repeat 200] [--hours 1.0]

The call: two channels (agent, customer) taking turns of 8-25 words from a 2,000-word
vocabulary at 150 words per minute, redacted card numbers here and there, the conversation
metrics computed as the transcriber does (libs.transcript.conversation.summarize). The rules:
the issue's example and 19 others of every kind (phrases by role, speaker label and window,
not_said, metrics, redactions, nested all/any/not), 2-8 phrases each, some found, most not.
Measured: `evaluate(categories, call)` (normalizing the call's text included) per call, and
`Call.from_transcript` apart. Result: bench/results/categories.json.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
from pathlib import Path
from typing import Any

from bench.report import write_results
from libs.categories import rules
from libs.categories.call import Call
from libs.categories.evaluate import evaluate
from libs.categories.rules import Category
from libs.transcript import Transcript
from libs.transcript.conversation import summarize
from libs.transcript.model import Utterance

RESULTS = Path(__file__).resolve().parent / "results" / "categories.json"
TARGET_MS = 5.0

SYLLABLES = ("ka", "lo", "mi", "ter", "son", "ba", "ri", "del", "an", "vo", "pe", "gu", "sta")
COMMON = [
    "i",
    "want",
    "to",
    "the",
    "a",
    "my",
    "your",
    "please",
    "thank",
    "you",
    "can",
    "we",
    "call",
    "account",
    "card",
    "payment",
    "bill",
    "subscription",
    "cancel",
    "help",
    "today",
    "number",
    "order",
    "plan",
    "price",
    "month",
    "service",
    "refund",
    "transfer",
]


def vocabulary(rng: random.Random, size: int = 2000) -> list[str]:
    words = set(COMMON)
    while len(words) < size:
        words.add("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 3))))
    return sorted(words)


def one_call(hours: float, seed: int = 21) -> Transcript:
    rng = random.Random(seed)
    words = vocabulary(rng)
    duration = hours * 3600.0
    turns: list[Utterance] = []
    t = 0.5
    agent = True
    while t < duration - 10:
        n = rng.randint(8, 25)
        said = [rng.choice(words) for _ in range(n)]
        if rng.random() < 0.02:
            said[rng.randrange(n)] = "[CREDIT_CARD],"
        if rng.random() < 0.01 and not agent:
            said[:4] = ["i", "want", "to", "cancel"]
        text = " ".join(said).capitalize() + rng.choice((".", "?", "!", "..."))
        length = n / 2.5  # 150 words per minute
        role = "agent" if agent else "customer"
        channel = 0 if agent else 1
        turns.append(
            Utterance(
                speaker=f"Channel {channel}",
                role=role,
                channel=channel,
                start=round(t, 3),
                end=round(min(t + length, duration), 3),
                text=text,
            )
        )
        t += length + rng.uniform(-0.5, 1.5)
        agent = not agent
    return Transcript(
        text=" ".join(u.text for u in turns),
        language="en",
        duration=duration,
        model="whisper-1",
        engine="openai",
        utterances=tuple(turns),
        conversation=summarize(turns, duration=duration, method="channels"),
    )


ISSUE_RULE = {
    "all": [
        {"said": ["cancel my subscription", "close my account"], "by": "customer"},
        {
            "not_said": ["this call is recorded", "this call may be recorded"],
            "by": "agent",
            "first_seconds": 30,
        },
        {"metric": "silence_share", "min": 0.3},
        {"redacted": "credit_card"},
        {
            "any": [
                {"metric": "interruptions", "min": 5},
                {"not": {"said": ["thank you"], "by": "agent"}},
            ]
        },
    ]
}


def twenty_rules(rng: random.Random) -> list[Category]:
    words = vocabulary(random.Random(21))
    out = [Category(name="issue-example", rule=rules.parse(ISSUE_RULE))]
    kinds = ["said", "not_said", "window", "label", "nested", "metric"]
    for i in range(19):
        kind = kinds[i % len(kinds)]
        phrases = [
            " ".join(rng.choice(words) for _ in range(rng.randint(1, 4)))
            for _ in range(rng.randint(2, 8))
        ]
        raw: dict[str, Any]
        if kind == "said":
            raw = {"said": phrases, "by": rng.choice(["agent", "customer", "any"])}
        elif kind == "not_said":
            raw = {"not_said": phrases, "by": "agent"}
        elif kind == "window":
            raw = {"said": phrases, "first_seconds": 60, "last_seconds": 120}
        elif kind == "label":
            raw = {"said": phrases, "by": "Channel 1"}
        elif kind == "nested":
            raw = {
                "any": [
                    {"all": [{"said": phrases[:2]}, {"not": {"said": phrases[2:] or ["x"]}}]},
                    {"said": ["i want to cancel", "refund"], "by": "customer"},
                ]
            }
        else:
            raw = {
                "all": [
                    {"metric": "talk_ratio", "min": 0.4, "max": 0.6},
                    {"metric": "duration", "min": 600},
                    {"any": [{"redacted": "credit_card"}, {"said": phrases}]},
                ]
            }
        out.append(Category(name=f"rule-{i}", rule=rules.parse(raw)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--hours", type=float, default=1.0)
    args = parser.parse_args()

    transcript = one_call(args.hours)
    categories = twenty_rules(random.Random(7))
    redacted = {"credit_card": transcript.text.count("[CREDIT_CARD]")}
    words = len(transcript.text.split())

    building: list[float] = []
    for _ in range(max(args.repeat // 4, 10)):
        start = time.perf_counter()
        call = Call.from_transcript(transcript, transcript.conversation, redacted)
        building.append((time.perf_counter() - start) * 1000)

    matches = evaluate(categories, call)  # warm
    timings: list[float] = []
    cpu: list[float] = []
    for _ in range(args.repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        evaluate(categories, call)
        cpu.append((time.process_time() - start_cpu) * 1000)
        timings.append((time.perf_counter() - start) * 1000)
    timings.sort()
    median = statistics.median(timings)
    p95 = timings[int(0.95 * (len(timings) - 1))]
    cpu_median = statistics.median(cpu)
    print(
        f"call: {args.hours:g} h, {len(call.utterances)} utterances, {words} words; "
        f"{len(categories)} categories, {len(matches)} matched"
    )
    print(
        f"evaluate: median {median:.2f} ms, p95 {p95:.2f} ms, CPU median {cpu_median:.2f} ms "
        f"(target < {TARGET_MS} ms; load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)"
    )
    print(f"Call.from_transcript: median {statistics.median(building):.2f} ms")
    write_results(
        RESULTS,
        {
            "hours": args.hours,
            "utterances": len(call.utterances),
            "words": words,
            "categories": len(categories),
            "matched": [m.name for m in matches],
            "repeat": args.repeat,
            "evaluate_ms_median": round(median, 3),
            "evaluate_ms_p95": round(p95, 3),
            "evaluate_cpu_ms_median": round(cpu_median, 3),
            "from_transcript_ms_median": round(statistics.median(building), 3),
            "target_ms": TARGET_MS,
        },
    )


if __name__ == "__main__":
    main()
