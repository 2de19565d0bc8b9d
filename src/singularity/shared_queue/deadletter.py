"""Dead letters: what a consumer could not handle, kept with the reason, and sent back on demand."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg
import pydantic_core
from pydantic import BaseModel, ConfigDict, ValidationError

from singularity.shared_queue.catalog import DLQ_SUFFIX
from singularity.shared_queue.delivery import Reply
from singularity.shared_queue.publisher import send_message
from singularity.shared_queue.sql import QUERIES, queue_table

__all__ = [
    "MAX_REASON_LENGTH",
    "DeadLetter",
    "bounded",
    "dead_letter",
    "list_dead_letters",
    "redrive",
]

_REDRIVE_BATCH = 1000
# A reason is read by people (`queue dlq list`) and kept with every letter: a few lines at most.
MAX_REASON_LENGTH = 1000
_SHOWN_BYTES = 64 * 1024


class DeadLetter(BaseModel):
    """The body of a dead-letter message: the original and why it failed."""

    model_config = ConfigDict(frozen=True)

    queue: str
    msg_id: int
    read_ct: int
    enqueued_at: datetime
    failed_at: datetime
    reason: str
    original: Any = None


async def dead_letter(
    conn: psycopg.AsyncConnection,
    *,
    queue: str,
    dead_letter_queue: str,
    msg_id: int,
    read_ct: int,
    enqueued_at: datetime,
    reason: str,
    replies: Sequence[Reply] = (),
) -> bool:
    """Move one message to the dead-letter queue, sending `replies` in the same transaction;
    False if it was no longer in its queue (then nothing is sent).

    The original goes from the queue to the letter inside the server: whatever it holds
    (megabytes, thousands of levels of nesting) is never parsed here, and the reason is cut
    to a bounded length.
    """
    letter = DeadLetter(
        queue=queue,
        msg_id=msg_id,
        read_ct=read_ct,
        enqueued_at=enqueued_at,
        failed_at=datetime.now(UTC),
        reason=bounded(reason),
        original=None,
    )
    params = {
        "msg_id": msg_id,
        "dead_letter_queue": dead_letter_queue,
        "letter": letter.model_dump_json(exclude={"original"}),
    }
    try:
        return await _move(conn, "dead_letter", queue, params, replies)
    except (psycopg.errors.StatementTooComplex, psycopg.errors.ProgramLimitExceeded) as exc:
        # Beyond what PostgreSQL can wrap in an envelope: better a letter without the original
        # than a message that comes back forever.
        why = f"{reason} (the original could not be kept: {exc.diag.message_primary})"
        params["letter"] = letter.model_copy(update={"reason": bounded(why)}).model_dump_json()
        return await _move(conn, "dead_letter_unkept", queue, params, replies)


async def _move(
    conn: psycopg.AsyncConnection,
    query: str,
    queue: str,
    params: dict[str, object],
    replies: Sequence[Reply],
) -> bool:
    composed = QUERIES.compose(query, queue_table=queue_table(queue))
    async with conn.transaction():
        if not await (await conn.execute(composed, params)).fetchall():
            return False
        for reply in replies:
            await send_message(conn, reply.queue, reply.message)
    return True


def bounded(text: str, limit: int = MAX_REASON_LENGTH) -> str:
    """`text` cut to at most about `limit` characters, saying how long it was: a reason or an
    error may quote a field of the message, and a message may be megabytes long."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} characters in all)"


async def list_dead_letters(
    conn: psycopg.AsyncConnection, dead_letter_queue: str, *, limit: int = 50
) -> list[tuple[int, DeadLetter | str]]:
    """The dead letters of one queue (without taking them); a message that is not a dead
    letter comes back as its raw text, or a note of its size when it is large.

    An original larger than 64 KiB, or nested deeper than a parser goes, is shown as a note
    saying so: it stays whole in the queue, and a redrive sends it back whole.
    """
    query = QUERIES.compose("peek_letters", queue_table=queue_table(dead_letter_queue))
    params = {"n": limit, "max_bytes": _SHOWN_BYTES}
    rows = await (await conn.execute(query, params)).fetchall()
    letters: list[tuple[int, DeadLetter | str]] = []
    for msg_id, envelope, original, size in rows:
        try:
            letter = DeadLetter.model_validate_json(envelope or "")
        except ValidationError:
            shown = envelope or f"(a message of about {size} bytes, not shown)"
            letters.append((msg_id, shown))
            continue
        letters.append((msg_id, letter.model_copy(update={"original": _shown(original, size)})))
    return letters


def _shown(original: str | None, size: int | None) -> Any:
    if size is None:
        return None
    if original is None:
        return f"(an original of about {size} bytes, not shown)"
    try:
        return pydantic_core.from_json(original)  # depth-bounded: a ValueError
    except ValueError as exc:
        return f"(an original that cannot be shown: {exc})"


async def redrive(conn: psycopg.AsyncConnection, queue: str) -> tuple[int, int]:
    """Send every dead letter of `queue` back to it, as new messages (delivery count reset).

    Returns (redriven, skipped); a dead letter without an original is left where it is.
    """
    dlq = queue + DLQ_SUFFIX
    take = QUERIES.compose("take_all", queue_table=queue_table(dlq))
    resend = QUERIES.compose("resend_originals", queue_table=queue_table(dlq))
    redriven = skipped = 0
    while True:
        async with conn.transaction():
            rows = await (await conn.execute(take, {"n": _REDRIVE_BATCH})).fetchall()
            moved = [msg_id for msg_id, has_original in rows if has_original]
            skipped += len(rows) - len(moved)
            if moved:
                await conn.execute(resend, {"queue": queue, "ids": moved})
                await conn.execute(QUERIES["archive"], {"queue": dlq, "ids": moved})
            redriven += len(moved)
        if len(rows) < _REDRIVE_BATCH or not moved:
            return redriven, skipped
