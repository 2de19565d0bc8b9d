"""`singularity eval`: run a suite of tasks with the configured model and judge each result."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from singularity.cli.common import console, err_console, load, shown
from singularity.config import Settings
from singularity.database import open_cluster
from singularity.errors import UsageError
from singularity.orchestrator.evaluation.run import TaskResult, evaluate, summary
from singularity.orchestrator.evaluation.suite import EvalTask, load_suite
from singularity.orchestrator.evaluation.swebench import DEFAULT_TEMPLATE, load_instances
from singularity.orchestrator.platform import connect

__all__ = ["evaluate_suite"]


def evaluate_suite(
    suite: Path | None = typer.Argument(
        None, help="A suite directory (one folder per task); default: the built-in suite."
    ),
    only: str | None = typer.Option(
        None, "--tasks", help="Run only these tasks: ids separated by commas."
    ),
    concurrency: int = typer.Option(2, "--concurrency", min=1, max=64, help="Tasks at once."),
    max_steps: int | None = typer.Option(
        None, "--max-steps", min=1, help="Each task's model calls at most."
    ),
    max_cost: float | None = typer.Option(
        None, "--max-cost", min=0.0001, help="Each task's known cost in dollars at most."
    ),
    report: Path | None = typer.Option(None, "--json", help="Write the JSON report to this file."),
    swe_bench: Path | None = typer.Option(
        None, "--swe-bench", help="A JSONL file of SWE-bench-format instances instead of a suite."
    ),
    repos: Path | None = typer.Option(
        None, "--repos", help="With --swe-bench: the folder of local clones (owner__name or name)."
    ),
    template: str = typer.Option(
        DEFAULT_TEMPLATE,
        "--test-template",
        help="With --swe-bench: the command that runs test ids; {tests} is replaced by them.",
    ),
    setup: str | None = typer.Option(
        None, "--setup", help="With --swe-bench: the judge's setup step (default: detected)."
    ),
    no_setup: bool = typer.Option(False, "--no-setup", help="With --swe-bench: install nothing."),
) -> None:
    """Work every task of a suite in the agent loop, judge it with its hidden tests, report."""
    settings = load()
    if swe_bench is None:
        if repos is not None or setup is not None or no_setup:
            raise UsageError("--repos, --setup and --no-setup go with --swe-bench")
        tasks = _chosen(load_suite(suite), only)
    else:
        if suite is not None or repos is None:
            raise UsageError("--swe-bench takes --repos (the local clones), and no suite folder")
        checkouts = settings.singularity_home / "evaluations" / "swe-bench"
        chosen_setup: str | bool | None = False if no_setup else setup
        instances = load_instances(
            swe_bench, repos, checkouts, template=template, setup=chosen_setup
        )
        tasks = _chosen(instances, only)
    budget = {"steps": max_steps, "cost_usd": max_cost}
    budget = {name: value for name, value in budget.items() if value is not None}
    with open_cluster(settings) as cluster:
        results = asyncio.run(_run(settings, cluster, tasks, concurrency, budget))
    totals = summary(results)
    _print(results, totals)
    if report is not None:
        body = {"tasks": [result.to_dict() for result in results], "summary": totals}
        report.write_text(json.dumps(body, indent=2) + "\n")
        console.print(f"report: {shown(str(report))}")


def _chosen(tasks: list[EvalTask], only: str | None) -> list[EvalTask]:
    if only is None:
        return tasks
    wanted = [name.strip() for name in only.split(",") if name.strip()]
    known = {task.id for task in tasks}
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise UsageError(f"no task {unknown[0]!r} in the suite (see its folder names or ids)")
    return [task for task in tasks if task.id in wanted]


async def _run(
    settings: Settings, cluster: Any, tasks: list[EvalTask], concurrency: int, budget: dict
) -> list[TaskResult]:
    from singularity.orchestrator.service import task_runner  # the runner's imports are heavy

    root = settings.singularity_home / "evaluations"
    root.mkdir(parents=True, exist_ok=True)
    async with connect(cluster, settings, name="singularity-eval") as connected:
        runner = task_runner(connected, settings)
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=err_console) as bar:
            overall = bar.add_task(f"{len(tasks)} tasks", total=len(tasks))

            def progress(task: str, what: str) -> None:
                bar.console.print(f"  {shown(task)}: {shown(what)}")
                if what in ("resolved", "unresolved") or what.startswith("agent failed"):
                    bar.advance(overall)

            return await evaluate(
                tasks, runner, root, concurrency=concurrency, budget=budget, progress=progress
            )


def _print(results: list[TaskResult], totals: dict[str, Any]) -> None:
    table = Table(title="Evaluation")
    for column in ("task", "result", "calls", "tokens", "cost", "seconds"):
        table.add_column(column, justify="left" if column in ("task", "result") else "right")
    for result in results:
        colour = "green" if result.resolved else "red"
        table.add_row(
            shown(result.id),
            f"[{colour}]{shown(result.outcome)}[/]",
            str(result.model_calls),
            str(result.tokens),
            _cost(result.cost_usd),
            f"{result.wall_s:.1f}",
        )
    console.print(table)
    console.print(
        f"resolved {totals['resolved']} of {totals['tasks']} ({totals['resolved_pct']}%); "
        f"{totals['model_calls']} model calls, {totals['tokens']} tokens, "
        f"{_cost(totals['cost_usd'])}, {totals['wall_s']:.0f} s of work"
    )


def _cost(cost: float | None) -> str:
    return "cost unknown" if cost is None else f"${cost:.4f}"
