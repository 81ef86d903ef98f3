"""The bus boundary: JetStream calls made through libs.bus.jetstream raise BusUnavailable (a
domain error, the driver's exception as its cause), never nats-py's classes."""

from __future__ import annotations

from typing import Any

import nats
import pytest

from libs.bus import BusUnavailable, jetstream
from tests.stack_fixtures import scratch_stream

pytestmark = pytest.mark.integration


async def test_calls_work_and_a_missing_message_or_stream_is_none(nats_server: Any) -> None:
    async with scratch_stream(nats_server.url, ack_wait=5.0) as (js, stream, subject, _):
        await jetstream.publish(js, f"{subject}.a", b"one", headers={"Nats-Msg-Id": "m1"})
        assert await jetstream.stored_message(js, stream, 1) == (f"{subject}.a", b"one")
        assert await jetstream.stored_message(js, stream, 99) is None
        info = await jetstream.stream_info(js, stream)
        assert info is not None and info.state.last_seq == 1
        assert await jetstream.stream_info(js, "NO_SUCH_STREAM") is None
        assert [c.config.durable_name for c in await jetstream.consumers_info(js, stream)]


async def test_a_closed_connection_is_bus_unavailable(nats_server: Any) -> None:
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    await nc.close()
    with pytest.raises(BusUnavailable) as caught:
        await jetstream.publish(js, "test.closed", b"x", timeout=1.0)
    assert isinstance(caught.value.__cause__, nats.errors.Error)
    with pytest.raises(BusUnavailable):
        await jetstream.stored_message(js, "ANY", 1)


async def test_next_message_is_none_when_nothing_arrives(nats_server: Any) -> None:
    async with scratch_stream(nats_server.url, ack_wait=5.0) as (js, _, subject, _):
        sub = await js.subscribe(f"{subject}.>", ordered_consumer=True)
        assert await jetstream.next_message(sub, 0.2) is None
        await jetstream.publish(js, f"{subject}.b", b"two")
        msg = await jetstream.next_message(sub, 10.0)
        assert msg is not None and msg.data == b"two"
        await jetstream.unsubscribe(sub)
