"""Search across calls (issue #20) at 100,000 calls, on an embedded Postgres:

- the index: --calls calls (about 20 utterances each, two roles, word timings), about 45%
  stop words and the rest drawn from a Zipf distribution (exponent 1.07) over a 30,000-word
  vocabulary (the commonest is in nearly half of all utterances, most are rare), a greeting
  with "calling" in every call, "cancel my subscription" said by the customer in 1% of the
  calls and by the agent in 0.5%, "chargeback" in 0.05%; created over 90 days in 20 campaigns; 90% of the calls belong to the key that searches, 10% to another key.
  Loaded with COPY straight into the tables (the tsvector is computed on the way in), then the
  GIN index is built (timed) and the tables analyzed;
- the queries, through libs.search.query.search (the page's SQL, then its matches and
  highlights), limit 50, as the key: p50/p95 of --repeat runs after one warm-up;
- the size of tables and indexes per 1,000 calls;
- the time a completion spends writing its rows (libs.search.write) for a 10-minute call
  (100 utterances, 1,500 words with timings), in a transaction rolled back each time.

    nice python -m bench.search_bench [--calls 100000] [--repeat 30]

Result: bench/results/search.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import io
import json
import os
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from embedded.postgres import PostgresServer
from libs import apikeys, db, search
from libs.provision import migrate_database
from libs.search import query
from libs.transcript import Transcript
from libs.transcript.conversation import summarize
from libs.transcript.model import Utterance, Word

RESULTS = Path(__file__).resolve().parent / "results" / "search.json"
PG_SETTINGS = {"shared_buffers": "512MB", "max_wal_size": "4GB", "checkpoint_timeout": "30min"}
VOCABULARY = 30_000
ZIPF = 1.07
CAMPAIGNS = 20
UTTERANCE_COLUMNS = (
    "audio_file_id, seq, api_key_id, campaign_name, created_at, role, speaker, channel, start_s, "
    "end_s, text, config, word_chars, word_times"
)
CALL_COLUMNS = (
    "audio_file_id, api_key_id, campaign_name, created_at, config, duration, talk_ratio, "
    "silence_share, interruptions, overlap, wpm"
)
INSERT_JOBS = """
INSERT INTO media_pipeline.audio_files (id, api_key_id, tenant_prefix, campaign_name, bucket,
    b2_object_key, content_type, size_bytes, sha256, created_at, status)
SELECT j.id, j.key, 't', j.campaign, 'b', 't/' || j.id, 'audio/wav', 1, 'x', j.at, 'completed'
FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::timestamptz[]) AS j(id, key, campaign, at)
"""
GIN = "search_utterances_tsv"
STOP_WORDS = [
    "i",
    "you",
    "the",
    "a",
    "to",
    "and",
    "it",
    "that",
    "is",
    "of",
    "we",
    "for",
    "in",
    "my",
    "your",
    "this",
    "can",
    "me",
    "so",
    "have",
]
SYLLABLES = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]


def vocabulary(rng: np.random.Generator) -> list[str]:
    words: set[str] = set()
    out: list[str] = []
    while len(out) < VOCABULARY:
        n = int(rng.integers(2, 4))
        word = "".join(SYLLABLES[int(i)] for i in rng.integers(0, len(SYLLABLES), n))
        if word not in words:
            words.add(word)
            out.append(word)
    return out


def campaign_name(i: int) -> str:
    return f"campaign-{i:02d}"


class Calls:
    """The generated calls, written as CSV batches for COPY."""

    def __init__(self, calls: int, keys: list[uuid.UUID], words: bool, seed: int = 20) -> None:
        self.rng = np.random.default_rng(seed)
        self.vocab = vocabulary(self.rng)
        self.lexicon = np.array(STOP_WORDS + self.vocab, dtype=object)
        weights = 1.0 / np.arange(1, VOCABULARY + 1) ** ZIPF
        self.cum = np.cumsum(weights / weights.sum())
        self.calls = calls
        self.keys = keys
        self.words = words
        self.now = datetime.now(UTC)
        self.ids = [uuid.uuid4() for _ in range(calls)]
        self.key_of = [keys[0] if self.rng.random() < 0.9 else keys[1] for _ in range(calls)]
        camp_weights = 1.0 / np.arange(1, CAMPAIGNS + 1)
        self.campaign = self.rng.choice(CAMPAIGNS, calls, p=camp_weights / camp_weights.sum())
        self.created = [
            self.now - timedelta(seconds=float(s)) for s in self.rng.uniform(0, 90 * 86400, calls)
        ]
        self.utterances = 0

    def batch(self, lo: int, hi: int) -> tuple[bytes, bytes]:
        """Calls lo..hi as CSV for COPY (utterances, calls). Like speech: about 45% stop words,
        the rest Zipf-distributed content words; random numbers are drawn per batch."""
        rng = self.rng
        counts = np.maximum(4, rng.poisson(20, hi - lo)).tolist()
        total = sum(counts)
        lengths = np.clip(rng.lognormal(2.3, 0.6, total), 2, 60).astype(int)
        n = int(lengths.sum())
        stops = rng.random(n) < 0.45
        index = np.where(
            stops,
            rng.integers(0, len(STOP_WORDS), n),
            np.searchsorted(self.cum, rng.random(n)) + len(STOP_WORDS),
        )
        tokens = self.lexicon[index].tolist()
        lengths_list = lengths.tolist()
        pauses = rng.exponential(1.2, total).tolist()
        specials = rng.random(hi - lo).tolist()
        tails = rng.exponential(3.0, hi - lo).tolist()
        interruptions = rng.poisson(2, hi - lo).tolist()
        overlaps = rng.exponential(2.0, hi - lo).tolist()
        rates = rng.normal(150, 25, hi - lo).tolist()
        utt, calls = io.StringIO(), io.StringIO()
        uw, cw = csv.writer(utt), csv.writer(calls)
        pos = u = 0
        for c in range(lo, hi):
            special = specials[c - lo]
            campaign = campaign_name(int(self.campaign[c]))
            created = self.created[c].isoformat()
            t = 0.0
            talk = {"agent": 0.0, "customer": 0.0}
            for seq in range(counts[c - lo]):
                role = "agent" if seq % 2 == 0 else "customer"
                words = tokens[pos : pos + lengths_list[u]]
                pos += lengths_list[u]
                if seq == 0:
                    words = ["thank", "you", "for", "calling", "acme", *words[:6]]
                elif (seq == 3 and special < 0.01) or (seq == 2 and 0.01 <= special < 0.015):
                    # Said by the customer (seq 3) in 1% of the calls, by the agent in 0.5%.
                    words[1:1] = ["cancel", "my", "subscription"]
                elif seq == 5 and 0.02 <= special < 0.0205:
                    words[1:1] = ["chargeback"]
                start = t
                end = t + 0.4 * len(words)
                talk[role] += end - start
                chars = times = None
                if self.words:
                    spans: list[int] = []
                    secs: list[float] = []
                    at = 0
                    for i, w in enumerate(words):
                        spans += (at, at + len(w))
                        at += len(w) + 1
                        secs += (round(start + 0.4 * i, 2), round(start + 0.4 * i + 0.35, 2))
                    chars = "{" + ",".join(map(str, spans)) + "}"
                    times = "{" + ",".join(map(str, secs)) + "}"
                uw.writerow(
                    (
                        self.ids[c],
                        seq,
                        self.key_of[c],
                        campaign,
                        created,
                        role,
                        f"Channel {0 if role == 'agent' else 1}",
                        0 if role == "agent" else 1,
                        round(start, 2),
                        round(end, 2),
                        " ".join(words),
                        "english",
                        chars,
                        times,
                    )
                )
                t = end + pauses[u]
                u += 1
                self.utterances += 1
            duration = t + tails[c - lo]
            spoken = talk["agent"] + talk["customer"]
            cw.writerow(
                (
                    self.ids[c],
                    self.key_of[c],
                    campaign,
                    created,
                    "english",
                    round(duration, 2),
                    round(talk["agent"] / spoken, 4),
                    round(max(0.0, 1 - spoken / duration), 4),
                    interruptions[c - lo],
                    round(overlaps[c - lo], 2),
                    round(rates[c - lo], 1),
                )
            )
        return utt.getvalue().encode(), calls.getvalue().encode()


def ten_minute_call(seed: int = 7) -> Transcript:
    rng = np.random.default_rng(seed)
    vocab = vocabulary(rng)
    turns = []
    t = 0.0
    for k in range(100):
        count = 15
        words = [vocab[int(i)] for i in rng.integers(0, 2000, count)]
        ws = tuple(
            Word(start=round(t + 0.35 * i, 2), end=round(t + 0.35 * i + 0.3, 2), word=" " + w)
            for i, w in enumerate(words)
        )
        turns.append(
            Utterance(
                speaker=f"Channel {k % 2}",
                role="agent" if k % 2 == 0 else "customer",
                channel=k % 2,
                start=ws[0].start,
                end=ws[-1].end,
                text=" ".join(words),
                words=ws,
            )
        )
        t = ws[-1].end + 0.6
    return Transcript(
        text=" ".join(u.text for u in turns),
        language="en",
        duration=600.0,
        model="m",
        engine="e",
        utterances=tuple(turns),
        conversation=summarize(turns, duration=600.0, method="channels"),
    )


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered), 2),
        "p95_ms": round(ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))], 2),
    }


async def main(calls: int, repeat: int, words: bool, dsn: str | None = None) -> dict[str, Any]:
    result: dict[str, Any] = {
        "calls": calls,
        "postgres_settings": PG_SETTINGS,
        "load_average_at_start": os.getloadavg()[0],
    }
    with tempfile.TemporaryDirectory() as tmp:
        async with contextlib.AsyncExitStack() as stack:
            if dsn is None:
                pg = await stack.enter_async_context(
                    PostgresServer(Path(tmp) / "pg", settings=PG_SETTINGS)
                )
                dsn = pg.dsn
            await migrate_database(dsn)
            pool = await db.create_pool(dsn, min_size=1, max_size=2)
            try:
                async with pool.acquire() as conn:
                    _, mine = await apikeys.create(conn, name="mine", tenant_prefix="mine")
                    _, other = await apikeys.create(conn, name="other", tenant_prefix="other")
                    key = uuid.UUID(mine.id)
                    gen = Calls(calls, [key, uuid.UUID(other.id)], words)
                    await conn.execute(
                        INSERT_JOBS,
                        gen.ids,
                        gen.key_of,
                        [campaign_name(int(c)) for c in gen.campaign],
                        gen.created,
                    )
                    await conn.execute(
                        "INSERT INTO media_pipeline.search_configs VALUES ('english')"
                    )
                    gin = await conn.fetchval(
                        "SELECT pg_get_indexdef($1::regclass)", f"media_pipeline.{GIN}"
                    )
                    await conn.execute(f"DROP INDEX media_pipeline.{GIN}")
                    started = time.perf_counter()
                    generating = 0.0
                    step = 2000
                    for lo in range(0, calls, step):
                        t0 = time.perf_counter()
                        utt, rows = gen.batch(lo, min(calls, lo + step))
                        generating += time.perf_counter() - t0
                        await conn.copy_to_table(
                            "search_calls",
                            schema_name="media_pipeline",
                            source=io.BytesIO(rows),
                            columns=[c.strip() for c in CALL_COLUMNS.split(",")],
                            format="csv",
                        )
                        await conn.copy_to_table(
                            "search_utterances",
                            schema_name="media_pipeline",
                            source=io.BytesIO(utt),
                            columns=[c.strip() for c in UTTERANCE_COLUMNS.split(",")],
                            format="csv",
                        )
                    result["utterances"] = gen.utterances
                    # COPY into the tables, each utterance's tsvector computed on the way in (the
                    # generator's own time left out).
                    result["copy_with_tsvector_s"] = round(
                        time.perf_counter() - started - generating, 1
                    )
                    started = time.perf_counter()
                    await conn.execute(gin)
                    result["gin_index_build_s"] = round(time.perf_counter() - started, 1)
                    await conn.execute("VACUUM ANALYZE media_pipeline.search_utterances")
                    await conn.execute("VACUUM ANALYZE media_pipeline.search_calls")
                    sizes = await conn.fetchrow(
                        "SELECT pg_total_relation_size('media_pipeline.search_utterances') AS u,"
                        " pg_indexes_size('media_pipeline.search_utterances') AS ui,"
                        " pg_relation_size('media_pipeline." + GIN + "') AS gin,"
                        " pg_total_relation_size('media_pipeline.search_calls') AS c"
                    )
                per = calls / 1000
                result["size_per_1000_calls_mb"] = {
                    "utterances_table_and_indexes": round(sizes["u"] / per / 2**20, 2),
                    "of_which_gin": round(sizes["gin"] / per / 2**20, 2),
                    "calls_table_and_indexes": round(sizes["c"] / per / 2**20, 2),
                }
                since = (gen.now - timedelta(days=30)).isoformat()
                cases = {
                    "rare_word": {"q": "chargeback"},
                    "common_word_every_call": {"q": "calling"},
                    "common_word_zipf_top": {"q": gen.vocab[0]},
                    "three_word_phrase": {"q": '"cancel my subscription"'},
                    "phrase_said_by_customer": {
                        "q": '"cancel my subscription"',
                        "role": "customer",
                    },
                    "metric_filter_no_q": {"min_silence_share": "0.3", "max_talk_ratio": "0.5"},
                    "phrase_campaign_dates": {
                        "q": '"cancel my subscription"',
                        "campaign": campaign_name(0),
                        "since": since,
                    },
                }
                result["queries"] = {}
                for name, params in cases.items():
                    s = query.parse({**params, "limit": "50"})
                    first = await query.search(pool, s, api_key_id=key)
                    counted = await _count(pool, s, key)
                    samples = []
                    for _ in range(repeat):
                        t0 = time.perf_counter()
                        await query.search(pool, s, api_key_id=key)
                        samples.append((time.perf_counter() - t0) * 1000)
                    result["queries"][name] = {
                        "params": params,
                        "hits_on_page": len(first.hits),
                        "matching_utterances": counted,
                        **_percentiles(samples),
                    }
                    print(name, result["queries"][name], flush=True)
                result["completion_write"] = await _completion_write(pool, key, repeat)
                result["load_average_at_end"] = os.getloadavg()[0]
                print("completion_write", result["completion_write"], flush=True)
            finally:
                await pool.close()
    return result


async def _count(pool: Any, s: query.Search, key: uuid.UUID) -> int | None:
    if s.q is None:
        return None
    value = await pool.fetchval(
        "SELECT count(*) FROM media_pipeline.search_utterances u "
        "WHERE u.api_key_id = $2 AND u.tsv @@ websearch_to_tsquery('english', $1)"
        " AND ($3::text IS NULL OR u.role = $3)",
        s.q,
        key,
        s.role,
    )
    return int(value)


async def _completion_write(pool: Any, key: uuid.UUID, repeat: int) -> dict[str, Any]:
    call = ten_minute_call()
    job = uuid.uuid4()
    await pool.execute(INSERT_JOBS, [job], [key], ["camp"], [datetime.now(UTC)])
    samples = []
    for _ in range(repeat + 1):
        async with pool.acquire() as conn:
            tr = conn.transaction()
            await tr.start()
            t0 = time.perf_counter()
            rows = await search.write(conn, job, call)
            samples.append((time.perf_counter() - t0) * 1000)
            await tr.rollback()
    return {
        "utterances": rows,
        "words": sum(len(u.words or ()) for u in call.utterances),
        **_percentiles(samples[1:]),
    }


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--no-words", action="store_true", help="no word timings (smaller)")
    parser.add_argument("--dsn", help="an empty database of a running server instead")
    args = parser.parse_args()
    result = asyncio.run(main(args.calls, args.repeat, not args.no_words, args.dsn))
    print(json.dumps(result, indent=2))
    if args.calls == 100_000:
        RESULTS.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    cli()
