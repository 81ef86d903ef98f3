"""A stereo call end to end on the real stack (nats-server, Postgres, SeaweedFS, the offline
engine): submitted with the reference form, it comes back as an Agent/Customer conversation in
txt, srt, vtt and json, with metrics in the status answer and the signed webhook. The offline
engine's words are not asserted, only who speaks when."""

from __future__ import annotations

import json

import aiohttp
import pytest

from tests.fixtures.calls import TIMELINE
from tests.stack_fixtures import API_KEY, RunningStack, WebhookInbox

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

HEADERS = {"X-API-Key": API_KEY}


async def _get(stack: RunningStack, path: str) -> tuple[int, bytes]:
    async with (
        aiohttp.ClientSession() as s,
        s.get(stack.base_url + path, headers=HEADERS) as r,
    ):
        return r.status, await r.read()


async def _submit(stack: RunningStack, data: dict[str, str]) -> str:
    async with (
        aiohttp.ClientSession() as s,
        s.post(stack.base_url + "/api/media/transcribe", data=data, headers=HEADERS) as r,
    ):
        body = await r.json()
        assert r.status == 200, body
        return str(body["audio_file_id"])


async def test_a_stereo_call_comes_back_as_a_conversation(
    running_stack: RunningStack, webhook_inbox: WebhookInbox, samples_url: str
) -> None:
    job = await _submit(
        running_stack, {"url": f"{samples_url}/call_stereo.ogg", "b2_prefix": "gateway"}
    )
    deliveries = await webhook_inbox.wait_for(job, timeout=180)
    data = deliveries[0]["payload"]["data"]
    assert deliveries[0]["payload"]["type"] == "transcription.completed"
    conversation = data["conversation"]
    assert conversation["method"] == "channels"
    roles = [(s["channel"], s["role"]) for s in conversation["speakers"]]
    assert roles == [(0, "agent"), (1, "customer")]
    assert all(s["talk_time"] > 0 for s in conversation["speakers"])
    assert 0 < conversation["silence_ratio"] < 1

    status, raw = await _get(running_stack, f"/api/media/status/{job}")
    assert status == 200
    assert json.loads(raw)["metadata"]["conversation"] == conversation

    status, raw = await _get(running_stack, f"/api/media/transcript/{job}.txt")
    assert status == 200
    lines = raw.decode().splitlines()
    assert lines[0].startswith("Agent: ")
    assert {line.split(":", 1)[0] for line in lines} == {"Agent", "Customer"}
    status, raw = await _get(running_stack, f"/api/media/transcript/{job}.vtt")
    assert "<v Agent>" in raw.decode() and "<v Customer>" in raw.decode()
    status, raw = await _get(running_stack, f"/api/media/transcript/{job}.srt")
    assert "\nAgent: " in raw.decode() and "\nCustomer: " in raw.decode()
    status, raw = await _get(running_stack, f"/api/media/transcript/{job}.json")
    utterances = json.loads(raw)["utterances"]
    # True to the recording: the customer's first words come after their clip starts.
    first_customer = next(u for u in utterances if u["channel"] == 1)
    assert first_customer["start"] >= TIMELINE[1][1] - 0.2
    assert utterances[0]["channel"] == 0 and utterances[0]["start"] < TIMELINE[1][1]


async def test_a_copied_mono_stays_one_voice(
    running_stack: RunningStack, webhook_inbox: WebhookInbox, samples_url: str
) -> None:
    job = await _submit(
        running_stack, {"url": f"{samples_url}/call_dup_mono.ogg", "b2_prefix": "gateway"}
    )
    deliveries = await webhook_inbox.wait_for(job, timeout=180)
    assert "conversation" not in deliveries[0]["payload"]["data"]
    status, raw = await _get(running_stack, f"/api/media/transcript/{job}.json")
    assert status == 200 and json.loads(raw)["utterances"] == []
