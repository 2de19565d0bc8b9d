"""`singularity task`, `singularity tasks` and `singularity agents`."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import click
import typer
from rich.table import Table
from typer.core import TyperGroup

from singularity.cli.common import console, err_console, load, shown
from singularity.config import Settings
from singularity.database import open_cluster
from singularity.errors import UsageError
from singularity.orchestrator.agents import AGENT_KINDS, load_agents
from singularity.orchestrator.platform import connect, open_store
from singularity.orchestrator.store import TaskRecord

__all__ = ["agents", "task", "task_app", "tasks"]


class _TaskGroup(TyperGroup):
    """`singularity task DESCRIPTION ...` runs a task (the `run` command, which need not be
    named); `singularity task show N` and `task cancel N` act on one."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ctx.help_option_names):
            args = ["run", *args]
        return super().parse_args(ctx, args)


task_app = typer.Typer(
    cls=_TaskGroup,
    help='Run a task (`singularity task "DESCRIPTION" --repo PATH`), or show or cancel one.',
)

# What each state waits for, and who must be running for it to end.
_STATES = {
    "queued": ("gathering context", None),
    "planning": ("planning with the model (architect)", "Nexus with a model"),
    "working": ("working in the agent loop", "Nexus with a model, and a Genesis worker"),
    "coding": ("writing the diff (coder)", "Nexus with a model"),
    "validating": ("running the tests in the Genesis sandbox", "a Genesis worker"),
    "reviewing": ("waiting for a reviewer in the Nexus web UI", "Nexus"),
    "applying": ("applying the approved diff", None),
}
# After this long in one state, the spinner says who must be running.
_HINT_AFTER_S = 15.0


def task(
    description: str = typer.Argument("", help="What the agent should do."),
    repo: Path = typer.Option(Path("."), "--repo", help="The repository to work on."),
    agent: str = typer.Option("coder", "--agent", help="The agent kind: " + ", ".join(AGENT_KINDS)),
    test_command: str | None = typer.Option(
        None, "--test", help="The command that runs the repository's tests in the sandbox."
    ),
    resume: int | None = typer.Option(
        None, "--resume", help="Go on with an unfinished task (by id) instead of a new one."
    ),
    loop: bool = typer.Option(
        False,
        "--loop",
        help="Work in the agent loop: the model reads, edits and runs the tests with its tools "
        "until they pass, instead of one plan and one diff.",
    ),
    max_steps: int | None = typer.Option(
        None,
        "--max-steps",
        min=1,
        help="The loop's model calls at most (SINGULARITY_TASK_MAX_STEPS).",
    ),
    max_cost: float | None = typer.Option(
        None,
        "--max-cost",
        min=0.0001,
        help="The loop's known cost in dollars at most (SINGULARITY_TASK_MAX_COST_USD).",
    ),
) -> None:
    """Run one task with live progress: plan, diff, sandboxed tests, human approval, apply."""
    if resume is None and not description.strip():
        raise UsageError('say what the task is: singularity task "DESCRIPTION" --repo PATH')
    if agent not in AGENT_KINDS:
        raise UsageError(f"unknown agent {agent!r}; choose one of: {', '.join(AGENT_KINDS)}")
    if resume is None and not repo.is_dir():
        raise UsageError(f"--repo {str(repo)!r} is not a directory")
    if (max_steps is not None or max_cost is not None) and not loop:
        raise UsageError("--max-steps and --max-cost bound the agent loop: add --loop")
    settings = load()
    command = test_command or settings.singularity_task_test_command
    budget = {"steps": max_steps, "cost_usd": max_cost}
    budget = {name: value for name, value in budget.items() if value is not None}
    with open_cluster(settings) as cluster:
        record = asyncio.run(
            _task(settings, cluster, description, repo, agent, command, resume, loop, budget)
        )
    _print_outcome(record)
    if record.outcome != "applied":
        raise typer.Exit(1)


async def _task(
    settings: Settings,
    cluster: Any,
    description: str,
    repo: Path,
    kind: str,
    test_command: str,
    resume: int | None,
    loop: bool,
    budget: dict[str, Any],
) -> TaskRecord:
    from singularity.orchestrator.service import task_runner  # the runner's imports are heavy

    async with connect(cluster, settings, name="singularity-task") as connected:
        runner = task_runner(connected, settings)
        if resume is None:
            agent_id = f"{kind}-{cluster.instance}"
            task_id = await runner.create(
                description,
                repo,
                kind=kind,
                agent_id=agent_id,
                test_command=test_command,
                loop=loop,
                budget=budget,
            )
        else:
            task_id = resume
        record = await connected.store.task(task_id)
        console.print(f"task [bold]{task_id}[/] ({record.kind}) on {shown(record.repo)}")
        with err_console.status("gathering context") as status:
            current = {"state": record.state, "since": time.monotonic()}

            def progress(state: str, message: str) -> None:
                if state not in ("failed", "rejected"):  # the outcome line says those
                    console.print(f"  [green]✓[/] {shown(message)}")
                current.update(state=state, since=time.monotonic())

            ticking = asyncio.create_task(_tick(status, current))
            try:
                return await runner.run(task_id, progress)
            except asyncio.CancelledError:
                err_console.print(
                    f"task {task_id} paused; go on with `singularity task --resume {task_id}` "
                    "(a running Singularity service takes it over by itself)"
                )
                raise
            finally:
                ticking.cancel()


async def _tick(status: Any, current: dict[str, Any]) -> None:
    """Keep the spinner's line current: the state, how long it has lasted, who it waits on."""
    while True:
        label, needs = _STATES.get(current["state"], (current["state"], None))
        waited = time.monotonic() - current["since"]
        line = f"{label} ({waited:.0f} s)"
        if needs and waited >= _HINT_AFTER_S:
            line += f"; needs {needs} running (`singularity up`)"
        status.update(line)
        await asyncio.sleep(0.5)


def cancel(task_id: int = typer.Argument(..., help="The task to cancel.")) -> None:
    """End a task now, wherever it runs: its runner stops within seconds."""
    settings = load()
    with open_cluster(settings) as cluster:
        cancelled, record = asyncio.run(_cancel(cluster, task_id))
    if not cancelled:
        raise UsageError(f"task {task_id} has already ended: {record.outcome or record.state}")
    console.print(f"task {task_id} cancelled")


async def _cancel(cluster: Any, task_id: int) -> tuple[bool, TaskRecord]:
    async with open_store(cluster, name="singularity-cli", max_size=1) as store:
        await store.task(task_id)  # NotFound, with the id, for a task that does not exist
        cancelled = await store.cancel(task_id)
        return cancelled, await store.task(task_id)


def show(
    task_id: int = typer.Argument(..., help="The task to show."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """One task in detail: its state, outcome and every step it went through."""
    settings = load()
    with open_cluster(settings) as cluster:
        record, events, trajectory = asyncio.run(_one(cluster, task_id))
    if as_json:
        body = {**record.model_dump(mode="json"), "events": events, "trajectory": trajectory}
        console.print_json(json.dumps(body))
        return
    _print_task(record, events)
    if trajectory:
        _print_trajectory(trajectory)


def _print_outcome(record: TaskRecord) -> None:
    cost = record.data.get("cost", {})
    spent = cost.get("cost_usd")
    tokens = int((cost.get("prompt_tokens") or 0) + (cost.get("completion_tokens") or 0))
    if record.outcome == "applied":
        applied = record.data.get("applied", {})
        branch = applied.get("branch")
        where = f"on branch [bold]{shown(branch)}[/]" if branch else "in place"
        console.print(
            f"[green]applied[/] {where}: {shown(', '.join(applied.get('files', [])))}; "
            f"{tokens} tokens, " + (f"${spent:.4f}" if spent is not None else "cost unknown")
        )
    else:
        console.print(f"[red]{record.outcome or record.state}[/]: {shown(record.error or '')}")


def tasks(
    task_id: int | None = typer.Argument(None, help="Show one task with its steps."),
    limit: int = typer.Option(50, "--limit", min=1, help="How many tasks to list."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """The tasks of this instance, newest first (or one task in detail: `task show`)."""
    if task_id is not None:
        show(task_id, as_json)
        return
    settings = load()
    with open_cluster(settings) as cluster:
        rows = asyncio.run(_list(cluster, limit))
    if as_json:
        console.print_json(json.dumps(rows, default=str))
        return
    table = Table(title="Tasks")
    columns = ("id", "agent", "state", "outcome", "calls", "tokens", "cost", "elapsed")
    for column in (*columns, "description"):
        table.add_column(column, justify="right" if column in ("calls", "tokens") else "left")
    for row in rows:
        table.add_row(
            str(row["id"]),
            shown(row["agent_id"]),
            row["state"],
            row["outcome"] or "-",
            str(row["model_calls"]),
            str(row["tokens"]),
            _cost(row["cost_usd"], row["calls_cost_unknown"]),
            _elapsed(row["elapsed_s"]),
            shown(row["description"][:60]),
        )
    console.print(table)


def _cost(known: float | None, unknown_calls: int) -> str:
    """A task's cost: what is known, and how many calls' cost is not (never taken for $0)."""
    if unknown_calls == 0:
        return "-" if known is None else f"${float(known):.4f}"
    if known is None:
        return "unknown"
    return f"${float(known):.4f} + unknown ({unknown_calls} calls)"


def _elapsed(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


async def _one(cluster: Any, task_id: int) -> tuple[TaskRecord, list[Any], list[Any]]:
    async with open_store(cluster, name="singularity-cli", max_size=1) as store:
        record = await store.task(task_id)
        events = await store.events(task_id)
        trajectory = await store.trajectory(task_id)
    return (
        record,
        [e.model_dump(mode="json") for e in events],
        [step.model_dump(mode="json") for step in trajectory],
    )


def _print_trajectory(trajectory: list[dict[str, Any]]) -> None:
    """The agent loop's steps: each model call with its tokens and cost, each tool call."""
    table = Table(title="Trajectory")
    for column in ("step", "what", "ok", "tokens", "cost", "ms"):
        table.add_column(column, justify="right" if column in ("tokens", "cost", "ms") else "left")
    for step in trajectory:
        cost = step["cost_usd"]
        shown_cost = "" if step["kind"] == "tool" else "unknown" if cost is None else f"${cost:.4f}"
        what = f"{step['kind']} {step['name']}"
        if step["kind"] == "model" and step["output"].get("tool_calls"):
            what += " → " + ", ".join(step["output"]["tool_calls"])
        table.add_row(
            shown(step["key"]),
            shown(what),
            "yes" if step["ok"] else "[red]no[/]",
            str(step["tokens"]) if step["kind"] == "model" else "",
            shown_cost,
            "" if step["wall_ms"] is None else f"{step['wall_ms']:.0f}",
        )
    console.print(table)


async def _list(cluster: Any, limit: int) -> list[dict[str, Any]]:
    async with open_store(cluster, name="singularity-cli", max_size=1) as store:
        return await store.tasks(limit)


def _print_task(record: TaskRecord, events: list[dict[str, Any]]) -> None:
    console.print(
        f"task [bold]{record.id}[/] by {shown(record.agent_id)}: {record.state}"
        + (f" ({record.outcome})" if record.outcome else "")
    )
    console.print(f"  {shown(record.description)}")
    console.print(f"  repo {shown(record.repo)}, tests `{shown(record.test_command)}`")
    for event in events:
        message = shown(event["message"])
        console.print(f"  {event['at'][11:19]} [dim]{event['state']:<10}[/] {message}")
    if record.error and (not events or events[-1]["message"] != record.error):
        console.print(f"  [red]{shown(record.error)}[/]")


def agents(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """The agent kinds with their prompt files, and the agents that have worked here."""
    settings = load()
    kinds = load_agents(settings)
    with open_cluster(settings) as cluster:
        rows = asyncio.run(_agents(cluster))
    if as_json:
        body = {
            "kinds": [
                {"name": k.name, "description": k.description, "prompts": _sources(k.sources)}
                for k in kinds
            ],
            "agents": rows,
        }
        console.print_json(json.dumps(body, default=str))
        return
    table = Table(title="Agent kinds")
    for column in ("kind", "what it does", "prompts"):
        table.add_column(column)
    for kind in kinds:
        table.add_row(kind.name, kind.description, _prompt_dirs(kind.sources))
    console.print(table)
    table = Table(title="Agents")
    for column in ("agent", "kind", "tasks", "applied", "open", "llm calls", "tokens", "cost"):
        table.add_column(column)
    for row in rows:
        cost = "-" if row["cost_usd"] is None else f"${row['cost_usd']:.4f}"
        table.add_row(
            row["id"],
            row["kind"],
            str(row["tasks"]),
            str(row["applied"]),
            str(row["open"]),
            str(row["llm_calls"]),
            str(row["tokens"]),
            cost,
        )
    console.print(table)


async def _agents(cluster: Any) -> list[dict[str, Any]]:
    async with open_store(cluster, name="singularity-cli", max_size=1) as store:
        return await store.agents()


def _sources(sources: Any) -> dict[str, str]:
    return {name: str(path) for name, path in sources.items()}


def _prompt_dirs(sources: Any) -> str:
    return "\n".join(sorted({str(Path(path).parent) for path in sources.values()}))


task_app.command("run")(task)
task_app.command("show")(show)
task_app.command("cancel")(cancel)
