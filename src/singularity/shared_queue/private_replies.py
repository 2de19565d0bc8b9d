"""A ledger for a one-off asker (a command run in a terminal): a private reply queue of its
own, and nothing recorded anywhere.

Its answers are found by popping the queue; a message there that is not the answer to a
request asked through it (another id, another shape) is logged and dropped. Nothing
survives the process: a command that dies simply asks again.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import structlog
from pydantic import ValidationError

from singularity.shared_queue.install import ensure_queue, grant_publish
from singularity.shared_queue.messages import BusMessage
from singularity.shared_queue.requester import Recorded
from singularity.shared_queue.sql import QUERIES

__all__ = ["PrivateReplies", "private_replies"]

log = structlog.get_logger(__name__)


class PrivateReplies:
    """The Ledger of requests answered on `queue`, a queue only their answerer may send to."""

    def __init__(
        self, conn: psycopg.AsyncConnection, queue: str, answer_model: type[BusMessage]
    ) -> None:
        self.conn = conn
        self.queue = queue
        self.answer_model = answer_model
        self._asked: set[str] = set()
        self._answers: dict[str, dict[str, Any]] = {}

    async def find(self, key: str) -> Recorded | None:
        return None  # nothing is kept: asking again asks anew

    async def record(self, key: str | None, request: Recorded) -> bool:
        self._asked.add(request.request_id)
        return True

    async def mark_sent(self, request_id: str) -> None:
        return None

    async def answer(self, request_id: str) -> dict[str, Any] | None:
        """The answer, once it is in the queue; whatever else is there is dropped."""
        while request_id not in self._answers:
            row = await (await self.conn.execute(QUERIES["pop"], {"queue": self.queue})).fetchone()
            if row is None:
                return None
            self._take(row[0])
        return self._answers[request_id]

    async def record_answer(self, request_id: str, answer: BusMessage) -> dict[str, Any] | None:
        if request_id not in self._asked:
            return None
        return self._answers.setdefault(request_id, answer.model_dump(mode="json"))

    def _take(self, body: Any) -> None:
        request_id = body.get("request_id") if isinstance(body, dict) else None
        if not isinstance(request_id, str) or request_id not in self._asked:
            log.warning("reply_ignored", queue=self.queue, reason="not an answer asked for here")
            return
        try:
            self.answer_model.model_validate(body)
        except ValidationError as exc:
            reason = f"not a {self.answer_model.__name__}: {exc.error_count()} errors"
            log.warning("reply_ignored", queue=self.queue, request_id=request_id, reason=reason)
            return
        # The first answer counts; the body as sent, so that it can be shown as it came.
        self._answers.setdefault(request_id, body)


@contextlib.asynccontextmanager
async def private_replies(
    conn: psycopg.AsyncConnection,
    *,
    answerer_role: str,
    answer_model: type[BusMessage],
    prefix: str = "cli",
) -> AsyncIterator[PrivateReplies]:
    """A fresh reply queue that only `answerer_role` may send to, dropped when the block ends
    (`conn` is an administrator's: it creates the queue and grants the sending)."""
    queue = f"{prefix}_{uuid.uuid4().hex[:12]}"
    await ensure_queue(conn, queue, wake=False)
    try:
        await grant_publish(conn, answerer_role, queue)
        yield PrivateReplies(conn, queue, answer_model)
    finally:
        await conn.execute(QUERIES["drop_queue"], {"queue": queue})
