"""Where a consumer may send its answers: the `reply_to` of a request, checked before any work.

A reply to a queue that does not exist, or that this role may not send to, would fail the
transaction that archives a whole batch; such a request is refused (dead-lettered with the
reason) before its handler spends anything on it. So is a `reply_to` naming a dead-letter queue
or a queue of requests: a consumer may send to its own dead-letter queue, and may publish
requests elsewhere, but an answer there would forge a dead letter or a request.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from psycopg_pool import AsyncConnectionPool

from singularity.shared_queue.catalog import DLQ_SUFFIX, queue_spec
from singularity.shared_queue.delivery import PermanentFailure, Reply
from singularity.shared_queue.messages import BusMessage, Request, validate_queue_name
from singularity.shared_queue.sql import QUERIES

__all__ = ["ReplyTargets"]

# A refused queue is asked about again after this long: it may have been created meanwhile.
_RECHECK_REFUSED_S = 30.0


class ReplyTargets:
    """Checks reply queues once each, then remembers (refusals only for a while)."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool
        self._allowed: set[str] = set()
        self._refused: dict[str, tuple[float, str]] = {}

    async def problem(self, queue: str) -> str | None:
        """Why this role cannot reply to `queue`, or None when it can."""
        if queue in self._allowed:
            return None
        refused = self._refused.get(queue)
        if refused is not None and time.monotonic() - refused[0] < _RECHECK_REFUSED_S:
            return refused[1]
        try:
            validate_queue_name(queue)
        except ValueError as exc:
            return self._refuse(queue, f"reply_to: {exc}")
        misuse = _not_for_replies(queue)
        if misuse is not None:
            return self._refuse(queue, misuse)
        async with self._pool.connection() as conn:
            row = await (await conn.execute(QUERIES["can_send"], {"queue": queue})).fetchone()
        allowed = row[0] if row else None
        if allowed is None:
            return self._refuse(queue, f"reply_to queue {queue!r} does not exist")
        if not allowed:
            return self._refuse(queue, f"this service may not send to reply_to queue {queue!r}")
        self._allowed.add(queue)
        self._refused.pop(queue, None)
        return None

    async def require(self, queue: str) -> None:
        """Refuse the message being handled (dead-letter it) unless `queue` can take replies."""
        problem = await self.problem(queue)
        if problem is not None:
            raise PermanentFailure(problem)

    async def answer_invalid(
        self,
        body: Any,
        default_reply_to: str,
        answer: Callable[[str], BusMessage | dict[str, Any]],
    ) -> list[Reply]:
        """For a message that failed validation: `answer(request_id)` to its asker, when the
        body names one (request_id or id) and its reply queue can take it; else nothing."""
        if not isinstance(body, dict):
            return []
        request_id = body.get("request_id") or body.get("id")
        reply_to = body.get("reply_to") or default_reply_to
        if not isinstance(request_id, str | int) or not isinstance(reply_to, str):
            return []
        if await self.problem(reply_to) is not None:
            return []
        return [Reply(reply_to, answer(str(request_id)))]

    def _refuse(self, queue: str, reason: str) -> str:
        self._refused[queue] = (time.monotonic(), reason)
        return reason


def _not_for_replies(queue: str) -> str | None:
    """Why `queue` can never take an answer, whatever this role may send to."""
    if queue.endswith(DLQ_SUFFIX):
        return f"reply_to queue {queue!r} is a dead-letter queue"
    spec = queue_spec(queue)
    if spec is not None and issubclass(spec.message, Request):
        return f"reply_to queue {queue!r} is a queue of requests, not of answers"
    return None
