"""`singularity knowledge ...`: import, search, list, show and export knowledge artifacts."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.markup import escape
from rich.table import Table

from singularity.cli.common import console, err_console, load, run
from singularity.config import Settings
from singularity.database import open_cluster
from singularity.errors import UsageError
from singularity.orchestrator.knowledge import (
    Change,
    KnowledgeArtifact,
    KnowledgeHit,
    KnowledgeStore,
    embedder_from_settings,
    export_artifacts,
    import_artifacts,
)
from singularity.postgres.cluster import Cluster
from singularity.postgres.connect import open_pool
from singularity.postgres.topology import Database, Role

__all__ = ["app"]

app = typer.Typer(
    help="Knowledge artifacts: import files, search, export the proven ones for Git.",
    no_args_is_help=True,
)

T = TypeVar("T")

_TYPE_HELP = "Only artifacts of this type."


@contextlib.asynccontextmanager
async def _store(cluster: Cluster) -> AsyncIterator[KnowledgeStore]:
    """The knowledge store, connected as the singularity role."""
    endpoint = cluster.service(Role.SINGULARITY, Database.SINGULARITY)
    pool = await open_pool(endpoint, name="knowledge-cli", max_size=2)
    try:
        yield KnowledgeStore(pool)
    finally:
        await pool.close()


def _with_store(work: Callable[[KnowledgeStore, Settings], Awaitable[T]]) -> T:
    settings = load()
    with open_cluster(settings) as cluster:

        async def go() -> T:
            async with _store(cluster) as store:
                return await work(store, settings)

        return run(go())


@app.command("import")
def import_files(
    path: Path = typer.Argument(..., help="A directory of artifact files (*.json), or one file."),
) -> None:
    """Load artifact files; unchanged ones change nothing, bad ones are named and skipped."""

    async def work(store: KnowledgeStore, settings: Settings) -> Any:
        with err_console.status("reading artifact files") as status:
            return await import_artifacts(
                store, path, embedder=embedder_from_settings(settings), progress=status.update
            )

    report = _with_store(work)
    for failure in report.failures:
        err_console.print(f"[red]error:[/] {escape(str(failure))}", soft_wrap=True)
    counts = ", ".join(f"{report.count(change)} {change.value}" for change in Change)
    console.print(
        f"{report.loaded_files} of {report.files} files loaded: {counts}; "
        f"embeddings {escape(report.embeddings)}",
        soft_wrap=True,
    )
    if report.failures:
        raise typer.Exit(1)


@app.command("export")
def export_files(
    path: Path = typer.Argument(..., help="The directory to write to (created if missing)."),
    min_success_rate: float = typer.Option(
        0.8, "--min-success-rate", min=0.0, max=1.0, help="success_count / usage_count, at least."
    ),
    min_usage: int = typer.Option(1, "--min-usage", min=0, help="Uses, at least."),
    artifact_type: str | None = typer.Option(None, "--type", help=_TYPE_HELP),
) -> None:
    """Write proven artifacts to <DIR>/<type>/<artifact_id>@<version>.json, for review in Git."""
    report = _with_store(
        lambda store, _settings: export_artifacts(
            store,
            path,
            min_success_rate=min_success_rate,
            min_usage=min_usage,
            artifact_type=artifact_type,
        )
    )
    for written in report.written:
        console.print(f"wrote {escape(str(written))}", soft_wrap=True)
    console.print(
        f"{report.total} artifacts passed (success rate >= {min_success_rate:g}, "
        f"uses >= {min_usage}): {len(report.written)} written, "
        f"{len(report.unchanged)} unchanged in {escape(str(path))}",
        soft_wrap=True,
    )


@app.command("search")
def search(
    query: str = typer.Argument(..., help="What to look for, in words."),
    limit: int = typer.Option(5, "--limit", min=1, max=100, help="Hits to show, at most."),
    artifact_type: str | None = typer.Option(None, "--type", help=_TYPE_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """The artifacts that best match a query: full text, and vectors when configured."""
    if not query.strip():
        raise UsageError("the search query is empty")

    async def work(store: KnowledgeStore, settings: Settings) -> Any:
        return await store.search_detailed(
            query,
            limit=limit,
            embedder=embedder_from_settings(settings),
            artifact_type=artifact_type,
        )

    found = _with_store(work)
    if found.warning:
        err_console.print(f"[yellow]warning:[/] {escape(found.warning)}", soft_wrap=True)
    if as_json:
        console.print_json(json.dumps([_hit_json(hit) for hit in found.hits], default=str))
        return
    table = Table(title=f"Knowledge for {query!r} ({found.mode} search)")
    table.add_column("#", justify="right")
    table.add_column("artifact, and what it says", overflow="fold", ratio=1)
    table.add_column("score", justify="right")
    table.add_column("matched")
    table.add_column("uses", justify="right")
    table.add_column("success", justify="right")
    for place, hit in enumerate(found.hits, 1):
        name = escape(_name(hit.artifact_type, hit.artifact_id, hit.version))
        table.add_row(
            str(place),
            f"[bold]{name}[/]\n[dim]{escape(_preview(hit.content))}[/]",
            f"{hit.score:.3f}",
            hit.matched,
            str(hit.usage_count),
            _rate(hit.success_rate),
        )
    console.print(table)
    if not found.hits:
        console.print("no artifact matches", style="dim")


@app.command("list")
def list_artifacts(
    artifact_type: str | None = typer.Option(None, "--type", help=_TYPE_HELP),
    limit: int = typer.Option(100, "--limit", min=1, max=10_000, help="Rows, at most."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Artifacts by type, id and version, with their usage."""
    rows = _with_store(
        lambda store, _settings: store.artifacts(artifact_type=artifact_type, limit=limit)
    )
    if as_json:
        console.print_json(json.dumps([_artifact_json(row) for row in rows], default=str))
        return
    table = Table(title="Knowledge artifacts")
    table.add_column("id", justify="right")
    table.add_column("artifact", no_wrap=True, style="bold")
    table.add_column("uses", justify="right")
    table.add_column("success", justify="right")
    table.add_column("embedding", overflow="fold")
    table.add_column("updated", no_wrap=True)
    for row in rows:
        table.add_row(
            str(row.id),
            escape(_name(row.artifact_type, row.artifact_id, row.version)),
            str(row.usage_count),
            _rate(row.success_rate),
            escape(row.embedding_model or "-"),
            f"{row.updated_at:%Y-%m-%d %H:%M}",
        )
    console.print(table)


@app.command("show")
def show(
    artifact_type: str = typer.Argument(..., help="The artifact's type."),
    artifact_id: str = typer.Argument(..., help="The artifact's id."),
    version: str | None = typer.Option(None, "--version", help="One version (default: all)."),
) -> None:
    """One artifact as JSON: its content, content_raw and usage (every version unless named)."""
    rows = _with_store(lambda store, _settings: store.find(artifact_type, artifact_id, version))
    shown: Any = [_artifact_json(row) for row in rows]
    console.print_json(json.dumps(shown[0] if len(shown) == 1 else shown, default=str))


def _hit_json(hit: KnowledgeHit) -> dict[str, Any]:
    return {**dataclasses.asdict(hit), "success_rate": hit.success_rate}


def _artifact_json(row: KnowledgeArtifact) -> dict[str, Any]:
    return {**dataclasses.asdict(row), "success_rate": row.success_rate}


def _name(artifact_type: str, artifact_id: str, version: str) -> str:
    return f"{artifact_type}/{artifact_id}@{version}"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _preview(content: dict[str, Any], width: int = 80) -> str:
    """A line of the content: its description (or title, summary) if it has one, else JSON."""
    for key in ("description", "summary", "title", "name"):
        if isinstance(content.get(key), str):
            text = content[key]
            break
    else:
        text = json.dumps(content, ensure_ascii=False, sort_keys=True)
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
