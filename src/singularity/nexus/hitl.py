"""Human in the loop: approvals and questions, from the queue to a decision and back.

A request is stored in the nexus tables before anyone can see it (the store announces it on
the `nexus_hitl` channel); a decision is written in one transaction with its metric, then its
answer is published to the request's `reply_to` and marked as published. If the process stops
between the two, the sweeper publishes it later. The answer is sent with a key of its decision
(`send_once`), taken in the send's own transaction: a publish that went through before its
mark was lost is not sent again, so every decision is answered exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID

import psycopg
import structlog
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from singularity.config import Settings
from singularity.errors import NotFound, SingularityError, UsageError
from singularity.nexus.render import approval_view, question_view
from singularity.nexus.sql import QUERIES
from singularity.postgres.connect import describe_error
from singularity.shared_queue import (
    ApprovalRequest,
    Delivery,
    Publisher,
    QuestionRequest,
    ReplyTargets,
)

__all__ = ["AlreadyDecided", "Hitl", "Kind"]

log = structlog.get_logger(__name__)

Kind = Literal["approval", "question"]
DEFAULT_REPLY_TO: dict[Kind, str] = {
    "approval": "approval_responses",
    "question": "question_responses",
}
# An agent that does not say who it is (the design's messages carry no agent_id).
UNKNOWN_AGENT = "unknown"
_MAX_REASON = 4_000
_MAX_USER = 100
# A decided answer not yet marked published after this long is published again.
_REPUBLISH_AFTER_S = 15


class AlreadyDecided(SingularityError):
    """The approval or question was decided (or expired) before this decision."""


@dataclass(frozen=True, slots=True)
class _Table:
    kind: Kind
    get: str
    decide: str
    published: str
    unpublished: str
    overdue: str


_TABLES: dict[Kind, _Table] = {
    "approval": _Table(
        "approval",
        "approval_get",
        "approval_decide",
        "approval_published",
        "approval_unpublished",
        "approval_overdue",
    ),
    "question": _Table(
        "question",
        "question_get",
        "question_decide",
        "question_published",
        "question_unpublished",
        "question_overdue",
    ),
}


class Hitl:
    """The approvals and questions of one platform, as one Nexus process handles them."""

    def __init__(
        self,
        pool: AsyncConnectionPool,
        publisher: Publisher,
        targets: ReplyTargets,
        settings: Settings,
    ) -> None:
        self._pool = pool
        self._publisher = publisher
        self._targets = targets
        self._settings = settings

    # -- intake (the queue consumers) -------------------------------------------------------

    async def take_approval(self, delivery: Delivery[ApprovalRequest]) -> None:
        request = delivery.message
        reply_to = request.reply_to or DEFAULT_REPLY_TO["approval"]
        await self._targets.require(reply_to)
        params = {
            "id": request.id,
            "file_path": request.file_path,
            "diff": request.diff,
            "description": request.description,
            "agent_id": request.agent_id or UNKNOWN_AGENT,
            "request_id": request.request_id,
            "reply_to": reply_to,
            "deadline": request.deadline,
        }
        await self._take("approval", delivery, "approval_insert", params)

    async def take_question(self, delivery: Delivery[QuestionRequest]) -> None:
        request = delivery.message
        reply_to = request.reply_to or DEFAULT_REPLY_TO["question"]
        await self._targets.require(reply_to)
        params = {
            "id": request.id,
            "question": request.question,
            "context": Jsonb(request.context) if request.context is not None else None,
            "agent_id": request.agent_id or UNKNOWN_AGENT,
            "request_id": request.request_id,
            "reply_to": reply_to,
            "deadline": request.deadline,
        }
        await self._take("question", delivery, "question_insert", params)

    async def _take(
        self, kind: Kind, delivery: Delivery[Any], insert: str, params: dict[str, Any]
    ) -> None:
        async with self._pool.connection() as conn:
            inserted = await (await conn.execute(QUERIES[insert], params)).fetchone()
        if inserted is not None:
            log.info(f"{kind}_received", id=str(params["id"]), agent_id=params["agent_id"])
            return
        # The same request again (a redelivery after a lost archive, or sent twice): pending,
        # it is already shown; decided, its answer goes out with the decision, exactly once
        # (the sweeper sends one that did not go out), so never from here.
        log.info(f"{kind}_duplicate_ignored", id=str(params["id"]))

    # -- decisions (the web UI, the API, the CLI) -------------------------------------------

    async def approve(self, ident: str, *, user: str, reason: str | None = None) -> dict[str, Any]:
        reason = _clean(reason, "reason", required=False)
        return await self._decide(
            "approval",
            ident,
            user,
            {"approved": True, "status": "approved", "reason": reason},
        )

    async def reject(self, ident: str, *, user: str, reason: str | None) -> dict[str, Any]:
        reason = _clean(reason, "reason", required=True, hint="a rejection needs a reason")
        return await self._decide(
            "approval",
            ident,
            user,
            {"approved": False, "status": "rejected", "reason": reason},
        )

    async def answer(self, ident: str, *, user: str, response: str | None) -> dict[str, Any]:
        response = _clean(response, "response", required=True, hint="the answer is empty")
        return await self._decide(
            "question", ident, user, {"response": response, "status": "answered"}
        )

    async def _decide(
        self, kind: Kind, ident: str, user: str, values: dict[str, Any]
    ) -> dict[str, Any]:
        key = _uuid(ident, kind)
        user = _clean(user, "user", required=False) or "anonymous"
        table = _TABLES[kind]
        async with self._pool.connection() as conn, conn.transaction():
            cursor = conn.cursor(row_factory=dict_row)
            row = await (
                await cursor.execute(QUERIES[table.decide], {"id": key, "user": user, **values})
            ).fetchone()
            if row is None:
                existing = await (await cursor.execute(QUERIES[table.get], {"id": key})).fetchone()
                if existing is None:
                    raise NotFound(f"no {kind} with id {ident}")
                raise AlreadyDecided(f"this {kind} is already {existing['status']}")
            await cursor.execute(
                QUERIES["metric_insert"],
                {
                    "request_type": kind,
                    "request_id": key,
                    "response_time_ms": _elapsed_ms(row),
                    "user_id": user,
                },
            )
        log.info(f"{kind}_decided", id=ident, status=row["status"], user=user)
        await self._publish(kind, row)
        return _view(kind, row)

    # -- expiry and the sweeper -------------------------------------------------------------

    async def expire_overdue(self) -> int:
        """Answer every request past its deadline by the expiry policy; how many expired."""
        if self._settings.nexus_expiry_policy == "keep":
            return 0
        expired = 0
        for kind in ("approval", "question"):
            async with self._pool.connection() as conn:
                rows = await (await conn.execute(QUERIES[_TABLES[kind].overdue])).fetchall()
            for (key,) in rows:
                values: dict[str, Any]
                if kind == "approval":
                    values = {"approved": False, "status": "expired", "reason": "expired"}
                else:
                    values = {"response": "", "status": "expired"}
                async with self._pool.connection() as conn:
                    cursor = conn.cursor(row_factory=dict_row)
                    row = await (
                        await cursor.execute(
                            QUERIES[_TABLES[kind].decide], {"id": key, "user": "expiry", **values}
                        )
                    ).fetchone()
                if row is not None:  # another process may have decided it meanwhile
                    expired += 1
                    log.info(f"{kind}_expired", id=str(key))
                    await self._publish(kind, row)
        return expired

    async def publish_unpublished(self) -> int:
        """Publish decisions whose answer did not go out; how many."""
        published = 0
        for kind in ("approval", "question"):
            async with self._pool.connection() as conn:
                cursor = conn.cursor(row_factory=dict_row)
                rows = await (
                    await cursor.execute(
                        QUERIES[_TABLES[kind].unpublished],
                        {"older_than_s": _REPUBLISH_AFTER_S},
                    )
                ).fetchall()
            for row in rows:
                published += await self._publish(kind, row)
        if published:
            log.warning("answers_republished", count=published)
        return published

    async def _publish(self, kind: Kind, row: dict[str, Any]) -> bool:
        """Send the answer and mark it sent; False (logged) when the bus refused it: the
        decision stands, and the sweeper tries again."""
        try:
            sent = await self._publisher.send_once(
                row["reply_to"], f"nexus.{kind}:{row['id']}", _answer(kind, row)
            )
        except psycopg.Error as exc:
            log.warning(
                "answer_not_published",
                kind=kind,
                id=str(row["id"]),
                reply_to=row["reply_to"],
                error=describe_error(exc),
            )
            return False
        if sent is None:  # it went out before, and the process stopped before noting it
            log.info("answer_already_sent", kind=kind, id=str(row["id"]))
        async with self._pool.connection() as conn:
            await conn.execute(QUERIES[_TABLES[kind].published], {"id": row["id"]})
        return True

    # -- reading ----------------------------------------------------------------------------

    async def get(self, kind: Kind, ident: str) -> dict[str, Any]:
        key = _uuid(ident, kind)
        async with self._pool.connection() as conn:
            cursor = conn.cursor(row_factory=dict_row)
            row = await (await cursor.execute(QUERIES[_TABLES[kind].get], {"id": key})).fetchone()
        if row is None:
            raise NotFound(f"no {kind} with id {ident}")
        return _view(kind, row)

    async def pending(self, kind: Kind) -> list[dict[str, Any]]:
        async with self._pool.connection() as conn:
            cursor = conn.cursor(row_factory=dict_row)
            rows = await (await cursor.execute(QUERIES[f"{kind}_pending"])).fetchall()
        return [_view(kind, row) for row in rows]

    async def history(
        self,
        kind: Kind,
        *,
        agent: str | None = None,
        outcome: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 200,
    ) -> list[dict[str, Any]]:
        params = {
            "agent": agent or None,
            "outcome": outcome or None,
            "since": _naive_utc(since),
            "until": _naive_utc(until),
            "limit": limit,
        }
        async with self._pool.connection() as conn:
            cursor = conn.cursor(row_factory=dict_row)
            rows = await (await cursor.execute(QUERIES[f"{kind}_history"], params)).fetchall()
        if kind == "approval":
            return [approval_view(row, with_html=False) for row in rows]
        return [question_view(row) for row in rows]


def _answer(kind: Kind, row: dict[str, Any]) -> dict[str, Any]:
    """The response message of a decided request (the design's fields first)."""
    request_id = row["request_id"] or str(row["id"])
    if kind == "approval":
        return {
            "request_id": request_id,
            "approved": bool(row["approved"]),
            "reason": row["reason"],
            "id": str(row["id"]),
            "status": row["status"],
            "decided_by": row["decided_by"],
        }
    return {
        "request_id": request_id,
        "response": row["response"] or "",
        "id": str(row["id"]),
        "status": row["status"],
        "decided_by": row["decided_by"],
    }


def _view(kind: Kind, row: dict[str, Any]) -> dict[str, Any]:
    return approval_view(row) if kind == "approval" else question_view(row)


def _uuid(ident: str, kind: str) -> UUID:
    try:
        return UUID(str(ident))
    except ValueError:
        raise UsageError(f"{ident!r} is not a {kind} id (a UUID)") from None


def _clean(value: str | None, name: str, *, required: bool, hint: str = "") -> str | None:
    text = (value or "").strip()
    if required and not text:
        raise UsageError(f"{name} is required: {hint}" if hint else f"{name} is required")
    limit = _MAX_USER if name == "user" else _MAX_REASON
    if len(text) > limit:
        raise UsageError(f"{name} is too long ({len(text)} characters; at most {limit})")
    return text or None


def _elapsed_ms(row: dict[str, Any]) -> int:
    decided = row.get("approved_at") or row.get("response_at")
    created = row["created_at"]
    if decided is None or created is None:
        return 0
    return max(0, int((decided - created).total_seconds() * 1000))


def _naive_utc(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is None:
        return value
    return value.astimezone(UTC).replace(tzinfo=None)
