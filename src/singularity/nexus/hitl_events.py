"""Live updates for the browsers: every change to an approval or question, from any process.

The nexus tables announce each insert and status change on the `nexus_hitl` channel (a
trigger, so a decision taken on another host or by the CLI is announced too). One LISTEN
connection per process turns announcements into events for every connected browser.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import psycopg
import structlog

from singularity.nexus.hitl import Hitl, Kind
from singularity.postgres.connect import describe_error
from singularity.postgres.endpoint import Endpoint

__all__ = ["CHANNEL", "HitlEvents"]

log = structlog.get_logger(__name__)

CHANNEL = "nexus_hitl"
_RECONNECT_S = (0.2, 0.5, 1.0, 2.0, 5.0)
# A browser that cannot keep up is dropped (it reconnects and gets a fresh snapshot).
_QUEUE_LIMIT = 1_000


class HitlEvents:
    """Fans announcements out to subscribers; each subscriber is one browser connection."""

    def __init__(self, endpoint: Endpoint, hitl: Hitl) -> None:
        self._endpoint = endpoint
        self._hitl = hitl
        self._subscribers: set[asyncio.Queue[dict[str, Any] | None]] = set()
        self.listening = asyncio.Event()

    def subscribe(self) -> asyncio.Queue[dict[str, Any] | None]:
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(_QUEUE_LIMIT)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any] | None]) -> None:
        self._subscribers.discard(queue)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    async def snapshot(self) -> dict[str, Any]:
        """Every pending item: what a browser gets when it (re)connects."""
        return {
            "type": "snapshot",
            "approvals": await self._hitl.pending("approval"),
            "questions": await self._hitl.pending("question"),
        }

    async def run(self, stop: asyncio.Event) -> None:
        """Listen until `stop`, reconnecting when the connection drops."""
        failures = 0
        while not stop.is_set():
            try:
                await self._listen(stop)
                failures = 0
            except (psycopg.Error, OSError) as exc:
                self.listening.clear()
                delay = _RECONNECT_S[min(failures, len(_RECONNECT_S) - 1)]
                failures += 1
                log.warning("hitl_listen_lost", error=describe_error(exc), retry_in_s=delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
        self.restart_all()

    async def _listen(self, stop: asyncio.Event) -> None:
        conn = await psycopg.AsyncConnection.connect(
            self._endpoint.conninfo(connect_timeout=10), autocommit=True
        )
        async with conn:
            await conn.execute(f"LISTEN {CHANNEL}")
            if not self.listening.is_set() and self._subscribers:
                # Announcements may have been missed while disconnected: start browsers over.
                self.restart_all()
            self.listening.set()
            while not stop.is_set():
                # A timeout lets the loop see `stop`; notifications arrive without waiting it.
                async for notify in conn.notifies(timeout=0.5):
                    await self._announce(notify.payload)

    async def _announce(self, payload: str) -> None:
        kind, _, ident = payload.partition(":")
        if kind not in ("approval", "question") or not self._subscribers:
            return
        try:
            item = await self._hitl.get(_kind(kind), ident)
        except Exception as exc:
            log.warning("hitl_announce_failed", payload=payload, error=str(exc))
            return
        self._broadcast({"type": kind, "item": item})

    def _broadcast(self, event: dict[str, Any]) -> None:
        for queue in list(self._subscribers):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                self._subscribers.discard(queue)
                _end(queue)
                log.warning("browser_too_slow_dropped")

    def restart_all(self) -> None:
        """End every browser's stream; browsers reconnect and get a fresh snapshot."""
        for queue in list(self._subscribers):
            _end(queue)
        self._subscribers.clear()


def _end(queue: asyncio.Queue[dict[str, Any] | None]) -> None:
    """Replace whatever a subscriber has not read with the end marker."""
    while not queue.empty():
        queue.get_nowait()
    queue.put_nowait(None)


def _kind(value: str) -> Kind:
    return "approval" if value == "approval" else "question"
