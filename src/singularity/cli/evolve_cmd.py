"""`singularity evolve`: an evolution run, with a live progress bar, resumable."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from singularity.cli.common import console, err_console, load
from singularity.cli.evolution_cmd import DB_HELP
from singularity.config import Settings
from singularity.database import open_cluster
from singularity.errors import SingularityError, UsageError
from singularity.postgres.cluster import Cluster

if TYPE_CHECKING:
    from singularity.genesis.evolution.config import EvolutionConfig
    from singularity.genesis.evolution.loop import EvolutionOutcome, EvolveOptions, RunProgress
    from singularity.genesis.evolution.problem import Problem

__all__ = ["evolve"]

_DB_HELP = DB_HELP + " The same database resumes the run."


def evolve(
    problem: str = typer.Option(
        ..., "--problem", help="A problem directory, or a shipped example: circle_packing."
    ),
    generations: int = typer.Option(..., "--generations", help="Generations to reach."),
    islands: int = typer.Option(4, "--islands", help="Islands (one child each per generation)."),
    db: str | None = typer.Option(None, "--db", help=_DB_HELP),
    budget: float | None = typer.Option(
        None, "--budget", help="Stop asking for mutations once the run's calls cost this (USD)."
    ),
    diff_ratio: float = typer.Option(
        0.7, "--diff-ratio", help="Share of mutations asked as diffs; the rest are rewrites."
    ),
    concurrency: int | None = typer.Option(
        None, "--concurrency", help="Evaluations at once (default: GENESIS_CONCURRENCY)."
    ),
    complexity: str = typer.Option(
        "complex", "--complexity", help="The routing tier asked of Nexus: simple, medium, complex."
    ),
    migration_interval: int = typer.Option(
        10, "--migration-interval", help="Generations between migrations (0: none)."
    ),
    llm_timeout: float = typer.Option(
        300.0, "--llm-timeout", help="Seconds to wait for one model answer."
    ),
    seed: int | None = typer.Option(None, "--seed", help="Seed of the run's random choices."),
) -> None:
    """Evolve a program: the model mutates, the sandbox scores, the database keeps islands."""
    if not 1 <= islands <= 64:
        raise UsageError("--islands must be between 1 and 64")
    if llm_timeout <= 0:
        raise UsageError("--llm-timeout must be positive")
    if migration_interval < 0:
        raise UsageError("--migration-interval must be 0 or more")
    settings = load()
    from singularity.genesis.evolution.config import EvolutionConfig
    from singularity.genesis.evolution.loop import EvolveOptions
    from singularity.genesis.evolution.problem import EXAMPLES, example_problem, load_problem

    root = Path(problem)
    if not root.exists() and problem in EXAMPLES:
        root = example_problem(problem)
    loaded = load_problem(root)
    options = EvolveOptions(
        generations=generations,
        diff_ratio=diff_ratio,
        concurrency=concurrency or settings.genesis_concurrency,
        budget_usd=budget,
        complexity=complexity,
        seed=seed,
    )
    config = EvolutionConfig(num_islands=islands, migration_interval=migration_interval, seed=seed)
    with open_cluster(settings) as cluster:
        outcome = asyncio.run(_evolve(settings, cluster, loaded, options, config, db, llm_timeout))
    _print_outcome(outcome)


async def _evolve(
    settings: Settings,
    cluster: Cluster,
    problem: Problem,
    options: EvolveOptions,
    config: EvolutionConfig,
    db_url: str | None,
    llm_timeout_s: float,
) -> EvolutionOutcome:
    from singularity.genesis.evolution.aio import AsyncProgramDatabase
    from singularity.genesis.evolution.asker import LlmAsker
    from singularity.genesis.evolution.database import open_program_database
    from singularity.genesis.evolution.loop import EvolutionRun, prepare_run
    from singularity.genesis.sandbox import Sandbox, SandboxUnavailable
    from singularity.genesis.store import GenesisStore
    from singularity.postgres.connect import open_pool
    from singularity.postgres.topology import Database, Role
    from singularity.shared_queue import open_bus
    from singularity.shared_queue.install import require_bus

    sandbox = Sandbox(unsafe=settings.genesis_unsafe_sandbox)
    try:
        await sandbox.check()  # fails closed: no sandbox, no program is scored
    except SandboxUnavailable as exc:
        raise SingularityError(f"Genesis cannot sandbox code: {exc}") from None
    bus_endpoint = cluster.service(Role.GENESIS, Database.SHARED_QUEUE)
    await require_bus(bus_endpoint)
    database = AsyncProgramDatabase(
        await asyncio.to_thread(open_program_database, settings, db_url, config)
    )
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(database.close)
        bus = await stack.enter_async_context(
            open_bus(bus_endpoint, settings, name="evolve-bus", max_connections=4)
        )
        pool = await open_pool(
            cluster.service(Role.GENESIS, Database.GENESIS), name="evolve-db", max_size=4
        )
        stack.push_async_callback(pool.close)
        run_id = await prepare_run(database, problem)
        asker = LlmAsker(GenesisStore(pool), bus.publisher, run_id, timeout_s=llm_timeout_s)
        stop = asyncio.Event()
        answers = asyncio.create_task(asker.consumer(bus).run(stop), name="evolve-answers")
        stack.push_async_callback(_stopped, answers, stop)
        console.print(
            f"evolving [bold]{escape(problem.name)}[/] on {config.num_islands} islands "
            f"(run {run_id[:8]}); Ctrl-C stops, the same command resumes"
        )
        with _progress_bar(options.generations) as show:
            run = EvolutionRun(problem, database, asker, sandbox, options, show)
            return await run.run()


async def _stopped(task: asyncio.Task[None], stop: asyncio.Event) -> None:
    stop.set()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(task, 10)


@contextlib.contextmanager
def _progress_bar(generations: int) -> Iterator[Callable[[RunProgress], None]]:
    progress = Progress(
        TextColumn("generation"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("best [bold]{task.fields[best]}[/]"),
        TextColumn("spend [bold]${task.fields[spend]:.4f}[/]"),
        TextColumn("{task.fields[detail]}", style="dim"),
        TimeElapsedColumn(),
        console=err_console,
        disable=not err_console.is_terminal,  # no stray lines in logs and pipes
    )
    task = progress.add_task("evolve", total=generations, best="-", spend=0.0, detail="")

    def show(state: RunProgress) -> None:
        best = "-" if state.best_score is None else f"{state.best_score:.6g}"
        detail = f"{state.children} programs, {state.working} in progress"
        if state.failed:
            detail += f", {state.failed} failed"
        progress.update(
            task, completed=state.completed, best=best, spend=state.spend_usd, detail=detail
        )

    with progress:
        yield show


def _print_outcome(outcome: EvolutionOutcome) -> None:
    if outcome.stopped_by_budget:
        console.print(
            f"[yellow]budget reached[/]: ${outcome.spend_usd:.4f} spent; "
            f"{outcome.completed} of {outcome.generations} generations complete. "
            "Run again with a larger --budget to go on."
        )
    else:
        console.print(
            f"done: {outcome.completed} generations, ${outcome.spend_usd:.4f} spent on model calls"
        )
    best = outcome.best
    if best is None:
        console.print("no correct program yet")
        return
    console.print(
        f"best: program {best.id} (generation {best.generation}, island {best.island_idx}), "
        f"score [bold]{best.combined_score:.6g}[/]"
    )
