"""Wake-ups: one LISTEN connection per process that tells consumers a queue has new messages.

Notifications only shorten the wait; consumers poll as well, so a lost notification (or a lost
connection) costs at most one poll interval, never a message.
"""

from __future__ import annotations

import asyncio
import contextlib

import psycopg
import structlog
from psycopg import sql

from singularity.postgres.connect import describe_error
from singularity.postgres.endpoint import Endpoint
from singularity.shared_queue.sql import wake_channel
from singularity.shared_queue.waiting import race

__all__ = ["Listener"]

log = structlog.get_logger(__name__)

_RECONNECT_MAX_S = 10.0
_CHECK_S = 1.0  # at the latest, how often the loop looks for shutdown


class Listener:
    """Dispatches `pgmq.q_<queue>.INSERT` notifications to the subscribers of each queue."""

    def __init__(self, endpoint: Endpoint) -> None:
        self._endpoint = endpoint
        self._events: dict[str, list[asyncio.Event]] = {}
        self._listening: set[str] = set()
        self._changed = asyncio.Event()
        self.connected = asyncio.Event()

    def subscribe(self, queue: str) -> asyncio.Event:
        """An event set whenever `queue` may have new messages."""
        event = asyncio.Event()
        self._events.setdefault(wake_channel(queue), []).append(event)
        self._changed.set()  # LISTEN at once, not at the next check
        return event

    def unsubscribe(self, queue: str, event: asyncio.Event) -> None:
        """Stop setting `event` (the channel stays listened to: that costs nothing)."""
        events = self._events.get(wake_channel(queue), [])
        if event in events:
            events.remove(event)

    async def run(self, stop: asyncio.Event) -> None:
        """Listen until `stop`, reconnecting with backoff."""
        delay = 0.1
        while not stop.is_set():
            try:
                await self._session(stop)
                delay = 0.1
            except (psycopg.OperationalError, OSError) as exc:
                log.warning("listener_disconnected", error=describe_error(exc), retry_s=delay)
            finally:
                self.connected.clear()
                self._listening.clear()
            self._wake_all()  # anything may have arrived while we were not listening
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, _RECONNECT_MAX_S)

    async def _session(self, stop: asyncio.Event) -> None:
        conn = await psycopg.AsyncConnection.connect(
            self._endpoint.conninfo(connect_timeout=10), autocommit=True
        )
        async with conn:
            while not stop.is_set():
                self._changed.clear()
                await self._listen_new(conn)
                self.connected.set()
                # Cancelling notifies() leaves the connection usable (psycopg keeps later
                # notifications in its backlog), so the next round can LISTEN on new channels.
                await race(
                    self._dispatch(conn), stop.wait(), self._changed.wait(), seconds=_CHECK_S
                )

    async def _dispatch(self, conn: psycopg.AsyncConnection) -> None:
        async for notify in conn.notifies():
            for event in self._events.get(notify.channel, ()):
                event.set()

    async def _listen_new(self, conn: psycopg.AsyncConnection) -> None:
        for channel in list(self._events):
            if channel not in self._listening:
                await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                self._listening.add(channel)
                for event in self._events[channel]:
                    event.set()  # it may have had messages before we listened

    def _wake_all(self) -> None:
        for events in self._events.values():
            for event in events:
                event.set()
