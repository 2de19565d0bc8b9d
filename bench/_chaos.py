"""What the soak and chaos run needs besides the Nexus benchmarks' parts: service processes
under a supervisor that restarts them, SIGKILLs on demand, and restarts of PostgreSQL itself."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import psutil
import psycopg

from _nexus import Platform, _tail, process_env
from singularity.postgres import embedded
from singularity.postgres.embedded import EmbeddedServer

# A service that exits this soon after a database restart is counted as forced out by it.
FORCED_WINDOW_S = 60.0


@dataclass
class Exit:
    """A service process that ended without being killed by the chaos."""

    service: str
    at: float  # time.time()
    code: int | None
    log_tail: str


@dataclass
class ServiceProcess:
    """`python -m singularity run SERVICE` in its own process, restartable, with one log file
    across its restarts (each start is marked in it)."""

    label: str  # nexus, genesis-1, ...
    service: str
    platform: Platform
    env: dict[str, str]
    ready_check: Callable[[ServiceProcess], Awaitable[bool]]
    log_path: Path = field(init=False)
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    ready: bool = False
    killed: bool = False  # the current process was killed on purpose
    _log: IO[bytes] | None = None
    _log_offset: int = 0

    def __post_init__(self) -> None:
        self.log_path = self.platform.home / f"{self.label}.log"

    def spawn(self) -> None:
        if self._log is None:
            self._log = self.log_path.open("ab")
        self.starts += 1
        self._log.write(f"--- start {self.starts} at {time.strftime('%H:%M:%S')} ---\n".encode())
        self._log.flush()
        self._log_offset = self.log_path.stat().st_size
        self.ready = False
        self.killed = False
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "singularity", "run", self.service],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.platform.home,  # no .env of a developer's working directory
            env=process_env(self.platform, **self.env),
        )

    async def wait_ready(self, seconds: float = 120.0) -> float:
        """Seconds until the service is ready; RuntimeError if it exits or takes too long."""
        started = time.monotonic()
        while not await self.ready_check(self):
            if not self.alive():
                raise RuntimeError(f"{self.label} exited at start:\n{self.log_tail()}")
            if time.monotonic() - started > seconds:
                raise TimeoutError(f"{self.label} did not start:\n{self.log_tail()}")
            await asyncio.sleep(0.1)
        self.ready = True
        return time.monotonic() - started

    def kill(self) -> None:
        """SIGKILL: no shutdown, no release of anything it holds."""
        assert self.proc is not None
        self.killed = True
        self.ready = False
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, seconds: float = 30.0) -> None:
        """SIGTERM, as an operator stops a service; SIGKILL after `seconds`."""
        if self.proc is not None and self.proc.poll() is None:
            self.killed = True
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(seconds)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self._log is not None:
            self._log.close()
            self._log = None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def output_since_start(self) -> str:
        with contextlib.suppress(OSError), self.log_path.open("rb") as handle:
            handle.seek(self._log_offset)
            return handle.read().decode(errors="replace")
        return ""

    def log_tail(self) -> str:
        return _tail(self.log_path)


def nexus_process(platform: Platform, port: int, env: dict[str, str]) -> ServiceProcess:
    """Nexus on a fixed port (a restart answers at the same address), ready when /healthz says
    its consumers listen."""

    async def ready(service: ServiceProcess) -> bool:
        with contextlib.suppress(httpx.HTTPError, ValueError):
            async with httpx.AsyncClient(timeout=2.0) as client:
                response = await client.get(f"http://127.0.0.1:{port}/healthz")
                return response.status_code == 200 and bool(response.json().get("listening"))
        return False

    return ServiceProcess("nexus", "nexus", platform, {"PORT": str(port), **env}, ready)


def genesis_process(platform: Platform, number: int, env: dict[str, str]) -> ServiceProcess:
    """A Genesis worker with a data directory of its own (as on a host of its own), ready when
    it logs that it started."""

    async def ready(service: ServiceProcess) -> bool:
        return "genesis_started" in service.output_since_start()

    data = platform.home / f"genesis-{number}"
    own = {"GENESIS_DATA_DIR": str(data), **env}
    return ServiceProcess(f"genesis-{number}", "genesis", platform, own, ready)


@dataclass
class Restart:
    """One restart of PostgreSQL."""

    mode: str
    started: float  # time.time()
    seconds: float


class Supervisor:
    """Restarts a service that exits, as systemd or Kubernetes would, and records each exit
    it did not cause; `kill()` is the chaos: SIGKILL, a pause, a new process."""

    def __init__(self, services: list[ServiceProcess], *, restart_delay_s: float) -> None:
        self.services = services
        self.restart_delay_s = restart_delay_s
        self.exits: list[Exit] = []
        self.kills: list[dict[str, Any]] = []
        self.start_failures: list[str] = []
        self._restarting: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start_all(self) -> None:
        for service in self.services:
            service.spawn()
        await asyncio.gather(*(s.wait_ready() for s in self.services))

    def ready(self) -> list[ServiceProcess]:
        return [
            s for s in self.services if s.ready and s.alive() and s.label not in self._restarting
        ]

    def all_ready(self) -> bool:
        return len(self.ready()) == len(self.services)

    def kill(self, service: ServiceProcess) -> None:
        """SIGKILL it now; a new process starts after the restart delay."""
        at = time.time()
        service.kill()
        record: dict[str, Any] = {"service": service.label, "at": at, "ready_after_s": None}
        self.kills.append(record)
        self._restart(service, record)

    async def watch(self, stop: asyncio.Event) -> None:
        """Until `stop`: restart any service that exits on its own, and say so."""
        while not stop.is_set():
            for service in self.services:
                proc = service.proc
                if service.label in self._restarting or proc is None or service.killed:
                    continue
                code = proc.poll()
                if code is not None:
                    self.exits.append(Exit(service.label, time.time(), code, service.log_tail()))
                    self._restart(service, None)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.2)

    def _restart(self, service: ServiceProcess, record: dict[str, Any] | None) -> None:
        self._restarting.add(service.label)
        task = asyncio.create_task(self._bring_back(service, record))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _bring_back(self, service: ServiceProcess, record: dict[str, Any] | None) -> None:
        started = time.monotonic()
        try:
            await asyncio.sleep(self.restart_delay_s)
            while True:
                service.spawn()
                try:
                    await service.wait_ready()
                    break
                except (RuntimeError, TimeoutError) as exc:
                    # It could not start (the database may be restarting): try again, as a
                    # supervisor does, and keep the reason.
                    self.start_failures.append(f"{service.label}: {str(exc).splitlines()[0]}")
                    if service.alive():
                        service.kill()
                    await asyncio.sleep(self.restart_delay_s)
            if record is not None:
                record["ready_after_s"] = round(time.monotonic() - started, 2)
        finally:
            self._restarting.discard(service.label)

    async def settle(self, seconds: float = 180.0) -> None:
        """Until every restart under way has finished."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=seconds)

    async def stop_all(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*(asyncio.to_thread(s.stop) for s in self.services))


def restart_postgres(platform: Platform, mode: str, command: str | None) -> Restart:
    """Restart the platform's PostgreSQL and wait until it accepts connections again.

    The embedded server is restarted with `pg_ctl restart -m MODE` on its data directory, as
    its system user, under the lock a starting service takes (so that none tries to start the
    server meanwhile); any other server with `command` (`{mode}` in it is replaced)."""
    started_wall, started = time.time(), time.monotonic()
    if command is not None:
        subprocess.run(
            shlex.split(command.format(mode=mode)), check=True, capture_output=True, timeout=300
        )
        _wait_accepting(platform, 120.0)
    else:
        server = EmbeddedServer(platform.home)
        system_user = embedded._SYSTEM_USER if os.geteuid() == 0 else None
        with server._lock():
            embedded._pgserver().pg_ctl(
                ["-w", "-t", "120", "-m", mode, "-l", str(server.pgdata / "log"), "restart"],
                pgdata=server.pgdata,
                user=system_user,
                timeout=180,
            )
            embedded._wait_ready(server.pgdata)
    return Restart(mode, started_wall, round(time.monotonic() - started, 2))


def _wait_accepting(platform: Platform, seconds: float) -> None:
    """Until the server takes a connection again (a restart command may return earlier)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            psycopg.connect(platform.bus.conninfo(connect_timeout=2)).close()
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _tree_cpu_s(root: int) -> float:
    """CPU seconds of a process and all its descendants, including those that ended and were
    reaped (their time is in their parent's children_* counters)."""
    total = 0.0
    try:
        top = psutil.Process(root)
        procs = [top, *top.children(recursive=True)]
    except psutil.Error:
        return 0.0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            t = proc.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
    return total


def _machine_busy_s() -> float:
    """CPU seconds all cores spent busy since boot."""
    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0)


@dataclass
class CpuSample:
    at: float  # time.time()
    machine_busy_s: float
    ours_s: float  # this script, every process it started, and the PostgreSQL server


class CpuSampler:
    """The machine's busy CPU time beside the run's own, sampled now and then: what is left
    is other work on the machine, which slows the run without being part of it."""

    def __init__(self, roots: Callable[[], list[int]]) -> None:
        self._roots = roots
        self.samples: list[CpuSample] = []

    def sample(self) -> None:
        ours = sum(_tree_cpu_s(pid) for pid in self._roots() if pid)
        self.samples.append(CpuSample(time.time(), _machine_busy_s(), ours))

    async def run(self, stop: asyncio.Event, every_s: float) -> None:
        while not stop.is_set():
            self.sample()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every_s)
        self.sample()

    def between(self, start: float, end: float) -> dict[str, float] | None:
        """One-core percentages over [start, end] (the samples inside it): the whole machine
        busy, the run's processes, and the rest."""
        inside = [s for s in self.samples if start <= s.at <= end]
        if len(inside) < 2 or inside[-1].at <= inside[0].at:
            return None
        wall = inside[-1].at - inside[0].at
        busy = (inside[-1].machine_busy_s - inside[0].machine_busy_s) / wall * 100
        # Summed per interval: a killed service's time moves to this script's counters when
        # it is reaped, but a restarted PostgreSQL starts new counters, and the interval of a
        # restart (a drop) counts as zero rather than cancelling everything before it.
        used = sum(max(0.0, b.ours_s - a.ours_s) for a, b in itertools.pairwise(inside))
        ours = min(used / wall * 100, busy)
        return {
            "machine_busy_pct": round(busy, 1),
            "run_pct": round(ours, 1),
            "others_pct": round(busy - ours, 1),
            "cores": psutil.cpu_count() or 1,
        }


def postmaster_pid(platform: Platform) -> int:
    """The server's main process now (it changes with each restart); 0 when not on this
    machine or not known."""
    if platform.cluster.embedded:
        info = EmbeddedServer(platform.home).info()
        return info.pid if info else 0
    return platform.postmaster_pid
