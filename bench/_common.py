"""What both benchmarks share: the server to run on, machine facts, messages, printing."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import psutil
import psycopg
from pgqueuer import PsycopgDriver, QueueManager
from pgqueuer.adapters.persistence.qb import (
    DBSettings,
    QueryBuilderEnvironment,
    QueryQueueBuilder,
    QuerySchedulerBuilder,
)
from pgqueuer.domain.errors import FailingListenerError
from pgqueuer.domain.types import Channel
from pgqueuer.queries import Queries
from psycopg import sql
from rich.console import Console

from singularity.bootstrap import bootstrap
from singularity.config import load_settings
from singularity.database import open_cluster
from singularity.logs import configure_logging
from singularity.postgres.connect import async_connection
from singularity.postgres.endpoint import Endpoint
from singularity.postgres.topology import Database
from singularity.shared_queue import JobRequest
from singularity.shared_queue.install import install_pgmq
from singularity.shared_queue.sql import QUERIES

# Progress goes to stderr so that stdout holds only the table and, last, the JSON line.
progress_console = Console(stderr=True)
console = Console()

PGQUEUER_SCHEMA = "bench_pgqueuer"


@dataclass(frozen=True)
class Server:
    endpoint: Endpoint  # the administrator on the database the benchmark uses
    label: str
    version: str


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database-url",
        help="run on this PostgreSQL (a scratch database is created there and dropped); "
        "default: the platform's embedded PostgreSQL",
    )
    parser.add_argument(
        "--home",
        type=Path,
        help="SINGULARITY_HOME of the embedded server (default: a temporary directory)",
    )
    parser.add_argument(
        "--scratch-db", default="bench_queue", help="scratch database name with --database-url"
    )


@contextlib.asynccontextmanager
async def open_server(args: argparse.Namespace) -> AsyncIterator[Server]:
    """The benchmark's database with pgmq and the bus's notify function installed."""
    # The consumer logs start/stop lines at info; they would clutter the output.
    configure_logging("warning", stream=sys.stderr)
    if args.database_url:
        async with _external(args.database_url, args.scratch_db) as server:
            yield server
    else:
        async with _embedded(args.home) as server:
            yield server


@contextlib.asynccontextmanager
async def _embedded(home: Path | None) -> AsyncIterator[Server]:
    with contextlib.ExitStack() as stack:
        if home is None:
            home = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-home-")))
        # _env_file=None: a developer's .env must not point the benchmark elsewhere.
        settings = load_settings(singularity_home=home, _env_file=None)
        if not settings.embedded:
            raise SystemExit("a database server is configured in the environment; unset it")
        # The server stops when this block ends (unless another process still uses it).
        cluster = stack.enter_context(open_cluster(settings))
        # The product's path: bootstrap installs pgmq and the bus's notify function.
        await bootstrap(cluster)
        endpoint = cluster.admin(Database.SHARED_QUEUE)
        version = await server_version(endpoint)
        yield Server(endpoint, "embedded (pgserver)", version)


@contextlib.asynccontextmanager
async def _external(url: str, scratch: str) -> AsyncIterator[Server]:
    admin = Endpoint.parse(url, host="localhost", port=5432, dbname="postgres", user="postgres")
    name = sql.Identifier(scratch)
    async with async_connection(admin) as conn:
        exists = await (
            await conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (scratch,))
        ).fetchone()
        if exists:
            raise SystemExit(f"database {scratch!r} exists; drop it or pass --scratch-db")
        await conn.execute(sql.SQL("CREATE DATABASE {}").format(name))
    try:
        endpoint = admin.with_database(scratch)
        async with async_connection(endpoint) as conn:
            await install_pgmq(conn)
            # ensure_queue's trigger calls this function; install_bus makes it, we do not.
            await conn.execute(QUERIES["create_notify_function"])
        version = await server_version(endpoint)
        yield Server(endpoint, f"external {admin.url(hide_password=True)}", version)
    finally:
        async with async_connection(admin) as conn:
            await conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))


async def server_version(endpoint: Endpoint) -> str:
    async with async_connection(endpoint) as conn:
        row = await (await conn.execute("SELECT version()")).fetchone()
    assert row is not None
    return str(row[0])


async def drop_pgmq_queues(endpoint: Endpoint, names: Sequence[str]) -> None:
    async with async_connection(endpoint) as conn:
        for name in names:
            await conn.execute("SELECT pgmq.drop_queue(%s)", (name,))


async def drop_pgqueuer_schema(endpoint: Endpoint) -> None:
    async with async_connection(endpoint) as conn:
        await conn.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(PGQUEUER_SCHEMA))
        )


def job_requests(n: int, **extra: Any) -> list[JobRequest]:
    """The messages every system carries; request_id is unique, as the product's are."""
    return [
        JobRequest(
            id=f"job-{i}",
            code="print(1)",
            language="python",
            request_id=str(uuid.uuid4()),
            **extra,
        )
        for i in range(n)
    ]


def unique_name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def machine(server: Server) -> dict[str, Any]:
    return {
        "cpu_model": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "postgres": server.version,
        "server": server.label,
        "project_commit": _project_commit(),
    }


def _project_commit() -> str:
    """The commit benchmarked, with "+dirty" if src/ has uncommitted changes."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--", "src"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def emit_json(payload: dict[str, Any]) -> None:
    """The last line on stdout: every figure, for machines."""
    sys.stdout.flush()
    print(json.dumps(payload, separators=(",", ":")), flush=True)


async def connect(endpoint: Endpoint) -> psycopg.AsyncConnection:
    return await psycopg.AsyncConnection.connect(endpoint.conninfo(), autocommit=True)


def pgqueuer_queries(cls: type[Queries], conn: psycopg.AsyncConnection, prefix: str) -> Any:
    """pgqueuer's queries for tables named with `prefix` in our schema, over psycopg (its
    asyncpg drivers would need asyncpg, which the project does not install)."""
    settings = DBSettings(prefix=prefix, db_schema=PGQUEUER_SCHEMA)
    return cls(
        PsycopgDriver(conn),
        qbe=QueryBuilderEnvironment(settings),
        qbq=QueryQueueBuilder(settings),
        qbs=QuerySchedulerBuilder(settings),
    )


def pgqueuer_manager(queries: Queries) -> QueueManager:
    return QueueManager(queries, channel=Channel(queries.qbq.settings.channel))


async def pgqueuer_ready(qm: QueueManager) -> None:
    """Until the worker's LISTEN answers a probe: then it is waiting for work."""
    for _ in range(50):
        with contextlib.suppress(FailingListenerError):
            await qm.listener_healthy(timeout=timedelta(seconds=0.2))
            return
    raise TimeoutError("pgqueuer's listener never became ready")
