from libs.outbox.relay import OutboxRelay, PublishFailed, lag
from libs.outbox.writer import enqueue

__all__ = ["OutboxRelay", "PublishFailed", "enqueue", "lag"]
