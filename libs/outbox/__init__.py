from libs.outbox.relay import OutboxRelay, PublishFailed, lag
from libs.outbox.writer import enqueue, event_row, forget_job, forget_jobs

__all__ = [
    "OutboxRelay",
    "PublishFailed",
    "enqueue",
    "event_row",
    "forget_job",
    "forget_jobs",
    "lag",
]
