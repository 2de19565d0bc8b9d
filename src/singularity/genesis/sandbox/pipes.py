"""The descriptors of one run: pipes to and from the sandbox, memfds of its inputs.

Each step of a run has its own stdout and stderr pipes (the reaper gives them to that step
only), so its output and its caps are its own.

Every descriptor is closed exactly once: a second close, after the number was reused by a
concurrent run, would close someone else's.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from typing import IO

from singularity.genesis.limits import Limits
from singularity.genesis.sandbox import command as commands
from singularity.genesis.sandbox import staging

__all__ = ["Fds", "Pipes"]


class Fds:
    """Descriptors a run owns, each closed exactly once, at the latest when `stack` closes."""

    def __init__(self, stack: contextlib.ExitStack) -> None:
        self._open: set[int] = set()
        stack.callback(lambda: self.close(*list(self._open)))

    def own(self, fd: int) -> int:
        """Track `fd`; returns it."""
        self._open.add(fd)
        return fd

    def memfd(self, data: bytes) -> int:
        """A sealed memfd with `data`, owned."""
        return self.own(staging.sealed_memfd(data))

    def release(self, fd: int) -> None:
        """Stop tracking `fd`: its new owner closes it."""
        self._open.discard(fd)

    def close(self, *fds: int) -> None:
        """Close those of `fds` still open."""
        for fd in fds:
            if fd in self._open:
                self._open.discard(fd)
                with contextlib.suppress(OSError):
                    os.close(fd)


class Pipes:
    """The reaper's report and control pipes, and bubblewrap's status pipe."""

    def __init__(self, stack: contextlib.ExitStack, fds: Fds, *, status: bool) -> None:
        self.fds = fds
        self._stack = stack
        self._steps: list[tuple[int, int, int]] = []  # each step's stdin, stdout, stderr
        self.outputs: list[tuple[IO[bytes], IO[bytes]]] = []  # the host's ends of those
        self.report: IO[bytes]
        self.report, self.report_w = self._pipe(stack)
        self.control_r, self.control_w = (fds.own(fd) for fd in os.pipe())
        self.status: IO[bytes] | None = None
        self.status_w = -1
        if status:
            self.status, self.status_w = self._pipe(stack)

    def _pipe(self, stack: contextlib.ExitStack) -> tuple[IO[bytes], int]:
        read, write = os.pipe()
        reader = os.fdopen(read, "rb", buffering=0)  # the file object owns the read end
        stack.callback(reader.close)
        return reader, self.fds.own(write)

    def add_step(self, stdin: bytes | None) -> None:
        """Pipes of a step's own: its output (read by the host), its stdin (none: /dev/null)."""
        out, out_w = self._pipe(self._stack)
        err, err_w = self._pipe(self._stack)
        stdin_fd = -1 if stdin is None else self.fds.memfd(stdin)
        self._steps.append((stdin_fd, out_w, err_w))
        self.outputs.append((out, err))

    @property
    def inherited(self) -> list[int]:
        """What the sandbox inherits: the write ends the host reads, the control read end,
        and each step's descriptors."""
        ends = [self.report_w, self.control_r]
        ends += [fd for fds in self._steps for fd in fds if fd >= 0]
        return [*ends, self.status_w] if self.status_w >= 0 else ends

    def reaper(
        self,
        head: Sequence[str],
        argvs: Sequence[Sequence[str]],
        limits: Limits,
        *,
        scope: str,
        nproc: bool,
    ) -> list[str]:
        """The reaper's command line (`head` starts it) running `argvs`, wired to these pipes."""
        steps = list(zip(self._steps, argvs, strict=True))
        return commands.reaper_argv(
            head,
            steps,
            limits,
            report=self.report_w,
            control=self.control_r,
            scope=scope,
            nproc=nproc,
        )
