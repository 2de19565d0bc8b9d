"""`singularity genesis evolution ...`: the program database of evolution runs."""

from __future__ import annotations

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn
from rich.table import Table

from singularity.cli.common import console, err_console, load

__all__ = ["DB_HELP", "app"]

app = typer.Typer(help="The program database of evolution runs.", no_args_is_help=True)

DB_HELP = (
    "The run's database (sqlite:///PATH or postgresql://...); default: GENESIS_DATABASE_URL, "
    "else evolution.db in the genesis data directory."
)


@app.command("migrate")
def migrate(
    source: str = typer.Option(..., "--from", help="The run to copy, e.g. sqlite:///run.db."),
    target: str = typer.Option(..., "--to", help="Where to copy it, e.g. postgresql://..."),
) -> None:
    """Copy a whole run to another database, verify counts and checksums; safe to re-run."""
    load()
    tasks: dict[str, TaskID] = {}
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=err_console,
        transient=True,
        disable=not err_console.is_terminal,  # no stray blank line in logs and pipes
    ) as progress:

        def report(table: str, done: int, total: int) -> None:
            if table not in tasks:
                tasks[table] = progress.add_task(table, total=total)
            progress.update(tasks[table], completed=done, total=total)

        from singularity.genesis.evolution import copy_run  # SQLAlchemy and numpy: 0.3 s

        reports = copy_run(source, target, report)
    shown = Table("table", "rows", "copied", "updated", "checksum (sha256)")
    for item in reports:
        shown.add_row(
            item.table, str(item.rows), str(item.inserted), str(item.updated), item.checksum[:16]
        )
    console.print(shown)
    copied = sum(item.inserted + item.updated for item in reports)
    console.print(f"verified: row counts and checksums agree ({copied} rows written)")


@app.command("stats")
def stats(db: str | None = typer.Option(None, "--db", help=DB_HELP)) -> None:
    """Programs per island, the archive's size, the best program."""
    settings = load()
    from singularity.genesis.evolution import open_program_database, resolve_target

    target = resolve_target(settings, db)
    database = open_program_database(settings, db)
    try:
        sizes = database.island_sizes()
        best = database.best()
        archived = len(database.archive_ids())
        last = database.get_metadata("last_generation")
    finally:
        database.close()
    console.print(f"database: {escape(target.url.render_as_string(hide_password=True))}")
    shown = Table("island", "programs")
    for island, size in sizes.items():
        shown.add_row(str(island), str(size))
    console.print(shown)
    console.print(f"archive: {archived}   last generation: {last if last is not None else '-'}")
    if best is not None:
        console.print(f"best: {best.id} (score {best.combined_score:g}, island {best.island_idx})")
