"""One spawned sandbox, followed to its end: output read, limits watched, the tree killed, reaped.

Both output pipes are read as they fill, each kept up to its cap; going past the cap, like the
wall clock running out, stops the run. Stopping asks the reaper (through its control pipe) to
kill the tree and report; if it does not answer within a grace period, the sandbox's PID 1 is
killed (the kernel then kills its whole namespace), and last bubblewrap itself. The process is
reaped with a pidfd, so no other waiter in the worker can take its status. Last, the host is
swept for anything left in the run's PID namespace (there should be nothing).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import structlog

from singularity.genesis.sandbox import sweep
from singularity.genesis.sandbox.command import Command

__all__ = ["Child", "Report", "Supervised"]

log = structlog.get_logger(__name__)

GRACE_S = 1.0  # for the reaper to kill the tree and report
KILL_WAIT_S = 5.0  # for the kernel to tear a namespace down after its PID 1 is killed
DRAIN_S = 2.0  # for the pipes to reach EOF once the tree is gone
_CHUNK = 1 << 16


@dataclass(frozen=True)
class Report:
    """The reaper's last line: how the program ended, and the tree's rusage."""

    signal: int | None
    exit_code: int | None
    cpu_ms: float
    max_rss_kb: int

    @classmethod
    def parse(cls, text: str) -> Report | None:
        """The report in the reaper's output, or None when it never got to write one."""
        for line in reversed(text.splitlines()):
            words = line.split()
            if len(words) == 6 and words[0] in ("exit", "signal"):
                code, user, system, rss = int(words[1]), float(words[2]), float(words[3]), words[4]
                signum = code if words[0] == "signal" else None
                exit_code = code if words[0] == "exit" else None
                return cls(signum, exit_code, (user + system) * 1000, int(rss))
        return None


@dataclass(frozen=True)
class Supervised:
    """Everything the host saw of one sandbox."""

    report: Report | None
    wait_status: int
    stdout: bytes
    stderr: bytes
    stdout_truncated: bool
    stderr_truncated: bool
    timed_out: bool
    output_limited: bool
    disk_limited: bool  # the guard found the work directory over its quota
    stopped: bool  # the host ended the run (time, output, or the reaper not answering)
    started: bool  # the reaper started the program: the sandbox itself was set up
    wall_ms: float
    status: dict[str, Any]  # bubblewrap's status documents, merged


class _Capture:
    """Bytes of one stream up to a cap; past it, the rest is discarded and `on_overflow` told."""

    def __init__(self, cap: int, on_overflow: Callable[[], None] = lambda: None) -> None:
        self.data = bytearray()
        self.truncated = False
        self._cap = cap
        self._on_overflow = on_overflow

    async def drain(
        self, pipe: IO[bytes], each_line: Callable[[bytes], None] | None = None
    ) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=_CHUNK)
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), pipe
        )
        try:
            while chunk := await (reader.readline() if each_line else reader.read(_CHUNK)):
                self._take(chunk)
                if each_line:
                    each_line(chunk)
        finally:
            transport.close()

    def _take(self, chunk: bytes) -> None:
        room = self._cap - len(self.data)
        if len(chunk) <= room:
            self.data += chunk
            return
        self.data += chunk[: max(room, 0)]
        if not self.truncated:
            self.truncated = True
            self._on_overflow()


class Child:
    """A started sandbox: bubblewrap (or, unsafe, the reaper itself) and what it inherited."""

    def __init__(self, popen: subprocess.Popen[bytes], control: int, *, namespace: bool) -> None:
        self.popen = popen
        self.pid = popen.pid
        self._pidfd = os.pidfd_open(popen.pid)
        self._control = control
        self._namespace = namespace
        self._init_pidfd: int | None = None  # the sandbox's PID 1, once bubblewrap names it
        # Held open, the namespace cannot be freed, so its inode is not reused by a later run's
        # while this run's sweep looks for it.
        self._namespace_fd: int | None = None
        self._group: int | None = None  # unsafe: the program's process group
        self.status: dict[str, Any] = {}
        self.started = False
        self.stopped = False
        self.overflowed = False  # a stream went past its cap
        self.guarded = False  # the guard returned: a limit it watches was hit
        self.limit_hit = asyncio.Event()  # either: the run must stop
        self._reaped: int | None = None

    @classmethod
    def spawn(cls, command: Command, stdin: int | None, *, control: int, namespace: bool) -> Child:
        """Start `command`; writing to `control` asks its reaper to stop."""
        switch = {} if command.user is None else {"user": command.user, "group": command.user}
        popen = subprocess.Popen(
            command.argv,
            stdin=subprocess.DEVNULL if stdin is None else stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=command.pass_fds,
            env=command.env,
            cwd=command.cwd,
            start_new_session=True,
            **({**switch, "extra_groups": []} if switch else {}),
        )
        return cls(popen, control, namespace=namespace)

    async def supervise(
        self,
        *,
        wall_s: float,
        output_bytes: int,
        report: IO[bytes],
        status: IO[bytes] | None,
        guard: Callable[[], Awaitable[None]] | None = None,
    ) -> Supervised:
        """Follow the run to its end (the program's, or the limits'); reaps the process.

        `guard`, when given, runs beside the program; its return stops the run (a limit the
        host watches, such as a work directory's quota, was hit).
        """
        started = time.monotonic()
        out, err = _Capture(output_bytes, self._overflow), _Capture(output_bytes, self._overflow)
        said = _Capture(1 << 16)
        readers = self._read(out, err, said, report, status)
        exited = asyncio.ensure_future(_readable(self._pidfd))
        guarding = [asyncio.ensure_future(self._guard(guard))] if guard is not None else []
        try:
            timed_out = not await _first(exited, self.limit_hit, within=wall_s)
            if not exited.done():
                await self._end(exited)
            wall_ms = (time.monotonic() - started) * 1000
            await _finish(readers)
            wait_status = self._reap()
            await self._sweep()
        finally:
            # The tree is gone before any pipe closes: bubblewrap, still setting up, dies of
            # SIGPIPE writing its status to a closed pipe, and leaves its child waiting forever.
            self._abandon()
            # Awaited, not only cancelled: each reader must unregister its pipe before the pipe
            # is closed, or a new descriptor of the same number could lose its registration.
            for task in (exited, *readers, *guarding):
                task.cancel()
            await asyncio.gather(exited, *readers, *guarding, return_exceptions=True)
            self._close()
        return Supervised(
            report=Report.parse(said.data.decode(errors="replace")),
            wait_status=wait_status,
            stdout=bytes(out.data),
            stderr=bytes(err.data),
            stdout_truncated=out.truncated,
            stderr_truncated=err.truncated,
            timed_out=timed_out and not self.limit_hit.is_set(),
            output_limited=self.overflowed,
            disk_limited=self.guarded,
            stopped=self.stopped,
            started=self.started or said.data.startswith(b"pid"),
            wall_ms=wall_ms,
            status=self.status,
        )

    def _read(
        self,
        out: _Capture,
        err: _Capture,
        said: _Capture,
        report: IO[bytes],
        status: IO[bytes] | None,
    ) -> list[asyncio.Task[None]]:
        """Tasks reading the program's streams, the reaper's report and bubblewrap's status."""
        assert self.popen.stdout is not None and self.popen.stderr is not None
        readers = [
            asyncio.create_task(out.drain(self.popen.stdout)),
            asyncio.create_task(err.drain(self.popen.stderr)),
            asyncio.create_task(said.drain(report, self._reaper_line)),
        ]
        if status is not None:
            told = _Capture(1 << 16)
            readers.append(asyncio.create_task(told.drain(status, self._status_line)))
        return readers

    async def _sweep(self) -> None:
        if self._namespace_fd is not None:
            inode = os.fstat(self._namespace_fd).st_ino
            await sweep.sweep(sweep.in_namespace(inode), what="namespace")

    def _overflow(self) -> None:
        self.overflowed = True
        self.limit_hit.set()

    async def _guard(self, guard: Callable[[], Awaitable[None]]) -> None:
        try:
            await guard()
        except Exception:  # a guard that fails stops nothing; the run's own limits still hold
            log.exception("sandbox_guard_failed", pid=self.pid)
            return
        self.guarded = True
        self.limit_hit.set()

    def _reaper_line(self, line: bytes) -> None:
        words = line.split()
        if len(words) == 2 and words[0] == b"pid":
            self.started = True
            if not self._namespace:
                self._group = int(words[1])

    def _status_line(self, line: bytes) -> None:
        with contextlib.suppress(ValueError):
            document = json.loads(line)
            if isinstance(document, dict):
                self.status.update(document)
                if "child-pid" in document:
                    self._learn_init(int(document["child-pid"]))

    def _learn_init(self, pid: int) -> None:
        if self._init_pidfd is not None:
            return
        pidfd = _child_pidfd(pid, self.pid)
        if pidfd is None:
            return
        try:
            fd = os.open(f"/proc/{pid}/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            # Ended already (a zombie has no namespaces): most often the staging's `mount`, seen
            # before bubblewrap started. Taken for PID 1, its kill would miss the real one.
            os.close(pidfd)
            return
        if os.fstat(fd).st_ino == _own_namespace():
            # A child of the launcher before it became bubblewrap (the staging's `mount`), not
            # the sandbox's init: its namespace is the host's, which no sweep may touch.
            os.close(fd)
            os.close(pidfd)
            return
        self._init_pidfd = pidfd
        if _is_child(pid, self.pid):
            self._namespace_fd = fd
        else:
            os.close(fd)  # it ended meanwhile: that may not have been ours

    async def _end(self, exited: asyncio.Future[None]) -> None:
        """Stop the run: the reaper first, then PID 1 of the sandbox, then bubblewrap."""
        self._stop()
        if await _first(exited, within=GRACE_S):
            return
        log.warning("sandbox_reaper_silent", pid=self.pid)
        self._kill_init()
        if await _first(exited, within=KILL_WAIT_S):
            return
        self._kill_outer()
        await exited

    def _stop(self) -> None:
        self.stopped = True
        with contextlib.suppress(OSError):
            os.write(self._control, b"x")

    def _kill_init(self) -> None:
        if self._init_pidfd is None and self._namespace:
            self._find_init()
        if self._init_pidfd is not None:
            with contextlib.suppress(OSError):
                signal.pidfd_send_signal(self._init_pidfd, signal.SIGKILL)
        if self._group is not None:
            with contextlib.suppress(OSError):
                os.killpg(self._group, signal.SIGKILL)

    def _find_init(self) -> None:
        """Learn PID 1 from /proc when bubblewrap's status was not read (a busy host, a cancel).

        bubblewrap may not have cloned it yet: wait for that (or for bubblewrap to end) rather
        than kill bubblewrap first, which would orphan a PID 1 about to be born, and a host
        whose init does not reap would keep it as a zombie for good.
        """
        # As long as the staging prefix (unshare, mounts, setpriv) runs before bubblewrap: on
        # a busy host that alone can take longer than the reaper's grace.
        deadline = time.monotonic() + KILL_WAIT_S
        while self._init_pidfd is None and time.monotonic() < deadline:
            for pid in _children(self.pid):
                self._learn_init(pid)
            if self._init_pidfd is None and not self._exits_within(0.005):
                continue
            return

    def _kill_outer(self) -> None:
        with contextlib.suppress(OSError):
            signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)

    def _reap(self) -> int:
        if self._reaped is None:
            _, self._reaped, _ = os.wait4(self.pid, 0)
            self.popen.returncode = os.waitstatus_to_exitcode(self._reaped)
        return self._reaped

    def _abandon(self) -> None:
        """However the supervision ended (a cancelled job too): nothing keeps running."""
        if self._reaped is None:
            self._kill_init()
            # bubblewrap exits once the sandbox's PID 1 has, which is after the kernel killed
            # the rest of its namespace: wait for that (briefly blocking), not just for a kill.
            if self._init_pidfd is None or not self._exits_within(KILL_WAIT_S):
                self._kill_outer()
            self._reap()

    def _close(self) -> None:
        for pipe in (self.popen.stdout, self.popen.stderr):
            if pipe is not None:
                pipe.close()
        for fd in (self._pidfd, self._control, self._init_pidfd, self._namespace_fd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)

    def _exits_within(self, seconds: float) -> bool:
        """Reap the process if it ends within `seconds` (blocking); whether it did."""
        deadline = time.monotonic() + seconds
        while self._reaped is None and time.monotonic() < deadline:
            pid, status, _ = os.wait4(self.pid, os.WNOHANG)
            if pid:
                self._reaped = status
                self.popen.returncode = os.waitstatus_to_exitcode(status)
                break
            time.sleep(0.005)
        return self._reaped is not None


@functools.cache
def _own_namespace() -> int:
    return os.stat("/proc/self/ns/pid").st_ino


def _child_pidfd(pid: int, parent: int) -> int | None:
    """A pidfd of `pid` if it is still `parent`'s child (its pid was not reused)."""
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return None
    if not _is_child(pid, parent):
        os.close(fd)
        return None
    return fd


def _children(pid: int) -> list[int]:
    try:
        return [
            int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        ]
    except OSError:
        return []


def _is_child(pid: int, parent: int) -> bool:
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
        return next(int(line.split()[1]) for line in lines if line.startswith("PPid:")) == parent
    except (OSError, StopIteration, ValueError):
        return False


async def _readable(fd: int) -> None:
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    loop.add_reader(fd, lambda: ready.done() or ready.set_result(None))
    try:
        await ready
    finally:
        loop.remove_reader(fd)


async def _first(
    exited: asyncio.Future[None], event: asyncio.Event | None = None, *, within: float
) -> bool:
    """Wait for the exit (or the event) at most `within` seconds; whether either came."""
    waiters: set[asyncio.Future[Any]] = {exited}
    flag = asyncio.ensure_future(event.wait()) if event is not None else None
    if flag is not None:
        waiters.add(flag)
    try:
        done, _ = await asyncio.wait(waiters, timeout=within, return_when="FIRST_COMPLETED")
    finally:
        if flag is not None:
            flag.cancel()
    return bool(done)


async def _finish(readers: list[asyncio.Task[None]]) -> None:
    """Let the readers reach EOF; a pipe a stray process still holds is given up on."""
    _, pending = await asyncio.wait(readers, timeout=DRAIN_S)
    for task in pending:
        task.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
