"""The genesis database: executions, sandbox history, experiments, metrics and rollbacks."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from singularity.errors import NotFound
from singularity.genesis.jobs.execution import StepRecord
from singularity.genesis.sql import QUERIES

__all__ = ["EvolutionRequest", "ExecutionRecord", "ExperimentRecord", "GenesisStore"]


@dataclass(frozen=True, slots=True)
class ExecutionRecord:
    """One job as it is recorded in `executions`."""

    request_id: str
    msg_id: int | None
    agent_id: str | None
    language: str
    mode: str
    reply_to: str
    reply: dict[str, Any]
    code_bytes: int
    received_at: datetime
    unsafe: bool


@dataclass(frozen=True, slots=True)
class ExperimentRecord:
    """One experiment as it is recorded in `experiments`."""

    id: str
    agent_id: str | None
    repo: str
    diff: str
    test_command: str
    llm_reduction: float
    outcome: dict[str, Any]
    reply_to: str | None = None
    reply: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class EvolutionRequest:
    """A model call of an evolution run, as recorded in `evolution_llm_requests`."""

    request_id: str
    body: dict[str, Any]
    context: dict[str, Any]
    sent: bool
    result: dict[str, Any] | None


class GenesisStore:
    """Every query Genesis runs against its database."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    # -- executions ---------------------------------------------------------------------------

    async def job_reply(self, request_id: str) -> tuple[str, dict[str, Any]] | None:
        """(reply_to, answer) of a job that has run already, or None."""
        return await self._reply("execution_reply", {"request_id": request_id})

    async def record_execution(
        self, record: ExecutionRecord, steps: Iterable[StepRecord]
    ) -> tuple[str, dict[str, Any]]:
        """Record a job and its steps; returns the answer to publish (the first one recorded,
        when a duplicate of this request got there first)."""
        reply = record.reply
        params = {
            "request_id": record.request_id,
            "msg_id": record.msg_id,
            "agent_id": record.agent_id,
            "language": record.language,
            "mode": record.mode,
            "status": reply.get("status"),
            "exit_code": reply.get("exit_code"),
            "wall_ms": reply.get("wall_ms"),
            "cpu_ms": reply.get("cpu_ms"),
            "max_rss_kb": reply.get("max_rss_kb"),
            "code_bytes": record.code_bytes,
            "output_bytes": len(reply.get("output") or ""),
            "error_bytes": len(reply.get("error") or ""),
            "truncated": bool(reply.get("truncated")),
            "unsafe": record.unsafe,
            "reply_to": record.reply_to,
            "reply": Jsonb(reply),
            "received_at": record.received_at,
            "steps": Jsonb([dataclasses.asdict(step) for step in steps]),
        }
        async with self._pool.connection() as conn:
            if await (await conn.execute(QUERIES["execution_record"], params)).fetchone():
                return record.reply_to, reply
        stored = await self.job_reply(record.request_id)
        assert stored is not None
        return stored

    async def executions(self, *, status: str | None = None, limit: int = 50) -> list[dict]:
        """The latest executions, newest first."""
        return await self._rows("execution_history", {"status": status, "limit": limit})

    # -- experiments --------------------------------------------------------------------------

    async def experiment_reply(self, experiment_id: str) -> tuple[str, dict[str, Any]] | None:
        """(reply_to, answer) of an experiment answered already over the bus, or None."""
        return await self._reply("experiment_reply", {"id": experiment_id})

    async def record_experiment(
        self,
        record: ExperimentRecord,
        metrics: Mapping[str, float],
        steps: Iterable[StepRecord],
        *,
        unsafe: bool,
    ) -> bool:
        """Record an experiment with its metrics and runs; False if it was recorded already."""
        outcome = record.outcome
        params = {
            "id": record.id,
            "agent_id": record.agent_id,
            "repo": record.repo,
            "diff": record.diff,
            "test_command": record.test_command,
            "status": outcome.get("status"),
            "recommendation": outcome.get("recommendation"),
            "rule": outcome.get("rule"),
            "success_rate": outcome.get("success_rate"),
            "regression": outcome.get("regression"),
            "llm_reduction": record.llm_reduction,
            "outcome": Jsonb(outcome),
            "error": outcome.get("error"),
            "reply_to": record.reply_to,
            "reply": Jsonb(record.reply) if record.reply is not None else None,
        }
        async with self._pool.connection() as conn, conn.transaction():
            if not await (await conn.execute(QUERIES["experiment_record"], params)).fetchone():
                return False
            for name, value in metrics.items():
                await conn.execute(
                    QUERIES["experiment_metric"],
                    {"experiment_id": record.id, "name": name, "value": float(value)},
                )
            await self._steps(conn, "sandbox_step_for_experiment", record.id, steps, unsafe)
        return True

    async def experiment(self, experiment_id: str) -> dict[str, Any]:
        """One experiment with its metrics and rollbacks, or NotFound."""
        rows = await self._rows("experiment_get", {"id": experiment_id})
        if not rows:
            raise NotFound(
                f"no experiment {experiment_id!r} (see `singularity genesis experiments`)"
            )
        found = rows[0]
        metrics = await self._rows("experiment_metrics", {"id": experiment_id})
        found["metrics"] = {row["name"]: row["value"] for row in metrics}
        found["rollbacks"] = await self._rows("rollback_list", {"id": experiment_id})
        return found

    async def experiments(self, *, limit: int = 50) -> list[dict[str, Any]]:
        """The latest experiments, newest first."""
        return await self._rows("experiment_list", {"limit": limit})

    async def mark_applied(self, experiment_id: str, baseline: Mapping[str, Any]) -> None:
        """Keep the baseline a rollback restores, as the diff goes into the repository."""
        async with self._pool.connection() as conn:
            await conn.execute(
                QUERIES["experiment_applied"], {"id": experiment_id, "baseline": Jsonb(baseline)}
            )

    async def record_rollback(
        self, experiment_id: str, reason: str, restored_files: list[str]
    ) -> None:
        """A restore of the recorded baseline."""
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute(
                QUERIES["rollback_record"],
                {
                    "experiment_id": experiment_id,
                    "reason": reason,
                    "restored_files": Jsonb(restored_files),
                },
            )
            await conn.execute(QUERIES["experiment_rolled_back"], {"id": experiment_id})

    # -- shared -------------------------------------------------------------------------------

    # -- evolution model calls ----------------------------------------------------------------

    async def evolution_request(self, run_id: str, step: str) -> EvolutionRequest | None:
        """The request a run made for a step, with its answer once it has one."""
        rows = await self._rows("evolution_request_get", {"run_id": run_id, "step": step})
        if not rows:
            return None
        row = rows[0]
        answered = row["answered_at"] is not None
        return EvolutionRequest(
            request_id=row["request_id"],
            body=row["body"],
            context=row["context"],
            sent=row["sent_at"] is not None,
            result=row["result"] if answered else None,
        )

    async def record_evolution_request(
        self,
        *,
        request_id: str,
        run_id: str,
        step: str,
        body: Mapping[str, Any],
        context: Mapping[str, Any],
    ) -> bool:
        """Record a request before it is sent; False if the step has one already."""
        params = {
            "request_id": request_id,
            "run_id": run_id,
            "step": step,
            "body": Jsonb(dict(body)),
            "context": Jsonb(dict(context)),
        }
        return bool(await self._rows("evolution_request_record", params))

    async def mark_evolution_request_sent(self, request_id: str) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(QUERIES["evolution_request_sent"], {"request_id": request_id})

    async def record_evolution_answer(
        self, request_id: str, result: Mapping[str, Any], cost_usd: float | None
    ) -> dict[str, Any] | None:
        """Record an answer (the first one counts) and return the recorded one; None when no
        request with this id was recorded."""
        params = {"request_id": request_id, "result": Jsonb(dict(result)), "cost_usd": cost_usd}
        rows = await self._rows("evolution_answer_record", params)
        return rows[0]["result"] if rows else None

    async def evolution_answer(self, request_id: str) -> dict[str, Any] | None:
        """The recorded answer of a request, or None while it has none."""
        rows = await self._rows("evolution_answer_get", {"request_id": request_id})
        return rows[0]["result"] if rows else None

    async def evolution_spend(self, run_id: str) -> float:
        """What the run's answered model calls have cost, in USD."""
        rows = await self._rows("evolution_run_spend", {"run_id": run_id})
        return float(rows[0]["spend_usd"])

    async def _reply(self, query: str, params: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
        async with self._pool.connection() as conn:
            row = await (await conn.execute(QUERIES[query], params)).fetchone()
        if row is None:
            return None
        return str(row[1]), dict(json.loads(row[0]))

    async def _rows(self, query: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        async with self._pool.connection() as conn:
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(QUERIES[query], params)
            return list(await cursor.fetchall())

    @staticmethod
    async def _steps(
        conn: Any, query: str, owner: str, steps: Iterable[StepRecord], unsafe: bool
    ) -> None:
        for step in steps:
            await conn.execute(
                QUERIES[query],
                {
                    "owner": owner,
                    "step": step.step,
                    "status": step.status,
                    "exit_code": step.exit_code,
                    "wall_ms": step.wall_ms,
                    "cpu_ms": step.cpu_ms,
                    "max_rss_kb": step.max_rss_kb,
                    "unsafe": unsafe,
                },
            )
