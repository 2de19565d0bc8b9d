"""Experiments through the bus, and applying and rolling back a recorded experiment."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from psycopg_pool import AsyncConnectionPool

from genesis_support import (
    BAD_DIFF,
    GOOD_DIFF,
    MODULE,
    TEST_COMMAND,
    RunningGenesis,
    make_repo,
    require_bwrap,
)
from nexus_support import wait_for_message
from singularity.config import Settings
from singularity.errors import UsageError
from singularity.genesis.experiments.lab import Lab, Trial
from singularity.genesis.limits import DEFAULT_LIMITS
from singularity.genesis.sandbox import Sandbox
from singularity.genesis.store import GenesisStore
from singularity.genesis.workspaces.repositories import RepositoryPolicy
from singularity.postgres.cluster import Cluster
from singularity.postgres.connect import open_pool
from singularity.postgres.topology import Database, Role
from singularity.shared_queue import ExperimentRequest, Publisher


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path)


async def test_an_experiment_request_is_answered_with_a_recommendation(
    genesis: RunningGenesis,
    bus_pool: AsyncConnectionPool,
    genesis_db: AsyncConnectionPool,
    genesis_replies: str,
    repo: Path,
) -> None:
    request = ExperimentRequest(
        id=f"exp-{uuid.uuid4().hex[:8]}",
        repo=str(repo),
        diff=BAD_DIFF,
        test_command=TEST_COMMAND,
        reply_to=genesis_replies,
    )
    await Publisher(bus_pool).send("experiment_requests", request)
    result = await wait_for_message(bus_pool, genesis_replies, seconds=60, request_id=request.id)
    assert result["status"] == "completed", result
    assert result["recommendation"] == "rollback"
    assert result["baseline"]["passed"] == 3
    assert result["success_rate"] < 1 and result["regression"] > 0
    assert (repo / "calc.py").read_text() == MODULE  # the repository itself is untouched
    async with genesis_db.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT status, recommendation, rule FROM experiments WHERE id = %s",
                (request.id,),
            )
        ).fetchone()
        metrics = await (
            await conn.execute(
                "SELECT name FROM experiment_metrics WHERE experiment_id = %s", (request.id,)
            )
        ).fetchall()
        steps = await (
            await conn.execute(
                "SELECT step FROM sandbox_history WHERE experiment_id = %s ORDER BY id",
                (request.id,),
            )
        ).fetchall()
    assert row is not None and row[0] == "completed" and row[1] == "rollback"
    assert {"success_rate", "regression"} <= {m[0] for m in metrics}
    assert [s[0] for s in steps] == ["baseline", "candidate"]


async def test_a_requests_setup_step_runs_first_and_its_failure_is_answered_with_its_output(
    genesis: RunningGenesis, bus_pool: AsyncConnectionPool, genesis_replies: str, repo: Path
) -> None:
    request = ExperimentRequest(
        id=f"exp-{uuid.uuid4().hex[:8]}",
        repo=str(repo),
        diff=GOOD_DIFF,
        test_command=TEST_COMMAND,
        reply_to=genesis_replies,
        setup="echo fetching; echo 'no such index' >&2; exit 4",
    )
    await Publisher(bus_pool).send("experiment_requests", request)
    result = await wait_for_message(bus_pool, genesis_replies, seconds=60, request_id=request.id)
    assert result["status"] == "setup_failed", result
    assert result["recommendation"] == "rollback"
    assert result["error"] == "the setup step exited with 4: no such index"
    assert result["environment"]["origin"] == "given"
    assert "fetching" in result["environment"]["setup"]["stdout_tail"]


async def test_a_repository_missing_on_the_worker_is_a_clear_error(
    genesis: RunningGenesis, bus_pool: AsyncConnectionPool, genesis_replies: str, tmp_path: Path
) -> None:
    request = ExperimentRequest(
        id=f"exp-{uuid.uuid4().hex[:8]}",
        repo=str(tmp_path / "nowhere"),
        diff=GOOD_DIFF,
        test_command=TEST_COMMAND,
        reply_to=genesis_replies,
    )
    await Publisher(bus_pool).send("experiment_requests", request)
    result = await wait_for_message(bus_pool, genesis_replies, request_id=request.id)
    assert result["status"] == "error"
    assert "does not exist on this worker" in result["error"]


async def test_apply_then_rollback_restores_the_recorded_baseline(
    genesis_settings: Settings, cluster: Cluster, genesis_db: AsyncConnectionPool, repo: Path
) -> None:
    require_bwrap()
    pool = await open_pool(cluster.service(Role.GENESIS, Database.GENESIS), name="t", max_size=2)
    try:
        lab = Lab(
            Sandbox(),
            GenesisStore(pool),
            genesis_settings.genesis_dir,
            unsafe=False,
            policy=RepositoryPolicy.from_settings(genesis_settings),
        )
        trial = Trial(f"exp-{uuid.uuid4().hex[:8]}", repo, GOOD_DIFF, TEST_COMMAND, DEFAULT_LIMITS)
        outcome = await lab.conduct(trial)
        assert outcome["recommendation"] == "merge"
        with pytest.raises(UsageError, match="never applied"):
            await lab.rollback(trial.id, "too early")
        assert await lab.apply(trial.id) == ["calc.py"]
        assert "integers and floats" in (repo / "calc.py").read_text()
        assert await lab.rollback(trial.id, "changed my mind") == ["calc.py"]
        assert (repo / "calc.py").read_text() == MODULE
    finally:
        await pool.close()
    async with genesis_db.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT reason, restored_files FROM rollback_history WHERE experiment_id = %s",
                (trial.id,),
            )
        ).fetchone()
    assert row == ("changed my mind", ["calc.py"])


async def test_a_repository_path_too_long_for_the_system_is_refused_at_once(
    genesis: RunningGenesis, bus_pool: AsyncConnectionPool, genesis_replies: str
) -> None:
    # Found by tests/shared_queue/test_fuzz_messages.py: Path.is_dir raised OSError (name too
    # long) instead of answering False, and the experiment was retried five times.
    request = ExperimentRequest(
        id=f"exp-{uuid.uuid4().hex[:8]}",
        repo="r" * 5000,
        diff=GOOD_DIFF,
        test_command=TEST_COMMAND,
        reply_to=genesis_replies,
    )
    await Publisher(bus_pool).send("experiment_requests", request)
    result = await wait_for_message(bus_pool, genesis_replies, request_id=request.id)
    assert result["status"] == "error"
    assert "must be an absolute path" in result["error"] and len(result["error"]) < 400
    async with bus_pool.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT message FROM pgmq.q_experiment_requests_dlq "
                "WHERE message->'original'->>'id' = %s",
                (request.id,),
            )
        ).fetchall()
    assert [r[0]["read_ct"] for r in rows] == [1]  # refused at the first delivery


# -- workspace snapshots ---------------------------------------------------------------------


async def test_an_experiment_on_a_snapshot_runs_without_the_repository_on_the_worker(
    genesis: RunningGenesis,
    genesis_settings: Settings,
    cluster: Cluster,
    bus_pool: AsyncConnectionPool,
    publisher_pool: AsyncConnectionPool,
    genesis_db: AsyncConnectionPool,
    genesis_replies: str,
    repo: Path,
) -> None:
    published = await Publisher(publisher_pool).publish_workspace(repo)
    request = ExperimentRequest(
        id=f"exp-{uuid.uuid4().hex[:8]}",
        workspace=published.id,
        diff=BAD_DIFF,
        test_command=TEST_COMMAND,
        reply_to=genesis_replies,
    )
    await Publisher(publisher_pool).send("experiment_requests", request)
    result = await wait_for_message(bus_pool, genesis_replies, seconds=60, request_id=request.id)
    assert result["status"] == "completed", result
    assert result["recommendation"] == "rollback" and result["baseline"]["passed"] == 3
    async with genesis_db.connection() as conn:
        row = await (
            await conn.execute("SELECT repo FROM experiments WHERE id = %s", (request.id,))
        ).fetchone()
    assert row == (f"snapshot:{published.id}",)
    pool = await open_pool(cluster.service(Role.GENESIS, Database.GENESIS), name="t", max_size=2)
    try:
        lab = Lab(
            Sandbox(),
            GenesisStore(pool),
            genesis_settings.genesis_dir,
            unsafe=False,
            policy=RepositoryPolicy.from_settings(genesis_settings),
        )
        for action in (lab.apply(request.id), lab.rollback(request.id, "no")):
            with pytest.raises(UsageError, match="its repository is not on this host"):
                await action
    finally:
        await pool.close()


async def test_an_unknown_snapshot_is_a_clear_error(
    genesis: RunningGenesis, bus_pool: AsyncConnectionPool, genesis_replies: str
) -> None:
    request = ExperimentRequest(
        id=f"exp-{uuid.uuid4().hex[:8]}",
        workspace="e" * 64,
        diff=GOOD_DIFF,
        test_command=TEST_COMMAND,
        reply_to=genesis_replies,
    )
    await Publisher(bus_pool).send("experiment_requests", request)
    result = await wait_for_message(bus_pool, genesis_replies, request_id=request.id)
    assert result["status"] == "error"
    assert f"snapshot {'e' * 64} is not in the bus" in result["error"]


@pytest.mark.parametrize("names", [{"repo": "/x", "workspace": "a" * 64}, {}])
async def test_a_request_naming_its_repository_twice_or_never_is_dead_lettered(
    genesis: RunningGenesis,
    bus_pool: AsyncConnectionPool,
    genesis_replies: str,
    names: dict[str, str],
) -> None:
    request_id = f"exp-{uuid.uuid4().hex[:8]}"
    body = {"id": request_id, "diff": GOOD_DIFF, "test_command": TEST_COMMAND, **names}
    await Publisher(bus_pool).send(
        "experiment_requests", {**body, "request_id": request_id, "reply_to": genesis_replies}
    )
    result = await wait_for_message(bus_pool, genesis_replies, request_id=request_id)
    assert result["status"] == "error"
    assert "names its repository once" in result["error"]
    async with bus_pool.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT message FROM pgmq.q_experiment_requests_dlq "
                "WHERE message->'original'->>'id' = %s",
                (request_id,),
            )
        ).fetchall()
    assert len(rows) == 1 and "names its repository once" in str(rows[0][0])
