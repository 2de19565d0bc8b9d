"""What the health and metrics server asks the databases: with a short timeout, cached.

Every answer is kept for a couple of seconds, so that probes and scrapes arriving together (or
an eager scraper) cost one query, and an unreachable database costs at most one timeout.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import psycopg

from singularity.errors import DatabaseUnavailable
from singularity.postgres.connect import async_connection, describe_error
from singularity.postgres.endpoint import Endpoint
from singularity.shared_queue.metrics import QueueDepth, queue_depths

__all__ = [
    "CACHE_S",
    "TIMEOUT_S",
    "Cached",
    "Unreachable",
    "answers",
    "depths",
    "pending_approvals",
]

T = TypeVar("T")

CACHE_S = 2.0
TIMEOUT_S = 3.0

# Nexus's table of approvals and their state (nexus migration 0002), read as the nexus role.
_PENDING_APPROVALS = "SELECT count(*) FROM approval_state WHERE status = 'pending'"


@dataclass(frozen=True)
class Unreachable:
    """Why a database gave no answer."""

    reason: str


class Cached(Generic[T]):
    """The last answer of `fetch`, asked again once it is `ttl_s` old; one fetch at a time."""

    def __init__(self, fetch: Callable[[], Awaitable[T]], ttl_s: float = CACHE_S) -> None:
        self._fetch = fetch
        self._ttl_s = ttl_s
        self._lock = asyncio.Lock()
        self._at: float | None = None
        self._value: T | None = None

    async def get(self) -> T:
        async with self._lock:
            if self._at is None or time.monotonic() - self._at >= self._ttl_s:
                self._value = await self._fetch()
                self._at = time.monotonic()
            return self._value  # type: ignore[return-value]


async def answers(endpoint: Endpoint) -> Unreachable | None:
    """None when `SELECT 1` answers in time as the endpoint's role."""
    result = await _ask(endpoint, _select_one)
    return result if isinstance(result, Unreachable) else None


async def depths(endpoint: Endpoint) -> list[QueueDepth] | Unreachable:
    """Every queue's depth and oldest age (any service role may read them)."""
    return await _ask(endpoint, queue_depths)


async def pending_approvals(endpoint: Endpoint) -> int | Unreachable:
    """How many approvals wait for a human, counted in the nexus database."""
    return await _ask(endpoint, _count_pending)


async def _ask(
    endpoint: Endpoint, work: Callable[[psycopg.AsyncConnection], Awaitable[T]]
) -> T | Unreachable:
    try:
        async with asyncio.timeout(TIMEOUT_S), async_connection(endpoint) as conn:
            return await work(conn)
    except TimeoutError:
        return Unreachable(f"no answer from {endpoint} within {TIMEOUT_S:g} s")
    except DatabaseUnavailable as exc:
        return Unreachable(str(exc))
    except psycopg.Error as exc:
        return Unreachable(f"{endpoint}: {describe_error(exc)}")


async def _select_one(conn: psycopg.AsyncConnection) -> None:
    await conn.execute("SELECT 1")


async def _count_pending(conn: psycopg.AsyncConnection) -> int:
    row = await (await conn.execute(_PENDING_APPROVALS)).fetchone()
    assert row is not None
    return int(row[0])
