"""Demo helpers of the embedded stack: a loopback server for the bundled sample recordings (the
demo `public.recordings` rows point at it), and a webhook inbox that verifies signatures."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

import structlog
from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

log = structlog.get_logger()

# Package data, so it is there in an installed wheel too. A Traversable, not a Path: use
# importlib.resources.as_file() for a real file (extracted to a temp file if the package is
# zipped).
SAMPLE_RECORDING: Traversable = files("embedded") / "data" / "hello_campaign.wav"


@asynccontextmanager
async def serve(app: web.Application, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    server = site._server
    assert server is not None
    sock = server.sockets[0]  # type: ignore[attr-defined]
    bound_port = sock.getsockname()[1]
    try:
        yield f"http://{host}:{bound_port}"
    finally:
        await runner.cleanup()


def samples_app(samples_dir: Path) -> web.Application:
    """Serves every sample under any path ending in its file name, so demo rows can carry
    realistic-looking locations such as /calls/2026/rec-7f3a/hello_campaign.wav."""

    async def handler(request: web.Request) -> web.StreamResponse:
        name = request.match_info["tail"].rsplit("/", 1)[-1]
        path = samples_dir / name
        if not name or not path.is_file() or path.parent != samples_dir:
            raise web.HTTPNotFound()
        return web.FileResponse(path)

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    return app


def webhook_inbox_app(secret: str) -> web.Application:
    """Logs every webhook it receives, after verifying it like a careful receiver would."""
    verifier = Webhook(secret)

    async def handler(request: web.Request) -> web.Response:
        body = await request.read()
        try:
            payload = verifier.verify(body, dict(request.headers))
        except WebhookVerificationError as exc:
            log.warning("demo_webhook_rejected", error=str(exc))
            return web.json_response({"error": "bad signature"}, status=400)
        data = payload.get("data", {}) if isinstance(payload, dict) else {}
        log.info(
            "demo_webhook_received",
            webhook_id=request.headers.get("webhook-id"),
            type=payload.get("type") if isinstance(payload, dict) else None,
            audio_file_id=data.get("audio_file_id"),
            transcript=data.get("transcript"),
        )
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/", handler)
    return app
