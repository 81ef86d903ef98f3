"""Redaction on pathological transcripts: time per size, to show detection is linear.

    python -m bench.redaction_pathological [--sizes 5000,10000,20000,40000] [--budget 60]

Each input repeats one hostile pattern to the given number of words (issue 24: ~1,000 "double"
words or 2,500 "one thousand" pairs raised RecursionError; "cvv one" repeated and spoken expiry
dates took quadratic time). Every class is switched on (``pii``). Two paths are timed: the
text (``redact_text``) and a whole transcript with one timed word per token
(``redact_transcript``, which redacts the text, the words and the segments). A case whose time
passed ``--budget`` seconds at one size is not run at the larger ones (recorded as skipped); an
exception is recorded by name. Each size is timed ``--repeat`` times and the best kept. ``ratio`` is each size's time over the previous size's: ~2 per
doubling is linear, ~4 quadratic. Results: bench/results/redaction_pathological.json.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from bench.report import write_results
from libs.redaction import EntityClass, Policy, redact_text, redact_transcript
from libs.transcript.model import Segment, Transcript, Word

RESULTS = Path(__file__).resolve().parents[1] / "bench" / "results" / "redaction_pathological.json"
POLICY = Policy(classes=frozenset(EntityClass))

# name -> the unit repeated until the text has the wanted number of words
PATTERNS: dict[str, str] = {
    "double": "double ",
    "one_thousand": "one thousand ",
    "cvv_one": "cvv one ",
    "spoken_expiry": "expires oh four twenty seven ",
    "spoken_digits": "four one one ",
    "written_digits": "4111 1111 1111 1112 ",
    "interjected_digits": "four one one one hold on ",
    "hyphen_digits": "4-1-1-1-",
    "security_code_is": "the security code is one two three ",
    "date_of_birth": "date of birth the fourth of march nineteen eighty five ",
    "spelled_email": "j o h n at example dot com ",
    "dotted_email": "a dot ",
}
# Digits said one by one in no pattern (seeded): every window a new candidate phone number and
# card, the phone validator's worst case (a repeated pattern repeats its candidates).
RANDOM_DIGITS = "random_spoken_digits"
_DIGIT_WORDS = ("oh", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def _text(name: str, words: int) -> str:
    if name == RANDOM_DIGITS:
        rng = random.Random(words)
        return " ".join(rng.choice(_DIGIT_WORDS) for _ in range(words))
    unit = PATTERNS[name]
    per_unit = max(1, len(unit.replace("-", " - ").split()))
    return (unit * (words // per_unit + 1)).strip()


def _transcript(text: str) -> Transcript:
    words = text.split()
    return Transcript(
        text=text,
        language="en",
        duration=float(len(words)),
        segments=tuple(
            Segment(
                id=k,
                start=float(i),
                end=float(min(i + 30, len(words))),
                text=" ".join(words[i : i + 30]),
            )
            for k, i in enumerate(range(0, len(words), 30))
        ),
        words=tuple(Word(start=float(i), end=i + 0.5, word=w) for i, w in enumerate(words)),
        model="m",
        engine="e",
    )


def _time(run: Callable[[], object], repeat: int) -> tuple[float | None, str | None]:
    """The best of ``repeat`` runs (the machine is shared: the minimum is the least noisy)."""
    best: float | None = None
    for _ in range(repeat):
        began = time.perf_counter()
        try:
            run()
        except Exception as exc:  # the bench records what went wrong, by name
            return None, type(exc).__name__
        elapsed = time.perf_counter() - began
        best = elapsed if best is None else min(best, elapsed)
    return best, None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="5000,10000,20000,40000")
    parser.add_argument("--budget", type=float, default=60.0)
    parser.add_argument("--only", default="", help="comma-separated pattern names")
    parser.add_argument("--repeat", type=int, default=2, help="runs per size; the best counts")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    chosen = [n for n in args.only.split(",") if n] or [*PATTERNS, RANDOM_DIGITS]
    cases: dict[str, Any] = {}
    for name in chosen:
        for path in ("text", "transcript"):
            rows: list[dict[str, Any]] = []
            over = False
            previous: float | None = None
            for words in sizes:
                if over:
                    rows.append({"words": words, "skipped": True})
                    continue
                text = _text(name, words)
                if path == "text":
                    seconds, error = _time(partial(redact_text, text, POLICY), args.repeat)
                else:
                    transcript = _transcript(text)
                    seconds, error = _time(
                        partial(redact_transcript, transcript, POLICY), args.repeat
                    )
                row: dict[str, Any] = {"words": words, "chars": len(text)}
                if error is not None:
                    row["error"] = error
                    shown = error
                else:
                    assert seconds is not None
                    row["seconds"] = round(seconds, 4)
                    if previous:
                        row["ratio"] = round(seconds / previous, 2)
                    previous = seconds
                    over = seconds > args.budget
                    shown = f"{seconds:8.3f} s" + (f"  x{row['ratio']}" if "ratio" in row else "")
                rows.append(row)
                print(f"{name:<20} {path:<10} {words:>7} words  {shown}", flush=True)
            cases[f"{name}/{path}"] = rows
    summary = _summary(sizes, cases)
    for path, rows in summary.items():
        shown = "  ".join(f"{r['words']}: {r['seconds']} s (x{r.get('ratio', '-')})" for r in rows)
        print(f"all cases, {path}: {shown}")
    write_results(
        args.out,
        {
            "sizes": sizes,
            "budget_s": args.budget,
            "repeat": args.repeat,
            "summary": summary,
            "cases": cases,
        },
    )


def _summary(sizes: list[int], cases: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Per path, the seconds of every case that ran at every size, summed per size: the ratio
    of the sums is less noisy on a shared machine than any one case's."""
    summary: dict[str, list[dict[str, Any]]] = {}
    for path in ("text", "transcript"):
        complete = [
            rows
            for name, rows in cases.items()
            if name.endswith(f"/{path}") and all("seconds" in r for r in rows)
        ]
        rows_out: list[dict[str, Any]] = []
        for k, words in enumerate(sizes):
            total = sum(rows[k]["seconds"] for rows in complete)
            row: dict[str, Any] = {
                "words": words,
                "cases": len(complete),
                "seconds": round(total, 3),
            }
            if rows_out and rows_out[-1]["seconds"]:
                row["ratio"] = round(total / rows_out[-1]["seconds"], 2)
            rows_out.append(row)
        summary[path] = rows_out
    return summary


if __name__ == "__main__":
    main()
