"""Messages per second through one queue: raw pgmq SQL, our runtime, and pgqueuer.

Each system moves the same N messages in batches of B on the same server; every run gets
fresh queues (or fresh pgqueuer tables). One warm-up round, then R rounds of a, b, c.

    python bench/queue_throughput.py [-n 20000] [-b 100] [-r 3] [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any

from pgqueuer.models import Job
from pgqueuer.queries import Queries
from psycopg_pool import AsyncConnectionPool
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from _common import (
    add_server_arguments,
    connect,
    console,
    drop_pgmq_queues,
    drop_pgqueuer_schema,
    emit_json,
    job_requests,
    machine,
    median,
    open_server,
    pgqueuer_manager,
    pgqueuer_queries,
    pgqueuer_ready,
    progress_console,
    unique_name,
)
from singularity.postgres.connect import async_connection, open_pool
from singularity.postgres.endpoint import Endpoint
from singularity.shared_queue import (
    Consumer,
    ConsumerOptions,
    Delivery,
    JobRequest,
    Listener,
    Publisher,
    ensure_queue,
)
from singularity.shared_queue.publisher import encode_batch

TARGET_OURS_OVER_RAW = 0.9
TARGET_OURS_OVER_PGQUEUER = 2.0
SYSTEMS = ("raw_pgmq", "ours", "pgqueuer")
LABELS = {"raw_pgmq": "(a) raw pgmq SQL", "ours": "(b) our runtime", "pgqueuer": "(c) pgqueuer"}
RUN_TIMEOUT_S = 120.0

# The batch travels as ONE JSON text parameter unnested by the server: a Python list bound
# as jsonb[] makes psycopg escape every element, which is several times slower.
RAW_SEND_BATCH = "SELECT * FROM pgmq.send_batch(%s, ARRAY(SELECT jsonb_array_elements(%s::jsonb)))"
# message::text: the anchor takes the bodies off the wire but does not parse them.
RAW_READ = "SELECT msg_id, read_ct, enqueued_at, vt, message::text FROM pgmq.read(%s, 30, %s)"
RAW_ARCHIVE = "SELECT pgmq.archive(%s, %s::bigint[])"


@dataclasses.dataclass(frozen=True)
class Workload:
    """One round's messages, built before any timing starts."""

    models: list[JobRequest]
    batch: int

    @property
    def n(self) -> int:
        return len(self.models)

    def model_batches(self) -> list[list[JobRequest]]:
        return [self.models[i : i + self.batch] for i in range(0, self.n, self.batch)]

    def text_batches(self) -> list[str]:
        """The same bodies our publisher sends, as the one-parameter JSON array."""
        return [encode_batch([m.to_json() for m in b]) for b in self.model_batches()]

    def payload_batches(self) -> list[list[bytes]]:
        return [[m.to_json().encode() for m in b] for b in self.model_batches()]


async def wait_until(done: Callable[[], bool], seconds: float = RUN_TIMEOUT_S) -> None:
    """Poll an in-process counter; 2 ms steps cost little and bound the timing error."""
    deadline = time.perf_counter() + seconds
    while not done():
        if time.perf_counter() > deadline:
            raise TimeoutError("the run did not finish in time")
        await asyncio.sleep(0.002)


# -- (a) raw pgmq -----------------------------------------------------------------------


async def run_raw(endpoint: Endpoint, work: Workload) -> float:
    """send_batch, read, archive in turn on one connection: pgmq with nothing around it."""
    batches = work.text_batches()
    queue = unique_name("bench_raw")
    async with await connect(endpoint) as conn:
        await conn.execute("SELECT pgmq.create(%s)", (queue,))
        try:
            started = time.perf_counter()
            for batch in batches:
                await conn.execute(RAW_SEND_BATCH, (queue, batch))
                rows = await (await conn.execute(RAW_READ, (queue, work.batch))).fetchall()
                await conn.execute(RAW_ARCHIVE, (queue, [row[0] for row in rows]))
            elapsed = time.perf_counter() - started
        finally:
            await conn.execute("SELECT pgmq.drop_queue(%s)", (queue,))
    return work.n / elapsed


# -- (b) our runtime --------------------------------------------------------------------


async def noop_handler(delivery: Delivery[JobRequest]) -> None:
    return None


async def run_ours(
    endpoint: Endpoint, pool: AsyncConnectionPool, work: Workload, poll_s: float
) -> float:
    """Publisher.send_batch while a Consumer with a Listener handles; until all archived."""
    batches = work.model_batches()
    queue = unique_name("bench_ours")
    async with async_connection(endpoint) as conn:
        # Our notify trigger and request-key index are part of what we measure.
        await ensure_queue(conn, queue)
        await ensure_queue(conn, queue + "_dlq", wake=False)
    listener = Listener(endpoint)
    options = ConsumerOptions(
        batch_size=work.batch, concurrency=2 * work.batch, poll_interval_s=poll_s
    )
    consumer = Consumer(pool, queue, JobRequest, noop_handler, options=options, listener=listener)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(listener.run(stop)), asyncio.create_task(consumer.run(stop))]
    try:
        await asyncio.wait_for(listener.connected.wait(), 10)
        await asyncio.sleep(0.1)  # let the consumer's first (empty) read settle
        publisher = Publisher(pool)
        started = time.perf_counter()
        for batch in batches:
            await publisher.send_batch(queue, batch)
        await wait_until(lambda: consumer.stats.handled >= work.n)
        elapsed = time.perf_counter() - started
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        await drop_pgmq_queues(endpoint, [queue, queue + "_dlq"])
    if consumer.stats.handled != work.n or consumer.stats.dead_lettered:
        raise RuntimeError(f"ours handled {consumer.stats.snapshot()}, expected {work.n}")
    return work.n / elapsed


# -- (c) pgqueuer -----------------------------------------------------------------------


@dataclasses.dataclass
class CountingQueries(Queries):
    """pgqueuer's queries, counting jobs whose completion it has written (deleted + logged),
    the same point at which our consumer counts a message as handled (archived)."""

    completed: int = 0

    async def log_jobs(self, job_status: list[Any]) -> None:
        await super().log_jobs(job_status)
        self.completed += sum(1 for _, status, _ in job_status if status == "successful")


async def run_pgqueuer(endpoint: Endpoint, work: Workload, tag: str, max_tasks: int) -> float:
    """Queries.enqueue in batches while a QueueManager runs a no-op entrypoint."""
    batches = work.payload_batches()
    # A fresh prefix per run: fresh tables, as the pgmq runs get fresh queues.
    prefix = unique_name(tag) + "_"
    async with await connect(endpoint) as producer_conn, await connect(endpoint) as worker_conn:
        producer = pgqueuer_queries(Queries, producer_conn, prefix)
        await producer.install()
        worker: CountingQueries = pgqueuer_queries(CountingQueries, worker_conn, prefix)
        qm = pgqueuer_manager(worker)

        @qm.entrypoint("bench_job")
        async def noop(job: Job) -> None:
            return None

        # Configuration: batch_size=B like the others; max_concurrent_tasks unlimited by
        # default (pgqueuer's default): a limit adds a count of this worker's picked jobs to
        # every dequeue, and with a no-op entrypoint jobs never pile up anyway.
        # Everything else at pgqueuer's defaults (status-log buffer flushes at B or 0.1 s).
        # pgqueuer's psycopg driver runs on one connection; the producer has its own.
        run = qm.run(batch_size=work.batch, max_concurrent_tasks=max_tasks or None)
        worker_task = asyncio.create_task(run)
        try:
            await pgqueuer_ready(qm)
            entrypoints = ["bench_job"] * work.batch
            priorities = [0] * work.batch
            started = time.perf_counter()
            for payloads in batches:
                k = len(payloads)
                await producer.enqueue(entrypoints[:k], list(payloads), priorities[:k])
            await wait_until(lambda: worker.completed >= work.n)
            elapsed = time.perf_counter() - started
        finally:
            qm.shutdown.set()
            await worker_task
            await producer.uninstall()
    if worker.completed != work.n:
        raise RuntimeError(f"pgqueuer completed {worker.completed}, expected {work.n}")
    return work.n / elapsed


# -- the rounds -------------------------------------------------------------------------


async def one_round(
    endpoint: Endpoint,
    pool: AsyncConnectionPool,
    args: argparse.Namespace,
    n: int,
    tag: str,
    announce: Callable[[str], None],
) -> dict[str, float]:
    """a, b, c in turn, each on its own fresh workload of identical bodies."""
    rates: dict[str, float] = {}
    for system in SYSTEMS:
        announce(f"{tag}: {LABELS[system]}")
        work = Workload(job_requests(n), args.batch)
        if system == "raw_pgmq":
            rates[system] = await run_raw(endpoint, work)
        elif system == "ours":
            rates[system] = await run_ours(endpoint, pool, work, args.poll_ms / 1000)
        else:
            rates[system] = await run_pgqueuer(endpoint, work, tag, args.pgqueuer_max_tasks)
    return rates


async def run_all(endpoint: Endpoint, args: argparse.Namespace) -> list[dict[str, float]]:
    pool = await open_pool(endpoint, name="bench-throughput", max_size=8)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    try:
        with Progress(*columns, console=progress_console) as progress:
            task = progress.add_task("starting", total=3 * (args.rounds + 1))

            def announce(description: str) -> None:
                progress.update(task, description=description)

            rounds = []
            for index in range(args.rounds + 1):
                warmup = index == 0
                tag = "warmup" if warmup else f"round{index}"
                n = args.warmup_n if warmup else args.n
                rates = await one_round(endpoint, pool, args, n, tag, announce)
                progress.advance(task, 3)
                if not warmup:
                    rounds.append(rates)
            progress.update(task, description="done")
    finally:
        await pool.close()
        await drop_pgqueuer_schema(endpoint)
    return rounds


# -- reporting --------------------------------------------------------------------------


def summarize(rounds: Sequence[dict[str, float]]) -> dict[str, Any]:
    results = {
        s: {
            "rounds_msgs_per_s": [round(r[s], 1) for r in rounds],
            "median_msgs_per_s": round(median([r[s] for r in rounds]), 1),
        }
        for s in SYSTEMS
    }
    ratios = {}
    for name, other, target in (
        ("ours_over_raw", "raw_pgmq", TARGET_OURS_OVER_RAW),
        ("ours_over_pgqueuer", "pgqueuer", TARGET_OURS_OVER_PGQUEUER),
    ):
        per_round = [r["ours"] / r[other] for r in rounds]
        value = median(per_round)
        ratios[name] = {
            "rounds": [round(x, 3) for x in per_round],
            "median": round(value, 3),
            "target": target,
            "met": value >= target,
        }
    return {"results": results, "ratios": ratios}


def print_table(summary: dict[str, Any], rounds: int) -> None:
    table = Table(title="Queue throughput (messages/s)")
    table.add_column("system", no_wrap=True)
    for i in range(rounds):
        table.add_column(f"round {i + 1}", justify="right")
    table.add_column("median", justify="right", style="bold")
    for system in SYSTEMS:
        row = summary["results"][system]
        cells = [f"{x:,.0f}" for x in row["rounds_msgs_per_s"]]
        table.add_row(LABELS[system], *cells, f"{row['median_msgs_per_s']:,.0f}")
    console.print(table)
    ratios = Table(title="Ratios (median of per-round ratios)")
    for column in ("ratio", "median", "target", "met"):
        ratios.add_column(column, justify="right" if column != "ratio" else "left")
    for name, label in (("ours_over_raw", "ours / raw"), ("ours_over_pgqueuer", "ours / pgqueuer")):
        r = summary["ratios"][name]
        met = "[green]yes[/]" if r["met"] else "[red]no[/]"
        ratios.add_row(label, f"{r['median']:.2f}", f">= {r['target']}", met)
    console.print(ratios)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--messages", dest="n", type=int, default=20_000)
    parser.add_argument("-b", "--batch", type=int, default=100)
    parser.add_argument("-r", "--rounds", type=int, default=3)
    parser.add_argument("--warmup-n", type=int, default=5_000, help="messages of the warm-up")
    parser.add_argument(
        "--poll-ms", type=int, default=250, help="our consumer's fallback poll interval"
    )
    parser.add_argument(
        "--pgqueuer-max-tasks",
        type=int,
        default=0,
        help="pgqueuer's max_concurrent_tasks (0: unlimited, its default)",
    )
    add_server_arguments(parser)
    return parser.parse_args()


async def main() -> None:
    args = parse_args()
    async with open_server(args) as server:
        rounds = await run_all(server.endpoint, args)
        info = machine(server)
    summary = summarize(rounds)
    print_table(summary, args.rounds)
    params = {
        "messages": args.n,
        "batch": args.batch,
        "rounds": args.rounds,
        "warmup_messages": args.warmup_n,
        "ours": {"concurrency": 2 * args.batch, "poll_interval_ms": args.poll_ms, "pool": 8},
        "pgqueuer": {
            "batch_size": args.batch,
            "max_concurrent_tasks": args.pgqueuer_max_tasks or None,
            "driver": "psycopg",
        },
    }
    emit_json({"benchmark": "queue_throughput", "machine": info, "params": params, **summary})


if __name__ == "__main__":
    asyncio.run(main())
