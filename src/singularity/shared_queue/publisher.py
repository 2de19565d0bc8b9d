"""Sending messages: one or a batch, optionally delayed."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from singularity.shared_queue.messages import BusMessage, validate_queue_name
from singularity.shared_queue.sql import QUERIES

__all__ = ["Publisher", "encode", "encode_batch", "send_message"]

Payload = BusMessage | Mapping[str, Any]


def encode(message: Payload) -> str:
    """The JSON text of a message."""
    if isinstance(message, BusMessage):
        return message.to_json()
    return json.dumps(message, separators=(",", ":"))


def encode_batch(bodies: Sequence[str]) -> str:
    """Encoded messages joined into the one JSON array the send_batch query takes."""
    return "[" + ",".join(bodies) + "]"


async def send_message(
    conn: psycopg.AsyncConnection, queue: str, message: Payload, *, delay_s: int = 0
) -> int:
    """Send one message on a connection (inside the caller's transaction, if any); its msg_id."""
    validate_queue_name(queue)
    params = {"queue": queue, "message": encode(message), "delay": delay_s}
    row = await (await conn.execute(QUERIES["send"], params)).fetchone()
    assert row is not None
    return int(row[0])


class Publisher:
    """Sends to any queue this role may publish to (PostgreSQL refuses the others)."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def send(self, queue: str, message: Payload, *, delay_s: int = 0) -> int:
        """Send one message; returns its pgmq msg_id."""
        async with self._pool.connection() as conn:
            return await send_message(conn, queue, message, delay_s=delay_s)

    async def send_batch(
        self, queue: str, messages: Sequence[Payload], *, delay_s: int = 0
    ) -> list[int]:
        """Send several messages in one statement; returns their msg_ids in order."""
        validate_queue_name(queue)
        if not messages:
            return []
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                QUERIES["send_batch"],
                {
                    "queue": queue,
                    "messages": encode_batch([encode(m) for m in messages]),
                    "delay": delay_s,
                },
            )
            rows = await cursor.fetchall()
        return [int(row[0]) for row in rows]
