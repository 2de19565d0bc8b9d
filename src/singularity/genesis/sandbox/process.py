"""One spawned sandbox, followed to its end: output read, limits watched, the tree killed, reaped.

A sandbox runs one or more steps one after another (see `reaper.py`). Each step's output pipes
are read as they fill, each kept up to its cap; going past the cap, like the step's wall clock
running out (it starts when the previous step ends), stops the run. Stopping asks the reaper
(through its control pipe) to kill the tree and report; if it does not answer within a grace
period, the sandbox's PID 1 is killed (the kernel then kills its whole namespace), and last
bubblewrap itself. The process is reaped with a pidfd, so no other waiter in the worker can
take its status. Last, unless the reaper said its last word (written only once it has killed
and reaped everything else in its namespace), the host is swept for anything left in the run's
PID namespace.

The sandbox's PID 1 is known from bubblewrap's status (its pid and its PID namespace), checked
with a pidfd and the namespace's inode; only without that status is /proc read for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import select
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from singularity.genesis.sandbox import sweep
from singularity.genesis.sandbox.command import Command
from singularity.genesis.sandbox.streams import Capture, Drain, Report, StepSeen

__all__ = ["Child", "Supervised"]

log = structlog.get_logger(__name__)

GRACE_S = 1.0  # for the reaper to kill the tree and report
KILL_WAIT_S = 5.0  # for the kernel to tear a namespace down after its PID 1 is killed
DRAIN_S = 2.0  # for the pipes to reach EOF once the tree is gone
_SETUP_BYTES = 1 << 16  # of bubblewrap's own messages (and the reaper's report), kept


@dataclass(frozen=True)
class Supervised:
    """Everything the host saw of one sandbox."""

    steps: list[StepSeen]  # those the reaper started (or the first, if none was), in order
    wait_status: int
    setup_stderr: bytes  # bubblewrap's own messages (and the reaper's, had it failed)
    stopped: bool  # the host ended the run (time, output, or the reaper not answering)
    started: bool  # the reaper started a step: the sandbox itself was set up
    status: dict[str, Any]  # bubblewrap's status documents, merged


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
        self.finished = False  # the reaper wrote its last report: only it is left
        self._seen: list[StepSeen] = []
        self._setup = Capture(_SETUP_BYTES)
        self._changed = asyncio.Event()  # the process exited, a step ended, or a limit was hit
        self._progress = False  # a step ended
        self._last_end = 0.0
        self.limit_hit = False  # the run must stop
        self._exited: asyncio.Future[None] | None = None
        self._reaped: int | None = None

    @classmethod
    def spawn(cls, command: Command, *, control: int, namespace: bool) -> Child:
        """Start `command`; writing to `control` asks its reaper to stop."""
        switch = {} if command.user is None else {"user": command.user, "group": command.user}
        popen = subprocess.Popen(
            command.argv,
            stdin=subprocess.DEVNULL,  # each step has a stdin of its own
            stdout=subprocess.DEVNULL,
            stderr=command.stderr,
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
        report: int,
        outputs: list[tuple[int, int]],
        guard: Callable[[], Awaitable[None]] | None = None,
    ) -> Supervised:
        """Follow the run to its end (the last step's, or a limit's); reaps the process.

        `report` is the report pipe's read end, `outputs` each step's stdout and stderr (read
        ends, non-blocking, owned by the caller: closed only after this returns). The wall
        clock and the output caps apply to each step. `guard`, when given, runs beside the
        steps; its return stops the run (a limit the host watches, such as a work directory's
        quota, was hit).
        """
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        self._seen = [self._step(index, output_bytes) for index in range(len(outputs))]
        self._seen[0].started_at = started
        drains = [Drain(report, each_line=self._line)]
        for seen, (out, err) in zip(self._seen, outputs, strict=True):
            drains += [Drain(out, seen.stdout), Drain(err, seen.stderr)]
        exited = self._exited = loop.create_future()
        loop.add_reader(self._pidfd, self._on_exit)
        guarding = [asyncio.ensure_future(self._guard(guard))] if guard is not None else []
        try:
            if not await self._follow(exited, wall_s):
                self._current().timed_out = True
            if not exited.done():
                await self._end(exited)
            ended = time.monotonic()
            await _finish(drains)
            wait_status = self._reap()
            if not self.finished:
                await self._sweep()
        finally:
            # The tree is gone before any pipe closes: bubblewrap, still setting up, dies of
            # SIGPIPE writing its status to a closed pipe, and leaves its child waiting forever.
            self._abandon()
            # Each pipe is unregistered before the caller closes it, or a new descriptor of the
            # same number could lose its registration.
            loop.remove_reader(self._pidfd)
            for drain in drains:
                drain.stop()
            for task in guarding:
                task.cancel()
            await asyncio.gather(*guarding, return_exceptions=True)
            self._close()
        for seen in self._seen:
            if seen.ended_at is None:
                seen.ended_at = ended
        ran = [seen for seen in self._seen if seen.started] or self._seen[:1]
        return Supervised(
            steps=ran,
            wait_status=wait_status,
            setup_stderr=bytes(self._setup.data),
            stopped=self.stopped,
            started=self.started,
            status=self.status,
        )

    def _on_exit(self) -> None:
        # Readable for good once the process has exited: unregistered at once.
        asyncio.get_running_loop().remove_reader(self._pidfd)
        if self._exited is not None and not self._exited.done():
            self._exited.set_result(None)
        self._changed.set()

    def _hit_limit(self) -> None:
        self.limit_hit = True
        self._changed.set()

    def _step(self, index: int, output_bytes: int) -> StepSeen:
        def overflow() -> None:
            self._seen[index].output_limited = True
            self._hit_limit()

        return StepSeen(Capture(output_bytes, overflow), Capture(output_bytes, overflow))

    def _current(self) -> StepSeen:
        """The step running now (or the last one to run)."""
        ended = sum(seen.report is not None for seen in self._seen)
        return self._seen[min(ended, len(self._seen) - 1)]

    async def _follow(self, exited: asyncio.Future[None], wall_s: float) -> bool:
        """Wait for the end or a limit; False when a step's clock ran out first."""
        deadline = (self._seen[0].started_at or time.monotonic()) + wall_s
        while not (exited.done() or self.limit_hit):
            if self._progress:
                self._progress = False
                deadline = self._last_end + wall_s  # the next step's clock starts
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._changed.clear()
            try:
                async with asyncio.timeout(left):
                    await self._changed.wait()
            except TimeoutError:
                if not (exited.done() or self.limit_hit or self._progress):
                    return False
        return True

    def _line(self, line: bytes) -> None:
        """A line of the report pipe: the reaper's, bubblewrap's status, or a message."""
        if line.startswith(b"{"):
            self._status_line(line)
        elif not (line.startswith((b"pid ", b"end ")) and self._reaper_line(line)):
            self._setup.take(line)

    async def _sweep(self) -> None:
        if self._namespace_fd is not None:
            inode = os.fstat(self._namespace_fd).st_ino
            await sweep.sweep(sweep.in_namespace(inode), what="namespace")

    async def _guard(self, guard: Callable[[], Awaitable[None]]) -> None:
        try:
            await guard()
        except Exception:  # a guard that fails stops nothing; the run's own limits still hold
            log.exception("sandbox_guard_failed", pid=self.pid)
            return
        self._current().disk_limited = True
        self._hit_limit()

    def _reaper_line(self, line: bytes) -> bool:
        """Take a report line; whether it was one."""
        words = line.decode(errors="replace").split()
        if len(words) < 3 or words[0] not in ("pid", "end") or not words[1].isdigit():
            return False
        index = int(words[1])
        if index >= len(self._seen):
            return False
        seen = self._seen[index]
        if words[0] == "pid" and len(words) == 3 and words[2].isdigit():
            self.started = seen.started = True
            if not self._namespace:
                self._group = int(words[2])
            return True
        seen.report = Report.parse(words[2:])
        if seen.report is None:
            return False
        self._last_end = seen.ended_at = time.monotonic()
        if index + 1 < len(self._seen) and seen.report.exit_code == 0 and not seen.report.stopped:
            self._seen[index + 1].started_at = self._last_end
        else:
            self.finished = True  # the reaper's last word: it returns next
        self._progress = True
        self._changed.set()
        return True

    def _status_line(self, line: bytes) -> None:
        with contextlib.suppress(ValueError):
            document = json.loads(line)
            if isinstance(document, dict):
                self.status.update(document)
                if "child-pid" in document:
                    namespace = document.get("pid-namespace")
                    if isinstance(namespace, int):
                        self._learn_init_in(int(document["child-pid"]), namespace)
                    else:
                        self._learn_init(int(document["child-pid"]))

    def _learn_init_in(self, pid: int, namespace: int) -> None:
        """PID 1 as bubblewrap named it: `pid`, checked to be in the PID namespace `namespace`
        (bubblewrap's too) while it runs, so no reused pid is taken for it."""
        if self._init_pidfd is not None or namespace == _own_namespace():
            return
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            return
        try:
            fd = os.open(f"/proc/{pid}/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            os.close(pidfd)
            return
        # Still running once its namespace was read: the pid was not reused in between.
        if os.fstat(fd).st_ino != namespace or select.select([pidfd], [], [], 0)[0]:
            os.close(fd)
            os.close(pidfd)
            return
        self._init_pidfd = pidfd
        self._namespace_fd = fd

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
        if await _within(exited, GRACE_S):
            return
        log.warning("sandbox_reaper_silent", pid=self.pid)
        self._kill_init()
        if await _within(exited, KILL_WAIT_S):
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


async def _within(exited: asyncio.Future[None], seconds: float) -> bool:
    """Wait for the exit at most `seconds`; whether it came."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await asyncio.shield(exited)
    return exited.done()


async def _finish(drains: list[Drain]) -> None:
    """Let the pipes reach EOF; a pipe a stray process still holds is given up on."""
    pending = [drain.done for drain in drains if not drain.done.done()]
    if pending:
        await asyncio.wait(pending, timeout=DRAIN_S)
    for drain in drains:
        drain.stop()
