"""Redaction quality and speed: recall and precision per entity class on the call corpora.

    python -m bench.redaction_bench [--rounds 200] [--out bench/results/redaction.json]

Corpora: tests/data/redaction/calls.json (the one the detectors were written against) and
tests/data/redaction/heldout.json and heldout2.json to heldout5.json (each written afterwards
and first measured before any fix: bench/results/redaction_heldout*_first_run.json, see
bench/README.md). Every class is switched on (``pii``), as the strictest mix.

Recall: an expected value counts as found only when a finding of its class covers every one of
its letters and digits (a value left half visible is a miss). Precision: a finding counts as
right when it overlaps an expected value of its class; anything else, including a value found
under the wrong class, is a false positive. Speed: characters of transcript per second through
``redact_text`` (one core, whole corpus, ``--rounds`` times). Results:
bench/results/redaction.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

from libs.redaction import EntityClass, Policy, detect, redact_text
from libs.redaction.detect import _is_phone

REPO_ROOT = Path(__file__).resolve().parents[1]
CORPORA = {
    "calls": REPO_ROOT / "tests" / "data" / "redaction" / "calls.json",
    "heldout": REPO_ROOT / "tests" / "data" / "redaction" / "heldout.json",
    "heldout2": REPO_ROOT / "tests" / "data" / "redaction" / "heldout2.json",
    "heldout3": REPO_ROOT / "tests" / "data" / "redaction" / "heldout3.json",
    "heldout4": REPO_ROOT / "tests" / "data" / "redaction" / "heldout4.json",
    "heldout5": REPO_ROOT / "tests" / "data" / "redaction" / "heldout5.json",
}
RESULTS = REPO_ROOT / "bench" / "results" / "redaction.json"
ALL = frozenset(EntityClass)


def _covered(text: str, start: int, end: int, spans: list[tuple[int, int]]) -> bool:
    return all(any(s <= i < e for s, e in spans) for i in range(start, end) if text[i].isalnum())


def score(snippets: list[dict[str, Any]]) -> dict[str, Any]:
    per: dict[str, dict[str, int]] = {
        c.value: {"expected": 0, "found": 0, "false_negatives": 0, "false_positives": 0}
        for c in EntityClass
    }
    misses: list[str] = []
    false_positives: list[str] = []
    survived = 0
    survive_total = 0
    for snippet in snippets:
        text = snippet["text"]
        findings = detect(text, ALL)
        expected = []
        for cls, value in snippet["expect"]:
            start = text.index(value)
            expected.append((cls, start, start + len(value)))
        for cls, start, end in expected:
            per[cls]["expected"] += 1
            same = [(f.start, f.end) for f in findings if f.cls.value == cls]
            if _covered(text, start, end, same):
                per[cls]["found"] += 1
            else:
                per[cls]["false_negatives"] += 1
                misses.append(f"{snippet['id']}: {cls}")
        for f in findings:
            if not any(
                cls == f.cls.value and f.start < end and start < f.end
                for cls, start, end in expected
            ):
                per[f.cls.value]["false_positives"] += 1
                false_positives.append(f"{snippet['id']}: {f.cls.value}")
        redacted, _ = redact_text(text, Policy(classes=ALL))
        for value in snippet["survive"]:
            survive_total += 1
            survived += value in redacted
    classes: dict[str, Any] = {}
    for cls, n in per.items():
        tp_findings = n["found"]
        predicted = tp_findings + n["false_positives"]
        classes[cls] = {
            **n,
            "recall": round(n["found"] / n["expected"], 4) if n["expected"] else None,
            "precision": round(tp_findings / predicted, 4) if predicted else None,
        }
    return {
        "snippets": len(snippets),
        "classes": classes,
        "misses": misses,
        "false_positives": false_positives,
        "survivors_kept": f"{survived}/{survive_total}",
    }


def speed(snippets: list[dict[str, Any]], rounds: int) -> dict[str, float]:
    policy = Policy(classes=ALL)
    texts = [s["text"] for s in snippets]
    chars = sum(len(t) for t in texts) * rounds
    began = time.perf_counter()
    for _ in range(rounds):
        # Each round as if for the first time: the phone validator's cache would otherwise
        # answer every round after the first from memory.
        _is_phone.cache_clear()
        for text in texts:
            redact_text(text, policy)
    seconds = time.perf_counter() - began
    return {"chars": chars, "seconds": round(seconds, 3), "chars_per_s": round(chars / seconds)}


def audio_speed(rounds: int) -> dict[str, float]:
    """Redacting audio: the fixture call (WAV) decoded and rewritten with a beep every 2 s."""
    import tempfile
    import wave

    from libs.audio.redact import redact_to_wav

    source = REPO_ROOT / "tests" / "fixtures" / "hello_campaign.wav"
    with wave.open(str(source), "rb") as w:
        seconds = w.getnframes() / w.getframerate()
    spans = [(t, t + 0.5) for t in range(0, int(seconds), 2)]
    with tempfile.TemporaryDirectory() as tmp:
        dest = Path(tmp) / "out.wav"
        began = time.perf_counter()
        for _ in range(rounds):
            redact_to_wav(source, dest, spans, mode="beep")
        elapsed = time.perf_counter() - began
    audio = seconds * rounds
    return {
        "audio_seconds": round(audio, 1),
        "seconds": round(elapsed, 3),
        "x_realtime": round(audio / elapsed),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to write the results")
    args = parser.parse_args()
    results: dict[str, Any] = {"machine": platform.platform(), "python": platform.python_version()}
    everything: list[dict[str, Any]] = []
    for name, path in CORPORA.items():
        snippets = json.loads(path.read_text())["snippets"]
        everything += snippets
        results[name] = score(snippets)
    results["speed"] = speed(everything, args.rounds)
    results["audio_speed"] = audio_speed(max(1, args.rounds // 4))
    for name in CORPORA:
        print(f"{name}: {results[name]['snippets']} snippets")
        print(f"  {'class':<12} {'recall':>7} {'precision':>9}  expected  FN  FP")
        for cls, r in results[name]["classes"].items():
            recall = "-" if r["recall"] is None else f"{r['recall']:.1%}"
            precision = "-" if r["precision"] is None else f"{r['precision']:.1%}"
            print(
                f"  {cls:<12} {recall:>7} {precision:>9}  {r['expected']:>8} "
                f"{r['false_negatives']:>3} {r['false_positives']:>3}"
            )
        print(f"  survivors kept: {results[name]['survivors_kept']}")
        for miss in results[name]["misses"]:
            print(f"  miss: {miss}")
        for fp in results[name]["false_positives"]:
            print(f"  false positive: {fp}")
    s = results["speed"]
    print(f"speed: {s['chars_per_s']:,} chars/s ({s['chars']:,} chars in {s['seconds']} s)")
    a = results["audio_speed"]
    print(
        f"audio: {a['x_realtime']}x real time ({a['audio_seconds']} s of audio in {a['seconds']} s)"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
