"""Dead letters: what a consumer could not handle, kept with the reason, and sent back on demand."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg
from pydantic import BaseModel, ConfigDict, ValidationError

from singularity.shared_queue.catalog import DLQ_SUFFIX
from singularity.shared_queue.delivery import Reply
from singularity.shared_queue.metrics import peek
from singularity.shared_queue.publisher import encode_batch, send_message
from singularity.shared_queue.sql import QUERIES, queue_table

__all__ = ["DeadLetter", "dead_letter", "list_dead_letters", "redrive"]

_REDRIVE_BATCH = 1000


class DeadLetter(BaseModel):
    """The body of a dead-letter message: the original and why it failed."""

    model_config = ConfigDict(frozen=True)

    queue: str
    msg_id: int
    read_ct: int
    enqueued_at: datetime
    failed_at: datetime
    reason: str
    original: Any


async def dead_letter(
    conn: psycopg.AsyncConnection,
    *,
    queue: str,
    dead_letter_queue: str,
    msg_id: int,
    read_ct: int,
    enqueued_at: datetime,
    body: str,
    reason: str,
    replies: Sequence[Reply] = (),
) -> bool:
    """Move one message to the dead-letter queue, sending `replies` in the same transaction;
    False if it was no longer in its queue (then nothing is sent)."""
    letter = DeadLetter(
        queue=queue,
        msg_id=msg_id,
        read_ct=read_ct,
        enqueued_at=enqueued_at,
        failed_at=datetime.now(UTC),
        reason=reason,
        original=_original(body),
    )
    async with conn.transaction():
        cursor = await conn.execute(QUERIES["delete"], {"queue": queue, "ids": [msg_id]})
        if not await cursor.fetchall():
            return False
        await send_message(conn, dead_letter_queue, letter.model_dump(mode="json"))
        for reply in replies:
            await send_message(conn, reply.queue, reply.message)
    return True


def _original(body: str) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return body


async def list_dead_letters(
    conn: psycopg.AsyncConnection, dead_letter_queue: str, *, limit: int = 50
) -> list[tuple[int, DeadLetter | str]]:
    """The dead letters of one queue (without taking them); a body we cannot read is raw text."""
    letters: list[tuple[int, DeadLetter | str]] = []
    for msg_id, _read_ct, _enqueued, _vt, body in await peek(conn, dead_letter_queue, limit):
        try:
            letters.append((msg_id, DeadLetter.model_validate_json(body)))
        except ValidationError:
            letters.append((msg_id, body))
    return letters


async def redrive(conn: psycopg.AsyncConnection, queue: str) -> tuple[int, int]:
    """Send every dead letter of `queue` back to it, as new messages (delivery count reset).

    Returns (redriven, skipped); a dead letter without an original is left where it is.
    """
    dlq = queue + DLQ_SUFFIX
    take = QUERIES.compose("take_all", queue_table=queue_table(dlq))
    redriven = skipped = 0
    while True:
        async with conn.transaction():
            rows = await (await conn.execute(take, {"n": _REDRIVE_BATCH})).fetchall()
            originals, moved = [], []
            for msg_id, body in rows:
                original = json.loads(body).get("original") if body.startswith("{") else None
                if original is None:
                    skipped += 1
                    continue
                originals.append(json.dumps(original))
                moved.append(msg_id)
            if originals:
                await conn.execute(
                    QUERIES["send_batch"],
                    {"queue": queue, "messages": encode_batch(originals), "delay": 0},
                )
                await conn.execute(QUERIES["archive"], {"queue": dlq, "ids": moved})
            redriven += len(moved)
        if len(rows) < _REDRIVE_BATCH or not moved:
            return redriven, skipped
