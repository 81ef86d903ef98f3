"""Create or update the stream and durable consumers from the specs in libs.contracts."""

from __future__ import annotations

import structlog
from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import BadRequestError, NotFoundError

from libs.contracts.streams import ConsumerSpec, StreamSpec

log = structlog.get_logger()


def stream_config(spec: StreamSpec) -> js_api.StreamConfig:
    return js_api.StreamConfig(
        name=spec.name,
        subjects=list(spec.subjects),
        retention=js_api.RetentionPolicy.LIMITS,
        storage=js_api.StorageType.FILE,
        max_age=spec.max_age_seconds,
        num_replicas=spec.replicas,
        duplicate_window=spec.duplicate_window_seconds,
        discard=js_api.DiscardPolicy.OLD,
    )


def consumer_config(spec: ConsumerSpec) -> js_api.ConsumerConfig:
    filters = list(spec.filter_subjects)
    return js_api.ConsumerConfig(
        durable_name=spec.durable,
        description=spec.description,
        deliver_policy=js_api.DeliverPolicy.ALL,
        ack_policy=js_api.AckPolicy.EXPLICIT,
        ack_wait=spec.ack_wait_seconds,
        max_deliver=spec.max_deliver,
        max_ack_pending=spec.max_ack_pending,
        filter_subject=filters[0] if len(filters) == 1 else None,
        filter_subjects=filters if len(filters) > 1 else None,
    )


async def ensure_stream(js: JetStreamContext, spec: StreamSpec) -> None:
    config = stream_config(spec)
    try:
        await js.stream_info(spec.name)
    except NotFoundError:
        await js.add_stream(config)
        log.info("stream_created", stream=spec.name)
        return
    # Existing stream: bring limits in line (e.g. a changed MaxAge) without touching the data.
    await js.update_stream(config)


async def ensure_consumer(js: JetStreamContext, stream: str, spec: ConsumerSpec) -> None:
    config = consumer_config(spec)
    try:
        await js.add_consumer(stream, config)
    except BadRequestError as exc:
        # An existing durable with different settings: keep it (its ack state matters more than
        # our defaults) and say so, so an operator can reconcile it deliberately.
        log.warning("consumer_config_differs", consumer=spec.durable, error=str(exc))
