"""`singularity config ...`"""

from __future__ import annotations

import json

import typer
from rich.table import Table

from singularity.cli.common import console, load

app = typer.Typer(help="Show the configuration.", no_args_is_help=True)


@app.command("show")
def show(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Print the effective settings (environment, then .env, then defaults), secrets masked."""
    settings = load()
    values = settings.masked()
    mode = "embedded" if settings.embedded else "external"
    if as_json:
        console.print_json(json.dumps({"database_mode": mode, "settings": values}, default=str))
        return
    table = Table(title=f"Singularity settings (database: {mode})", show_lines=False)
    table.add_column("variable", style="bold")
    table.add_column("value")
    for name, value in values.items():
        table.add_row(name, "" if value is None else str(value))
    console.print(table)
    if settings.embedded:
        console.print(f"Embedded PostgreSQL data directory: {settings.pgdata}")
