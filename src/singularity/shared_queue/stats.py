"""In-process counters of a consumer: what it handled, retried, dead-lettered, and how fast.

Each outcome is recorded here once, for the consumer's own log line and for the process's
Prometheus series of its queue (`observability.metrics`)."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime

from singularity.observability.metrics import DEAD_LETTERED, OK, RETRIED, ConsumerMetrics

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
    _metrics: ConsumerMetrics = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._metrics = ConsumerMetrics(self.queue)

    def observe(self, enqueued_at: datetime, handler_s: float) -> None:
        """Record one handled message: its time in the queue plus handler, and handler alone."""
        waited = (time.time() - enqueued_at.timestamp()) * 1000
        self._latency_ms.append(max(0.0, waited))
        self._handler_ms.append(handler_s * 1000)
        self._metrics.handled(OK, handler_s)

    def retry(self, handler_s: float) -> None:
        """The handler raised; the message comes back after a backoff."""
        self.retried += 1
        self._metrics.handled(RETRIED, handler_s)

    def dead_letter(self, outcome: str = DEAD_LETTERED, handler_s: float | None = None) -> None:
        """The message goes to the dead-letter queue: unreadable or refused (DEAD_LETTERED), or
        failed on its last delivery (FAILED); `handler_s` when its handler ran."""
        self.dead_lettered += 1
        self._metrics.handled(outcome, handler_s)

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
