"""Time to redact a whole conversation by size: a two-channel call of N words per channel in
which the customer reads a card number every 40 words, interrupted by the agent.

    python -m bench.redaction_conversation_bench [--sizes 2000,8000,32000]

Prints seconds per size for ``redact_transcript`` (speaker by speaker, every view rebuilt) and
for ``redact_chunk`` on one channel (the saved-chunk pass); the time per word should stay flat
as the size grows (the placement of findings among words and segments is linear: bisection
and one sweep).
"""

from __future__ import annotations

import argparse
import time

from libs.redaction import Policy, redact_chunk, redact_transcript
from libs.transcript import Segment, Transcript, Word
from libs.transcript.conversation import from_channels

CARD = [
    "four",
    "one",
    "one",
    "one",
    "one",
    "one",
    "one",
    "one",
    "one",
    "one",
    "one",
    "one",
    "one",
    "one",
    "one",
    "one",
]
FILL = ["yes", "that", "is", "right", "and", "the", "next", "item", "please"]


def _channel(words: list[tuple[float, str]], duration: float) -> Transcript:
    segments = [
        Segment(
            id=i,
            start=words[i][0],
            end=words[min(i + 9, len(words) - 1)][0] + 0.3,
            text=" ".join(w for _, w in words[i : i + 10]),
        )
        for i in range(0, len(words), 10)
    ]
    return Transcript(
        text=" ".join(w for _, w in words),
        language="en",
        duration=duration,
        segments=tuple(
            Segment(id=i, start=s.start, end=s.end, text=s.text) for i, s in enumerate(segments)
        ),
        words=tuple(Word(start=t, end=t + 0.3, word=w) for t, w in words),
        model="whisper-1",
        engine="openai",
    )


def call(words_per_channel: int) -> Transcript:
    customer: list[tuple[float, str]] = []
    agent: list[tuple[float, str]] = []
    t = 0.0
    while len(customer) < words_per_channel:
        for w in FILL + CARD[:8]:
            customer.append((t, w))
            t += 0.4
        agent += [(t, "got"), (t + 0.3, "it")]
        t += 0.8
        for w in CARD[8:] + FILL[:8]:
            customer.append((t, w))
            t += 0.4
        agent += [(t + k * 0.4, w) for k, w in enumerate(FILL)]
        t += 0.4 * len(FILL)
    return from_channels(
        [_channel(agent, t), _channel(customer, t)], roles=("agent", "customer"), duration=t
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="2000,8000,32000")
    args = parser.parse_args()
    policy = Policy.parse("pci", audio="beep")
    for size in (int(s) for s in args.sizes.split(",")):
        transcript = call(size)
        started = time.perf_counter()
        _, report = redact_transcript(transcript, policy)
        whole = time.perf_counter() - started
        started = time.perf_counter()
        redact_chunk(_channel([(w.start, w.word) for w in transcript.words or ()], 1.0), policy)
        chunk = time.perf_counter() - started
        words = len(transcript.words or ())
        print(
            f"{words:>7} words  {report.total:>5} cards  conversation {whole:6.2f} s"
            f" ({whole / words * 1e6:5.1f} us/word)  chunk {chunk:6.2f} s"
        )


if __name__ == "__main__":
    main()
