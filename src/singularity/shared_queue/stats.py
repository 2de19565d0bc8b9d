"""In-process counters of a consumer: what it handled, retried, dead-lettered, and how fast."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime

__all__ = ["ConsumerStats"]

_WINDOW = 10_000  # latencies kept for percentiles


@dataclass
class ConsumerStats:
    queue: str
    handled: int = 0
    retried: int = 0
    dead_lettered: int = 0
    duplicates: int = 0
    _latency_ms: deque[float] = field(default_factory=lambda: deque(maxlen=_WINDOW))
    _handler_ms: deque[float] = field(default_factory=lambda: deque(maxlen=_WINDOW))

    def observe(self, enqueued_at: datetime, handler_s: float) -> None:
        """Record one handled message: its time in the queue plus handler, and handler alone."""
        waited = (time.time() - enqueued_at.timestamp()) * 1000
        self._latency_ms.append(max(0.0, waited))
        self._handler_ms.append(handler_s * 1000)

    def snapshot(self) -> dict[str, float | int]:
        return {
            "handled": self.handled,
            "retried": self.retried,
            "dead_lettered": self.dead_lettered,
            "duplicates": self.duplicates,
            "latency_p50_ms": _percentile(self._latency_ms, 0.50),
            "latency_p99_ms": _percentile(self._latency_ms, 0.99),
            "handler_p50_ms": _percentile(self._handler_ms, 0.50),
        }


def _percentile(values: deque[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)
