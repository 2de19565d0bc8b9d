"""A task, step by step: context, plan, diff, sandbox, human, apply, record.

The task's state and what each finished step produced are in the `tasks` row; every request a
step sends is recorded under the step's name (`plan`, `code-r0-a1`, `approval-r0`, ...).
Running a task again after a crash replays the finished steps from their recorded answers
(nothing is asked twice) and goes on from the first unfinished one. One runner at a time holds
a task, by a lease it renews while it works.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from singularity.config import Settings
from singularity.errors import SingularityError
from singularity.orchestrator.agent.loop import ALL_TOOLS, AgentLoop, Budget
from singularity.orchestrator.agents import load_agent, tool_descriptions
from singularity.orchestrator.client import LlmFailed, PlatformClient, RequestTimedOut
from singularity.orchestrator.context import RepoContext
from singularity.orchestrator.diffs import (
    diff_problem,
    extract_diff,
    touched_files,
)
from singularity.orchestrator.plan import parse_plan
from singularity.orchestrator.repository import apply_change, check_diff
from singularity.orchestrator.store import LEASE_S, SingularityStore, TaskRecord
from singularity.orchestrator.task_steps import (
    Prompts,
    experiment_summary,
    knowledge_text,
    task_context,
)
from singularity.orchestrator.task_workspace import TaskWorkspace
from singularity.shared_queue import LlmResult

__all__ = ["KnowledgeSource", "TaskRunner", "runner_id"]

log = structlog.get_logger(__name__)

# Finds knowledge for a task: (query, limit) -> hits as {id, artifact_type, artifact_id, text}.
KnowledgeSource = Callable[[str, int], Any]
Progress = Callable[[str, str], None]

TERMINAL = {"done", "rejected", "failed", "cancelled"}


def _repository(repo: Path) -> Path:
    if not repo.is_dir():
        raise SingularityError(f"repository {str(repo)!r} is not a directory")
    return repo.resolve()


def budget_of(settings: Settings) -> Budget:
    """What a task's agent loop may spend, from the settings."""
    return Budget(
        steps=settings.singularity_task_max_steps,
        tokens=settings.singularity_task_max_tokens,
        cost_usd=settings.singularity_task_max_cost_usd,
        wall_s=settings.singularity_task_max_wall_s,
    )


def runner_id() -> str:
    """A name for this process's runner, unique across hosts and restarts."""
    return f"runner-{uuid.uuid4().hex[:12]}"


@dataclass
class _Live:
    """A running task's progress callback, and the last of its events it was shown."""

    progress: Progress | None
    seen: int = 0


class TaskLost(Exception):
    """Another runner holds the task now (this one's lease ran out)."""


@dataclass
class _Run:
    task: TaskRecord
    prompts: Prompts

    @property
    def data(self) -> dict[str, Any]:
        return self.task.data


class TaskRunner:
    """Carries tasks through their states for one Singularity instance."""

    def __init__(
        self,
        client: PlatformClient,
        store: SingularityStore,
        settings: Settings,
        *,
        knowledge: KnowledgeSource | None = None,
        record_usage: Callable[[list[int], bool], Any] | None = None,
        runner: str | None = None,
        lease_s: float = LEASE_S,
        budget: Budget | None = None,
    ) -> None:
        self.client = client
        self.store = store
        self.settings = settings
        self.knowledge = knowledge
        self.record_usage = record_usage
        self.runner = runner or runner_id()
        self.lease_s = lease_s
        self.budget = budget or budget_of(settings)
        self._live: dict[int, _Live] = {}  # the progress shown of each task running here

    async def create(
        self,
        description: str,
        repo: Path,
        *,
        kind: str,
        agent_id: str,
        test_command: str,
        loop: bool = False,
        budget: dict[str, Any] | None = None,
        evaluation: bool = False,
    ) -> int:
        """A new task, held by this runner; `loop`: worked in the agent loop (tools, tests,
        until they pass) instead of one plan and one diff, with `budget` (Budget's fields)
        over the settings' where given."""
        load_agent(kind, self.settings)  # an unknown kind is refused before anything is stored
        root = _repository(repo)
        await self.store.ensure_agent(agent_id, kind)
        task_id = await self.store.create_task(
            agent_id=agent_id,
            description=description,
            repo=str(root),
            test_command=test_command,
            runner=self.runner,
            data=(
                {"mode": "loop", "budget": budget or {}, "evaluation": evaluation} if loop else None
            ),
        )
        log.info("task_created", task_id=task_id, agent_id=agent_id, repo=str(repo))
        return task_id

    async def run(self, task_id: int, progress: Progress | None = None) -> TaskRecord:
        """Work on a task until it finishes; returns its final record."""
        if not await self.store.claim(task_id, self.runner):
            task = await self.store.task(task_id)
            if task.finished_at is not None:
                return task
            raise SingularityError(
                f"task {task_id} is being worked on by {task.runner} (its lease runs until "
                f"{task.lease_until:%H:%M:%S}); try again after that"
            )
        steps = asyncio.create_task(self._steps(task_id, progress), name=f"steps:{task_id}")
        renewing = asyncio.create_task(self._renew(task_id), name=f"lease:{task_id}")
        try:
            await asyncio.wait((steps, renewing), return_when=asyncio.FIRST_COMPLETED)
            if not steps.done():
                # The lease is gone: the task was cancelled, or another runner took it over.
                # What this runner is waiting for (a model, a human) no longer matters here.
                steps.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await steps
                log.warning("task_lost", task_id=task_id, runner=self.runner)
                task = await self.store.task(task_id)
                if task.state in TERMINAL:  # cancelled: its workspace is of no more use
                    await asyncio.to_thread(self._workspace(task_id).remove)
                return task
            return steps.result()
        except asyncio.CancelledError:
            # Stopped (Ctrl-C, shutdown): let another runner take the task at once.
            steps.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await steps
            await asyncio.shield(self.store.release(task_id, self.runner))
            log.info("task_released", task_id=task_id, runner=self.runner)
            raise
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing

    async def _renew(self, task_id: int) -> None:
        """Keep the lease while the task runs; returns when it is lost."""
        while True:
            await asyncio.sleep(self.lease_s / 3)
            if not await self.store.renew(task_id, self.runner):
                return

    async def _steps(self, task_id: int, progress: Progress | None) -> TaskRecord:
        task = await self.store.task(task_id)
        run = _Run(task, Prompts(load_agent(task.kind, self.settings), task.description))
        step_of = {
            "queued": self._gather,
            "planning": self._plan,
            "working": self._work,
            "coding": self._code,
            "validating": self._validate,
            "reviewing": self._review,
            "applying": self._apply,
        }
        live = self._live[task_id] = _Live(progress)
        while run.task.state not in TERMINAL:
            try:
                await step_of[run.task.state](run)
            except (LlmFailed, RequestTimedOut, SingularityError) as exc:
                await self._fail(run, str(exc))
            except TaskLost:
                log.warning("task_lost", task_id=task_id, runner=self.runner)
                break
            run.task = await self.store.task(task_id)
            if progress is not None:
                for event in await self.store.events(task_id, after=live.seen):
                    progress(event.state, event.message)
                    live.seen = event.id
        self._live.pop(task_id, None)
        if run.task.state in TERMINAL and not run.data.get("evaluation"):
            await asyncio.to_thread(self._workspace(task_id).remove)  # (an evaluation's judge
        return await self.store.task(task_id)  # reads it, then removes it)

    def workspace(self, task_id: int) -> TaskWorkspace:
        """The workspace of a task worked in the loop (see `_work`)."""
        return self._workspace(task_id)

    async def _advance(self, run: _Run, state: str, data: dict[str, Any], message: str) -> None:
        if not await self.store.advance(run.task.id, self.runner, state, data, message):
            raise TaskLost
        log.info("task_step", task_id=run.task.id, state=state, message=message)

    async def _fail(self, run: _Run, reason: str) -> None:
        await self.store.finish(
            run.task.id, state="failed", outcome="failed", error=reason, message=reason
        )
        log.info("task_failed", task_id=run.task.id, reason=reason)
        await self._used_knowledge(run, success=False)

    # The steps, in order.

    async def _gather(self, run: _Run) -> None:
        context = task_context(Path(run.task.repo), run.task.description)
        hits = []
        if self.knowledge is not None:
            hits = list(await self.knowledge(run.task.description, 3))
        data = {
            "named_files": list(context.files),
            "knowledge": [{k: h[k] for k in ("id", "artifact_type", "artifact_id")} for h in hits],
            "knowledge_text": knowledge_text(hits),
        }
        files = ", ".join(context.files) or "none named"
        following = "working" if run.data.get("mode") == "loop" else "planning"
        await self._advance(
            run, following, data, f"context: {files}; {len(hits)} knowledge artifact(s)"
        )

    def _context(self, run: _Run) -> RepoContext:
        """The task's context: the files it names, and those the plan selected (once planned)."""
        return task_context(
            Path(run.task.repo), run.task.description, run.data.get("plan", {}).get("files", [])
        )

    async def _plan(self, run: _Run) -> None:
        context = self._context(run)
        messages = run.prompts.messages("plan", context, run.data.get("knowledge_text", ""))
        answer = await self._llm(run, "architect", messages, step="plan")
        plan = parse_plan(answer.result or "")
        data = {
            "plan": {"text": plan.text, "phases": plan.phases, "files": plan.files},
            "plan_model": answer.model,
        }
        phases = ", ".join(plan.phases) or "none"
        await self._advance(run, "coding", data, f"plan by {answer.model}: SPARC phases {phases}")

    def _workspace(self, task_id: int) -> TaskWorkspace:
        instance = f"instance-{self.settings.singularity_instance}"
        return TaskWorkspace(
            self.settings.singularity_home / "workspaces" / instance / str(task_id)
        )

    async def _work(self, run: _Run) -> None:
        """The agent loop, in the task's workspace, until the tests pass (see agent.loop)."""
        revision = int(run.data.get("revision", 0))
        workspace = self._workspace(run.task.id)
        if not workspace.exists():
            await asyncio.to_thread(workspace.remove)  # one half made before a crash
            workspace = await TaskWorkspace.create(Path(run.task.repo), workspace.root)
        messages = run.prompts.messages(
            "work",
            self._context(run),
            run.data.get("knowledge_text", ""),
            test_command=run.task.test_command,
        )
        if revision > 0:
            rework = run.prompts.agent.render(
                "rework",
                feedback=run.data.get("feedback", ""),
                test_results=run.data.get("test_results", ""),
            )
            messages.append({"role": "user", "content": rework})
        descriptions = tool_descriptions(run.prompts.agent)
        unknown = sorted(set(descriptions) - set(ALL_TOOLS))
        if unknown:
            raise SingularityError(
                f"{run.prompts.agent.sources['tools']} describes tools the loop does not have: "
                f"{', '.join(unknown)} (it has {', '.join(ALL_TOOLS)})"
            )
        end = await AgentLoop(
            self.client,
            self.store,
            run.task,
            workspace.work,
            descriptions=descriptions,
            budget=dataclasses.replace(self.budget, **run.data.get("budget", {})),
            progress=lambda message: self._note(run, message),
        ).run(messages, revision=revision)
        if end.outcome == "stopped":
            raise SingularityError(f"the agent stopped: {end.summary}")
        diff = await workspace.diff()
        if not diff:
            raise SingularityError("the agent finished without changing any file")
        files = touched_files(diff)
        data = {
            "diff": diff,
            "files": files,
            "diff_model": end.model,
            "summary": end.summary,
            "loop": {"steps": end.steps, "tokens": end.tokens, "cost_usd": end.cost_usd},
        }
        message = f"change by {end.model} after {end.steps} model calls: {', '.join(files)}"
        if run.data.get("evaluation"):
            # An evaluation judges the change with its hidden tests: no reviewer, no apply.
            await self.store.finish(
                run.task.id, state="done", outcome="finished", data=data, message=message
            )
            return
        await self._advance(run, "validating", data, message)

    async def _note(self, run: _Run, message: str) -> None:
        """One step of the loop: a task event, shown at once."""
        event_id = await self.store.note(run.task.id, run.task.state, message)
        live = self._live.get(run.task.id)
        if live is not None and live.progress is not None:
            live.progress(run.task.state, message)
            live.seen = event_id  # shown: the runner's own events come one after another

    async def _code(self, run: _Run) -> None:
        revision = int(run.data.get("revision", 0))
        context = self._context(run)
        plan = run.data["plan"]["text"]
        knowledge = run.data.get("knowledge_text", "")
        attempts = self.settings.singularity_task_diff_attempts
        diff, error = "", ""
        for attempt in range(attempts):
            if attempt > 0:
                messages = run.prompts.messages(
                    "fix", context, knowledge, plan=plan, diff=diff, error=error
                )
            elif revision > 0:
                messages = run.prompts.messages(
                    "revise",
                    context,
                    knowledge,
                    plan=plan,
                    diff=run.data.get("diff", ""),
                    feedback=run.data.get("feedback", ""),
                    test_results=run.data.get("test_results", ""),
                )
            else:
                messages = run.prompts.messages("code", context, knowledge, plan=plan)
            answer = await self._llm(run, "coder", messages, step=f"code-r{revision}-a{attempt}")
            diff = extract_diff(answer.result or "") or ""
            error = (
                "the answer holds no unified diff (a ```diff block)"
                if not diff
                else diff_problem(diff) or await check_diff(Path(run.task.repo), diff) or ""
            )
            if not error:
                data = {
                    "diff": diff,
                    "files": touched_files(diff),
                    "diff_model": answer.model,
                    "diff_request_id": answer.request_id,
                }
                await self._advance(
                    run,
                    "validating",
                    data,
                    f"diff by {answer.model} (attempt {attempt + 1}): "
                    + ", ".join(touched_files(diff)),
                )
                return
            log.info("diff_refused", task_id=run.task.id, attempt=attempt + 1, error=error)
        raise SingularityError(
            f"the model's diff did not apply after {attempts} attempt(s): {error}"
        )

    async def _validate(self, run: _Run) -> None:
        revision = int(run.data.get("revision", 0))
        result = await self.client.experiment(
            repo=run.task.repo,
            diff=run.data["diff"],
            test_command=run.task.test_command,
            agent_id=run.task.agent_id,
            task_id=run.task.id,
            step=f"experiment-r{revision}",
        )
        experiment = result.model_dump(mode="json", exclude_none=True)
        summary = experiment_summary(experiment)
        data = {"experiment": experiment, "test_results": summary}
        await self._advance(run, "reviewing", data, summary)

    async def _review(self, run: _Run) -> None:
        revision = int(run.data.get("revision", 0))
        experiment = run.data.get("experiment", {})
        files = run.data.get("files") or ["(unknown)"]
        if "plan" in run.data:
            how = f"Plan:\n{run.data['plan']['text']}"
        else:
            how = f"The agent's summary:\n{run.data.get('summary', '')}"
        description = (
            f"{run.task.description}\n\n{how}\n\nSandbox: {run.data.get('test_results', '')}"
        )
        extra = {
            "task_id": run.task.id,
            "task_type": "coder",
            "model": run.data.get("diff_model"),
            "llm_request_id": run.data.get("diff_request_id"),
            "tests_passed": experiment.get("status") == "completed"
            and experiment.get("recommendation") != "rollback",
            "success_rate": experiment.get("success_rate"),
            "recommendation": experiment.get("recommendation"),
            "repo": run.task.repo,
        }
        decision = await self.client.approval(
            file_path=", ".join(files),
            diff=run.data["diff"],
            description=description,
            agent_id=run.task.agent_id,
            extra=extra,
            task_id=run.task.id,
            step=f"approval-r{revision}",
        )
        reviews = [*run.data.get("reviews", []), decision.model_dump(mode="json")]
        if decision.approved:
            await self._advance(run, "applying", {"reviews": reviews}, "approved by a reviewer")
            return
        reason = decision.reason or "no reason given"
        if revision >= self.settings.singularity_task_revisions:
            await self.store.finish(
                run.task.id,
                state="rejected",
                outcome="rejected",
                error=reason,
                data={"reviews": reviews},
                message=f"rejected: {reason} (no revision left)",
            )
            await self._used_knowledge(run, success=False)
            return
        data = {"reviews": reviews, "revision": revision + 1, "feedback": reason}
        again = "working" if run.data.get("mode") == "loop" else "coding"
        await self._advance(run, again, data, f"rejected: {reason}; revising")

    async def _apply(self, run: _Run) -> None:
        branch = f"singularity/task-{run.task.id}"
        applied = await apply_change(
            Path(run.task.repo),
            run.data["diff"],
            branch=branch,
            message=f"{run.task.description}\n\nSingularity task {run.task.id}, "
            f"agent {run.task.agent_id}",
        )
        cost = await self.store.cost(run.task.id)
        data = {
            "applied": {
                "branch": applied.branch,
                "commit": applied.commit,
                "base": applied.base,
                "files": applied.files,
            },
            "cost": {k: (float(v) if v is not None else None) for k, v in cost.items()},
        }
        where = f"on branch {applied.branch}" if applied.branch else "in place"
        await self.store.finish(
            run.task.id, state="done", outcome="applied", data=data, message=f"applied {where}"
        )
        log.info("task_done", task_id=run.task.id, branch=applied.branch, cost=data["cost"])
        await self._used_knowledge(run, success=True)

    async def _llm(
        self, run: _Run, task_type: str, messages: list[dict[str, Any]], *, step: str
    ) -> LlmResult:
        return await self.client.llm(
            messages,
            agent_id=run.task.agent_id,
            task_type=task_type,
            task_id=run.task.id,
            step=step,
        )

    async def _used_knowledge(self, run: _Run, *, success: bool) -> None:
        ids = [int(item["id"]) for item in run.data.get("knowledge", [])]
        if ids and self.record_usage is not None:
            await self.record_usage(ids, success)
