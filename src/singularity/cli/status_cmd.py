"""`singularity status` (what runs, what waits) and `singularity doctor` (what is wrong, and
how to fix it)."""

from __future__ import annotations

import json

import typer
from rich.markup import escape

from singularity.cli.common import console, load, run
from singularity.cli.status_view import status_renderables
from singularity.database import open_cluster
from singularity.diagnostics import platform_status, run_checks

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
    for renderable in status_renderables(found, ui):
        console.print(renderable)


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
