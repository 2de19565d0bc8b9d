"""`singularity nexus ...` (the router and the UI) and `singularity hitl ...` (reviewing on a
terminal: the same records, metrics and answers as the buttons of the web UI)."""

from __future__ import annotations

import contextlib
import functools
import getpass
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import typer
from rich.markup import escape
from rich.syntax import Syntax
from rich.table import Table

from singularity.cli.common import console, err_console, load, run, shown
from singularity.config import Settings
from singularity.database import embedded_server, open_cluster
from singularity.errors import SingularityError, UsageError
from singularity.nexus.hitl import Hitl
from singularity.nexus.models_view import describe_models
from singularity.nexus.providers import CONFIGURE_A_PROVIDER, Providers
from singularity.nexus.registry import load_registry
from singularity.nexus.service import ui_address
from singularity.nexus.token import ui_token
from singularity.postgres.cluster import Cluster
from singularity.postgres.connect import async_connection, open_pool
from singularity.postgres.topology import Database, Role
from singularity.shared_queue import (
    LlmRequest,
    LlmResult,
    Publisher,
    ReplyTargets,
    Requester,
    Route,
)
from singularity.shared_queue.private_replies import private_replies
from singularity.shared_queue.publisher import send_message
from singularity.text_safety import escape_hidden, warning

app = typer.Typer(help="The LLM router and the web UI.", no_args_is_help=True)
hitl_app = typer.Typer(
    help="Review approvals and answer questions from a terminal.", no_args_is_help=True
)


# -- nexus ---------------------------------------------------------------------------------


@app.command("models")
def models(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """The model registry: which models have credentials, their prices, where they are used."""
    settings = load()
    registry = load_registry(settings)
    rows = describe_models(registry, Providers(settings))
    if as_json:
        console.print_json(json.dumps({"sources": registry.sources, "models": rows}))
        return
    table = Table(title="Models (" + " + ".join(registry.sources) + ")")
    table.add_column("model", no_wrap=True, style="bold")
    table.add_column("provider", no_wrap=True)
    table.add_column("context", justify="right")
    table.add_column("$/M in", justify="right")
    table.add_column("$/M out", justify="right")
    table.add_column("key")
    table.add_column("price", overflow="fold")
    for row in rows:
        price = row["price"]
        table.add_row(
            row["name"],
            row["provider"],
            f"{row['context_window'] // 1000}k",
            _usd(row["input_usd_per_mtok"]),
            _usd(row["output_usd_per_mtok"]),
            "[green]yes[/]" if row["credentials"] else "[dim]no[/]",
            price if price in ("registry", "litellm") else f"[red]{escape(price)}[/]",
        )
    console.print(table)
    callable_models = {row["name"] for row in rows if row["credentials"]}
    console.print("[bold]Candidates, in the order they are tried[/] (callable ones in green):")
    rules = [(str(t), n) for t, n in registry.tiers.items()] + [
        (f"{task}.{tier}", names)
        for task, by_tier in registry.task_types.items()
        for tier, names in by_tier.items()
    ]
    for rule, names in rules:
        shown = [f"[green]{n}[/]" if n in callable_models else f"[dim]{n}[/]" for n in names]
        console.print(f"  {rule}: " + ", ".join(shown))
    if not any(row["credentials"] for row in rows):
        console.print(f"No provider is configured: {CONFIGURE_A_PROVIDER}.")


@app.command("token")
def token(
    url: bool = typer.Option(False, "--url", help="Print the sign-in address instead."),
) -> None:
    """Print the web UI's access token (generated on first use)."""
    settings = load()
    value = ui_token(settings)
    console.print(f"{ui_address(settings)}/?token={value}" if url else value, soft_wrap=True)


@app.command("ask")
def ask(
    prompt: str = typer.Argument(..., help="What to ask."),
    task_type: str = typer.Option("chat", "--task-type", help="Picks the tier and the models."),
    agent: str = typer.Option("cli", "--agent", help="The agent the request is recorded for."),
    complexity: str | None = typer.Option(
        None, "--complexity", help="simple, medium or complex (overrides the task type's tier)."
    ),
    timeout: float = typer.Option(120.0, "--timeout", min=1, help="Seconds to wait for Nexus."),
    as_json: bool = typer.Option(False, "--json", help="Print the result message as JSON."),
) -> None:
    """Send one request through the queue to a running Nexus and print its answer."""
    if complexity is not None and complexity not in ("simple", "medium", "complex"):
        raise UsageError("--complexity must be simple, medium or complex")
    settings = load()
    if settings.embedded and not embedded_server(settings).users():
        raise SingularityError(
            "Nexus is not running: start the platform with `singularity up` (in another terminal)"
        )
    with open_cluster(settings) as cluster:
        result, elapsed = run(_ask(cluster, prompt, task_type, agent, complexity, timeout))
    if as_json:
        console.print_json(json.dumps(result))
        return
    error = result.get("error")
    if error:
        raise SingularityError(f"{error.get('code')}: {error.get('message')}")
    console.print(result.get("result") or "", soft_wrap=True, markup=False)
    usage = result.get("usage") or {}
    cost = result.get("cost_usd")
    console.print(
        f"[dim]model {result.get('model')} · {result.get('tier')} tier · "
        f"{usage.get('prompt_tokens', 0)}+{usage.get('completion_tokens', 0)} tokens · "
        f"{'cost unknown' if cost is None else f'${cost:.6f}'} · {elapsed * 1000:.0f} ms[/]"
    )


async def _ask(
    cluster: Cluster,
    prompt: str,
    task_type: str,
    agent: str,
    complexity: str | None,
    wait_s: float,
) -> tuple[dict[str, Any], float]:
    """Ask once, with a private reply queue (dropped at the end); nothing is recorded."""
    request = LlmRequest(
        agent_id=agent,
        task_type=task_type,
        complexity=complexity,  # type: ignore[arg-type]
        messages=[{"role": "user", "content": prompt}],  # type: ignore[list-item]
    )
    async with (
        async_connection(cluster.admin(Database.SHARED_QUEUE)) as conn,
        private_replies(
            conn, answerer_role=cluster.role_name(Role.NEXUS), answer_model=LlmResult
        ) as replies,
    ):
        route = Route(replies.queue, "Nexus (`singularity up` or `singularity run nexus`)")
        requester = Requester(
            functools.partial(send_message, conn), replies, {"llm_requests": route}
        )
        started = time.perf_counter()
        with err_console.status("waiting for Nexus to answer"):
            body = request.model_dump(mode="json", exclude_none=True)
            result = await requester.ask("llm_requests", body, timeout_s=wait_s)
        return result, time.perf_counter() - started


# -- hitl ----------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _hitl(settings: Settings, cluster: Cluster) -> AsyncIterator[Hitl]:
    """Decisions made here go through the same code as the web UI's, as the nexus role."""
    nexus = await open_pool(
        cluster.service(Role.NEXUS, Database.NEXUS), name="hitl-cli", max_size=2
    )
    bus = await open_pool(
        cluster.service(Role.NEXUS, Database.SHARED_QUEUE), name="hitl-bus", max_size=2
    )
    try:
        yield Hitl(nexus, Publisher(bus), ReplyTargets(bus), settings)
    finally:
        await nexus.close()
        await bus.close()


def _reviewer(user: str | None) -> str:
    if user:
        return user
    with contextlib.suppress(Exception):
        return getpass.getuser()
    return "cli"


def _decide(work: Any) -> dict[str, Any]:
    settings = load()
    with open_cluster(settings) as cluster:

        async def go() -> dict[str, Any]:
            async with _hitl(settings, cluster) as hitl:
                return await work(hitl)

        return run(go())


@hitl_app.command("list")
def hitl_list(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Pending approvals and questions, oldest first."""

    async def work(hitl: Hitl) -> dict[str, Any]:
        return {
            "approvals": await hitl.pending("approval"),
            "questions": await hitl.pending("question"),
        }

    pending = _decide(work)
    if as_json:
        for item in pending["approvals"]:
            item.pop("diff_html", None)
        # ASCII only: a bidi control or an escape sequence stays a visible \uXXXX.
        console.print_json(json.dumps(pending), ensure_ascii=True)
        return
    if not pending["approvals"] and not pending["questions"]:
        console.print("nothing is waiting for a decision")
        return
    table = Table(title="Waiting for a human")
    for column in ("id", "kind", "agent", "age", "about"):
        table.add_column(column, overflow="fold")
    flagged = []
    for kind, items in (("approval", pending["approvals"]), ("question", pending["questions"])):
        for item in items:
            about = item["file_path"] if kind == "approval" else item["question"]
            table.add_row(
                item["id"],
                kind,
                shown(item["agent_id"]),
                _age(item["created_at"]),
                shown(about[:80]),
            )
            if _warning(kind, item):
                flagged.append(item["id"])
    console.print(table)
    if flagged:
        _warn(
            f"{len(flagged)} of these hold hidden or bidirectional Unicode characters "
            f"(shown as <U+....>): `singularity hitl show ID` says where ({', '.join(flagged)})"
        )


@hitl_app.command("show")
def hitl_show(ident: str = typer.Argument(..., metavar="ID")) -> None:
    """Show one approval (with its diff) or question."""

    async def work(hitl: Hitl) -> dict[str, Any]:
        for kind in ("approval", "question"):
            with contextlib.suppress(SingularityError):
                item = await hitl.get(kind, ident)  # type: ignore[arg-type]
                item["kind"] = kind
                return item
        raise SingularityError(f"no approval or question with id {ident}")

    item = _decide(work)
    found = _warning(item["kind"], item)
    if found:
        _warn(found)
    console.print(
        f"[bold]{item['kind']}[/] {item['id']} · agent {shown(item['agent_id'])} · "
        f"{item['status']} · {_age(item['created_at'])} old"
    )
    if item["kind"] == "approval":
        console.print(f"[bold]file[/] {shown(item['file_path'])}")
        if item["description"]:
            console.print(shown(item["description"]))
        console.print(Syntax(escape_hidden(item["diff"]), "diff", word_wrap=True))
    else:
        console.print(shown(item["question"]))
        if item["context_text"]:
            console.print(Syntax(escape_hidden(item["context_text"]), "json", word_wrap=True))


@hitl_app.command("approve")
def hitl_approve(
    ident: str = typer.Argument(..., metavar="ID"),
    reason: str | None = typer.Option(None, "--reason", help="Why (optional)."),
    user: str | None = typer.Option(None, "--user", help="Who decides (default: your login)."),
) -> None:
    """Approve a change: its agent receives approved=true."""
    item = _decide(lambda hitl: hitl.approve(ident, user=_reviewer(user), reason=reason))
    console.print(f"approved {item['id']} ({shown(item['file_path'])})")


@hitl_app.command("reject")
def hitl_reject(
    ident: str = typer.Argument(..., metavar="ID"),
    reason: str = typer.Option(..., "--reason", help="Why: the agent revises with it."),
    user: str | None = typer.Option(None, "--user", help="Who decides (default: your login)."),
) -> None:
    """Reject a change with a reason: its agent receives approved=false and the reason."""
    item = _decide(lambda hitl: hitl.reject(ident, user=_reviewer(user), reason=reason))
    console.print(f"rejected {item['id']} ({shown(item['file_path'])})")


@hitl_app.command("answer")
def hitl_answer(
    ident: str = typer.Argument(..., metavar="ID"),
    text: str = typer.Argument(..., metavar="TEXT", help="The answer."),
    user: str | None = typer.Option(None, "--user", help="Who answers (default: your login)."),
) -> None:
    """Answer a question."""
    item = _decide(lambda hitl: hitl.answer(ident, user=_reviewer(user), response=text))
    console.print(f"answered {item['id']}")


def _warning(kind: str, item: dict[str, Any]) -> str | None:
    if kind == "approval":
        fields = {
            "diff": item["diff"],
            "file_path": item["file_path"],
            "description": item["description"],
            "agent_id": item["agent_id"],
        }
        return warning(fields, lines_of="diff")
    fields = {
        "question": item["question"],
        "context": item.get("context_text"),
        "agent_id": item["agent_id"],
    }
    return warning(fields, lines_of="context")


def _warn(text: str) -> None:
    # One line, printed where the reviewer reads (stdout), so that it cannot be missed.
    console.print(f"[bold red]warning:[/] {escape(text)}", soft_wrap=True)


def _usd(value: float | None) -> str:
    return "[red]?[/]" if value is None else f"{value:.2f}"


def _age(created: str | None) -> str:
    if not created:
        return "?"
    seconds = (
        datetime.now(UTC) - datetime.fromisoformat(created.replace("Z", "+00:00"))
    ).total_seconds()
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 129600:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} d"
