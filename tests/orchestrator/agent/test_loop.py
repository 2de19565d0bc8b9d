"""The agent loop end to end: a real Nexus (the local OpenAI-compatible server scripted with
tool calls), a real Genesis worker for the tests, the human's decision in the web UI."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest

from genesis_support import TEST_COMMAND, RunningGenesis, make_repo
from helpers import eventually, singularity
from nexus_support import RunningNexus
from singularity.config import Settings
from singularity.orchestrator.agent.loop import Budget
from singularity.orchestrator.platform import Connected
from singularity.orchestrator.runner import TaskRunner
from singularity.orchestrator.service import task_runner
from singularity.testing.openai_server import MockOpenAI, Reply, ScriptedToolCall

OLD = "    return a + b\n"
NEW = "    # integers and floats alike\n    return a + b\n"


def call(name: str, **arguments: object) -> Reply:
    return Reply("", tool_calls=[ScriptedToolCall(name, arguments)])


async def _approve(nexus: RunningNexus, runner: TaskRunner, task_id: int, step: str) -> None:
    async def asked() -> bool:
        return await runner.store.step_request(task_id, step) is not None

    await eventually(asked, 90)
    pending = await runner.store.step_request(task_id, step)
    assert pending is not None
    async with nexus.client() as client:

        async def shown() -> bool:
            return (await client.get(f"/api/approvals/{pending.request_id}")).status_code == 200

        await eventually(shown, 20)
        decided = await client.post(
            f"/api/approvals/{pending.request_id}/approve", json={"user": "ana"}
        )
        assert decided.status_code == 200, decided.text


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True)
    return done.stdout.strip()


async def test_the_agent_reads_edits_runs_the_tests_and_finishes_with_a_reviewed_change(
    nexus: RunningNexus,
    genesis: RunningGenesis,
    llm: MockOpenAI,
    connected: Connected,
    nexus_settings: Settings,
    tmp_path: Path,
) -> None:
    repo = make_repo(tmp_path)
    llm.script(
        "alpha",
        call("read_file", path="calc.py"),
        call("edit_file", path="calc.py", old_text=OLD, new_text=NEW),
        call("run_tests"),
        call("finish", summary="Documented that add() takes floats too."),
    )
    runner = task_runner(connected, nexus_settings)
    task_id = await runner.create(
        "Document in calc.py that add() takes floats too",
        repo,
        kind="coder",
        agent_id="coder-loop",
        test_command=TEST_COMMAND,
        loop=True,
    )
    shown: list[str] = []
    running = asyncio.create_task(runner.run(task_id, lambda _, message: shown.append(message)))
    await _approve(nexus, runner, task_id, "approval-r0")
    record = await asyncio.wait_for(running, 90)

    assert (record.state, record.outcome) == ("done", "applied"), record.error
    assert record.data["summary"] == "Documented that add() takes floats too."
    assert record.data["loop"]["steps"] == 4
    assert "floats alike" in _git(repo, "show", f"singularity/task-{task_id}:calc.py")
    steps = [(step.kind, step.name) for step in await connected.store.trajectory(task_id)]
    assert steps == [
        ("model", "alpha"),
        ("tool", "read_file"),
        ("model", "alpha"),
        ("tool", "edit_file"),
        ("model", "alpha"),
        ("tool", "run_tests"),
        ("model", "alpha"),
        ("tool", "finish"),
    ]
    calls = llm.calls_for("alpha")
    assert {"read_file", "edit_file", "run_tests", "finish"} <= {
        tool["function"]["name"] for tool in calls[0].tools or []
    }
    # What each tool gave went back to the model: the file, then the tests' own output.
    assert "def add(a, b):" in calls[1].body["messages"][-1]["content"]
    assert "Ran 3 tests" in calls[3].body["messages"][-1]["content"]
    assert any("run_tests: ok" in message for message in shown)  # live, as it happened
    # The workspace is gone with the task; the user's tree was never written.
    assert not (nexus_settings.singularity_home / "workspaces").exists() or not any(
        (nexus_settings.singularity_home / "workspaces").rglob(f"{task_id}/work")
    )
    assert "floats" not in (repo / "calc.py").read_text()
    # `task show` prints the trajectory, each model call with its tokens and cost.
    instance = {"SINGULARITY_INSTANCE": str(connected.cluster.instance)}
    shown_json = await asyncio.to_thread(
        singularity, "task", "show", str(task_id), "--json", env=instance
    )
    body = json.loads(shown_json.stdout)
    assert [step["name"] for step in body["trajectory"]][:2] == ["alpha", "read_file"]
    assert all(step["cost_usd"] is not None for step in body["trajectory"][::2])
    text = await asyncio.to_thread(singularity, "task", "show", str(task_id), env=instance)
    assert "Trajectory" in text.stdout and "model alpha → read_file" in text.stdout
    listed = await asyncio.to_thread(singularity, "tasks", "--json", env=instance)
    row = next(row for row in json.loads(listed.stdout) if row["id"] == task_id)
    assert (row["model_calls"], row["calls_cost_unknown"]) == (4, 0)
    assert row["tokens"] > 0 and row["cost_usd"] > 0 and row["elapsed_s"] > 0


async def test_finish_is_refused_while_the_tests_fail(
    nexus: RunningNexus,
    genesis: RunningGenesis,
    llm: MockOpenAI,
    connected: Connected,
    nexus_settings: Settings,
    tmp_path: Path,
) -> None:
    repo = make_repo(tmp_path)
    llm.script(
        "alpha",
        call("edit_file", path="calc.py", old_text=OLD, new_text="    return a - b\n"),
        call("finish", summary="done"),
        call("edit_file", path="calc.py", old_text="    return a - b\n", new_text=NEW),
        call("finish", summary="Fixed it."),
    )
    runner = task_runner(connected, nexus_settings)
    task_id = await runner.create(
        "Document add()", repo, kind="coder", agent_id="coder-loop", test_command=TEST_COMMAND,
        loop=True,
    )  # fmt: skip
    running = asyncio.create_task(runner.run(task_id))
    await _approve(nexus, runner, task_id, "approval-r0")
    record = await asyncio.wait_for(running, 90)
    assert record.outcome == "applied", record.error
    refused = llm.calls_for("alpha")[2].body["messages"][-1]["content"]
    assert refused.startswith("Not finished: the tests fail") and "FAILED" in refused
    trajectory = await connected.store.trajectory(task_id)
    assert [step.ok for step in trajectory if step.name == "finish"] == [False, True]


async def test_a_budget_stops_the_loop_with_the_reason(
    llm: MockOpenAI, connected: Connected, nexus: RunningNexus, nexus_settings: Settings,
    tmp_path: Path,
) -> None:  # fmt: skip
    repo = make_repo(tmp_path)
    llm.script("alpha", *[call("list_files") for _ in range(5)])
    runner = task_runner(connected, nexus_settings, budget=Budget(steps=30))
    task_id = await runner.create(
        "Look around", repo, kind="coder", agent_id="coder-loop", test_command=TEST_COMMAND,
        loop=True, budget={"steps": 2},  # the task's own bound wins over the runner's
    )  # fmt: skip
    record = await asyncio.wait_for(runner.run(task_id), 60)
    assert (record.state, record.outcome) == ("failed", "failed")
    assert record.error == "the agent stopped: the step budget ran out (2 model calls)"
    assert len(llm.calls_for("alpha")) == 2


async def test_hostile_tool_calls_are_refused_and_nothing_outside_the_workspace_changes(
    nexus: RunningNexus,
    genesis: RunningGenesis,
    llm: MockOpenAI,
    connected: Connected,
    nexus_settings: Settings,
    tmp_path: Path,
) -> None:
    repo = make_repo(tmp_path)
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me\n")
    llm.script(
        "alpha",
        call("read_file", path="../../../../etc/passwd"),
        call("write_file", path="../outside.txt", content="pwned"),
        call("write_file", path=".git/config", content="[core]\n\tfsmonitor = evil\n"),
        call("delete_file", path=str(outside)),
        call("run_command", command="cat /etc/shadow; touch /work/left-behind"),
        call("no_such_tool", x=1),
        call("finish", summary="nothing to do"),
    )
    runner = task_runner(connected, nexus_settings)
    task_id = await runner.create(
        "Anything", repo, kind="coder", agent_id="coder-loop", test_command=TEST_COMMAND,
        loop=True,
    )  # fmt: skip
    record = await asyncio.wait_for(runner.run(task_id), 90)
    assert record.outcome == "failed"
    assert record.error == "the agent finished without changing any file"
    steps = await connected.store.trajectory(task_id)
    trajectory = {step.name: step for step in steps}
    for name in ("read_file", "write_file", "delete_file"):
        assert not trajectory[name].ok, name
    # A call of a tool the request did not offer never reaches a tool: Nexus gives it as text.
    assert "no_such_tool" not in trajectory
    assert any("no_such_tool" in str(step.output) for step in steps if step.kind == "model")
    assert "root:" not in str(trajectory["read_file"].output)
    assert outside.read_text() == "keep me\n"
    assert "fsmonitor" not in (repo / ".git" / "config").read_text()
    shadow = trajectory["run_command"].output["text"]
    assert "root:" not in shadow and not (repo / "left-behind").exists()


async def test_a_loop_stopped_midway_resumes_without_asking_or_running_anything_twice(
    nexus: RunningNexus,
    genesis: RunningGenesis,
    llm: MockOpenAI,
    connected: Connected,
    nexus_settings: Settings,
    tmp_path: Path,
) -> None:
    repo = make_repo(tmp_path)
    llm.script(
        "alpha",
        call("edit_file", path="calc.py", old_text=OLD, new_text=NEW),
        call("run_tests"),
        call("finish", summary="Documented add()."),
    )
    first = task_runner(connected, nexus_settings)
    task_id = await first.create(
        "Document add()", repo, kind="coder", agent_id="coder-loop", test_command=TEST_COMMAND,
        loop=True,
    )  # fmt: skip
    running = asyncio.create_task(first.run(task_id))

    async def edited() -> bool:
        steps = await connected.store.trajectory(task_id)
        return any(step.name == "edit_file" for step in steps)

    await eventually(edited, 60)
    running.cancel()  # the process stops between two steps of the loop
    with pytest.raises(asyncio.CancelledError):
        await running
    second = task_runner(connected, nexus_settings)
    resumed = asyncio.create_task(second.run(task_id))
    await _approve(nexus, second, task_id, "approval-r0")
    record = await asyncio.wait_for(resumed, 90)
    assert record.outcome == "applied", record.error
    assert len(llm.calls_for("alpha")) == 3  # each model call once
    edits = [s for s in await connected.store.trajectory(task_id) if s.name == "edit_file"]
    assert len(edits) == 1 and edits[0].ok  # the edit ran once; its output was reused
    assert "floats alike" in _git(repo, "show", f"singularity/task-{task_id}:calc.py")
