"""`singularity analytics`: what the bus's archives say, and what CentralCloud has learned."""

from __future__ import annotations

import typer

from singularity.centralcloud.analytics import check_days
from singularity.centralcloud.commands import analytics_report, learned_patterns
from singularity.centralcloud.render import render_patterns, render_report
from singularity.cli.common import console, err_console, load, run
from singularity.database import open_cluster

app = typer.Typer(
    help="Analytics over the bus's archives, and the patterns learned from them.",
    invoke_without_command=True,
)


@app.callback()
def analytics(
    ctx: typer.Context,
    since: int = typer.Option(7, "--since", help="How many days back to look (from 1)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """LLM requests, approvals and code runs of the last days (read-only, from the archives)."""
    if ctx.invoked_subcommand is not None:
        return
    check_days(since)
    settings = load()
    with open_cluster(settings) as cluster, err_console.status("reading the archives"):
        report, _ = run(analytics_report(cluster, since))
    if as_json:
        console.print_json(report.model_dump_json())
    else:
        console.print(render_report(report))


@app.command("patterns")
def patterns(
    learn: bool = typer.Option(
        True, "--learn/--no-learn", help="Learn from what is new in the archives first."
    ),
    limit: int = typer.Option(
        20, "--limit", min=1, max=1000, help="Libraries to show per language."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the patterns as JSON."),
) -> None:
    """Which models' answers became approved, passing changes; libraries used per language."""
    settings = load()
    with open_cluster(settings) as cluster, err_console.status("learning from the archives"):
        counts, found = run(learned_patterns(cluster, learn=learn, libraries_per_language=limit))
    if as_json:
        console.print_json(found.model_dump_json())
        return
    console.print(render_patterns(found))
    if counts is not None and counts.messages:
        console.print(f"[dim]learned from {counts.messages} new archived messages[/]")
