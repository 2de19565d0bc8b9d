"""What a consumer reads: the rows of its read query, and how a body becomes a message or a
reason to dead-letter it. Nothing here may raise on what a message holds."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import psycopg
import pydantic_core
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel, ValidationError

from singularity.shared_queue.deadletter import bounded
from singularity.shared_queue.messages import MAX_KEY_LENGTH
from singularity.shared_queue.sql import QUERIES

__all__ = [
    "INVALID",
    "Row",
    "about_a_message",
    "body_for_reply",
    "describe",
    "parse",
    "validation_summary",
]

M = TypeVar("M", bound=BaseModel)

# How every reason for a message that cannot be read starts (`on_invalid` answers those).
INVALID = "invalid message: "
# The longest request_id, id or reply_to picked out of a message too large to parse.
_HEAD_FIELD_BYTES = 2 * MAX_KEY_LENGTH


@dataclass(slots=True)
class Row:
    """One message as the read query returns it."""

    msg_id: int
    read_ct: int
    enqueued_at: datetime
    body: str | None  # None: longer than max_message_bytes (or not read at all)
    size: int | None  # of its JSON text, in bytes
    key: str | None = None
    seen: bool = False


def parse(model: type[M], row: Row, max_bytes: int) -> M | str:
    """The message, or why it cannot be read (starting with INVALID)."""
    if row.body is None:
        return (
            f"{INVALID}it is {row.size} bytes long; at most {max_bytes} are read "
            "(SHARED_QUEUE_MAX_MESSAGE_BYTES)"
        )
    try:
        # pydantic's parser stops at a bounded depth (a ValidationError, never a
        # RecursionError), and its errors say where without quoting the body.
        return model.model_validate_json(row.body)
    except ValidationError as exc:
        return f"{INVALID}{validation_summary(exc)}"
    except Exception as exc:  # a validator that fails otherwise: the message is still at fault
        return f"{INVALID}{type(exc).__name__} while reading it: {describe(exc)}"


async def body_for_reply(pool: AsyncConnectionPool, table: str, row: Row) -> Any:
    """The body as JSON values for `on_invalid`; for one too long or too deeply nested to
    parse here, only its request_id, id and reply_to, picked out by the server."""
    if row.body is not None:
        try:
            return pydantic_core.from_json(row.body)  # depth-bounded: a ValueError
        except ValueError:
            pass
    query = QUERIES.compose("message_head", queue_table=table)
    params = {"msg_id": row.msg_id, "max_field_bytes": _HEAD_FIELD_BYTES}
    async with pool.connection() as conn:
        found = await (await conn.execute(query, params)).fetchone()
    return pydantic_core.from_json(found[0]) if found and found[0] else None


def validation_summary(exc: ValidationError) -> str:
    """Why a message is not valid, in a line: "field: problem" for each of the first few, and
    the whole message's problem as it is (a check across its fields)."""
    parts = []
    for error in exc.errors(include_url=False, include_input=False)[:5]:
        where = ".".join(str(p) for p in error["loc"])
        # A field name or a validator's message may quote the message itself: keep it short.
        what = bounded(str(error["msg"]).removeprefix("Value error, "), 200)
        parts.append(f"{bounded(where, 100)}: {what}" if where else what)
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


def describe(exc: BaseException) -> str:
    """An exception's text, bounded; one whose text cannot be made is named only."""
    try:
        return bounded(str(exc), 500)
    except Exception:
        return f"({type(exc).__name__} without a readable message)"


# SQLSTATE classes of errors that one message causes (data exception; program limit, e.g.
# "out of memory" making 1 GB of text, or a stack too deep): the connection itself is fine.
_MESSAGE_ERROR_CLASSES = ("22", "54")


def about_a_message(exc: psycopg.Error) -> bool:
    """Whether the server failed because of what one message holds."""
    return (exc.sqlstate or "")[:2] in _MESSAGE_ERROR_CLASSES
