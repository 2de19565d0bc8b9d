"""Jobs through the bus: run in the sandbox, answered on reply_to, recorded, one effect."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from psycopg_pool import AsyncConnectionPool

from genesis_support import RunningGenesis, require_bwrap
from helpers import count, eventually
from nexus_support import wait_for_message
from singularity.config import Settings
from singularity.errors import SingularityError
from singularity.genesis.jobs.handler import JobHandler
from singularity.genesis.limits import DEFAULT_LIMITS
from singularity.genesis.sandbox import Sandbox
from singularity.genesis.store import GenesisStore
from singularity.postgres.cluster import Cluster
from singularity.postgres.connect import open_pool
from singularity.postgres.topology import Database, Role
from singularity.shared_queue import (
    DeadLetter,
    Delivery,
    JobRequest,
    Publisher,
    ReplyTargets,
    list_dead_letters,
)


def job(reply_to: str, **fields: object) -> JobRequest:
    values: dict[str, object] = {
        "id": f"job-{uuid.uuid4().hex[:10]}",
        "reply_to": reply_to,
        "code": "print(6 * 7)",
        "language": "python",
    }
    values.update(fields)
    return JobRequest.model_validate(values)


async def test_a_job_with_only_the_design_fields_runs_and_is_answered(
    genesis: RunningGenesis, bus_pool: AsyncConnectionPool, genesis_db: AsyncConnectionPool
) -> None:
    job_id = f"design-{uuid.uuid4().hex[:8]}"
    body = {"id": job_id, "code": "print('hello from the sandbox')", "language": "python"}
    async with bus_pool.connection() as conn:
        await conn.execute("SELECT pgmq.send('job_requests', %s::jsonb)", (json.dumps(body),))

    result = await wait_for_message(bus_pool, "job_results", request_id=job_id)
    assert result["status"] == "OK"
    assert result["output"] == "hello from the sandbox\n"
    assert result["exit_code"] == 0
    assert result["wall_ms"] > 0 and result["max_rss_kb"] > 0
    async with genesis_db.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT language, mode, status, code_bytes FROM executions WHERE request_id = %s",
                (job_id,),
            )
        ).fetchone()
        steps = await (
            await conn.execute(
                "SELECT step FROM sandbox_history WHERE execution_id = %s ORDER BY id", (job_id,)
            )
        ).fetchall()
    assert row == ("python", "run", "OK", len(body["code"]))
    assert [s[0] for s in steps] == ["check", "run"]


async def test_stdin_args_and_files_reach_the_code(
    genesis: RunningGenesis, bus_pool: AsyncConnectionPool, genesis_replies: str
) -> None:
    code = "import sys, helper\nprint(helper.twice(sys.stdin.read().strip()), sys.argv[1:])"
    request = job(
        genesis_replies,
        code=code,
        stdin="ab",
        args=["x", "y"],
        files={"helper.py": "def twice(s):\n    return s * 2\n"},
    )
    await Publisher(bus_pool).send("job_requests", request)
    result = await wait_for_message(bus_pool, genesis_replies, request_id=request.id)
    assert result["status"] == "OK", result
    assert result["output"] == "abab ['x', 'y']\n"


async def test_a_syntax_error_is_a_compile_error_and_never_runs(
    genesis: RunningGenesis, bus_pool: AsyncConnectionPool, genesis_replies: str
) -> None:
    request = job(genesis_replies, code="print('ran')\ndef broken(:\n")
    await Publisher(bus_pool).send("job_requests", request)
    result = await wait_for_message(bus_pool, genesis_replies, request_id=request.id)
    assert result["status"] == "COMPILE_ERROR"
    assert "ran" not in result["output"]
    assert "SyntaxError" in (result["error"] or "")


async def test_a_job_past_its_wall_limit_times_out(
    genesis: RunningGenesis, bus_pool: AsyncConnectionPool, genesis_replies: str
) -> None:
    request = job(genesis_replies, code="import time\ntime.sleep(30)", limits={"wall_s": 1})
    await Publisher(bus_pool).send("job_requests", request)
    result = await wait_for_message(bus_pool, genesis_replies, request_id=request.id)
    assert result["status"] == "TIMEOUT"
    assert result["wall_ms"] < 10_000


async def test_the_same_job_sent_twice_runs_once(
    genesis: RunningGenesis,
    bus_pool: AsyncConnectionPool,
    genesis_db: AsyncConnectionPool,
    genesis_replies: str,
) -> None:
    request = job(genesis_replies, code="print('once')")
    await Publisher(bus_pool).send("job_requests", request)
    await wait_for_message(bus_pool, genesis_replies, request_id=request.id)
    await Publisher(bus_pool).send("job_requests", request)

    async def both_archived() -> bool:
        return await _archived(bus_pool, request.id) == 2

    await eventually(both_archived)
    assert await _replies(bus_pool, genesis_replies, request.id) == 1
    assert await _steps(genesis_db, request.id) == 2  # check + run, once


async def test_a_redelivered_job_is_answered_from_its_record(
    genesis_settings: Settings,
    cluster: Cluster,
    genesis_db: AsyncConnectionPool,
    genesis_replies: str,
) -> None:
    """A worker that recorded a job but died before archiving it: the next one answers from
    the record, and the code does not run again."""
    require_bwrap()
    request = job(genesis_replies, code="import random\nprint(random.random())")
    delivery = Delivery("job_requests", 1, 1, datetime.now(UTC), request, request.id)
    genesis_pool = await open_pool(
        cluster.service(Role.GENESIS, Database.GENESIS), name="t-genesis", max_size=2
    )
    bus = await open_pool(
        cluster.service(Role.GENESIS, Database.SHARED_QUEUE), name="t-bus", max_size=2
    )
    try:
        handler = JobHandler(
            Sandbox(), GenesisStore(genesis_pool), ReplyTargets(bus), DEFAULT_LIMITS, unsafe=False
        )
        first = await handler(delivery)
        again = await handler(replace(delivery, read_ct=2))
    finally:
        await genesis_pool.close()
        await bus.close()
    assert first == again and first.queue == genesis_replies
    assert await _steps(genesis_db, request.id) == 2


async def _archived(pool: AsyncConnectionPool, key: str) -> int:
    return await _count(
        pool, "SELECT count(*) FROM pgmq.a_job_requests WHERE message->>'id' = %s", key
    )


async def _replies(pool: AsyncConnectionPool, queue: str, key: str) -> int:
    query = f"SELECT count(*) FROM pgmq.q_{queue} WHERE message->>'request_id' = %s"
    return await _count(pool, query, key)


async def _steps(pool: AsyncConnectionPool, key: str) -> int:
    return await _count(pool, "SELECT count(*) FROM sandbox_history WHERE execution_id = %s", key)


async def _count(pool: AsyncConnectionPool, query: str, key: str) -> int:
    async with pool.connection() as conn:
        row = await (await conn.execute(query, (key,))).fetchone()
    return int(row[0]) if row else 0


async def test_limits_above_the_maximum_are_refused_and_dead_lettered(
    genesis: RunningGenesis, bus_pool: AsyncConnectionPool, genesis_replies: str
) -> None:
    request = job(genesis_replies, limits={"cpu_s": 10_000})
    await Publisher(bus_pool).send("job_requests", request)
    result = await wait_for_message(bus_pool, genesis_replies, request_id=request.id)
    assert result["status"] == "UNSUPPORTED"
    assert "cpu_s" in result["error"]
    async with bus_pool.connection() as conn:
        dead = await list_dead_letters(conn, "job_requests_dlq", limit=1000)
    assert any(
        isinstance(d, DeadLetter) and d.original.get("id") == request.id and "cpu_s" in d.reason
        for _, d in dead
    )


async def test_a_malformed_job_is_dead_lettered_and_its_asker_told(
    genesis: RunningGenesis, bus_pool: AsyncConnectionPool, genesis_replies: str
) -> None:
    job_id = f"bad-{uuid.uuid4().hex[:8]}"
    body = {"id": job_id, "language": "python", "reply_to": genesis_replies}  # no code
    async with bus_pool.connection() as conn:
        await conn.execute("SELECT pgmq.send('job_requests', %s::jsonb)", (json.dumps(body),))
    result = await wait_for_message(bus_pool, genesis_replies, request_id=job_id)
    assert result["status"] == "UNSUPPORTED"
    assert "code" in result["error"]


async def test_an_unknown_language_is_unsupported(
    genesis: RunningGenesis, bus_pool: AsyncConnectionPool, genesis_replies: str
) -> None:
    request = job(genesis_replies, language="cobol")
    await Publisher(bus_pool).send("job_requests", request)
    result = await wait_for_message(bus_pool, genesis_replies, request_id=request.id)
    assert result["status"] == "UNSUPPORTED"
    assert "cobol" in result["error"]


async def test_without_a_sandbox_genesis_refuses_to_start(
    genesis_settings: Settings,
    cluster: Cluster,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: object,
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")  # no bwrap to be found
    with pytest.raises(SingularityError, match="cannot sandbox code"):
        async with RunningGenesis(genesis_settings, cluster):
            pass


async def test_without_a_sandbox_up_keeps_genesis_out_of_the_way(
    genesis_settings: Settings,
    cluster: Cluster,
    bus_pool: AsyncConnectionPool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    running = RunningGenesis(genesis_settings, cluster, required=False)
    running.service.ready.set()  # it never gets ready: it only waits for the stop
    before = await count(bus_pool, "q_job_requests")
    async with running:
        assert not running.task.done()
    assert await count(bus_pool, "q_job_requests") == before


async def test_a_worker_runs_at_most_its_concurrency_at_once(
    genesis_settings: Settings,
    cluster: Cluster,
    bus_pool: AsyncConnectionPool,
    genesis_replies: str,
) -> None:
    require_bwrap()
    code = "import time\nstart = time.time()\ntime.sleep(0.6)\nprint(start, time.time())"
    requests = [job(genesis_replies, code=code) for _ in range(5)]
    settings = genesis_settings.model_copy(update={"genesis_concurrency": 2})
    async with RunningGenesis(settings, cluster):
        await Publisher(bus_pool).send_batch("job_requests", requests)
        results = [
            await wait_for_message(bus_pool, genesis_replies, seconds=30, request_id=r.id)
            for r in requests
        ]
    spans = [tuple(map(float, r["output"].split())) for r in results]
    assert _most_at_once(spans) == 2


async def test_two_workers_share_the_queue_and_each_job_runs_once(
    genesis_settings: Settings,
    cluster: Cluster,
    bus_pool: AsyncConnectionPool,
    genesis_db: AsyncConnectionPool,
    genesis_replies: str,
) -> None:
    require_bwrap()
    requests = [job(genesis_replies, code=f"print({i})") for i in range(12)]
    settings = genesis_settings.model_copy(update={"genesis_concurrency": 1})
    async with RunningGenesis(settings, cluster), RunningGenesis(settings, cluster):
        await Publisher(bus_pool).send_batch("job_requests", requests)
        for i, request in enumerate(requests):
            result = await wait_for_message(
                bus_pool, genesis_replies, seconds=30, request_id=request.id
            )
            assert result["output"] == f"{i}\n"
    for request in requests:
        assert await _replies(bus_pool, genesis_replies, request.id) == 1
        assert await _steps(genesis_db, request.id) == 2


def _most_at_once(spans: list[tuple[float, float]]) -> int:
    """The largest number of (start, end) spans that overlap at one moment."""
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    running = most = 0
    for _, change in events:
        running += change
        most = max(most, running)
    return most
