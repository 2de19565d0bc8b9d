"""The singularity database: agents, tasks, pending requests and the local LLM log."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel

from singularity.errors import NotFound
from singularity.orchestrator.sql import QUERIES

__all__ = [
    "LEASE_S",
    "PendingStep",
    "SingularityStore",
    "TaskEvent",
    "TaskRecord",
    "TrajectoryStep",
]

# How long a runner holds a task without renewing; a crashed runner's task is resumed by
# another after this long.
LEASE_S = 30.0


class TaskRecord(BaseModel):
    """One task as the database holds it."""

    id: int
    agent_id: str
    kind: str
    description: str
    repo: str
    test_command: str
    state: str
    data: dict[str, Any]
    outcome: str | None
    error: str | None
    runner: str | None
    lease_until: datetime | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None


class TaskEvent(BaseModel):
    id: int
    at: datetime
    state: str
    message: str


class TrajectoryStep(BaseModel):
    """One step of a task's agent loop: a model call or a tool call, and what it gave."""

    key: str
    kind: str  # "model" or "tool"
    name: str  # the model called, or the tool
    input: dict[str, Any]
    output: dict[str, Any]
    ok: bool
    tokens: int
    cost_usd: float | None  # None: unknown (never taken for 0)
    wall_ms: float | None
    at: datetime


class PendingStep(BaseModel):
    """The request a task's step sent, and its answer once it came."""

    request_id: str
    queue: str
    body: dict[str, Any]
    sent_at: datetime | None
    answered_at: datetime | None
    result: dict[str, Any] | None


class SingularityStore:
    """Every query of the singularity database."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    async def _one(self, query: str, params: dict[str, Any]) -> dict[str, Any] | None:
        async with self.pool.connection() as conn:
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(QUERIES[query], params)
            return await cursor.fetchone()

    async def _all(self, query: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        async with self.pool.connection() as conn:
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(QUERIES[query], params)
            return await cursor.fetchall()

    # Agents and tasks.

    async def ensure_agent(self, agent_id: str, kind: str) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(QUERIES["ensure_agent"], {"id": agent_id, "kind": kind})

    async def agents(self) -> list[dict[str, Any]]:
        return await self._all("list_agents", {})

    async def create_task(
        self,
        *,
        agent_id: str,
        description: str,
        repo: str,
        test_command: str,
        runner: str,
        data: dict[str, Any] | None = None,
    ) -> int:
        row = await self._one(
            "create_task",
            {
                "agent_id": agent_id,
                "description": description,
                "repo": repo,
                "test_command": test_command,
                "data": Jsonb(data or {}),
                "runner": runner,
                "lease_s": LEASE_S,
            },
        )
        assert row is not None
        return int(row["id"])

    async def task(self, task_id: int) -> TaskRecord:
        row = await self._one("get_task", {"id": task_id})
        if row is None:
            raise NotFound(f"there is no task {task_id}")
        return TaskRecord(**row)

    async def tasks(self, limit: int = 50) -> list[dict[str, Any]]:
        return await self._all("list_tasks", {"limit": limit})

    async def claim(self, task_id: int, runner: str) -> bool:
        """Take a task unless a live runner holds it."""
        params = {"id": task_id, "runner": runner, "lease_s": LEASE_S}
        return await self._one("claim_task", params) is not None

    async def claim_orphan(self, runner: str) -> int | None:
        """The oldest unfinished task no live runner holds, now held by `runner`."""
        row = await self._one("claim_orphan", {"runner": runner, "lease_s": LEASE_S})
        return int(row["id"]) if row else None

    async def renew(self, task_id: int, runner: str) -> bool:
        params = {"id": task_id, "runner": runner, "lease_s": LEASE_S}
        return await self._one("renew_lease", params) is not None

    async def release(self, task_id: int, runner: str) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(QUERIES["release_task"], {"id": task_id, "runner": runner})

    async def advance(
        self, task_id: int, runner: str, state: str, data: dict[str, Any], message: str
    ) -> bool:
        """Move a held task to `state`, merging `data`, with an event; False if not held."""
        async with self.pool.connection() as conn, conn.transaction():
            params = {"id": task_id, "runner": runner, "state": state, "data": Jsonb(data)}
            row = await (await conn.execute(QUERIES["advance_task"], params)).fetchone()
            if row is None:
                return False
            await conn.execute(
                QUERIES["add_event"], {"task_id": task_id, "state": state, "message": message}
            )
        return True

    async def finish(
        self,
        task_id: int,
        *,
        state: str,
        outcome: str,
        message: str,
        error: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> bool:
        """End a task (whoever holds it), with an event; False if it had ended already."""
        async with self.pool.connection() as conn, conn.transaction():
            params = {
                "id": task_id,
                "state": state,
                "outcome": outcome,
                "error": error,
                "data": Jsonb(data or {}),
            }
            if (await (await conn.execute(QUERIES["finish_task"], params)).fetchone()) is None:
                return False
            await conn.execute(
                QUERIES["add_event"], {"task_id": task_id, "state": state, "message": message}
            )
        return True

    async def note(self, task_id: int, state: str, message: str) -> int:
        """Add an event to a task without changing its state; the event's id."""
        row = await self._one("add_event", {"task_id": task_id, "state": state, "message": message})
        assert row is not None
        return int(row["id"])

    async def relay_events(
        self, send: Callable[[list[dict[str, Any]]], Awaitable[None]], *, limit: int = 200
    ) -> int:
        """Hand the oldest unsent task events (with their task's fields) to `send`, then mark
        them sent, all while they are locked: two relays never send one event at once. An
        event `send` raised for stays unsent. How many were sent."""
        async with self.pool.connection() as conn, conn.transaction():
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(QUERIES["unsent_events"], {"limit": limit})
            rows = await cursor.fetchall()
            if rows:
                await send(rows)
                ids = [row["id"] for row in rows]
                await conn.execute(QUERIES["mark_events_sent"], {"ids": ids})
        return len(rows)

    async def cancel(self, task_id: int) -> bool:
        """End a task now, whoever works on it; False if it had ended already. Its runner
        stops when it next renews its lease (within a third of the lease)."""
        return await self.finish(
            task_id,
            state="cancelled",
            outcome="cancelled",
            error="cancelled by the user",
            message="cancelled by the user",
        )

    async def record_step(self, task_id: int, step: TrajectoryStep) -> None:
        """Record one step of the task's agent loop (kept as first recorded)."""
        params = {
            **step.model_dump(exclude={"at"}),
            "task_id": task_id,
            "input": Jsonb(step.input),
            "output": Jsonb(step.output),
        }
        async with self.pool.connection() as conn:
            await conn.execute(QUERIES["trajectory_record"], params)

    async def recorded_step(self, task_id: int, key: str) -> tuple[dict[str, Any], bool] | None:
        """The output of a step recorded under `key` (and whether it went well), or None."""
        row = await self._one("trajectory_step", {"task_id": task_id, "key": key})
        return None if row is None else (row["output"], row["ok"])

    async def trajectory(self, task_id: int) -> list[TrajectoryStep]:
        """Every step of the task's agent loop, in order."""
        rows = await self._all("trajectory", {"task_id": task_id})
        return [TrajectoryStep(**row) for row in rows]

    async def events(self, task_id: int, after: int = 0) -> list[TaskEvent]:
        rows = await self._all("task_events", {"task_id": task_id, "after": after})
        return [TaskEvent(**row) for row in rows]

    async def cost(self, task_id: int) -> dict[str, Any]:
        row = await self._one("task_cost", {"task_id": task_id})
        assert row is not None
        return row

    # Pending requests.

    async def record_request(
        self,
        *,
        request_id: str,
        task_id: int | None,
        step: str | None,
        kind: str,
        queue: str,
        reply_to: str,
        body: dict[str, Any],
        deadline: datetime | None,
    ) -> bool:
        """Record a request before it is sent; False when this step has one already."""
        row = await self._one(
            "record_request",
            {
                "request_id": request_id,
                "task_id": task_id,
                "step": step,
                "kind": kind,
                "queue": queue,
                "reply_to": reply_to,
                "body": Jsonb(body),
                "deadline": deadline,
            },
        )
        return row is not None

    async def step_request(self, task_id: int, step: str) -> PendingStep | None:
        row = await self._one("step_request", {"task_id": task_id, "step": step})
        return PendingStep(**row) if row else None

    async def mark_sent(self, request_id: str) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(QUERIES["mark_sent"], {"request_id": request_id})

    async def answer(self, request_id: str) -> dict[str, Any] | None:
        """The recorded answer to a request, or None while it has none."""
        row = await self._one("request_answer", {"request_id": request_id})
        if row is None:
            raise NotFound(f"no request {request_id!r} is recorded")
        return row["result"] if row["answered_at"] is not None else None

    async def record_answer(
        self, request_id: str, result: dict[str, Any], *, llm_call: dict[str, Any] | None = None
    ) -> str:
        """Record an arrived result: 'recorded', 'duplicate' or 'unknown' (never asked here)."""
        async with self.pool.connection() as conn, conn.transaction():
            cursor = conn.cursor(row_factory=dict_row)
            params = {"request_id": request_id, "result": Jsonb(result)}
            await cursor.execute(QUERIES["record_answer"], params)
            row = await cursor.fetchone()
            if row is None:
                await cursor.execute(QUERIES["request_known"], {"request_id": request_id})
                return "duplicate" if await cursor.fetchone() else "unknown"
            if row["kind"] == "llm" and llm_call is not None:
                await cursor.execute(
                    QUERIES["record_llm_call"],
                    {
                        "request_id": request_id,
                        "task_id": row["task_id"],
                        "requested_at": row["created_at"],
                        "agent_id": row["body"].get("agent_id", ""),
                        "task_type": row["body"].get("task_type", ""),
                        **llm_call,
                    },
                )
        return "recorded"
