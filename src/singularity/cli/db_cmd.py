"""`singularity db ...`"""

from __future__ import annotations

import json

import typer
from rich.table import Table

from singularity.bootstrap import BootstrapReport, bootstrap, migrate
from singularity.cli.common import console, err_console, load, run
from singularity.database import embedded_server, open_cluster
from singularity.errors import UsageError
from singularity.postgres.status import database_status
from singularity.postgres.topology import Database

app = typer.Typer(
    help="Create, migrate and inspect the platform's databases.", no_args_is_help=True
)


@app.command("init")
def init(
    without_pgvector: bool = typer.Option(
        False, "--without-pgvector", help="Accept a server without pgvector (no embeddings)."
    ),
    instance: int | None = typer.Option(
        None,
        "--instance",
        min=1,
        max=999,
        help="Also create Singularity instance N: its database singularity_N and its reply "
        "queues (llm_results_N, ...). Default: SINGULARITY_INSTANCE.",
    ),
) -> None:
    """Create (or repair) the databases, roles, pgmq, queues and grants; apply migrations."""
    settings = load()
    with open_cluster(settings) as cluster, err_console.status("bootstrapping") as status:
        report = run(
            bootstrap(
                cluster,
                require_vector=not without_pgvector,
                instances=[instance] if instance else [],
                progress=lambda step: status.update(step),
            )
        )
    print_report(report)


def print_report(report: BootstrapReport) -> None:
    created = report.created_databases + report.created_roles + report.created_queues
    console.print(
        f"[green]ready[/] in {report.seconds:.1f}s: pgmq {report.pgmq}, "
        f"pgvector {report.vector}, "
        f"{len(created)} object(s) created"
        + (f" ({', '.join(report.created_databases)})" if report.created_databases else "")
    )
    if len(report.instances) > 1:
        console.print(f"  singularity instances: {', '.join(map(str, report.instances))}")
    for result in report.migrations:
        if result.changed:
            console.print(f"  migrated {result.name}: {result.before} -> {result.after}")
    if report.vector == "missing":
        err_console.print("[yellow]warning:[/] pgvector is missing; knowledge search is disabled")


@app.command("migrate")
def migrate_command() -> None:
    """Apply pending migrations to every database."""
    settings = load()
    with open_cluster(settings) as cluster:
        results = run(migrate(cluster))
    for result in results:
        state = f"{result.before} -> {result.after}" if result.changed else "up to date"
        console.print(f"{result.name}: {state} (head {result.after or 'none'})")


@app.command("status")
def status(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Per database: reachable, migration head, size, table sizes, connections."""
    settings = load()
    with open_cluster(settings) as cluster:
        statuses = run(database_status(cluster))
    if as_json:
        console.print_json(json.dumps([s.as_dict() for s in statuses]))
        return
    table = Table(title="Databases")
    for column in ("database", "reachable", "migration", "size", "connections", "tables"):
        table.add_column(column)
    for s in statuses:
        migration = (s.migration or "none") + ("" if s.up_to_date else f" (head {s.head})")
        reachable = "[green]yes[/]" if s.reachable else f"[red]no[/]: {s.error}"
        connections = "-" if s.connections is None else str(s.connections)
        table.add_row(
            s.name, reachable, migration, _size(s.size_bytes), connections, str(len(s.tables))
        )
    console.print(table)
    largest = Table(title="Largest tables")
    for column in ("database", "table", "size"):
        largest.add_column(column)
    for s in statuses:
        for t in s.tables[:3]:
            largest.add_row(s.name, f"{t['schema']}.{t['table']}", _size(int(t["size_bytes"])))
    console.print(largest)


@app.command("url")
def url(
    database: str = typer.Argument(
        "singularity", help="One of: " + ", ".join(d.value for d in Database)
    ),
) -> None:
    """Print a libpq URL for a database (administrator), e.g. for psql."""
    try:
        target = Database(database)
    except ValueError:
        raise UsageError(
            f"unknown database {database!r}; choose one of: {', '.join(d.value for d in Database)}"
        ) from None
    settings = load()
    started = settings.embedded and embedded_server(settings).info() is None
    with open_cluster(settings, keep_running=True) as cluster:
        print(cluster.admin(target).url())
    if started:
        err_console.print(
            "started the embedded PostgreSQL; it runs until `singularity db stop`", style="dim"
        )


@app.command("start")
def start() -> None:
    """Start the embedded PostgreSQL and keep it running until `singularity db stop`."""
    settings = load()
    if not settings.embedded:
        raise UsageError("a database server is configured; the embedded server is not used")
    with open_cluster(settings, keep_running=True) as cluster:
        console.print(f"embedded PostgreSQL running: {cluster.maintenance(Database.SINGULARITY)}")


@app.command("stop")
def stop() -> None:
    """Stop the embedded PostgreSQL (processes still using it lose their connections)."""
    settings = load()
    if not settings.embedded:
        raise UsageError("a database server is configured; there is no embedded server to stop")
    server = embedded_server(settings)
    if server.info() is None:
        console.print("the embedded PostgreSQL is not running")
        return
    others = server.stop()
    console.print("stopped the embedded PostgreSQL")
    if others:
        err_console.print(
            f"[yellow]note:[/] it was still used by pid(s) {', '.join(map(str, others))}"
        )


def _size(size: int | None) -> str:
    if size is None:
        return "-"
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1024:
            return f"{size:.0f} {unit}"
        size = size / 1024  # type: ignore[assignment]
    return f"{size:.1f} TB"
