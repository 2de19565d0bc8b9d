"""`singularity queue ...`: inspect and operate the bus as its administrator."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import typer
from pydantic import ValidationError
from rich.table import Table

from singularity.cli.common import console, load, run, shown
from singularity.database import open_cluster
from singularity.errors import NotFound, UsageError
from singularity.postgres.connect import async_connection
from singularity.postgres.topology import Database
from singularity.shared_queue import (
    DeadLetter,
    dead_letter_queue,
    list_dead_letters,
    list_queues,
    queue_metrics,
    queue_spec,
    redrive,
    validate_queue_name,
)
from singularity.shared_queue.catalog import DLQ_SUFFIX
from singularity.shared_queue.intake import validation_summary
from singularity.shared_queue.metrics import peek
from singularity.shared_queue.publisher import send_message

app = typer.Typer(help="Inspect and operate the message queues.", no_args_is_help=True)
dlq_app = typer.Typer(
    help="Dead-letter queues: what consumers could not handle.", no_args_is_help=True
)
app.add_typer(dlq_app, name="dlq")


async def _admin(work: Any) -> Any:
    settings = load()
    with open_cluster(settings) as cluster:
        async with async_connection(cluster.admin(Database.SHARED_QUEUE)) as conn:
            return await work(conn)


async def _existing(conn: psycopg.AsyncConnection, queue: str) -> str:
    try:
        validate_queue_name(queue)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if queue not in await list_queues(conn):
        raise NotFound(f"no queue named {queue!r}; `singularity queue list` shows them")
    return queue


@app.command("list")
def list_command() -> None:
    """List the queues."""

    async def work(conn: psycopg.AsyncConnection) -> list[str]:
        return await list_queues(conn)

    for name in run(_admin(work)):
        spec = queue_spec(name)
        detail = ""
        if spec is not None:
            publishers = ", ".join(role.value for role in spec.publishers)
            detail = f"  {publishers} -> {spec.consumer.value}"
        console.print(f"{name}{detail}")


@app.command("metrics")
def metrics(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Depth, visible messages, age of the oldest, totals sent and archived, per queue."""

    async def work(conn: psycopg.AsyncConnection) -> Any:
        return await queue_metrics(conn)

    rows = run(_admin(work))
    if as_json:
        console.print_json(json.dumps([m.as_dict() for m in rows]))
        return
    table = Table(title="Queues")
    for column in ("queue", "waiting", "visible", "oldest (s)", "sent", "archived"):
        table.add_column(column, justify="left" if column == "queue" else "right")
    for m in rows:
        style = "red" if m.queue.endswith(DLQ_SUFFIX) and m.length else None
        table.add_row(
            m.queue,
            str(m.length),
            str(m.visible),
            "-" if m.oldest_age_s is None else str(m.oldest_age_s),
            str(m.total_sent),
            str(m.archived),
            style=style,
        )
    console.print(table)


@app.command("send")
def send(
    queue: str = typer.Argument(..., help="The queue, e.g. job_requests."),
    body: str = typer.Argument(..., help="The message, as JSON."),
    delay: int = typer.Option(0, "--delay", min=0, help="Seconds before it becomes visible."),
    raw: bool = typer.Option(False, "--raw", help="Send as is, without checking its fields."),
) -> None:
    """Send one message (checked against the queue's message type unless --raw)."""
    try:
        message = json.loads(body)
    except json.JSONDecodeError as exc:
        raise UsageError(f"the message is not valid JSON: {exc}") from None
    except RecursionError:
        raise UsageError("the message is nested too deeply to be read") from None
    spec = queue_spec(queue)
    if spec is not None and not raw:
        try:
            spec.message.model_validate(message)
        except ValidationError as exc:
            problems = validation_summary(exc)
            raise UsageError(
                f"not a valid {queue} message: {problems} (or send it --raw)"
            ) from None

    async def work(conn: psycopg.AsyncConnection) -> int:
        await _existing(conn, queue)
        return await send_message(conn, queue, message, delay_s=delay)

    console.print(f"sent to {queue}: msg_id {run(_admin(work))}")


@app.command("read")
def read(
    queue: str = typer.Argument(..., help="The queue."),
    n: int = typer.Option(10, "--n", min=1, max=1000, help="How many messages at most."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON lines."),
) -> None:
    """Show the oldest messages of a queue without taking them from its consumers."""

    async def work(conn: psycopg.AsyncConnection) -> list[Any]:
        await _existing(conn, queue)
        return await peek(conn, queue, n)

    rows = run(_admin(work))
    if as_json:
        for msg_id, read_ct, enqueued, vt, body in rows:
            head = json.dumps(
                {
                    "msg_id": msg_id,
                    "read_ct": read_ct,
                    "enqueued_at": enqueued.isoformat(),
                    "vt": vt.isoformat(),
                }
            )
            # The body is the server's own JSON text: placed as it is, never parsed here, so
            # a message of any depth prints.
            print(f'{head[:-1]}, "message": {body}}}')
        return
    if not rows:
        console.print(f"{queue} is empty")
        return
    table = Table(title=f"{queue} ({len(rows)} shown)")
    for column in ("msg_id", "deliveries", "enqueued", "message"):
        table.add_column(column)
    for msg_id, read_ct, enqueued, _vt, body in rows:
        row = (str(msg_id), str(read_ct), f"{enqueued:%Y-%m-%d %H:%M:%S}")
        table.add_row(*row, shown(_clip(body, 100)))  # a stranger's text, as it is
    console.print(table)


@dlq_app.command("list")
def dlq_list(
    queue: str = typer.Argument(None, help="Only this queue's dead letters."),
    n: int = typer.Option(50, "--n", min=1, max=1000, help="How many per queue at most."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON lines."),
) -> None:
    """Show dead letters with the reason each failed."""

    async def work(conn: psycopg.AsyncConnection) -> list[tuple[str, list[Any]]]:
        names = await list_queues(conn)
        if queue is not None:
            source = queue.removesuffix(DLQ_SUFFIX)
            await _existing(conn, source)
            dlqs = [dead_letter_queue(source)]
        else:
            dlqs = [name for name in names if name.endswith(DLQ_SUFFIX)]
        return [(dlq, await list_dead_letters(conn, dlq, limit=n)) for dlq in dlqs if dlq in names]

    found = [(dlq, letters) for dlq, letters in run(_admin(work)) if letters]
    if as_json:
        for dlq, letters in found:
            for msg_id, letter in letters:
                body = letter.model_dump(mode="json") if isinstance(letter, DeadLetter) else letter
                print(json.dumps({"dead_letter_queue": dlq, "msg_id": msg_id, "letter": body}))
        return
    if not found:
        console.print("no dead letters")
        return
    for dlq, letters in found:
        for msg_id, letter in letters:
            console.print(_describe(dlq, msg_id, letter))


def _describe(dlq: str, msg_id: int, letter: DeadLetter | str) -> str:
    if not isinstance(letter, DeadLetter):
        return f"[bold]{dlq}[/] #{msg_id}  (not a dead-letter envelope)\n  {_clip(letter, 200)}\n"
    return (
        f"[bold]{dlq}[/] #{msg_id}  from {letter.queue} msg {letter.msg_id}, "
        f"{letter.read_ct} deliveries, failed {letter.failed_at:%Y-%m-%d %H:%M:%S}\n"
        f"  [red]reason:[/]   {letter.reason}\n"
        f"  original: {_clip(json.dumps(letter.original), 200)}\n"
    )


@dlq_app.command("redrive")
def dlq_redrive(
    queue: str = typer.Argument(..., help="The queue whose dead letters to resend."),
) -> None:
    """Send a queue's dead letters back to it, as new messages."""
    source = queue.removesuffix(DLQ_SUFFIX)

    async def work(conn: psycopg.AsyncConnection) -> tuple[int, int]:
        await _existing(conn, source)
        await _existing(conn, dead_letter_queue(source))
        return await redrive(conn, source)

    moved, skipped = run(_admin(work))
    console.print(f"redrove {moved} message(s) from {dead_letter_queue(source)} to {source}")
    if skipped:
        console.print(f"[yellow]left {skipped} message(s) without an original in place[/]")


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
