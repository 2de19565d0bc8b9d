"""Enqueue-to-handler latency at a steady rate: raw pgmq polling, our runtime, and pgqueuer.

A publisher process sends one message per tick (1 ms at the default 1,000 messages/s) on a
fixed timetable; each message carries its send time, and the handler records now - sent.
The first seconds are a warm-up and are not counted.

    python bench/queue_latency.py [--rate 1000] [-d 10] [--warmup 2] [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pgqueuer.models import Job
from pgqueuer.queries import Queries
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from _common import (
    add_server_arguments,
    connect,
    console,
    drop_pgmq_queues,
    drop_pgqueuer_schema,
    emit_json,
    machine,
    open_server,
    pgqueuer_manager,
    pgqueuer_queries,
    pgqueuer_ready,
    progress_console,
    unique_name,
)
from singularity.config import load_settings
from singularity.postgres.connect import async_connection, open_pool
from singularity.postgres.endpoint import Endpoint
from singularity.shared_queue import (
    Delivery,
    JobRequest,
    Publisher,
    consumer_options,
    ensure_queue,
    open_bus,
)

TARGET_P50_MS = 5.0
TARGET_P99_MS = 50.0
RAW_POLL_S = 0.1  # the original design's consumers poll every 100-1000 ms; its best case
BATCH = 100
SYSTEMS = ("raw_pgmq", "ours", "pgqueuer")
LABELS = {
    "raw_pgmq": "(a) raw pgmq, poll 100ms",
    "ours": "(b) ours, LISTEN",
    "pgqueuer": "(c) pgqueuer, LISTEN",
}
ENTRYPOINT = "bench_job"


# -- what the handlers record -----------------------------------------------------------


@dataclass
class Recorder:
    """Latencies of the messages sent after the warm-up; `received` counts them all."""

    latencies_ms: list[float] = field(default_factory=list)
    received: int = 0
    expected: int | None = None
    all_in: asyncio.Event = field(default_factory=asyncio.Event)

    def record(self, body: dict[str, Any]) -> None:
        now = time.time()
        self.received += 1
        if not body.get("warmup"):
            self.latencies_ms.append((now - body["sent"]) * 1000)
        self._check()

    def expect(self, sent: int) -> None:
        self.expected = sent
        self._check()

    def _check(self) -> None:
        if self.expected is not None and self.received >= self.expected:
            self.all_in.set()


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of sorted values."""
    if not ordered:
        return math.nan
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


# -- the publisher process --------------------------------------------------------------


def message(i: int, warmup: bool) -> JobRequest:
    # The send time is taken here, just before the send, and travels in the body.
    return JobRequest(
        id=f"job-{i}",
        code="print(1)",
        language="python",
        request_id=f"lat-{i}-{time.time_ns()}",
        sent=time.time(),
        warmup=warmup,
    )


PUBLISHER_CONNECTIONS = 4


@contextlib.asynccontextmanager
async def sender(config: dict[str, Any]) -> AsyncIterator[Callable[[int, bool], Awaitable[None]]]:
    """A send function for the system under test, over 4 connections either way: pgmq
    through our Publisher (a and b share it, so only the consumer differs) or pgqueuer's
    enqueue (c; its psycopg driver wraps one connection, so we keep 4 and take a free one)."""
    endpoint = Endpoint.parse(config["conninfo"])
    if config["system"] != "pgqueuer":
        pool = await open_pool(
            endpoint,
            name="bench-publisher",
            min_size=PUBLISHER_CONNECTIONS,
            max_size=PUBLISHER_CONNECTIONS,
        )
        publisher = Publisher(pool)

        async def send(i: int, warmup: bool) -> None:
            await publisher.send(config["queue"], message(i, warmup))

        try:
            yield send
        finally:
            await pool.close()
        return
    async with contextlib.AsyncExitStack() as stack:
        free: asyncio.Queue[Queries] = asyncio.Queue()
        for _ in range(PUBLISHER_CONNECTIONS):
            conn = await stack.enter_async_context(await connect(endpoint))
            free.put_nowait(pgqueuer_queries(Queries, conn, config["prefix"]))

        async def enqueue(i: int, warmup: bool) -> None:
            queries = await free.get()
            try:
                await queries.enqueue(ENTRYPOINT, message(i, warmup).to_json().encode())
            finally:
                free.put_nowait(queries)

        yield enqueue


async def publish(config: dict[str, Any]) -> dict[str, Any]:
    """Send on a fixed timetable: each tick starts a task, so a slow send never delays the
    next one; a late loop catches up by starting every tick that is due."""
    rate, warmup_s, duration_s = config["rate"], config["warmup"], config["duration"]
    warm_n, total = int(rate * warmup_s), int(rate * (warmup_s + duration_s))
    period = 1.0 / rate
    done_at: list[float] = []
    started_at: list[float] = []
    async with sender(config) as send:

        async def one(i: int) -> None:
            started = time.perf_counter()
            await send(i, i < warm_n)
            if i >= warm_n:
                done_at.append(time.perf_counter())
                started_at.append(started)

        print("started", flush=True)
        loop = asyncio.get_running_loop()
        origin = loop.time()
        tasks: set[asyncio.Task[None]] = set()
        for i in range(total):
            due = origin + i * period
            if due > loop.time():
                await asyncio.sleep(due - loop.time())
            task = asyncio.create_task(one(i))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks)
    measured = len(done_at)
    span = max(done_at) - min(started_at)
    send_ms = sorted((d - s) * 1000 for s, d in zip(started_at, done_at, strict=True))
    return {
        "sent": total,
        "measured": measured,
        "achieved_rate": measured / span,
        "send_p50_ms": percentile(send_ms, 0.5),
        "send_p99_ms": percentile(send_ms, 0.99),
    }


# -- the consumers ----------------------------------------------------------------------


async def consume_raw(endpoint: Endpoint, queue: str, rec: Recorder, stop: asyncio.Event) -> None:
    """The anchor: read a batch, handle, archive; when the queue ran dry, sleep 100 ms."""
    async with await connect(endpoint) as conn:
        while not stop.is_set():
            cursor = await conn.execute(
                "SELECT msg_id, message::text FROM pgmq.read(%s, 30, %s)", (queue, BATCH)
            )
            rows = await cursor.fetchall()
            for _, body in rows:
                rec.record(json.loads(body))
            if rows:
                await conn.execute(
                    "SELECT pgmq.archive(%s, %s::bigint[])", (queue, [r[0] for r in rows])
                )
            if len(rows) < BATCH:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), RAW_POLL_S)


@contextlib.asynccontextmanager
async def running_raw(endpoint: Endpoint, rec: Recorder) -> AsyncIterator[dict[str, Any]]:
    queue = unique_name("lat_raw")
    async with async_connection(endpoint) as conn:
        await conn.execute("SELECT pgmq.create(%s)", (queue,))
    stop = asyncio.Event()
    task = asyncio.create_task(consume_raw(endpoint, queue, rec, stop))
    try:
        yield {"queue": queue}
    finally:
        stop.set()
        await task
        await drop_pgmq_queues(endpoint, [queue])


@contextlib.asynccontextmanager
async def running_ours(endpoint: Endpoint, rec: Recorder) -> AsyncIterator[dict[str, Any]]:
    """The product's path: open_bus (pool + Listener) and a consumer with the settings'
    options (batch 100, concurrency 64, poll 250 ms as the fallback)."""
    queue = unique_name("lat_ours")
    async with async_connection(endpoint) as conn:
        await ensure_queue(conn, queue)
        await ensure_queue(conn, queue + "_dlq", wake=False)
    settings = load_settings(_env_file=None)

    async def handler(delivery: Delivery[JobRequest]) -> None:
        rec.record(delivery.message.model_extra or {})

    stop = asyncio.Event()
    try:
        async with open_bus(endpoint, settings, name="bench-latency") as bus:
            consumer = bus.consumer(queue, JobRequest, handler, options=consumer_options(settings))
            task = asyncio.create_task(consumer.run(stop))
            await asyncio.wait_for(bus.listener.connected.wait(), 10)
            try:
                yield {"queue": queue}
            finally:
                stop.set()
                await task
    finally:
        await drop_pgmq_queues(endpoint, [queue, queue + "_dlq"])


@contextlib.asynccontextmanager
async def running_pgqueuer(endpoint: Endpoint, rec: Recorder) -> AsyncIterator[dict[str, Any]]:
    """A QueueManager at its defaults (LISTEN/NOTIFY wake-up) but for batch_size=100."""
    prefix = unique_name("lat") + "_"
    async with await connect(endpoint) as conn:
        queries = pgqueuer_queries(Queries, conn, prefix)
        await queries.install()
        qm = pgqueuer_manager(queries)

        @qm.entrypoint(ENTRYPOINT)
        async def handler(job: Job) -> None:
            rec.record(json.loads(job.payload or b"{}"))

        task = asyncio.create_task(qm.run(batch_size=BATCH))
        try:
            await pgqueuer_ready(qm)
            yield {"prefix": prefix}
        finally:
            qm.shutdown.set()
            await task
            await queries.uninstall()


RUNNERS = {"raw_pgmq": running_raw, "ours": running_ours, "pgqueuer": running_pgqueuer}


# -- one system, end to end -------------------------------------------------------------


async def measure(
    system: str, endpoint: Endpoint, args: argparse.Namespace, tick: Callable[[float], None]
) -> dict[str, Any]:
    rec = Recorder()
    async with RUNNERS[system](endpoint, rec) as where:
        config = {
            "system": system,
            "conninfo": endpoint.conninfo(),
            "rate": args.rate,
            "warmup": args.warmup,
            "duration": args.duration,
            **where,
        }
        report = await run_publisher(config, tick)
        # Every message sent must reach the handler before the consumer stops.
        rec.expect(report["sent"])
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(rec.all_in.wait(), 10)
    ordered = sorted(rec.latencies_ms)
    return {
        "p50_ms": round(percentile(ordered, 0.50), 2),
        "p90_ms": round(percentile(ordered, 0.90), 2),
        "p99_ms": round(percentile(ordered, 0.99), 2),
        "max_ms": round(ordered[-1], 2) if ordered else math.nan,
        "achieved_rate": round(report["achieved_rate"], 1),
        "send_p50_ms": round(report["send_p50_ms"], 2),
        "send_p99_ms": round(report["send_p99_ms"], 2),
        "counted": len(ordered),
        "sent": report["sent"],
        "received": rec.received,
    }


async def run_publisher(config: dict[str, Any], tick: Callable[[float], None]) -> dict[str, Any]:
    """The publisher runs in its own process, as a service's would: its sends then do not
    compete with the consumer for this event loop."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--publisher-config",
        json.dumps(config),
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = await proc.stdout.readline()
    if line.strip() != b"started":
        await proc.wait()
        raise RuntimeError(f"the publisher failed to start: {line!r}")
    started = time.monotonic()
    reading = asyncio.create_task(proc.stdout.read())
    while not reading.done():
        tick(time.monotonic() - started)
        await asyncio.wait({reading}, timeout=0.2)
    if await proc.wait() != 0:
        raise RuntimeError("the publisher failed")
    return json.loads(reading.result().decode().strip().splitlines()[-1])


async def run_all(endpoint: Endpoint, args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    columns = (TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
    total = args.warmup + args.duration
    results: dict[str, dict[str, Any]] = {}
    try:
        with Progress(*columns, console=progress_console) as progress:
            tasks = {s: progress.add_task(LABELS[s], total=total, start=False) for s in SYSTEMS}
            for system in SYSTEMS:
                task_id: TaskID = tasks[system]
                progress.start_task(task_id)

                def tick(elapsed: float, task_id: TaskID = task_id) -> None:
                    progress.update(task_id, completed=min(elapsed, total))

                results[system] = await measure(system, endpoint, args, tick)
                progress.update(task_id, completed=total)
    finally:
        await drop_pgqueuer_schema(endpoint)
    return results


# -- reporting --------------------------------------------------------------------------


def print_table(results: dict[str, dict[str, Any]], summary: dict[str, Any]) -> None:
    table = Table(title="Enqueue-to-handler latency (ms)")
    table.add_column("system", no_wrap=True)
    for column in ("p50", "p90", "p99", "max", "sent/s", "send p99"):
        table.add_column(column, justify="right")
    for system in SYSTEMS:
        r = results[system]
        table.add_row(
            LABELS[system],
            f"{r['p50_ms']:.2f}",
            f"{r['p90_ms']:.2f}",
            f"{r['p99_ms']:.2f}",
            f"{r['max_ms']:.2f}",
            f"{r['achieved_rate']:,.0f}",
            f"{r['send_p99_ms']:.2f}",
        )
    console.print(table)
    targets = Table(title="Our runtime against the targets")
    for column in ("figure", "value", "target", "met"):
        targets.add_column(column, justify="left" if column == "figure" else "right")
    for name, label in (("p50", "our p50 (ms)"), ("p99", "our p99 (ms)")):
        t = summary["targets"][name]
        met = "[green]yes[/]" if t["met"] else "[red]no[/]"
        targets.add_row(label, f"{t['value']:.2f}", f"<= {t['target']}", met)
    targets.add_row("anchor p50 / our p50", f"{summary['anchor_p50_over_ours']:.1f}", "", "")
    console.print(targets)


def summarize(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    ours = results["ours"]
    return {
        "targets": {
            "p50": {
                "value": ours["p50_ms"],
                "target": TARGET_P50_MS,
                "met": ours["p50_ms"] <= TARGET_P50_MS,
            },
            "p99": {
                "value": ours["p99_ms"],
                "target": TARGET_P99_MS,
                "met": ours["p99_ms"] <= TARGET_P99_MS,
            },
        },
        "anchor_p50_over_ours": round(results["raw_pgmq"]["p50_ms"] / ours["p50_ms"], 2),
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=1000, help="messages per second")
    parser.add_argument("-d", "--duration", type=float, default=10.0, help="counted seconds")
    parser.add_argument("--warmup", type=float, default=2.0, help="uncounted seconds first")
    parser.add_argument("--publisher-config", help=argparse.SUPPRESS)  # the child process
    add_server_arguments(parser)
    return parser.parse_args()


async def main() -> None:
    args = parse_args()
    if args.publisher_config:
        report = await publish(json.loads(args.publisher_config))
        print(json.dumps(report), flush=True)
        return
    async with open_server(args) as server:
        results = await run_all(server.endpoint, args)
        info = machine(server)
    summary = summarize(results)
    print_table(results, summary)
    params = {
        "rate": args.rate,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "raw_poll_ms": RAW_POLL_S * 1000,
        "batch": BATCH,
        "ours_poll_ms": load_settings(_env_file=None).shared_queue_poll_ms,
        "publisher": "separate process; pgmq via our Publisher (a, b), pgqueuer enqueue (c)",
    }
    emit_json(
        {
            "benchmark": "queue_latency",
            "machine": info,
            "params": params,
            "results": results,
            **summary,
        }
    )


if __name__ == "__main__":
    asyncio.run(main())
