"""The descriptors of one run: pipes to and from the sandbox, memfds of its inputs.

Each step of a run has its own stdout and stderr pipes (the reaper gives them to that step
only), so its output and its caps are its own. One more pipe carries everything else the host
hears: it is bubblewrap's stderr (and so the reaper's, which reports on it), and bubblewrap's
status documents go to it too.

Every descriptor is closed exactly once: a second close, after the number was reused by a
concurrent run, would close someone else's.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence

from singularity.genesis.limits import Limits
from singularity.genesis.sandbox import command as commands
from singularity.genesis.sandbox import staging

__all__ = ["REPORT_FD", "Fds", "Pipes"]

REPORT_FD = 2  # the reaper's report: its stderr, which is the report pipe


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

    def pipe(self) -> tuple[int, int]:
        """A pipe, both ends owned; the read end non-blocking (for the event loop)."""
        read, write = os.pipe()
        os.set_blocking(read, False)
        return self.own(read), self.own(write)

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
    """The report pipe (with bubblewrap's status on it), the reaper's control pipe, and each
    step's own."""

    def __init__(self, fds: Fds, *, status: bool) -> None:
        self.fds = fds
        # Each step's stdin, stdout, stderr and channel (-1: none); the host's ends of the
        # outputs and of the channels.
        self._steps: list[tuple[int, int, int, int]] = []
        self.outputs: list[tuple[int, int]] = []
        self._channels: list[int] = []
        self.report, self.report_w = fds.pipe()
        self.control_r, self.control_w = (fds.own(fd) for fd in os.pipe())
        # bubblewrap closes its status descriptor in the sandbox, where the reaper reports on
        # its stderr: the same pipe under another number.
        self.status_w = fds.own(os.dup(self.report_w)) if status else -1

    def add_step(self, stdin: bytes | None, *, channel: bool = False) -> None:
        """Pipes of a step's own: its output (read by the host), its stdin (none: /dev/null),
        and with `channel` a pipe the program gets as its descriptor 3 (read once it is over).
        """
        out, out_w = self.fds.pipe()
        err, err_w = self.fds.pipe()
        stdin_fd = -1 if stdin is None else self.fds.memfd(stdin)
        said = said_w = -1
        if channel:
            said, said_w = self.fds.pipe()
        self._steps.append((stdin_fd, out_w, err_w, said_w))
        self._channels.append(said)
        self.outputs.append((out, err))

    def said(self, index: int) -> bytes:
        """What step `index` wrote on its channel (once its tree is gone; at most a pipe's
        buffer, which bounds it)."""
        fd = self._channels[index] if index < len(self._channels) else -1
        if fd < 0:
            return b""
        try:
            return os.read(fd, 1 << 16)
        except OSError:
            return b""

    @property
    def inherited(self) -> list[int]:
        """What the sandbox inherits besides its stderr (`report_w`): the control read end,
        bubblewrap's status descriptor, and each step's descriptors."""
        ends = [self.control_r, *(fd for fds in self._steps for fd in fds if fd >= 0)]
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
            report=REPORT_FD,
            control=self.control_r,
            scope=scope,
            nproc=nproc,
        )
