"""`transcribe submit` and `transcribe jobs list|show|delete`: a client of a gateway's HTTP API.

They talk HTTP only (never the database): `--api-url` (default TRANSCRIBE_API_URL, else this
machine's ingest) with `X-API-Key` from TRANSCRIBE_API_KEY (else API_KEY, the bootstrap key of
a local `transcribe up`). A progress bar on stderr follows the upload and, with `--wait`, the
job; the answers are JSON on stdout. Exit codes: 0 done, 1 the gateway refused or the job
failed, 2 a usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import aiohttp

from libs.settings import Settings

FORMATS = ("txt", "json", "srt", "vtt")
FINAL = ("completed", "failed", "deleted")


class ApiError(Exception):
    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail


class Bar:
    """One progress line on stderr, redrawn in place on a terminal; on a pipe or file, only a
    line per change of stage, so logs stay readable."""

    WIDTH = 30

    def __init__(self, out: IO[str] | None = None, *, enabled: bool = True) -> None:
        self._out = out or sys.stderr
        self._tty = self._out.isatty()
        self._enabled = enabled
        self._last_stage = ""
        self._drawn = False

    def show(self, stage: str, fraction: float | None = None, note: str = "") -> None:
        if not self._enabled:
            return
        if fraction is None:
            bar = ""
        else:
            fraction = min(max(fraction, 0.0), 1.0)
            filled = int(fraction * self.WIDTH)
            bar = f"[{'#' * filled}{'.' * (self.WIDTH - filled)}] {fraction * 100:5.1f}% "
        line = f"{bar}{stage}{' ' + note if note else ''}"
        if self._tty:
            self._out.write("\r\x1b[2K" + line)
            self._drawn = True
        elif stage != self._last_stage:
            self._out.write(line + "\n")
        self._last_stage = stage
        self._out.flush()

    def done(self) -> None:
        if self._tty and self._drawn:
            self._out.write("\n")
            self._out.flush()
            self._drawn = False


class ProgressReader(io.BufferedReader):
    """A file whose reads report how far the upload got (aiohttp streams it in chunks)."""

    def __init__(self, raw: io.RawIOBase, on_read: Callable[[int], None]) -> None:
        super().__init__(raw)
        self._on_read = on_read

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        self._on_read(len(data))
        return data

    def read1(self, size: int = -1) -> bytes:
        data = super().read1(size)
        self._on_read(len(data))
        return data


@dataclass
class Gateway:
    session: aiohttp.ClientSession
    base_url: str
    api_key: str

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """The JSON answer of a request; ApiError for a 4xx/5xx or an unreachable gateway."""
        raw = await self.raw(method, path, **kwargs)
        return json.loads(raw) if raw else None

    async def raw(self, method: str, path: str, **kwargs: Any) -> bytes:
        headers = {"X-API-Key": self.api_key, **kwargs.pop("headers", {})}
        try:
            async with self.session.request(
                method, self.base_url + path, headers=headers, **kwargs
            ) as resp:
                body = await resp.read()
                if resp.status >= 400:
                    try:
                        err = json.loads(body)
                        code, detail = str(err["error"]), str(err["detail"])
                    except (ValueError, KeyError, TypeError):
                        code, detail = "http_error", body[:200].decode("utf-8", "replace")
                    raise ApiError(resp.status, code, detail)
                return body
        except aiohttp.ClientError as exc:
            raise ApiError(0, "unreachable", f"{self.base_url}: {exc}") from exc
        except TimeoutError as exc:
            raise ApiError(0, "timed_out", f"{self.base_url} did not answer in time") from exc


def _settings_target(args: argparse.Namespace, settings: Settings) -> tuple[str, str]:
    url = (args.api_url or settings.client_api_url or settings.public_base_url).rstrip("/")
    key = settings.client_api_key or settings.api_key
    if not key:
        raise ApiError(0, "missing_api_key", "set TRANSCRIBE_API_KEY (sent as X-API-Key)")
    return url, key


def _formats(value: str) -> list[str]:
    chosen = [f.strip() for f in value.split(",") if f.strip()]
    unknown = [f for f in chosen if f not in FORMATS]
    if unknown or not chosen:
        raise ApiError(0, "invalid_format", f"--format takes a list of {', '.join(FORMATS)}")
    return chosen


def run_against_gateway(
    go: Callable[[Gateway], Any], args: argparse.Namespace, settings: Settings
) -> int:
    async def main() -> int:
        url, key = _settings_target(args, settings)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=300)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            result: int = await go(Gateway(session, url, key))
            return result

    try:
        return asyncio.run(main())
    except ApiError as exc:
        print(f"error: {exc.code}: {exc.detail}", file=sys.stderr)
        return 2 if exc.code in ("invalid_format", "usage") else 1


def _print(value: Any) -> None:
    print(json.dumps(value, indent=2))


# --- transcribe submit -----------------------------------------------------------------------


async def _upload(gw: Gateway, fields: dict[str, str], path: Path, bar: Bar) -> Any:
    size = path.stat().st_size
    sent = 0

    def on_read(n: int) -> None:
        nonlocal sent
        sent += n
        bar.show("uploading", sent / size if size else 1.0, f"{sent / 1e6:.1f}/{size / 1e6:.1f} MB")

    form = aiohttp.FormData()
    for name, value in fields.items():
        form.add_field(name, value)
    with ProgressReader(io.FileIO(path, "r"), on_read) as reader:
        form.add_field("file", reader, filename=path.name, content_type="application/octet-stream")
        return await gw.call("POST", "/api/media/transcribe", data=form)


async def wait_for(
    gw: Gateway, job_id: str, bar: Bar, *, poll: float, timeout: float | None
) -> dict[str, Any]:
    """Poll the job's status until it is final; shows its stage (and progress when the gateway
    reports one) on the bar."""
    started = time.monotonic()
    while True:
        status: dict[str, Any] = await gw.call("GET", f"/api/media/status/{job_id}")
        meta = status.get("metadata") or {}
        progress = meta.get("progress") or status.get("progress") or {}
        stage = str(progress.get("stage") or meta.get("state") or status.get("status"))
        fraction = progress.get("fraction")
        elapsed = time.monotonic() - started
        bar.show(stage, fraction if isinstance(fraction, int | float) else None, f"{elapsed:.0f}s")
        if status.get("status") in FINAL:
            return status
        if timeout is not None and elapsed > timeout:
            raise ApiError(0, "timed_out", f"job {job_id} not finished after {timeout:.0f}s")
        await asyncio.sleep(poll)


async def download(gw: Gateway, job_id: str, formats: list[str], out: Path) -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in formats:
        data = await gw.raw("GET", f"/api/media/transcript/{job_id}.{fmt}")
        target = out / f"{job_id}.{fmt}"
        target.write_bytes(data)
        written.append(str(target))
    return written


def _submit_fields(args: argparse.Namespace) -> tuple[dict[str, str], Path | None]:
    """The form fields of a submission, and the local file to upload (None for a URL or a
    recording id)."""
    fields: dict[str, str] = {}
    for name, value in (
        ("b2_prefix", args.prefix),
        ("model", args.model),
        ("language", args.language),
        ("callback_url", args.callback_url),
        ("transcript_ttl", args.transcript_ttl),
        ("audio_ttl", args.audio_ttl),
    ):
        if value:
            fields[name] = value
    if args.recording_id:
        fields["recording_id"] = args.recording_id
    elif args.source.startswith(("http://", "https://")):
        fields["url"] = args.source
    else:
        return fields, Path(args.source)
    return fields, None


def cmd_submit(args: argparse.Namespace, settings: Settings) -> int:
    sources = [s for s in (args.source, args.recording_id) if s]
    if len(sources) != 1:
        print("error: give exactly one of FILE, URL or --recording-id", file=sys.stderr)
        return 2
    try:
        formats = _formats(args.format)
    except ApiError as exc:
        print(f"error: {exc.detail}", file=sys.stderr)
        return 2
    fields, path = _submit_fields(args)
    if path is not None and not path.is_file():
        print(f"error: no such file: {path}", file=sys.stderr)
        return 2
    wait = args.wait or args.out is not None
    bar = Bar(enabled=not args.quiet)

    async def go(gw: Gateway) -> int:
        try:
            if path is not None:
                accepted = await _upload(gw, fields, path, bar)
            else:
                bar.show("submitting")
                accepted = await gw.call("POST", "/api/media/transcribe", data=fields)
            bar.show("queued", None, str(accepted["audio_file_id"]))
            if not wait:
                bar.done()
                _print(accepted)
                return 0
            job_id = str(accepted["audio_file_id"])
            status = await wait_for(gw, job_id, bar, poll=args.poll, timeout=args.timeout)
        finally:
            bar.done()
        result: dict[str, Any] = {"audio_file_id": job_id, "status": status["status"]}
        if status["status"] != "completed":
            result["error"] = (status.get("metadata") or {}).get("error")
            _print(result)
            return 1
        if args.out is not None:
            result["files"] = await download(gw, job_id, formats, Path(args.out))
        else:
            result["transcript"] = status["transcript"]
        _print(result)
        return 0

    return run_against_gateway(go, args, settings)


# --- transcribe jobs list | show | delete ------------------------------------------------------


def cmd_jobs_list(args: argparse.Namespace, settings: Settings) -> int:
    query = {
        name: value
        for name, value in (
            ("status", args.status),
            ("since", args.since),
            ("until", args.until),
            ("campaign", args.campaign),
            ("limit", str(args.limit) if args.limit else None),
        )
        if value
    }

    async def go(gw: Gateway) -> int:
        cursor: str | None = None
        while True:
            page = await gw.call(
                "GET", "/api/media/jobs", params=query | ({"cursor": cursor} if cursor else {})
            )
            for job in page["jobs"]:
                meta = job["metadata"]
                line = {
                    "audio_file_id": meta["audio_file_id"],
                    "status": job["status"],
                    "state": meta["state"],
                    "created_at": meta["created_at"],
                    "campaign": meta["campaign"],
                    "recording_id": meta["recording_id"],
                }
                print(json.dumps(line))
            cursor = page["next_cursor"]
            if cursor is None or not args.all:
                if cursor is not None:
                    print(f"more: --all, or the next page with cursor {cursor}", file=sys.stderr)
                return 0

    return run_against_gateway(go, args, settings)


def cmd_jobs_show(args: argparse.Namespace, settings: Settings) -> int:
    async def go(gw: Gateway) -> int:
        if args.wait:
            bar = Bar(enabled=not args.quiet)
            try:
                status = await wait_for(gw, args.id, bar, poll=args.poll, timeout=None)
            finally:
                bar.done()
        else:
            status = await gw.call("GET", f"/api/media/status/{args.id}")
        _print(status)
        if args.out is not None and status["status"] == "completed":
            files = await download(gw, args.id, _formats(args.format), Path(args.out))
            print("\n".join(files), file=sys.stderr)
        return 0

    return run_against_gateway(go, args, settings)


def cmd_jobs_delete(args: argparse.Namespace, settings: Settings) -> int:
    async def go(gw: Gateway) -> int:
        for job_id in args.ids:
            _print(await gw.call("DELETE", f"/api/media/{job_id}"))
        return 0

    return run_against_gateway(go, args, settings)


def target_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--api-url",
        help="the gateway (default TRANSCRIBE_API_URL, else PUBLIC_BASE_URL or "
        "http://127.0.0.1:8000); the key comes from TRANSCRIBE_API_KEY (else API_KEY)",
    )


def _wait_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", help="write the transcripts to this directory (implies --wait)")
    parser.add_argument(
        "--format", default="txt", help=f"comma-separated: {','.join(FORMATS)} (default txt)"
    )
    parser.add_argument("--poll", type=float, default=2.0, help="seconds between status polls")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    s = sub.add_parser(
        "submit",
        help="submit a file, URL or recording id to a gateway; --wait follows it to the end",
    )
    s.add_argument("source", nargs="?", help="an audio FILE to upload, or an http(s) URL")
    s.add_argument("--recording-id", help="a recording of the gateway's database instead")
    s.add_argument("--prefix", help="b2_prefix (your tenant prefix or a sub-prefix)")
    s.add_argument("--model", help="whisper-1, gpt-4o-transcribe, ..., offline")
    s.add_argument("--language", help="ISO-639 code, e.g. en")
    s.add_argument("--callback-url", help="webhook for this job")
    s.add_argument("--transcript-ttl", help="delete the job after this long (7d, 36h, ...)")
    s.add_argument("--audio-ttl", help="remove the audio after this long")
    s.add_argument("--wait", action="store_true", help="wait until the job is finished")
    s.add_argument("--timeout", type=float, help="give up waiting after this many seconds")
    _wait_options(s)
    target_options(s)
    s.set_defaults(fn=cmd_submit)


def register_jobs(jsub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`transcribe jobs list|show|delete`, beside the operator's `jobs requeue-failed`."""
    ls = jsub.add_parser("list", help="your jobs on a gateway, newest first (JSON lines)")
    ls.add_argument("--status", help="pending, queued, processing, completed, failed, deleted")
    ls.add_argument("--since", help="created at or after (ISO 8601)")
    ls.add_argument("--until", help="created before (ISO 8601)")
    ls.add_argument("--campaign", help="exact campaign name")
    ls.add_argument("--limit", type=int, help="jobs per page (1-200)")
    ls.add_argument("--all", action="store_true", help="every page, not just the first")
    target_options(ls)
    ls.set_defaults(fn=cmd_jobs_list)
    sh = jsub.add_parser("show", help="a job's status; --wait follows it, --out downloads")
    sh.add_argument("id")
    sh.add_argument("--wait", action="store_true", help="wait until the job is finished")
    _wait_options(sh)
    target_options(sh)
    sh.set_defaults(fn=cmd_jobs_show)
    de = jsub.add_parser("delete", help="delete jobs: their objects and personal data")
    de.add_argument("ids", nargs="+", metavar="id")
    target_options(de)
    de.set_defaults(fn=cmd_jobs_delete)
