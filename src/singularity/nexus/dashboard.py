"""The figures of the dashboard: queues, pending work, LLM use today, time to decision."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from singularity.nexus.render import iso
from singularity.nexus.sql import QUERIES
from singularity.shared_queue import queue_depths

__all__ = ["dashboard"]


async def dashboard(nexus: AsyncConnectionPool, bus: AsyncConnectionPool) -> dict[str, Any]:
    async with bus.connection() as conn:
        depths = await queue_depths(conn)
    async with nexus.connection() as conn:
        cursor = conn.cursor(row_factory=dict_row)
        pending = await (await cursor.execute(QUERIES["pending_counts"])).fetchone()
        today = await (await cursor.execute(QUERIES["llm_today"])).fetchone()
        by_model = await (await cursor.execute(QUERIES["llm_by_model"])).fetchall()
        decisions = await (await cursor.execute(QUERIES["decision_times"])).fetchone()
    assert pending is not None and today is not None and decisions is not None
    return {
        "queues": [
            {"queue": d.queue, "length": d.length, "oldest_age_s": d.oldest_age_s} for d in depths
        ],
        "pending": {"approvals": pending["approvals"], "questions": pending["questions"]},
        "llm": {
            "today": {
                "requests": today["requests"],
                "prompt_tokens": int(today["prompt_tokens"]),
                "completion_tokens": int(today["completion_tokens"]),
                "cost_usd": round(float(today["cost_usd"]), 6),
                "errors": today["errors"],
            },
            "by_model": [
                {
                    "model": row["model"],
                    "tier": row["tier"],
                    "requests": row["requests"],
                    "prompt_tokens": int(row["prompt_tokens"]),
                    "completion_tokens": int(row["completion_tokens"]),
                    "cost_usd": round(float(row["cost_usd"]), 6),
                }
                for row in by_model
            ],
        },
        "decisions": {
            "count": decisions["count"],
            "p50_ms": _round(decisions["p50_ms"]),
            "p90_ms": _round(decisions["p90_ms"]),
        },
        "generated_at": iso(datetime.now(UTC)),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 1)
