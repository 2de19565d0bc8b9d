"""What the Nexus benchmarks share: the bootstrapped platform, a stand-in provider and Nexus
each in its own process, and a client that keeps LLM requests outstanding on `llm_requests`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import IO, Any, TypeVar

import httpx
import psutil
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from rich.table import Table

from _common import Server, console, server_version
from singularity.bootstrap import bootstrap
from singularity.config import Settings, load_settings
from singularity.database import open_cluster
from singularity.logs import configure_logging
from singularity.postgres.cluster import Cluster
from singularity.postgres.connect import async_connection, connection, open_pool
from singularity.postgres.endpoint import Endpoint
from singularity.postgres.topology import Database, Role
from singularity.shared_queue import Listener, ensure_queue
from singularity.shared_queue.install import grant_publish
from singularity.shared_queue.publisher import send_message
from singularity.shared_queue.waiting import race

T = TypeVar("T")

KEY_VARIABLE = "BENCH_MOCK_LLM_KEY"
KEY_VALUE = "bench-key"


# -- numbers -------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (the values need not be sorted)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def spread(values: Sequence[float], digits: int = 2) -> dict[str, float]:
    """p50, p90, p99 and max, rounded."""
    return {
        "p50": round(percentile(values, 0.50), digits),
        "p90": round(percentile(values, 0.90), digits),
        "p99": round(percentile(values, 0.99), digits),
        "max": round(max(values), digits) if values else math.nan,
    }


def print_targets(checks: Sequence[dict[str, Any]], default_unit: str = "ms") -> None:
    """The figures against their targets, one row each (a check without a unit is in ms)."""
    table = Table(title="Against the targets")
    for column in ("figure", "value", "target", "met"):
        table.add_column(column, justify="left" if column == "figure" else "right")
    for c in checks:
        unit = c.get("unit", default_unit)
        unit = "µs" if unit == "us" else unit
        table.add_row(
            c["figure"],
            f"{c['value']:.2f} {unit}",
            f"<= {c['target']:g} {unit}",
            "[green]yes[/]" if c["met"] else "[red]no[/]",
        )
    console.print(table)


def add_log_level_argument(parser: argparse.ArgumentParser) -> None:
    """--nexus-log-level: SINGULARITY_LOG_LEVEL of the Nexus process."""
    parser.add_argument(
        "--nexus-log-level",
        default="info",
        choices=("debug", "info", "warning", "error"),
        help="SINGULARITY_LOG_LEVEL of the Nexus process (default info, the service's default)",
    )


def int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of integers: {text!r}") from None
    if not values or any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"need non-negative integers: {text!r}")
    return values


# -- the platform --------------------------------------------------------------------------


@dataclass
class Platform:
    """A bootstrapped platform, and the environment a process of it needs."""

    settings: Settings
    cluster: Cluster
    home: Path
    env: dict[str, str]
    server: Server
    postmaster_pid: int  # 0 when the server runs on another machine

    @property
    def bus(self) -> Endpoint:
        """The administrator on the shared_queue database."""
        return self.cluster.admin(Database.SHARED_QUEUE)

    @property
    def nexus_db(self) -> Endpoint:
        """The administrator on the nexus database."""
        return self.cluster.admin(Database.NEXUS)


def add_platform_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database-url",
        help="bootstrap the platform on this PostgreSQL, under a unique prefix for its "
        "databases and roles (all dropped at the end); default: the embedded PostgreSQL",
    )
    parser.add_argument(
        "--home",
        type=Path,
        help="SINGULARITY_HOME (default: a temporary directory)",
    )


@contextlib.asynccontextmanager
async def open_platform(args: argparse.Namespace) -> AsyncIterator[Platform]:
    """The platform bootstrapped as `singularity db init` does, for this process and others."""
    configure_logging("warning", stream=sys.stderr)
    with contextlib.ExitStack() as stack:
        home = args.home
        if home is None:
            home = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-home-")))
        home = home.resolve()
        env = {"SINGULARITY_HOME": str(home)}
        if args.database_url:
            parts = conninfo_to_dict(args.database_url)
            env["DB_HOST"] = str(parts.get("host") or "localhost")
            env["DB_PORT"] = str(parts.get("port") or 5432)
            env["DB_USER"] = str(parts.get("user") or "postgres")
            if parts.get("password"):
                env["DB_PASSWORD"] = str(parts["password"])
            env["SINGULARITY_DB_PREFIX"] = f"bn{uuid.uuid4().hex[:6]}_"
        overrides = {name.lower(): value for name, value in env.items()}
        # _env_file=None: a developer's .env must not point the benchmark elsewhere.
        settings = load_settings(_env_file=None, **overrides)
        if not args.database_url and not settings.embedded:
            raise SystemExit("a database server is configured in the environment; unset it")
        cluster = stack.enter_context(open_cluster(settings))
        try:
            await bootstrap(cluster, require_vector=settings.embedded)
            admin = cluster.admin(Database.SHARED_QUEUE)
            if cluster.embedded:
                label = "embedded (pgserver)"
            else:
                label = f"external {admin.with_database('postgres').url(hide_password=True)}"
            server = Server(admin, label, await server_version(admin))
            yield Platform(settings, cluster, home, env, server, await _postmaster(admin))
        finally:
            if not cluster.embedded:
                _drop_platform(cluster)


async def _postmaster(endpoint: Endpoint) -> int:
    """The server's main process, when it runs on this machine (a backend's parent)."""
    if not (endpoint.is_socket or endpoint.host in ("localhost", "127.0.0.1", "::1")):
        return 0
    async with async_connection(endpoint) as conn:
        row = await (await conn.execute("SELECT pg_backend_pid()")).fetchone()
        assert row is not None
        try:  # while the backend lives
            postmaster = psutil.Process(int(row[0])).parent()
        except psutil.Error:
            return 0
    return postmaster.pid if postmaster and "postgres" in postmaster.name() else 0


def _drop_platform(cluster: Cluster) -> None:
    with connection(cluster.maintenance(Database.SHARED_QUEUE)) as conn:
        for database in Database:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(cluster.database_name(database))
                )
            )
        for role in Role:
            conn.execute(
                sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(cluster.role_name(role)))
            )


def process_env(platform: Platform, **extra: str) -> dict[str, str]:
    """This process's environment without any platform setting, plus the platform's own."""
    fields = {name.upper() for name in Settings.model_fields}
    env = {k: v for k, v in os.environ.items() if k.upper() not in fields}
    env.update(platform.env)
    env.update(extra)
    return env


@contextlib.asynccontextmanager
async def reply_queue(
    platform: Platform, prefix: str, role: Role = Role.NEXUS
) -> AsyncIterator[str]:
    """A fresh queue that `role` (Nexus by default) may answer on, as a Singularity
    instance's reply queue is."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    async with async_connection(platform.bus) as conn:
        await ensure_queue(conn, name)
        await grant_publish(conn, platform.cluster.role_name(role), name)
    try:
        yield name
    finally:
        async with async_connection(platform.bus) as conn:
            await conn.execute("SELECT pgmq.drop_queue(%s)", (name,))


# -- processes -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stop_process(proc: subprocess.Popen[Any], seconds: float = 30.0) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def _tail(path: Path, lines: int = 20) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


@dataclass
class MockProvider:
    """`python -m singularity.testing.openai_server` in its own process."""

    delay_ms: int
    base_url: str
    proc: subprocess.Popen[str]

    @property
    def model(self) -> str:
        return f"mock-{self.delay_ms}ms"

    @property
    def task_type(self) -> str:
        return f"bench_{self.delay_ms}ms"


@contextlib.contextmanager
def mock_providers(platform: Platform, delays: Sequence[int]) -> Iterator[dict[int, MockProvider]]:
    """One stand-in provider per delay, each in its own process."""
    started: dict[int, MockProvider] = {}
    logs: list[IO[str]] = []
    try:
        for delay in sorted(set(delays)):
            log_path = platform.home / f"mock-{delay}ms.log"
            log = log_path.open("w")
            logs.append(log)
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "singularity.testing.openai_server",
                    "--port",
                    "0",
                    "--delay-ms",
                    str(delay),
                ],
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                cwd=platform.home,
                env=process_env(platform),
            )
            assert proc.stdout is not None
            line = proc.stdout.readline().strip()
            if not line.startswith("http"):
                proc.kill()
                raise RuntimeError(f"the mock provider did not start: {_tail(log_path)}")
            started[delay] = MockProvider(delay, line, proc)
        yield started
    finally:
        for provider in started.values():
            _stop_process(provider.proc, 10)
        for log in logs:
            log.close()


def write_registry(path: Path, providers: Sequence[MockProvider]) -> Path:
    """A registry whose models are the stand-in providers: task type `bench_<D>ms` goes to the
    provider with delay D, whatever the tier (priced, as a real model is)."""
    lines: list[str] = []
    for p in providers:
        lines += [
            f'[models."{p.model}"]',
            'provider = "mock"',
            f'litellm_model = "openai/{p.model}"',
            f'api_base = "{p.base_url}"',
            f'api_key_env = "{KEY_VARIABLE}"',
            "context_window = 128000",
            "input_usd_per_mtok = 0.15",
            "output_usd_per_mtok = 0.60",
            "",
            f"[task_types.{p.task_type}]",
            *(f'{tier} = ["{p.model}"]' for tier in ("simple", "medium", "complex")),
            "",
        ]
    path.write_text("\n".join(lines))
    return path


class NexusProcess:
    """`python -m singularity run nexus` in its own process, on the platform's database."""

    def __init__(self, platform: Platform, *, log_level: str = "info", **env: str) -> None:
        self.platform = platform
        self.port = free_port()
        self.log_path = platform.home / f"nexus-{self.port}.log"
        self._env = process_env(
            platform, PORT=str(self.port), SINGULARITY_LOG_LEVEL=log_level, **env
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def process(self) -> psutil.Process:
        return psutil.Process(self.pid)

    def _spawn(self) -> None:
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "singularity", "run", "nexus"],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.platform.home,  # no .env of a developer's working directory
            env=self._env,
        )

    async def __aenter__(self) -> NexusProcess:
        self._spawn()
        try:
            await self._ready(60.0)
        except BaseException:
            await self.__aexit__()
            raise
        return self

    async def _ready(self, seconds: float) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + seconds
        async with httpx.AsyncClient(timeout=2.0) as client:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"nexus exited at start:\n{_tail(self.log_path)}")
                with contextlib.suppress(httpx.HTTPError):
                    response = await client.get(f"{self.url}/healthz")
                    if response.status_code == 200 and response.json().get("listening"):
                        break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"nexus did not start:\n{_tail(self.log_path)}")
                await asyncio.sleep(0.1)
        # Its consumers subscribe to their wake-ups as they start; give them a moment.
        await asyncio.sleep(0.5)

    async def __aexit__(self, *exc: object) -> None:
        if self.proc is not None:
            await asyncio.to_thread(_stop_process, self.proc)
        if self._log is not None:
            self._log.close()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self) -> str:
        return _tail(self.log_path)


# -- the client ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Answer:
    """One result read from the reply queue."""

    sent: float  # time.time() just before the send
    received: float  # time.time() when the read that returned it finished
    reply_enqueued: float  # the reply's enqueued_at (PostgreSQL's clock, same machine)
    body: dict[str, Any]


USER_TEXT = (
    "Classify this support ticket as bug, feature request or question, and answer with one "
    "word. Ticket: the export button on the reports page does nothing when the list is empty."
)


def llm_request(reply_to: str, task_type: str, text: str = USER_TEXT) -> dict[str, Any]:
    """An `llm_requests` message as Singularity sends it."""
    return {
        "request_id": str(uuid.uuid4()),
        "reply_to": reply_to,
        "agent_id": "bench-agent",
        "task_type": task_type,
        "messages": [
            {"role": "system", "content": "You are a terse assistant."},
            {"role": "user", "content": text},
        ],
    }


class LlmClient:
    """Sends requests to `llm_requests` and reads their results from a reply queue: a pool for
    the sends, and one connection that pops the reply queue whenever its wake-up fires."""

    def __init__(self, endpoint: Endpoint, reply_to: str, *, send_connections: int = 8) -> None:
        self.endpoint = endpoint
        self.reply_to = reply_to
        self._send_connections = send_connections
        self._waiting: dict[str, asyncio.Future[tuple[float, float, dict[str, Any]]]] = {}
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.stray = 0  # results nobody waits for (a warm-up's late answer, say)

    async def __aenter__(self) -> LlmClient:
        self.pool = await open_pool(
            self.endpoint, name="bench-client", min_size=2, max_size=self._send_connections
        )
        self.listener = Listener(self.endpoint)
        self._wake = self.listener.subscribe(self.reply_to)
        self._tasks.append(asyncio.create_task(self.listener.run(self._stop)))
        await asyncio.wait_for(self.listener.connected.wait(), 10)
        self._reader_conn = await psycopg.AsyncConnection.connect(
            self.endpoint.conninfo(), autocommit=True
        )
        self._tasks.append(asyncio.create_task(self._read_loop()))
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._reader_conn.close()
        await self.pool.close()

    async def ask(self, body: dict[str, Any], timeout_s: float = 120.0) -> Answer:
        future: asyncio.Future[tuple[float, float, dict[str, Any]]] = (
            asyncio.get_running_loop().create_future()
        )
        self._waiting[body["request_id"]] = future
        async with self.pool.connection() as conn:
            sent = time.time()
            await send_message(conn, "llm_requests", body)
        try:
            received, enqueued, result = await asyncio.wait_for(future, timeout_s)
        finally:
            self._waiting.pop(body["request_id"], None)
        return Answer(sent, received, enqueued, result)

    async def _read_loop(self) -> None:
        batch = 500
        query = (
            "SELECT extract(epoch FROM enqueued_at)::float8, message::text FROM pgmq.pop(%s, %s)"
        )
        conn = self._reader_conn
        while not self._stop.is_set():
            self._wake.clear()
            rows = await (await conn.execute(query, (self.reply_to, batch))).fetchall()
            received = time.time()
            for enqueued, text in rows:
                result = json.loads(text)
                future = self._waiting.get(result.get("request_id"))
                if future is None or future.done():
                    self.stray += 1
                    continue
                future.set_result((received, enqueued, result))
            if len(rows) < batch:
                await race(self._wake.wait(), self._stop.wait(), seconds=0.05)


async def closed_loop(
    total: int,
    concurrency: int,
    one: Callable[[int], Awaitable[T]],
    *,
    stagger_s: float = 0.0,
    on_done: Callable[[], None] = lambda: None,
) -> list[T]:
    """Run `one(i)` for i in 0..total-1 with `concurrency` calls outstanding: each worker
    starts its next call as soon as its last one returns. Workers start `stagger_s` apart, so
    that calls arrive as a steady stream rather than in waves of `concurrency` at once."""
    counter = itertools.count()
    results: list[T | None] = [None] * total

    async def worker(w: int) -> None:
        if stagger_s:
            await asyncio.sleep(w * stagger_s)
        while (i := next(counter)) < total:
            results[i] = await one(i)
            on_done()

    await asyncio.gather(*(worker(w) for w in range(min(concurrency, total))))
    return [r for r in results if r is not None]


class CpuMeter:
    """CPU time of groups of processes, and of the whole machine, over a stretch of wall time.

    A group is a callable that lists its pids when the meter starts (a server's backends come
    and go; those that end before the meter stops are not counted)."""

    def __init__(self, groups: dict[str, Callable[[], list[int]]]) -> None:
        self._groups = groups
        self._pids: dict[str, list[int]] = {}
        self._start: dict[str, float] = {}
        self._wall = 0.0
        self._machine: Any = None

    def start(self) -> None:
        self._pids = {name: pids() for name, pids in self._groups.items()}
        self._start = {name: _cpu_s(pids) for name, pids in self._pids.items()}
        self._wall = time.monotonic()
        self._machine = psutil.cpu_times()

    def stop(self) -> dict[str, float]:
        """Percent of one core per group (100 = one core busy), `machine_busy_pct` of all
        cores, and `others_pct`: what the machine did besides these groups, in one-core %."""
        wall = time.monotonic() - self._wall
        used = {
            f"{name}_cpu_pct": round((_cpu_s(pids) - self._start[name]) / wall * 100, 1)
            for name, pids in self._pids.items()
        }
        before, after = self._machine, psutil.cpu_times()
        idle = (after.idle + after.iowait) - (before.idle + before.iowait)
        total = sum(after) - sum(before)
        cores = psutil.cpu_count() or 1
        busy = (1 - idle / total) if total else math.nan
        ours = sum(v for v in used.values() if not math.isnan(v))
        used["machine_busy_pct"] = round(busy * 100, 1)
        used["others_pct"] = round(max(0.0, busy * cores * 100 - ours), 1)
        used["wall_s"] = round(wall, 2)
        return used


def _cpu_s(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            times = psutil.Process(pid).cpu_times()
            total += times.user + times.system
    return total


def this_process() -> list[int]:
    return [os.getpid()]


def postgres_pids(platform: Platform) -> Callable[[], list[int]]:
    """The server's processes: its postmaster and every child, when the meter starts."""

    def pids() -> list[int]:
        if not platform.postmaster_pid:
            return []
        try:
            postmaster = psutil.Process(platform.postmaster_pid)
            return [postmaster.pid, *(c.pid for c in postmaster.children())]
        except psutil.Error:
            return []

    return pids


def versions(*packages: str) -> dict[str, str]:
    """Installed versions of these distributions."""
    found = {}
    for name in packages:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]
