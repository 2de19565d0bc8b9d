"""Sending messages: one or a batch, optionally delayed; and the workspaces requests name."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from singularity.shared_queue.messages import BusMessage, validate_queue_name
from singularity.shared_queue.snapshots import Published, publish_workspace
from singularity.shared_queue.sql import QUERIES

__all__ = ["Publisher", "encode", "encode_batch", "send_message", "send_once"]

Payload = BusMessage | Mapping[str, Any]


def encode(message: Payload) -> str:
    """The JSON text of a message."""
    if isinstance(message, BusMessage):
        return message.to_json()
    return json.dumps(message, separators=(",", ":"))


def encode_batch(bodies: Sequence[str]) -> str:
    """Encoded messages joined into the one JSON array the send_batch query takes."""
    return "[" + ",".join(bodies) + "]"


async def send_once(
    conn: psycopg.AsyncConnection, queue: str, key: str, message: Payload
) -> int | None:
    """Send one message unless a message with this key was sent before; its msg_id, or None.

    The key is taken in the send's own transaction: a sender that cannot tell whether an
    earlier call went through (its connection was lost, it crashed before noting the send)
    calls again, and at most one message is ever sent.
    """
    async with conn.transaction():
        claimed = await (await conn.execute(QUERIES["claim_send"], {"key": key})).fetchone()
        if claimed is None:
            return None
        return await send_message(conn, queue, message)


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

    async def publish_workspace(self, repo: Path) -> Published:
        """Store a snapshot of the working tree at `repo` in the bus (only the blobs it lacks);
        its id is what an experiment request names as `workspace`."""
        return await publish_workspace(self._pool, repo)

    async def send_once(self, queue: str, key: str, message: Payload) -> int | None:
        """Send one message unless one with `key` was sent before (see `send_once`)."""
        async with self._pool.connection() as conn:
            return await send_once(conn, queue, key, message)

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
