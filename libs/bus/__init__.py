from libs.bus.connection import connect
from libs.bus.consumer import Delivery, Outcome, Pause, PullConsumer, Reject, Retry, decide
from libs.bus.errors import BusUnavailable
from libs.bus.topology import ensure_consumer, ensure_stream

__all__ = [
    "BusUnavailable",
    "Delivery",
    "Outcome",
    "Pause",
    "PullConsumer",
    "Reject",
    "Retry",
    "connect",
    "decide",
    "ensure_consumer",
    "ensure_stream",
]
