"""`singularity up` and `singularity run SERVICE`."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable

import typer
from rich.live import Live
from rich.panel import Panel

from singularity.bootstrap import bootstrap
from singularity.cli.common import console, err_console, load
from singularity.cli.db_cmd import print_report
from singularity.cli.status_view import LiveStatus
from singularity.config import Settings
from singularity.database import open_cluster
from singularity.nexus.service import ui_address
from singularity.nexus.token import ui_token
from singularity.postgres.cluster import Cluster
from singularity.postgres.topology import Database
from singularity.service_context import Service, ServiceContext, run_services
from singularity.services import RUN_ONLY, SERVICES, resolve_services
from singularity.shared_queue import QUEUES


def up(
    without_pgvector: bool = typer.Option(
        False, "--without-pgvector", help="Accept a server without pgvector (no embeddings)."
    ),
    live: bool | None = typer.Option(
        None,
        "--live/--no-live",
        help="A live status view (services, queues, pending decisions) below the logs; "
        "the default when the output is a terminal.",
    ),
) -> None:
    """Set up everything and run every service in this process, until Ctrl-C."""
    settings = load(service=True)
    services = resolve_services(list(SERVICES))
    with open_cluster(settings) as cluster:
        with err_console.status("bootstrapping") as status:
            report = asyncio.run(
                bootstrap(cluster, require_vector=not without_pgvector, progress=status.update)
            )
        print_report(report)
        if live if live is not None else console.is_terminal:
            board = LiveStatus(cluster, _sign_in(settings), lambda: _facts(settings, cluster))
            # Log lines written to stderr are printed above the view instead of through it.
            with Live(board, console=console, refresh_per_second=2, redirect_stderr=True):
                _serve(settings, cluster, services, beside=board.follow)
        else:
            console.print(_welcome(settings, cluster, services))
            _serve(settings, cluster, services)
    console.print("stopped")


def run_service(
    service: str = typer.Argument(
        ..., help="The service: " + ", ".join(sorted({**SERVICES, **RUN_ONLY}))
    ),
) -> None:
    """Run one service alone (scale out by running more of them, anywhere)."""
    services = resolve_services([service])
    settings = load(service=True)
    with open_cluster(settings) as cluster:
        _serve(settings, cluster, services, alone=True)


def _serve(
    settings: Settings,
    cluster: Cluster,
    services: list[Service],
    *,
    alone: bool = False,
    beside: Callable[[asyncio.Event], Awaitable[None]] | None = None,
) -> None:
    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_signal() -> None:
            if stop.is_set():
                os._exit(130)  # a second Ctrl-C: the user insists
            err_console.print("stopping (Ctrl-C again to force)", style="dim")
            stop.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal)
        extra = [asyncio.create_task(beside(stop), name="beside")] if beside else []
        try:
            await run_services(services, ServiceContext(settings, cluster, alone), stop)
        finally:
            stop.set()
            await asyncio.gather(*extra, return_exceptions=True)

    asyncio.run(main())


def _sign_in(settings: Settings) -> str:
    return f"{ui_address(settings)}/?token={ui_token(settings)}"


def _facts(settings: Settings, cluster: Cluster) -> list[str]:
    """Where everything is: the head of the welcome panel and of the live view."""
    if cluster.embedded:
        where = f"embedded PostgreSQL 16 in {settings.pgdata}"
    else:
        where = str(cluster.maintenance(Database.SHARED_QUEUE))
    return [
        f"[bold]web UI[/]     [cyan]{_sign_in(settings)}[/]",
        f"            (the address signs the browser in; token {ui_token(settings)})",
        f"[bold]database[/]   {where}",
        f"[bold]bus[/]        database {cluster.database_name(Database.SHARED_QUEUE)}: "
        f"{len(QUEUES)} queues, each with a dead-letter queue",
        f"[bold]home[/]       {settings.singularity_home}",
    ]


def _welcome(settings: Settings, cluster: Cluster, services: list[Service]) -> Panel:
    lines = [
        *_facts(settings, cluster),
        f"[bold]services[/]   {', '.join(s.name for s in services)}",
        "",
        'psql:   [cyan]psql "$(singularity db url nexus)"[/]',
        "queues: [cyan]singularity queue metrics[/]",
        'ask:    [cyan]singularity nexus ask "Explain pgmq in one line"[/]',
        "review: [cyan]singularity hitl list[/]",
        "code:   [cyan]singularity genesis check[/]",
        'task:   [cyan]singularity task "Add a docstring to add()" --repo PATH[/]',
        "Press [bold]Ctrl-C[/] to stop.",
    ]
    return Panel("\n".join(lines), title="Singularity is running", expand=False)
