"""`singularity genesis ...`: the sandbox, code runs and experiments, from a terminal."""

from __future__ import annotations

import contextlib
import json
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.markup import escape
from rich.table import Table

from singularity.cli import evolution_cmd, genesis_env_cmd
from singularity.cli.common import console, err_console, load, run, shown
from singularity.config import Settings
from singularity.database import open_cluster
from singularity.errors import SingularityError, UsageError
from singularity.genesis.environments import Environments
from singularity.genesis.experiments.lab import Lab, Trial
from singularity.genesis.jobs.execution import JobSpec, Mode, Status, execute
from singularity.genesis.jobs.languages import LANGUAGES
from singularity.genesis.limits import DEFAULT_LIMITS, Limits, limits_from_request
from singularity.genesis.sandbox import Sandbox, SandboxUnavailable
from singularity.genesis.store import GenesisStore
from singularity.genesis.workspaces.repositories import RepositoryPolicy
from singularity.postgres.connect import open_pool
from singularity.postgres.topology import Database, Role

app = typer.Typer(help="Sandboxed code runs and experiments.", no_args_is_help=True)
app.add_typer(evolution_cmd.app, name="evolution")
app.add_typer(genesis_env_cmd.app, name="env")

T = TypeVar("T")

_LIMITS_HELP = 'Limits as JSON, e.g. \'{"wall_s": 5, "memory_mb": 256}\'.'


def _sandbox(settings: Settings) -> Sandbox:
    return Sandbox(unsafe=settings.genesis_unsafe_sandbox)


async def _checked(sandbox: Sandbox) -> Sandbox:
    try:
        await sandbox.check()
    except SandboxUnavailable as exc:
        raise SingularityError(f"cannot sandbox code: {exc}") from None
    return sandbox


def _limits(text: str | None) -> Limits:
    if text is None:
        return DEFAULT_LIMITS
    try:
        values = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"--limits is not JSON: {exc.msg}") from None
    if not isinstance(values, dict):
        raise UsageError("--limits must be a JSON object")
    try:
        return limits_from_request(values)
    except ValueError as exc:
        raise UsageError(f"--limits: {exc}") from None


@app.command("check")
def check() -> None:
    """Show whether code can be sandboxed here, and which languages are available."""
    settings = load()
    run(_checked(_sandbox(settings)))
    mode = "[red]UNSAFE: no isolation[/]" if settings.genesis_unsafe_sandbox else "bubblewrap"
    console.print(f"sandbox: [green]ready[/] ({mode})")
    table = Table(title="Languages")
    for column in ("language", "check", "lint", "test", "available"):
        table.add_column(column)
    for name, language in sorted(LANGUAGES.items()):
        missing = language.missing()
        table.add_row(
            name,
            "yes" if language.check else "-",
            "yes" if language.lint else "-",
            "yes" if language.test else "-",
            "[green]yes[/]" if missing is None else f"[dim]{escape(missing)}[/]",
        )
    console.print(table)


@app.command("run")
def run_code(
    source: Path = typer.Argument(..., help="The file to run (- for standard input)."),
    language: str = typer.Option(..., "--language", "-l", help=", ".join(sorted(LANGUAGES))),
    mode: str = typer.Option("run", "--mode", help="check, lint, run or test."),
    stdin: Path | None = typer.Option(None, "--stdin", help="A file to feed as standard input."),
    limits: str | None = typer.Option(None, "--limits", help=_LIMITS_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Run code in the sandbox here, as a Genesis worker would (nothing is recorded)."""
    if mode not in {m.value for m in Mode}:
        raise UsageError("--mode must be check, lint, run or test")
    code = sys.stdin.buffer.read().decode("utf-8") if str(source) == "-" else _read(source)
    spec = JobSpec(
        language=language,
        code=code,
        mode=Mode(mode),
        stdin=_read(stdin) if stdin else None,
        limits=_limits(limits),
    )
    settings = load()

    async def go() -> Any:
        return await execute(spec, await _checked(_sandbox(settings)))

    with err_console.status(f"running {language} ({mode}) in the sandbox"):
        execution = run(go())
    if as_json:
        console.print_json(json.dumps({**execution.to_dict(), "steps": list(execution.steps)}))
    else:
        if execution.output:
            console.print(execution.output, end="", markup=False, highlight=False)
        if execution.error:
            err_console.print(execution.error, end="", markup=False, highlight=False)
        colour = "green" if execution.status is Status.OK else "red"
        err_console.print(
            f"[{colour}]{execution.status.value}[/] exit {execution.exit_code} · "
            f"{execution.wall_ms:.0f} ms wall · {execution.cpu_ms:.0f} ms cpu · "
            f"{execution.max_rss_kb} KiB max rss"
            + (" · output truncated" if execution.truncated else "")
        )
    if execution.status is not Status.OK:
        raise typer.Exit(1)


def _read(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8")  # as it is: a diff's \r\n must survive
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {str(path)!r}: {exc}") from None


# -- experiments ---------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _lab(settings: Settings, cluster: Any, sandbox: Sandbox | None) -> AsyncIterator[Lab]:
    """A lab recording in the genesis database, as the genesis role."""
    pool = await open_pool(
        cluster.service(Role.GENESIS, Database.GENESIS), name="genesis-cli", max_size=2
    )
    environments = None
    if not settings.genesis_unsafe_sandbox:  # environments need bubblewrap's isolation
        environments = Environments.from_settings(settings)
    try:
        yield Lab(
            sandbox or _sandbox(settings),
            GenesisStore(pool),
            settings.genesis_dir / "workspaces",
            unsafe=settings.genesis_unsafe_sandbox,
            policy=RepositoryPolicy.from_settings(settings),
            environments=environments,
        )
    finally:
        if environments is not None:
            await environments.aclose()
        await pool.close()


def _with_lab(work: Callable[[Lab], Awaitable[T]], *, sandboxed: bool = False) -> T:
    settings = load()
    with open_cluster(settings) as cluster:

        async def go() -> T:
            sandbox = await _checked(_sandbox(settings)) if sandboxed else None
            async with _lab(settings, cluster, sandbox) as lab:
                return await work(lab)

        return run(go())


@app.command("experiment")
def experiment(
    repo: Path = typer.Option(..., "--repo", help="The repository to try the change on."),
    diff: Path = typer.Option(..., "--diff", help="The unified diff (- for standard input)."),
    test: str = typer.Option(..., "--test", help='The test command, e.g. "python3 -m pytest".'),
    junit: str | None = typer.Option(
        None, "--junit", help="A JUnit XML report the test command writes (path in the repo)."
    ),
    llm_reduction: float = typer.Option(
        0.0, "--llm-reduction", min=0, max=1, help="Share of LLM calls the change saves."
    ),
    apply: bool = typer.Option(
        False, "--apply", help="Apply the diff to the repository when the verdict is a merge."
    ),
    limits: str | None = typer.Option(None, "--limits", help=_LIMITS_HELP),
    setup: str | None = typer.Option(
        None,
        "--setup",
        help='The step that installs the repository\'s dependencies, e.g. "pip install -e ." '
        "(default: what the repository declares, or recognised from its files).",
    ),
    no_setup: bool = typer.Option(False, "--no-setup", help="Install nothing before the tests."),
    as_json: bool = typer.Option(False, "--json", help="Print the outcome as JSON."),
) -> None:
    """Try a diff on a copy of a repository: tests before and after, and a recommendation."""
    if not repo.is_dir():
        raise UsageError(f"--repo {str(repo)!r} is not a directory")
    if setup is not None and no_setup:
        raise UsageError("--setup and --no-setup exclude each other")
    if setup is not None and not setup.strip():
        raise UsageError("--setup is empty: give the step's commands, or --no-setup")
    trial = Trial(
        id=f"exp-{uuid.uuid4().hex[:12]}",
        repo=repo.resolve(),
        diff=sys.stdin.buffer.read().decode("utf-8") if str(diff) == "-" else _read(diff),
        test_command=test,
        limits=_limits(limits),
        llm_reduction=llm_reduction,
        junit_path=junit,
        agent_id="cli",
        setup=False if no_setup else setup,
    )

    async def work(lab: Lab) -> tuple[dict[str, Any], list[str] | None]:
        with err_console.status("starting the experiment") as status:
            outcome = await lab.conduct(trial, progress=status.update)
        applied = None
        if apply and outcome.get("recommendation") in ("merge", "merge_with_adaptations"):
            applied = await lab.apply(trial.id)
        return outcome, applied

    outcome, applied = _with_lab(work, sandboxed=True)
    if as_json:
        console.print_json(json.dumps({"id": trial.id, **outcome, "applied": applied}))
        return
    _print_outcome(trial.id, outcome)
    if applied is not None:
        console.print(
            f"applied to {repo} ({len(applied)} files); undo with "
            f"[cyan]singularity genesis rollback {trial.id}[/]"
        )
    elif apply:
        console.print("[yellow]not applied[/]: the recommendation is not a merge")


def _print_outcome(experiment_id: str, outcome: dict[str, Any]) -> None:
    table = Table(title=f"Experiment {experiment_id}", show_header=True)
    table.add_column("")
    table.add_column("passed", justify="right")
    table.add_column("total", justify="right")
    table.add_column("success", justify="right")
    table.add_column("wall", justify="right")
    table.add_column("counts from")  # what the code under test could forge, or not
    for phase in ("baseline", "candidate"):
        tests = outcome.get(phase)
        if tests:
            table.add_row(
                phase,
                str(tests.get("passed")),
                str(tests.get("total")),
                f"{tests.get('success_rate', 0):.2f}",
                f"{tests.get('wall_ms', 0):.0f} ms",
                f"{tests.get('basis', '-')} (exit {tests.get('exit_code')})",
            )
    _print_environment(outcome.get("environment"))
    console.print(table)
    if outcome.get("error"):
        console.print(f"[red]{escape(str(outcome['error']))}[/]")
    for warning in outcome.get("warnings") or ():
        console.print(f"[yellow]warning[/]: {escape(str(warning))}")
    verdict = outcome.get("recommendation")
    colour = {"merge": "green", "merge_with_adaptations": "yellow"}.get(str(verdict), "red")
    console.print(
        f"status {outcome.get('status')} · success {_rate(outcome.get('success_rate'))} · "
        f"regression {_rate(outcome.get('regression'))} · "
        f"recommendation [{colour}]{verdict}[/]"
        + ("" if outcome.get("rule") is None else f" (rule {outcome['rule']})")
    )


def _print_environment(environment: dict[str, Any] | None) -> None:
    """The setup step the runs had (or the one that failed, with its last output)."""
    if not environment:
        return
    if environment.get("step"):
        cached = " [dim](from the cache)[/]" if environment.get("cached") else ""
        console.print(f"environment: {shown(str(environment['step']))}{cached}")
    setup = environment.get("setup") or {}
    if environment.get("cached") is None and setup:  # the step that failed: show its end
        for stream in ("stdout_tail", "stderr_tail"):
            tail = str(setup.get(stream) or "").strip()
            if tail:
                lines = tail.splitlines()[-20:]
                console.print(f"[dim]setup {stream.removesuffix('_tail')}:[/]")
                console.print(shown("\n".join(lines)))


def _rate(value: Any) -> str:
    return "-" if value is None else f"{float(value):.2f}"


@app.command("experiments")
def list_experiments(
    limit: int = typer.Option(20, "--limit", min=1, max=1000),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """The latest experiments, newest first."""
    rows = _with_lab(lambda lab: lab.store.experiments(limit=limit))
    if as_json:
        console.print_json(json.dumps(rows, default=str))
        return
    table = Table(title="Experiments")
    for column in ("id", "repo", "status", "recommendation", "success", "regression", "state"):
        table.add_column(column, overflow="fold")
    for row in rows:
        state = "rolled back" if row["rolled_back_at"] else "applied" if row["applied_at"] else ""
        table.add_row(
            row["id"],
            escape(row["repo"]),
            row["status"],
            row["recommendation"] or "-",
            _rate(row["success_rate"]),
            _rate(row["regression"]),
            state,
        )
    console.print(table)


@app.command("show")
def show(experiment_id: str = typer.Argument(..., help="The experiment's id.")) -> None:
    """One experiment: its outcome, metrics and rollbacks, as JSON."""
    found = _with_lab(lambda lab: lab.store.experiment(experiment_id))
    console.print_json(json.dumps(found, default=str))


@app.command("apply")
def apply_experiment(experiment_id: str = typer.Argument(..., help="The experiment's id.")) -> None:
    """Apply an experiment's diff to its repository, recording the baseline for rollback."""
    touched = _with_lab(lambda lab: lab.apply(experiment_id))
    console.print(f"applied: {', '.join(touched)}")


@app.command("rollback")
def rollback(
    experiment_id: str = typer.Argument(..., help="The experiment's id."),
    reason: str = typer.Option("requested", "--reason", help="Why, for the record."),
) -> None:
    """Restore the baseline recorded when the experiment was applied."""
    restored = _with_lab(lambda lab: lab.rollback(experiment_id, reason))
    console.print(f"restored: {', '.join(restored) or 'nothing'}")
