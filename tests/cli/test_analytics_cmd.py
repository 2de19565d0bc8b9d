"""`singularity analytics ...`, run as a user runs them."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime

import pytest

from centralcloud.support import Archives
from helpers import singularity
from singularity.centralcloud.learning import Learner
from singularity.centralcloud.pools import archive_reader, centralcloud_store
from singularity.postgres.cluster import Cluster
from singularity.postgres.connect import async_connection, connection
from singularity.postgres.topology import Database


def _snapshots(cluster: Cluster) -> int:
    with connection(cluster.admin(Database.CENTRALCLOUD)) as conn:
        row = conn.execute("SELECT count(*) AS n FROM analytics_snapshots").fetchone()
    assert row is not None
    return int(row["n"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "0"], "error: --since must be a number of days from 1 to 3650, not 0"),
        (["--since", "-3"], "error: --since must be a number of days from 1 to 3650, not -3"),
        (["--since", "week"], "error: Invalid value for '--since'"),
        (["patterns", "--limit", "0"], "error: Invalid value for '--limit'"),
    ],
)
def test_bad_arguments_are_one_line(args: list[str], message: str) -> None:
    result = singularity("analytics", *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), result.stderr


def test_json_is_the_report_and_keeps_a_snapshot(cluster: Cluster) -> None:
    before = _snapshots(cluster)
    result = singularity("analytics", "--since", "3", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["since_days"] == 3
    assert set(report) >= {"llm", "approvals", "jobs", "archives"}
    assert len(report["llm"]["days"]) == 4
    assert "a_llm_results" in report["archives"]
    assert _snapshots(cluster) == before + 1


def test_the_default_view_shows_every_section(cluster: Cluster) -> None:
    result = singularity("analytics")
    assert result.returncode == 0, result.stderr
    assert "Analytics of the last 7 days" in result.stdout
    for section in ("LLM requests", "pproval", "ode runs"):
        assert section in result.stdout


async def test_patterns_show_what_was_learned(cluster: Cluster) -> None:
    tag = uuid.uuid4().hex[:8]
    async with async_connection(cluster.admin(Database.SHARED_QUEUE)) as conn:
        archives = Archives(conn, cluster)
        job = {"id": f"j{tag}", "code": f"import lib{tag}\n", "language": "python"}
        await archives.add("job_requests", job, datetime.now(UTC))
        try:
            async with archive_reader(cluster) as reader, centralcloud_store(cluster) as store:
                await Learner(reader, store, settle_s=0).learn()
        finally:
            await archives.clean()
    shown = await asyncio.to_thread(singularity, "analytics", "patterns", "--limit", "1000")
    assert shown.returncode == 0, shown.stderr
    assert "Libraries seen in executed code" in shown.stdout
    assert f"lib{tag}" in shown.stdout
    as_json = await asyncio.to_thread(
        singularity, "analytics", "patterns", "--json", "--no-learn", "--limit", "1000"
    )
    assert as_json.returncode == 0, as_json.stderr
    found = json.loads(as_json.stdout)
    assert set(found) == {"models", "libraries"}
    mine = [row for row in found["libraries"] if row["library"] == f"lib{tag}"]
    assert [(row["language"], row["jobs"]) for row in mine] == [("python", 1)]
