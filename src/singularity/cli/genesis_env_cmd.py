"""`singularity genesis env ...`: the cached environment layers of this worker host."""

from __future__ import annotations

import datetime

import typer
from rich.table import Table

from singularity.cli.common import console, err_console, load, shown
from singularity.errors import UsageError
from singularity.genesis.environments import EnvironmentCache, LayerInfo

app = typer.Typer(help="Cached environments (installed dependencies).", no_args_is_help=True)

_DAY_S = 86_400.0


@app.command("list")
def list_layers() -> None:
    """Show each cached environment: its step, size, last use and the repositories using it."""
    cache = EnvironmentCache.from_settings(load())
    entries = cache.entries()
    if not entries:
        console.print(f"no cached environments in {shown(str(cache.root))}")
        return
    table = Table(
        title=f"Environments ({_mib(sum(i.size_bytes for i in entries))} of "
        f"{_mib(cache.max_bytes)})"
    )
    for column in ("key", "step", "size", "last used", "uses", "repositories"):
        table.add_column(column)
    for info in reversed(entries):  # most recently used first
        table.add_row(*_row(info))
    console.print(table)


@app.command("prune")
def prune(
    every: bool = typer.Option(False, "--all", help="Remove every environment not in use."),
    older_than: float | None = typer.Option(
        None, "--older-than", help="Remove those unused for this many days.", min=0
    ),
) -> None:
    """Remove cached environments (never one a run is using); they are rebuilt when needed."""
    if every == (older_than is not None):
        raise UsageError("give either --all or --older-than DAYS")
    cache = EnvironmentCache.from_settings(load())
    removed, busy = cache.prune(older_than_s=None if every else (older_than or 0) * _DAY_S)
    console.print(f"removed {len(removed)} environment(s)")
    if busy:
        err_console.print(f"{len(busy)} in use, kept: {', '.join(k[:12] for k in busy)}")


def _row(info: LayerInfo) -> list[str]:
    used = datetime.datetime.fromtimestamp(info.last_used).strftime("%Y-%m-%d %H:%M")
    return [
        info.key[:12],
        shown(info.description),
        _mib(info.size_bytes),
        used,
        str(info.uses),
        shown(", ".join(info.repositories)),
    ]


def _mib(size: int) -> str:
    return f"{size / (1 << 20):.1f} MiB"
