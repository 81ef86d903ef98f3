"""The offline engine's settings side by side: word error rate and real-time factor on the
speech-dev corpus.

    python -m bench.offline_wer [--corpus DIR] [--beams 1,5] [--vad]
                                [--model small.en|/path/to/ct2-dir] [--compute-type int8]

--corpus DIR: a corpus directory (`refs.tsv`, `<clip>.wav`, `tel/<clip>.wav`); default
tests/fixtures/speech, the three clips the repository carries. The published numbers come from
the full speech-dev corpus (docs/benchmarks.md, "The speech corpus").

Runs the offline engine (faster-whisper, the packaged tiny.en, int8, once per beam size asked
for, and with VAD if asked) over every clip in refs.tsv, at 16 kHz and as telephone audio (`tel/`:
300-3400 Hz, 8 kHz, G.711 mu-law), in one process on the same machine, through each engine's
`transcribe()` (libs.audio decoding included). Models are loaded before timing starts.

WER = (substitutions + deletions + insertions) / reference words, summed over the clips of a
subset (corpus-level, the headline) and also given as the median of per-clip WERs; the
normalisation is the corpus's (docs/benchmarks.md): lower case, punctuation removed, digits as words,
contractions expanded, applied to both sides. RTF = processing seconds / audio seconds per clip
(median and total). `real` (human speech) and `synthetic` (festival) are reported apart.
Results: bench/results/offline_wer.json.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import re
import statistics
import tempfile
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np

from bench.report import write_results
from services.transcriber.engines.base import Engine, EngineOptions
from services.transcriber.engines.whisper import FasterWhisperEngine, WhisperConfig

REPO_ROOT = Path(__file__).resolve().parents[1]
# The clips the repository carries; pass --corpus for the full speech-dev corpus.
DEFAULT_CORPUS = REPO_ROOT / "tests" / "fixtures" / "speech"
RESULTS = REPO_ROOT / "bench" / "results" / "offline_wer.json"

_ONES = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
_TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_CONTRACTIONS = {
    "it's": "it is",
    "that's": "that is",
    "what's": "what is",
    "there's": "there is",
    "he's": "he is",
    "she's": "she is",
    "let's": "let us",
    "i'm": "i am",
    "i'd": "i would",
    "i'll": "i will",
    "i've": "i have",
    "you're": "you are",
    "we're": "we are",
    "they're": "they are",
    "can't": "cannot",
    "won't": "will not",
    "don't": "do not",
    "doesn't": "does not",
    "didn't": "did not",
    "isn't": "is not",
    "wasn't": "was not",
}
_SPELLING = {"mr": "mister", "mrs": "missus", "metres": "meters", "metre": "meter"}


def _number(n: int) -> list[str]:
    if n < 20:
        return [_ONES[n]]
    if n < 100:
        return [_TENS[n // 10]] + ([_ONES[n % 10]] if n % 10 else [])
    if n < 1000:
        rest = _number(n % 100) if n % 100 else []
        return [_ONES[n // 100], "hundred", *rest]
    rest = _number(n % 1000) if n % 1000 else []
    return [*_number(n // 1000), "thousand", *rest]


def normalise(text: str) -> list[str]:
    text = text.lower().replace("\u2019", "'")
    words: list[str] = []
    for token in re.sub(r"[^a-z0-9' ]", " ", text).split():
        token = token.strip("'")
        if not token:
            continue
        if token in _CONTRACTIONS:
            words.extend(_CONTRACTIONS[token].split())
            continue
        if token.isdigit():
            # Short numbers are said as numbers ("10 meters"), long digit strings digit by
            # digit (account numbers, "2934 0").
            if len(token) <= 3:
                words.extend(_number(int(token)))
            else:
                words.extend(_ONES[int(d)] for d in token)
            continue
        token = token.replace("'", "")
        words.append(_SPELLING.get(token, token))
    return words


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    previous = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        current = [i]
        for j, h in enumerate(hyp, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h)))
        previous = current
    return previous[-1]


def attenuate(source: Path, dest: Path, db: float) -> None:
    """A copy of a 16-bit WAV `db` decibels quieter."""
    with wave.open(str(source), "rb") as src:
        params = src.getparams()
        samples = np.frombuffer(src.readframes(src.getnframes()), dtype="<i2")
    scaled = np.round(samples.astype(np.float32) * 10 ** (-db / 20)).astype("<i2")
    with wave.open(str(dest), "wb") as out:
        out.setparams(params)
        out.writeframes(scaled.tobytes())


def load_refs(corpus: Path) -> list[dict[str, str]]:
    with (corpus / "refs.tsv").open(newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))


async def run_engine(
    label: str, engine: Engine, directory: Path, refs: list[dict[str, str]], band: str
) -> dict[str, Any]:
    clips: list[dict[str, Any]] = []
    for row in refs:
        path = directory / row["file"]
        started = time.perf_counter()
        transcript = await engine.transcribe(path, EngineOptions(timestamps="segment"))
        elapsed = time.perf_counter() - started
        ref, hyp = normalise(row["reference"]), normalise(transcript.text)
        errors = edit_distance(ref, hyp)
        clips.append(
            {
                "file": row["file"],
                "subset": row["subset"],
                "reference": " ".join(ref),
                "hypothesis": " ".join(hyp),
                "ref_words": len(ref),
                "errors": errors,
                "wer": round(errors / len(ref), 4),
                "audio_seconds": transcript.duration,
                "processing_seconds": round(elapsed, 4),
                "rtf": round(elapsed / transcript.duration, 4),
            }
        )
    summary: dict[str, Any] = {"engine": label, "band": band, "clips": clips}
    for subset in ("real", "synthetic"):
        chosen = [c for c in clips if c["subset"] == subset]
        if not chosen:
            continue
        words = sum(c["ref_words"] for c in chosen)
        errors = sum(c["errors"] for c in chosen)
        summary[subset] = {
            "clips": len(chosen),
            "ref_words": words,
            "errors": errors,
            "wer": round(errors / words, 4),
            "median_clip_wer": round(statistics.median(c["wer"] for c in chosen), 4),
            "median_rtf": round(statistics.median(c["rtf"] for c in chosen), 4),
            "total_rtf": round(
                sum(c["processing_seconds"] for c in chosen)
                / sum(c["audio_seconds"] for c in chosen),
                4,
            ),
        }
    return summary


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--beams", default="1,5", help="whisper beam sizes to run, e.g. 1,5")
    parser.add_argument(
        "--model", default=None, help="OFFLINE_MODEL to measure (default: the packaged tiny.en)"
    )
    parser.add_argument("--compute-type", default="auto", help="OFFLINE_COMPUTE_TYPE")
    parser.add_argument("--vad", action="store_true", help="also run whisper beam 1 with VAD")
    parser.add_argument(
        "--quiet-db", type=float, default=0.0, help="also run the 16 kHz clips this many dB down"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    refs = load_refs(args.corpus)

    # pocketsphinx, the offline engine before this one, measured 59.1% / 86.5% WER (16 kHz /
    # telephone) on the real subset with this script; see bench/README.md.
    engines: list[tuple[str, Engine]] = []
    common: dict[str, Any] = {"model": args.model, "compute_type": args.compute_type}
    for beam in (int(b) for b in args.beams.split(",") if b):
        whisper = FasterWhisperEngine(WhisperConfig(**common, beam_size=beam))
        await whisper.warm_up()
        engines.append((f"{whisper.default_model} beam={beam}", whisper))
    if args.vad:
        whisper = FasterWhisperEngine(WhisperConfig(**common, beam_size=1, vad=True))
        await whisper.warm_up()
        engines.append((f"{whisper.default_model} beam=1 vad", whisper))

    runs = []
    bands = {"16k": args.corpus, "tel": args.corpus / "tel"}
    if args.quiet_db:
        # Speech far below the level VAD models are trained on (a stand-in for a customer
        # speaking softly or away from the handset: the corpus has no whispered speech).
        quiet = Path(tempfile.mkdtemp(prefix="offline-wer-quiet-"))
        for row in refs:
            attenuate(args.corpus / row["file"], quiet / row["file"], args.quiet_db)
        bands[f"-{args.quiet_db:g}dB"] = quiet
    for band, directory in bands.items():
        for label, engine in engines:
            runs.append(await run_engine(label, engine, directory, refs, band))

    print(f"corpus: {args.corpus} ({len(refs)} clips)")
    header = f"{'engine':<28} {'band':<7} {'subset':<9} {'words':>5} {'WER':>7} "
    print(header + f"{'med.WER':>7} {'med.RTF':>7} {'tot.RTF':>7}")
    for run in runs:
        for subset in ("real", "synthetic"):
            s = run.get(subset)
            if s is None:
                continue
            print(
                f"{run['engine']:<28} {run['band']:<7} {subset:<9} {s['ref_words']:>5} "
                f"{s['wer']:>7.1%} {s['median_clip_wer']:>7.1%} {s['median_rtf']:>7.3f} "
                f"{s['total_rtf']:>7.3f}"
            )
    write_results(
        args.out,
        {
            "corpus_clips": len(refs),
            "runs": runs,
        },
    )


if __name__ == "__main__":
    asyncio.run(main())
