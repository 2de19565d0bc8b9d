"""The `singularity` command."""

from __future__ import annotations

import sys

import psycopg
import typer

from singularity.cli import (
    analytics_cmd,
    backup_cmd,
    config_cmd,
    db_cmd,
    demo_cmd,
    eval_cmd,
    evolve_cmd,
    genesis_cmd,
    knowledge_cmd,
    nexus_cmd,
    queue_cmd,
    service_cmd,
    status_cmd,
    task_cmd,
)
from singularity.cli.common import err_console
from singularity.errors import SingularityError
from singularity.postgres.connect import describe_error

__all__ = ["app", "main"]

app = typer.Typer(
    name="singularity",
    help="Run AI coding agents under human oversight.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("up")(service_cmd.up)
app.command("run")(service_cmd.run_service)
app.command("status")(status_cmd.status)
app.command("doctor")(status_cmd.doctor)
app.command("demo")(demo_cmd.demo)
app.add_typer(task_cmd.task_app, name="task")
app.command("tasks")(task_cmd.tasks)
app.command("agents")(task_cmd.agents)
app.command("eval")(eval_cmd.evaluate_suite)
app.command("evolve")(evolve_cmd.evolve)
app.add_typer(knowledge_cmd.app, name="knowledge")
app.add_typer(analytics_cmd.app, name="analytics")
app.add_typer(backup_cmd.app, name="backup")
app.add_typer(config_cmd.app, name="config")
app.add_typer(db_cmd.app, name="db")
app.add_typer(queue_cmd.app, name="queue")
app.add_typer(genesis_cmd.app, name="genesis")
app.add_typer(nexus_cmd.app, name="nexus")
app.add_typer(nexus_cmd.hitl_app, name="hitl")


def main(argv: list[str] | None = None) -> int:
    """Entry point: every failure a user can cause ends in one line on stderr, never a traceback."""
    try:
        result = app(args=argv, prog_name="singularity", standalone_mode=False)
    except typer.TyperException as exc:  # Typer's usage errors (it vendors click)
        message = exc.format_message().strip()
        if message:  # an empty message: Typer has shown the usage already (no arguments given)
            context = getattr(exc, "ctx", None)
            where = context.command_path if context is not None else "singularity"
            _fail(f"{message} (see `{where} --help`)")
        return exc.exit_code
    except typer.Exit as exc:
        return exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        err_console.print("interrupted")
        return 130
    except SingularityError as exc:
        _fail(str(exc))
        return exc.exit_code
    except psycopg.Error as exc:
        _fail(f"database error: {describe_error(exc)}")
        return 1
    return result if isinstance(result, int) else 0


def _fail(message: str) -> None:
    err_console.print(f"[red]error:[/] {message}", soft_wrap=True)


if __name__ == "__main__":
    sys.exit(main())


def run_main() -> None:
    """The console script."""
    sys.exit(main())
