"""Running an evaluation: each task of a suite worked in the agent loop, then judged.

For each task the repository is copied into the evaluation's directory and worked as a task
in the agent loop (`singularity task --loop`, with no reviewer: the task ends with the agent's
change). The judge then copies the hidden tests over the agent's final workspace and runs
each `fail_to_pass` and `pass_to_pass` command in the Genesis sandbox (the agent's code is a
stranger's: it never runs on this host). A task is resolved when every command passes. Each
result has the agent's model calls, tokens, cost (None when a call's cost is unknown) and
wall time; tasks run `concurrency` at a time.
"""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import structlog

from singularity.orchestrator.agent.loop import Spent
from singularity.orchestrator.evaluation.suite import EvalTask, copy_hidden_tests, copy_repo
from singularity.orchestrator.repository import apply_in_place
from singularity.orchestrator.runner import TaskRunner

__all__ = ["TaskResult", "evaluate", "summary"]

log = structlog.get_logger(__name__)

# A judge command's limits: the suite's tests are small; a hanging one is a failure.
_JUDGE_LIMITS = {"wall_s": 120, "cpu_s": 60}


@dataclass
class TaskResult:
    """How one task of an evaluation went."""

    id: str
    language: str
    resolved: bool
    outcome: str  # resolved, unresolved, or the agent's failure ("agent failed: ...")
    task_id: int | None = None
    model_calls: int = 0
    tokens: int = 0
    cost_usd: float | None = None  # None: some call's cost is unknown
    wall_s: float = 0.0
    judged: dict[str, bool] = field(default_factory=dict)  # command: passed

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


Progress = Callable[[str, str], None]  # (task id, what happened)


async def evaluate(
    tasks: list[EvalTask],
    runner: TaskRunner,
    root: Path,
    *,
    concurrency: int = 2,
    budget: dict[str, Any] | None = None,
    progress: Progress | None = None,
) -> list[TaskResult]:
    """Work and judge every task, `concurrency` at a time; the results in the tasks' order."""
    gate = asyncio.Semaphore(concurrency)
    say = progress or (lambda _task, _what: None)

    async def one(task: EvalTask) -> TaskResult:
        async with gate:
            return await _evaluate_one(task, runner, root, budget or {}, say)

    return list(await asyncio.gather(*(one(task) for task in tasks)))


async def _evaluate_one(
    task: EvalTask, runner: TaskRunner, root: Path, budget: dict[str, Any], say: Progress
) -> TaskResult:
    started = time.monotonic()
    folder = root / f"{task.id}-{uuid.uuid4().hex[:8]}"
    repo = await asyncio.to_thread(copy_repo, task, folder / "repo")
    task_id = await runner.create(
        task.description,
        repo,
        kind="coder",
        agent_id=f"eval-{runner.settings.singularity_instance}",
        test_command=task.test_command,
        loop=True,
        budget=budget,
        evaluation=True,
    )
    say(task.id, f"task {task_id}: the agent works")
    record = await runner.run(task_id)
    spent = Spent.of(await runner.store.trajectory(task_id))  # finished or not
    result = TaskResult(
        task.id,
        task.language,
        resolved=False,
        outcome="unresolved",
        task_id=task_id,
        model_calls=spent.steps,
        tokens=spent.tokens,
        cost_usd=spent.cost_usd,
    )
    workspace = runner.workspace(task_id)
    try:
        if record.outcome != "finished":
            result.outcome = f"agent failed: {record.error or record.outcome or record.state}"
        else:
            say(task.id, "judging with the hidden tests")
            judged = folder / "judged"
            await asyncio.to_thread(shutil.copytree, workspace.work, judged, symlinks=True)
            if task.hidden_patch is None:
                await asyncio.to_thread(copy_hidden_tests, task, judged)
            else:
                problem = await apply_in_place(judged, task.hidden_patch)
                if problem is not None:
                    result.outcome = f"unresolved: the test patch does not apply: {problem}"
                    return _done(result, started, say)
            for command in (*task.fail_to_pass, *task.pass_to_pass):
                outcome = await runner.client.run_in_workspace(
                    judged,
                    command,
                    setup=task.setup,
                    limits=_JUDGE_LIMITS,
                    agent_id=record.agent_id,
                    task_id=task_id,
                    step=f"judge-{len(result.judged)}",
                )
                result.judged[command] = outcome.status == "OK"
            result.resolved = all(result.judged.values())
            result.outcome = "resolved" if result.resolved else "unresolved"
    finally:
        await asyncio.to_thread(workspace.remove)
        await asyncio.to_thread(shutil.rmtree, folder, True)
    return _done(result, started, say)


def _done(result: TaskResult, started: float, say: Progress) -> TaskResult:
    result.wall_s = round(time.monotonic() - started, 3)
    say(result.id, result.outcome)
    log.info("eval_task_done", task=result.id, outcome=result.outcome, task_id=result.task_id)
    return result


def summary(results: list[TaskResult]) -> dict[str, Any]:
    """The evaluation's totals: resolved share, calls, tokens, cost (None if any unknown)."""
    costs = [result.cost_usd for result in results]
    resolved = sum(result.resolved for result in results)
    return {
        "tasks": len(results),
        "resolved": resolved,
        "resolved_pct": round(100 * resolved / len(results), 1) if results else 0.0,
        "model_calls": sum(result.model_calls for result in results),
        "tokens": sum(result.tokens for result in results),
        "cost_usd": None if None in costs else round(sum(c or 0.0 for c in costs), 6),
        "wall_s": round(sum(result.wall_s for result in results), 3),
    }
