"""The requests this bridge forwarded and still waits on, in memory, each for a limited time.

Memory is enough: the NATS requester waits on a live connection to this process, so a request
outlives the process in no useful way. An answer that comes after its entry is gone (expired,
or the bridge restarted) is archived as unmatched.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Pending", "Waiting"]


@dataclass(frozen=True, slots=True)
class Waiting:
    """One forwarded request: the subject it came on, where its answer goes on NATS."""

    subject: str
    reply: str | None
    caller_request_id: Any
    sent_at: float
    expires_at: float


class Pending:
    """request_id -> Waiting, forgetting entries older than `timeout_s`."""

    def __init__(self, timeout_s: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout_s = timeout_s
        self._clock = clock
        self._entries: dict[str, Waiting] = {}

    def add(self, request_id: str, subject: str, reply: str | None, caller_request_id: Any) -> None:
        now = self._clock()
        self._entries[request_id] = Waiting(
            subject, reply, caller_request_id, now, now + self.timeout_s
        )

    def get(self, request_id: str) -> Waiting | None:
        """The live entry, or None (never forwarded here, answered, or expired)."""
        entry = self._entries.get(request_id)
        if entry is None or entry.expires_at <= self._clock():
            return None
        return entry

    def remove(self, request_id: str) -> None:
        self._entries.pop(request_id, None)

    def expire(self) -> list[tuple[str, Waiting]]:
        """Drop the entries past their time; returns them."""
        now = self._clock()
        gone = [(rid, entry) for rid, entry in self._entries.items() if entry.expires_at <= now]
        for rid, _ in gone:
            del self._entries[rid]
        return gone

    def age_ms(self, entry: Waiting) -> int:
        return round((self._clock() - entry.sent_at) * 1000)

    def __len__(self) -> int:
        return len(self._entries)
