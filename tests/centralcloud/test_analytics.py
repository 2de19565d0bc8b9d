"""Analytics match a known set of archived messages, and read them as the read-only role."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from centralcloud.support import Archives
from singularity.centralcloud.analytics import compute_report, results_of
from singularity.centralcloud.archives import ArchiveReader
from singularity.centralcloud.report import AnalyticsReport
from singularity.centralcloud.store import CentralCloudStore
from singularity.errors import UsageError
from singularity.postgres.cluster import Cluster
from singularity.postgres.connect import async_connection
from singularity.postgres.topology import Database, Role

YESTERDAY = (datetime.now(UTC) - timedelta(days=1)).replace(hour=12, minute=0, second=0)
EARLIER = YESTERDAY - timedelta(days=2)
LONG_AGO = YESTERDAY - timedelta(days=9)


def _chat(agent: str, task_type: str, **extra: object) -> dict[str, object]:
    return {
        "agent_id": agent,
        "task_type": task_type,
        "messages": [{"role": "user", "content": "hi"}],
        **extra,
    }


def _answer(request_id: str, model: str, tier: str, tokens: tuple[int, int], cost: float | None):
    body: dict[str, object] = {
        "request_id": request_id,
        "tier": tier,
        "result": "ok",
        "model": model,
        "usage": {"prompt_tokens": tokens[0], "completion_tokens": tokens[1]},
        "cost_usd": cost,
    }
    if cost is None:
        body["cost_unknown"] = True
    return body


async def _llm_set(archives: Archives, tag: str) -> tuple[str, str]:
    """Six LLM requests of two task types (one long ago), answered on two results queues."""
    coder, parser, agent = f"coder_{tag}", f"parser_{tag}", f"agent_{tag}"
    m1, m2 = f"m1_{tag}", f"m2_{tag}"
    other = await archives.instance_queue("llm_results")
    add = archives.add
    await add("llm_requests", _chat(agent, coder, request_id=f"r1{tag}"), YESTERDAY)
    await add("llm_results", _answer(f"r1{tag}", m1, "simple", (100, 20), 0.001), YESTERDAY)
    await add("llm_requests", _chat(agent, coder, request_id=f"r2{tag}"), YESTERDAY)
    await add("llm_results", _answer(f"r2{tag}", m1, "simple", (50, 10), 0.0005), YESTERDAY)
    await add("llm_requests", _chat(agent, coder, request_id=f"r3{tag}"), EARLIER)
    failed = {"request_id": f"r3{tag}", "tier": "simple", "error": {"code": "X", "message": ""}}
    await add("llm_results", failed, EARLIER)
    # No request_id: the msg_id stands in, as Nexus answers it; answered on another instance's
    # results queue.
    msg_id = await add("llm_requests", _chat(agent, parser), YESTERDAY)
    await add(other, _answer(str(msg_id), m2, "medium", (10, 5), 0.25), YESTERDAY)
    # Sent twice under one request_id: one request, with its first answer.
    for _ in range(2):
        await add("llm_requests", _chat(agent, parser, request_id=f"r5{tag}"), YESTERDAY)
    await add("llm_results", _answer(f"r5{tag}", m2, "medium", (1, 1), None), YESTERDAY)
    await add("llm_requests", _chat(agent, parser, request_id=f"r6{tag}"), YESTERDAY)  # pending
    await add("llm_requests", _chat(agent, coder, request_id=f"r7{tag}"), LONG_AGO)
    await add("llm_results", _answer(f"r7{tag}", m1, "simple", (9, 9), 9.0), LONG_AGO)
    return coder, parser


async def _approval_set(archives: Archives, tag: str) -> str:
    """Four approval requests of one agent: three decided after 10, 30 and 60 seconds."""
    agent = f"agent_{tag}"
    other = await archives.instance_queue("approval_responses")
    ids = [str(uuid.uuid4()) for _ in range(4)]
    for i, ident in enumerate(ids):
        request = {"id": ident, "file_path": "a.py", "diff": "+x", "agent_id": agent}
        if i == 1:
            request["request_id"] = f"ap{tag}"
        await archives.add("approval_requests", request, YESTERDAY)
    decide = archives.add
    await decide(
        "approval_responses",
        {"request_id": ids[0], "approved": True},
        YESTERDAY + timedelta(seconds=10),
    )
    await decide(
        "approval_responses",
        {"request_id": f"ap{tag}", "approved": False, "reason": "no"},
        YESTERDAY + timedelta(seconds=30),
    )
    await decide(other, {"request_id": ids[2], "approved": True}, YESTERDAY + timedelta(seconds=60))
    # A second answer to the first request: the first decision is the one that counts.
    await decide(
        "approval_responses",
        {"request_id": ids[0], "approved": False},
        YESTERDAY + timedelta(seconds=100),
    )
    return agent


async def _job_set(archives: Archives, tag: str) -> str:
    """Five runs of one language: four finished (three well), walls 100 to 400 ms."""
    language = f"lang{tag}"
    other = await archives.instance_queue("job_results")
    outcomes = [
        ("job_results", {"status": "OK", "wall_ms": 100}),
        ("job_results", {"status": "RUNTIME_ERROR", "error": "boom", "wall_ms": 300}),
        (other, {"status": "OK", "wall_ms": 200}),
        (None, None),
        ("job_results", {"wall_ms": 400}),  # no status, no error: succeeded
    ]
    for i, (queue, result) in enumerate(outcomes):
        ident = f"j{i}{tag}"
        await archives.add(
            "job_requests", {"id": ident, "code": "x", "language": language}, YESTERDAY
        )
        if queue is not None and result is not None:
            await archives.add(queue, {"request_id": ident, "output": "", **result}, YESTERDAY)
    return language


async def test_the_report_matches_a_known_set_of_archived_messages(
    archives: Archives, reader: ArchiveReader, tag: str
) -> None:
    coder, parser = await _llm_set(archives, tag)
    agent = await _approval_set(archives, tag)
    language = await _job_set(archives, tag)

    report = await compute_report(reader, 7)

    rows = {(r.task_type, r.tier, r.model): r for r in report.llm.rows}
    mine = {key: row for key, row in rows.items() if key[0] in (coder, parser)}
    assert set(mine) == {
        (coder, "simple", f"m1_{tag}"),
        (coder, "simple", "-"),
        (parser, "medium", f"m2_{tag}"),
        (parser, "-", "-"),
    }
    answered = mine[(coder, "simple", f"m1_{tag}")]
    assert (answered.requests, answered.answered, answered.errors) == (2, 2, 0)
    assert (answered.prompt_tokens, answered.completion_tokens) == (150, 30)
    assert answered.cost_usd == pytest.approx(0.0015)
    assert answered.error_rate == 0.0
    failed = mine[(coder, "simple", "-")]
    assert (failed.requests, failed.errors, failed.error_rate) == (1, 1, 1.0)
    parsed = mine[(parser, "medium", f"m2_{tag}")]
    assert (parsed.requests, parsed.prompt_tokens, parsed.completion_tokens) == (2, 11, 6)
    assert parsed.cost_usd == pytest.approx(0.25)
    assert parsed.cost_unknown == 1
    pending = mine[(parser, "-", "-")]
    assert (pending.requests, pending.answered, pending.error_rate) == (1, 0, None)

    daily = {(d.task_type, d.day): d.requests for d in report.llm.daily if d.task_type == coder}
    assert daily == {(coder, YESTERDAY.date()): 2, (coder, EARLIER.date()): 1}
    days = [d.day for d in report.llm.days]
    assert days == sorted(days) and len(days) == 8
    assert days[-1] == report.until.astimezone(UTC).date()

    (approvals,) = [row for row in report.approvals if row.agent_id == agent]
    assert (approvals.requests, approvals.decided, approvals.approved) == (4, 3, 2)
    assert approvals.approval_rate == pytest.approx(2 / 3)
    assert approvals.p50_s == pytest.approx(30.0)
    assert approvals.p90_s == pytest.approx(54.0)  # 30 + 0.8 * (60 - 30), as percentile_cont

    (jobs,) = [row for row in report.jobs if row.language == language]
    assert (jobs.runs, jobs.completed, jobs.succeeded) == (5, 4, 3)
    assert jobs.success_rate == pytest.approx(0.75)
    assert jobs.p50_wall_ms == pytest.approx(250.0)
    assert jobs.p90_wall_ms == pytest.approx(370.0)

    assert "a_llm_results" in report.archives
    assert set(archives.queues) <= {name.removeprefix("a_") for name in report.archives}


async def test_a_shorter_window_leaves_older_requests_out(
    archives: Archives, reader: ArchiveReader, tag: str
) -> None:
    coder, _ = await _llm_set(archives, tag)
    report = await compute_report(reader, 2)
    counts = {r.model: r.requests for r in report.llm.rows if r.task_type == coder}
    assert counts == {f"m1_{tag}": 2}  # the failed one was three days ago, r7 ten


async def test_the_window_must_be_positive(reader: ArchiveReader) -> None:
    with pytest.raises(UsageError, match="--since must be a number of days from 1"):
        await compute_report(reader, 0)


async def test_a_snapshot_keeps_the_report(reader: ArchiveReader, store: CentralCloudStore) -> None:
    report = await compute_report(reader, 1)
    stored = await store.snapshot(await store.save_snapshot(report))
    assert stored["since_days"] == 1
    assert AnalyticsReport.model_validate(stored["report"]) == report


async def test_analytics_reads_as_the_read_only_role(
    cluster: Cluster, reader: ArchiveReader
) -> None:
    async with reader._pool.connection() as conn:  # the reader's own session
        row = await (
            await conn.execute("SELECT current_user, current_setting('transaction_read_only')")
        ).fetchone()
    assert row == (cluster.role_name(Role.CENTRALCLOUD_ANALYTICS), "on")
    endpoint = cluster.service(Role.CENTRALCLOUD_ANALYTICS, Database.SHARED_QUEUE)
    async with async_connection(endpoint) as conn:
        await conn.execute("SELECT count(*) FROM pgmq.a_llm_requests")
        for forbidden in (
            "SELECT count(*) FROM pgmq.q_llm_requests",
            "DELETE FROM pgmq.a_llm_requests WHERE false",
            "SELECT pgmq.send('llm_requests', '{}'::jsonb)",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                await conn.execute(forbidden)


def test_instance_results_archives_belong_to_their_queue() -> None:
    found = ["a_llm_results", "a_llm_results_2", "a_llm_results_dlq", "a_llm_results_x2"]
    assert results_of("llm_results", found) == ["a_llm_results", "a_llm_results_2"]
