"""`singularity task`, `tasks`, `agents` and `db init --instance`, as a user runs them."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from helpers import singularity
from singularity.cli import task_cmd
from singularity.orchestrator.platform import open_store
from singularity.postgres.cluster import Cluster


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["task"], 'say what the task is: singularity task "DESCRIPTION" --repo PATH'),
        (["task", "x", "--repo", "/no/such/dir"], "--repo '/no/such/dir' is not a directory"),
        (["task", "x", "--agent", "bogus"], "unknown agent 'bogus'; choose one of: architect"),
        (["tasks", "999999"], "there is no task 999999"),
        (["task", "show", "999999"], "there is no task 999999"),
        (["task", "cancel", "999999"], "there is no task 999999"),
        (["task", "cancel", "x"], "Invalid value for 'task_id'"),
        (["task", "x", "--max-steps", "3"], "--max-steps and --max-cost bound the agent loop"),
        (["tasks", "--limit", "0"], "Invalid value for '--limit'"),
        (["db", "init", "--instance", "0"], "Invalid value for '--instance'"),
    ],
)
def test_bad_input_gets_one_line(cluster: Cluster, args: list[str], message: str) -> None:
    result = singularity(*args)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert message in lines[0]


def test_an_instance_without_its_queues_names_the_command(cluster: Cluster) -> None:
    result = singularity("tasks", env={"SINGULARITY_INSTANCE": "41"})
    assert result.returncode == 1
    assert "run `singularity db init --instance 41`" in result.stderr


def test_agents_lists_the_kinds_and_where_their_prompts_come_from(
    cluster: Cluster, tmp_path: Path
) -> None:
    home_agents = tmp_path / "agents" / "qa"
    home_agents.mkdir(parents=True)
    (home_agents / "system.md").write_text("You are a careful tester.\n")
    result = singularity(
        "agents", "--json", env={"SINGULARITY_AGENTS_DIR": str(tmp_path / "agents")}
    )
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    kinds = {kind["name"]: kind for kind in body["kinds"]}
    assert set(kinds) == {"architect", "coder", "qa", "self-improving-agent"}
    assert kinds["qa"]["prompts"]["system"] == str(home_agents / "system.md")
    assert kinds["coder"]["prompts"]["system"].endswith("prompts/coder/system.md")


def test_db_init_instance_creates_its_database_and_queues(cluster: Cluster) -> None:
    result = singularity("db", "init", "--instance", "4", "--without-pgvector")
    assert result.returncode == 0, result.stderr
    assert "singularity instances: 1, " in result.stdout and ", 4" in result.stdout
    listed = singularity("tasks", "--json", env={"SINGULARITY_INSTANCE": "4"})
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == []
    queues = singularity("queue", "list")
    assert "llm_results_4" in queues.stdout and "experiment_results_4_dlq" in queues.stdout


async def test_task_cancel_ends_a_task_once_and_task_show_says_so(
    cluster: Cluster, tmp_path: Path
) -> None:
    async with open_store(cluster, name="t-cancel-cli", max_size=1) as store:
        await store.ensure_agent("coder-x", "coder")
        task_id = await store.create_task(
            agent_id="coder-x",
            description="Document add()",
            repo=str(tmp_path),
            test_command="true",
            runner="runner-elsewhere",
        )
    first = await asyncio.to_thread(singularity, "task", "cancel", str(task_id))
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == f"task {task_id} cancelled"
    again = await asyncio.to_thread(singularity, "task", "cancel", str(task_id))
    assert again.returncode == 2  # a usage error
    assert f"task {task_id} has already ended: cancelled" in again.stderr
    shown = await asyncio.to_thread(singularity, "task", "show", str(task_id), "--json")
    body = json.loads(shown.stdout)
    assert body["state"] == "cancelled" and body["events"][-1]["message"] == "cancelled by the user"


@pytest.mark.parametrize(
    ("known", "unknown_calls", "shown"),
    [
        (None, 0, "-"),
        (0.0125, 0, "$0.0125"),
        (None, 3, "unknown"),
        (0.5, 2, "$0.5000 + unknown (2 calls)"),
    ],
)
def test_a_tasks_cost_is_unknown_when_a_calls_cost_is(
    known: float | None, unknown_calls: int, shown: str
) -> None:
    assert task_cmd._cost(known, unknown_calls) == shown
