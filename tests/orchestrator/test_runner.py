"""The task runner: holding a task by its lease, and letting go of a cancelled one."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from genesis_support import TEST_COMMAND, make_repo
from helpers import eventually
from singularity.config import Settings
from singularity.orchestrator.platform import connect
from singularity.orchestrator.service import task_runner
from singularity.postgres.cluster import Cluster


async def test_a_cancelled_task_stops_its_runner_while_it_waits_for_a_model(
    instance_cluster: Cluster, nexus_settings: Settings, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path)
    async with connect(instance_cluster, nexus_settings, name="t-cancel") as connected:
        runner = task_runner(connected, nexus_settings, lease_s=0.6)
        task_id = await runner.create(
            "Document add()", repo, kind="coder", agent_id="coder-c", test_command=TEST_COMMAND
        )
        # No Nexus runs: the plan's model call waits (for up to its timeout, minutes).
        running = asyncio.create_task(runner.run(task_id))

        async def planning() -> bool:
            return (await connected.store.task(task_id)).state == "planning"

        await eventually(planning, 30)
        started = time.monotonic()
        assert await connected.store.cancel(task_id)
        record = await asyncio.wait_for(running, 10)
        stopped_after = time.monotonic() - started
        assert record.state == "cancelled" and record.outcome == "cancelled"
        assert record.error == "cancelled by the user"
        assert stopped_after < 2, stopped_after  # a third of the lease, and a renewal
        assert not await connected.store.cancel(task_id)  # ended already
        events = [event.message for event in await connected.store.events(task_id)]
        assert events[-1] == "cancelled by the user"
