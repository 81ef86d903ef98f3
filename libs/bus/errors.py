from __future__ import annotations

from libs.errors import Unavailable


class BusUnavailable(Unavailable, RuntimeError):
    """NATS / JetStream cannot be reached or did not acknowledge in time."""

    code = "bus_unavailable"
    dependency = "nats"
    public_detail = "NATS is unavailable, retry later"
