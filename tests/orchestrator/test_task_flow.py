"""A whole task end to end, on the real services: a local model server writes the plan and a
real diff, Genesis runs the repository's tests in its sandbox, a reviewer approves through the
Nexus API, and the diff lands on a branch, with the outcome and cost recorded. Also: a task
stopped in the middle resumes in another runner without asking anything twice, and a rejection
is revised with the reviewer's reason."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from genesis_support import GOOD_DIFF, TEST_COMMAND, RunningGenesis, make_repo
from helpers import eventually
from nexus_support import RunningNexus
from singularity.config import Settings
from singularity.orchestrator.platform import Connected, connect
from singularity.orchestrator.runner import TaskRunner
from singularity.orchestrator.service import Singularity, task_runner
from singularity.postgres.cluster import Cluster
from singularity.service_context import ServiceContext
from singularity.testing.openai_server import MockOpenAI, Reply

PLAN = """## Specification
Document that add() takes integers and floats alike.

## Pseudocode
Add one comment line inside add().

## Completion
The tests still pass.

Files:
- calc.py
"""
CODE = f"Here is the change.\n\n```diff\n{GOOD_DIFF}```\n"
REVISED = CODE.replace("integers and floats alike", "ints and floats")


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True)
    return done.stdout.strip()


async def _decide(
    nexus: RunningNexus, runner: TaskRunner, task_id: int, step: str, verdict: str, **body: str
) -> None:
    async def asked() -> bool:
        return await runner.store.step_request(task_id, step) is not None

    await eventually(asked, 60)
    pending = await runner.store.step_request(task_id, step)
    assert pending is not None
    async with nexus.client() as client:

        async def shown() -> bool:
            response = await client.get(f"/api/approvals/{pending.request_id}")
            return response.status_code == 200

        await eventually(shown, 20)
        item = (await client.get(f"/api/approvals/{pending.request_id}")).json()
        assert item["file_path"] == "calc.py"
        assert "+    # " in item["diff"]
        decided = await client.post(
            f"/api/approvals/{pending.request_id}/{verdict}", json={"user": "ana", **body}
        )
        assert decided.status_code == 200, decided.text


async def test_a_task_goes_from_description_to_an_approved_commit_on_a_branch(
    nexus: RunningNexus,
    genesis: RunningGenesis,
    llm: MockOpenAI,
    connected: Connected,
    nexus_settings: Settings,
    tmp_path: Path,
) -> None:
    repo = make_repo(tmp_path)
    head = _git(repo, "rev-parse", "HEAD")
    llm.script("gamma", Reply(PLAN, prompt_tokens=400, completion_tokens=100))
    llm.script("alpha", Reply(CODE, prompt_tokens=600, completion_tokens=80))
    runner = task_runner(connected, nexus_settings)
    task_id = await runner.create(
        "Document in calc.py that add() takes floats too",
        repo,
        kind="coder",
        agent_id="coder-e2e",
        test_command=TEST_COMMAND,
    )
    seen: list[str] = []
    running = asyncio.create_task(runner.run(task_id, lambda s, m: seen.append(s)))
    await _decide(nexus, runner, task_id, "approval-r0", "approve")
    record = await asyncio.wait_for(running, 60)

    assert (record.state, record.outcome) == ("done", "applied"), record.error
    assert seen == ["planning", "coding", "validating", "reviewing", "applying", "done"]
    assert set(record.data["plan"]["phases"]) == {"specification", "pseudocode", "completion"}
    assert record.data["experiment"]["recommendation"] == "merge"
    applied = record.data["applied"]
    assert applied["branch"] == f"singularity/task-{task_id}"
    assert _git(repo, "rev-parse", "HEAD") == head  # the user's checkout is untouched
    assert "floats alike" in _git(repo, "show", f"{applied['branch']}:calc.py")
    cost = record.data["cost"]
    assert (cost["calls"], cost["prompt_tokens"], cost["completion_tokens"]) == (2, 1000, 180)
    expected = 400 * 3e-6 + 100 * 6e-6 + 600 * 1e-6 + 80 * 2e-6
    assert cost["cost_usd"] == pytest.approx(expected)
    agents = {row["id"]: row for row in await connected.store.agents()}
    assert agents["coder-e2e"]["applied"] == 1
    assert agents["coder-e2e"]["cost_usd"] == pytest.approx(expected)


async def test_a_rejected_change_is_revised_with_the_reason(
    nexus: RunningNexus,
    genesis: RunningGenesis,
    llm: MockOpenAI,
    connected: Connected,
    nexus_settings: Settings,
    tmp_path: Path,
) -> None:
    repo = make_repo(tmp_path)
    llm.script("gamma", Reply(PLAN))
    llm.script("alpha", Reply(CODE), Reply(REVISED))
    runner = task_runner(connected, nexus_settings)
    task_id = await runner.create(
        "Document add()", repo, kind="qa", agent_id="qa-e2e", test_command=TEST_COMMAND
    )
    running = asyncio.create_task(runner.run(task_id))
    await _decide(nexus, runner, task_id, "approval-r0", "reject", reason="say ints, not integers")
    await _decide(nexus, runner, task_id, "approval-r1", "approve")
    record = await asyncio.wait_for(running, 60)
    assert record.outcome == "applied", record.error
    revise = llm.calls_for("alpha")[1].body["messages"][-1]["content"]
    assert "say ints, not integers" in revise
    assert "ints and floats" in _git(repo, "show", f"singularity/task-{task_id}:calc.py")


async def test_a_task_stopped_while_waiting_for_its_reviewer_resumes_in_another_runner(
    nexus: RunningNexus,
    genesis: RunningGenesis,
    llm: MockOpenAI,
    instance_cluster: Cluster,
    nexus_settings: Settings,
    tmp_path: Path,
) -> None:
    repo = make_repo(tmp_path)
    llm.script("gamma", Reply(PLAN))
    llm.script("alpha", Reply(CODE))
    async with connect(instance_cluster, nexus_settings, name="t-first") as first:
        runner = task_runner(first, nexus_settings)
        task_id = await runner.create(
            "Document add()", repo, kind="coder", agent_id="coder-resume", test_command=TEST_COMMAND
        )
        running = asyncio.create_task(runner.run(task_id))

        async def reviewing() -> bool:
            return (await runner.store.task(task_id)).state == "reviewing"

        await eventually(reviewing, 60)
        running.cancel()  # the process stops while the reviewer has not decided yet
        with pytest.raises(asyncio.CancelledError):
            await running
    async with connect(instance_cluster, nexus_settings, name="t-second") as second:
        other = task_runner(second, nexus_settings)
        assert await other.store.claim_orphan(other.runner) == task_id
        resumed = asyncio.create_task(other.run(task_id))
        await _decide(nexus, other, task_id, "approval-r0", "approve")
        record = await asyncio.wait_for(resumed, 60)
        events = [event.state for event in await other.store.events(task_id)]
    assert record.outcome == "applied", record.error
    assert len(llm.calls) == 2  # the plan and the diff, each asked once
    assert events == ["planning", "coding", "validating", "reviewing", "applying", "done"]


async def test_the_service_takes_over_a_task_whose_runner_died(
    nexus: RunningNexus,
    genesis: RunningGenesis,
    llm: MockOpenAI,
    instance_cluster: Cluster,
    connected: Connected,
    nexus_settings: Settings,
    tmp_path: Path,
) -> None:
    repo = make_repo(tmp_path)
    llm.script("gamma", Reply(PLAN))
    llm.script("alpha", Reply(CODE))
    ghost = task_runner(connected, nexus_settings, runner="runner-that-died")
    task_id = await ghost.create(
        "Document add()", repo, kind="architect", agent_id="architect-2", test_command=TEST_COMMAND
    )
    async with connected.store.pool.connection() as conn:  # its lease runs out
        await conn.execute(
            "UPDATE tasks SET lease_until = now() - interval '1 second' WHERE id = %s", (task_id,)
        )
    service = Singularity(claim_every_s=0.2)
    stop = asyncio.Event()
    running = asyncio.create_task(
        service.run(ServiceContext(nexus_settings, instance_cluster), stop)
    )
    try:
        await _decide(nexus, ghost, task_id, "approval-r0", "approve")

        async def finished() -> bool:
            return (await connected.store.task(task_id)).finished_at is not None

        await eventually(finished, 60)
    finally:
        stop.set()
        await asyncio.wait_for(running, 30)
    record = await connected.store.task(task_id)
    assert record.outcome == "applied", record.error
