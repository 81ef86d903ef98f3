from __future__ import annotations


class BusUnavailable(RuntimeError):
    """NATS / JetStream cannot be reached or did not acknowledge in time."""
