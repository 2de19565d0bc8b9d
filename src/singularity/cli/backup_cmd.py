"""`singularity backup ...`: dump every database now, list the backups, restore one."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import typer
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn
from rich.table import Table

from singularity.cli.common import console, err_console, load, run
from singularity.database import open_cluster
from singularity.errors import SingularityError, UsageError
from singularity.orchestrator.backup import (
    Backup,
    BackupKind,
    ProgressFn,
    backup_now,
    find_backup,
    human_size,
    list_backups,
    restore_backup,
    select_dumps,
)

app = typer.Typer(
    help="Back up every database (pg_dump), list the backups, restore one.",
    no_args_is_help=True,
)

# How long a command waits for a backup or restore running in another process.
_WAIT_S = 300.0


@contextlib.contextmanager
def _live(verb: str) -> Iterator[ProgressFn]:
    """A live line per database, updated as the work goes along."""
    with Progress(
        SpinnerColumn(finished_text="[green]✓[/]"),
        TextColumn("{task.description}"),
        TextColumn("[dim]{task.fields[state]}[/]"),
        console=err_console,
        transient=False,
    ) as progress:
        tasks: dict[str, TaskID] = {}

        def update(database: str, state: str) -> None:
            if database not in tasks:
                tasks[database] = progress.add_task(f"{verb} {database}", total=1, state="")
            finished = state.startswith(("done", "restored"))
            progress.update(tasks[database], state=state, completed=1 if finished else 0)

        yield update


@app.command("now")
def now(
    kind: BackupKind = typer.Option(
        BackupKind.HOURLY, "--kind", help="File it with the hourly or the daily backups."
    ),
) -> None:
    """Back up every database now (and apply the retention of its kind)."""
    settings = load()
    with open_cluster(settings) as cluster, _live("dump") as progress:
        backup, pruned = run(backup_now(cluster, settings, kind, progress=progress, wait_s=_WAIT_S))
    manifest = backup.manifest()
    console.print(
        f"[green]backed up[/] {len(manifest.databases)} database(s), "
        f"{human_size(manifest.bytes)} in {manifest.seconds:.1f}s: {backup.path}",
        soft_wrap=True,
    )
    if pruned:
        console.print(f"removed {len(pruned)} older {kind.value} backup(s)", style="dim")


@app.command("list")
def list_command(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """The backups, newest first."""
    settings = load()
    rows = [_describe(backup) for backup in list_backups(settings.backup_dir)]
    if as_json:
        console.print_json(json.dumps(rows))
        return
    if not rows:
        console.print(f"no backups yet in {settings.backup_dir}")
        return
    table = Table(title=f"Backups in {settings.backup_dir} (names of the databases: --json)")
    table.add_column("name", no_wrap=True, style="bold")
    table.add_column("kind", no_wrap=True)
    table.add_column("when (UTC)", no_wrap=True)
    table.add_column("databases", justify="right", no_wrap=True)
    table.add_column("size", justify="right", no_wrap=True)
    for row in rows:
        if row["error"]:
            databases, size = f"[red]{row['error']}[/]", "-"
        else:
            databases, size = str(len(row["databases"])), human_size(row["bytes"])
        when = row["taken_at"].replace("T", " ").removesuffix("+00:00")
        table.add_row(row["name"], row["kind"], when, databases, size)
    console.print(table)


def _describe(backup: Backup) -> dict[str, Any]:
    row: dict[str, Any] = {
        "name": backup.name,
        "kind": backup.kind.value,
        "taken_at": backup.taken_at.isoformat(),
        "path": str(backup.path),
        "databases": [],
        "bytes": 0,
        "seconds": None,
        "error": None,
    }
    try:
        manifest = backup.manifest()
    except SingularityError as exc:
        row["error"] = str(exc)
        return row
    row.update(
        databases=[d.name for d in manifest.databases],
        bytes=manifest.bytes,
        seconds=manifest.seconds,
    )
    return row


@app.command("restore")
def restore(
    name: str = typer.Argument(..., help="A backup, as `singularity backup list` shows it."),
    databases: list[str] = typer.Option(
        [], "--database", "-d", help="Restore only this database (repeatable); default: all."
    ),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Replace databases by their state in a backup (their sessions are ended)."""
    settings = load()
    backup = find_backup(settings.backup_dir, name)
    chosen = [d.name for d in select_dumps(backup, databases)]
    if not yes:
        _confirm(backup, chosen)
    with open_cluster(settings) as cluster, _live("restore") as progress:
        restored = run(restore_backup(cluster, backup, chosen, progress=progress, wait_s=_WAIT_S))
    console.print(
        f"[green]restored[/] {', '.join(restored)} from {backup.kind.value}/{backup.name}",
        soft_wrap=True,
    )


def _confirm(backup: Backup, databases: list[str]) -> None:
    if not sys.stdin.isatty():
        raise UsageError(
            "restore replaces databases and cannot ask for confirmation here (stdin is not "
            "a terminal): add --yes"
        )
    console.print(
        f"This replaces {', '.join(databases)} with {'its' if len(databases) == 1 else 'their'} "
        f"state of {backup.taken_at:%Y-%m-%d %H:%M:%S} UTC ({_ago(backup.taken_at)}); "
        "everything written since is lost and connected sessions are ended."
    )
    if not typer.confirm("Restore?", default=False):
        console.print("not restored")
        raise typer.Exit(1)


def _ago(when: datetime) -> str:
    seconds = int((datetime.now(UTC) - when).total_seconds())
    for unit, size in (("day", 86_400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'s' if count > 1 else ''} ago"
    return "just now"
