"""`singularity status` (what runs, what waits) and `singularity doctor` (what is wrong, and
how to fix it)."""

from __future__ import annotations

import json

import typer
from rich.markup import escape
from rich.table import Table

from singularity.cli.common import console, load, run
from singularity.database import open_cluster
from singularity.diagnostics import dead_letter_total, platform_status, run_checks
from singularity.shared_queue.catalog import DLQ_SUFFIX

__all__ = ["doctor", "status"]

_MARK = {"ok": "[green]  ok[/]", "warn": "[yellow]warn[/]", "fail": "[red]fail[/]"}


def status(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """The services running (on any host), queue depths, dead letters, pending decisions."""
    settings = load()
    from singularity.nexus.service import ui_address
    from singularity.nexus.token import ui_token

    with open_cluster(settings) as cluster:
        found = run(platform_status(cluster))
    ui = f"{ui_address(settings)}/?token={ui_token(settings)}"
    if as_json:
        console.print_json(json.dumps({**found.as_dict(), "ui": ui}, default=str))
        raise typer.Exit(0 if found.reachable else 1)
    if not found.reachable:
        console.print(f"database [red]unreachable[/]: {escape(found.error or '')}")
        console.print("fix: `singularity doctor` says what to do")
        raise typer.Exit(1)
    console.print(f"[bold]database[/] {escape(found.database)}")
    if found.services:
        services = Table("service", "host", "pid", "since", title="Running services")
        for item in found.services:
            since = item["since"].strftime("%Y-%m-%d %H:%M:%S") if item["since"] else "-"
            services.add_row(item["service"], item["host"], str(item["pid"]), since)
        console.print(services)
    else:
        console.print("[yellow]no service is running[/]: start them with `singularity up`")
    queues = Table("queue", "depth", "oldest", title="Queues")
    for item in found.queues:
        dead = item["queue"].endswith(DLQ_SUFFIX)
        if dead and not item["length"]:
            continue  # empty dead-letter queues say nothing
        age = "-" if item["oldest_age_s"] is None else f"{item['oldest_age_s']} s"
        name = f"[red]{item['queue']}[/]" if dead else item["queue"]
        queues.add_row(name, str(item["length"]), age)
    console.print(queues)
    dead_letters = dead_letter_total(found.queues)
    if dead_letters:
        console.print(f"[red]{dead_letters} dead letters[/]: `singularity queue dlq list`")
    console.print(
        f"pending: {found.pending_approvals or 0} approvals, "
        f"{found.pending_questions or 0} questions; web UI [cyan]{ui}[/]"
    )


def doctor(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Check everything the platform needs; say how to fix what is wrong (exit 1 if any)."""
    settings = load()
    with open_cluster(settings) as cluster:
        checks = run(run_checks(settings, cluster))
    failed = [c for c in checks if c.verdict == "fail"]
    if as_json:
        console.print_json(json.dumps([c.as_dict() for c in checks]))
    else:
        width = max(len(c.name) for c in checks)
        for check in checks:
            console.print(f"{_MARK[check.verdict]}  {check.name:<{width}}  {escape(check.detail)}")
            if check.fix and check.verdict != "ok":
                console.print(f"      {'':<{width}}  fix: [cyan]{escape(check.fix)}[/]")
        warned = sum(c.verdict == "warn" for c in checks)
        console.print(
            f"{len(failed)} to fix, {warned} warnings"
            if failed or warned
            else "[green]everything is in order[/]"
        )
    if failed:
        raise typer.Exit(1)
