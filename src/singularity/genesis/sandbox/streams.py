"""What the host reads of a sandbox: capped output streams, and the reaper's report per step.

Each step of a sandbox has its own stdout and stderr pipes (the reaper gives them to that
step only), so its output, caps and figures are its own; the report pipe carries the reaper's
"pid K N" and "end K ..." lines (see `reaper.py`), and bubblewrap's status documents and
messages. Each pipe is read by a reader callback of the event loop (`Drain`), no task each.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Capture", "Drain", "Report", "StepSeen"]

_CHUNK = 1 << 16
_LINE = 1 << 16  # of a line without its end yet, kept (only the report pipe is read by lines)


@dataclass(frozen=True)
class Report:
    """The reaper's end line of one step: how its program ended, and its tree's rusage."""

    signal: int | None
    exit_code: int | None
    cpu_ms: float
    max_rss_kb: int
    stopped: bool  # the host asked the reaper to stop the run during this step

    @classmethod
    def parse(cls, words: list[str]) -> Report | None:
        """The report in an end line's words after "end K", or None when it is not one."""
        if len(words) != 6 or words[0] not in ("exit", "signal"):
            return None
        try:
            code, user, system = int(words[1]), float(words[2]), float(words[3])
            rss, stopped = int(words[4]), words[5] == "1"
        except ValueError:
            return None
        signum = code if words[0] == "signal" else None
        exit_code = code if words[0] == "exit" else None
        return cls(signum, exit_code, (user + system) * 1000, rss, stopped)


class Capture:
    """Bytes of one stream up to a cap; past it, the rest is discarded and `on_overflow` told."""

    def __init__(self, cap: int, on_overflow: Callable[[], None] = lambda: None) -> None:
        self.data = bytearray()
        self.truncated = False
        self._cap = cap
        self._on_overflow = on_overflow

    def take(self, chunk: bytes) -> None:
        """Keep `chunk`, up to the cap."""
        room = self._cap - len(self.data)
        if len(chunk) <= room:
            self.data += chunk
            return
        self.data += chunk[: max(room, 0)]
        if not self.truncated:
            self.truncated = True
            self._on_overflow()


class Drain:
    """Reads one pipe to its EOF from the event loop's reader callback: each chunk into
    `capture`, or each line to `each_line`.

    The caller owns the pipe's read end (non-blocking) and closes it only after `stop`;
    `done` resolves at EOF or `stop`.
    """

    def __init__(
        self,
        fd: int,
        capture: Capture | None = None,
        each_line: Callable[[bytes], None] | None = None,
    ) -> None:
        self._fd = fd
        self._capture = capture
        self._each_line = each_line
        self._partial = b""
        self._loop = asyncio.get_running_loop()
        self.done: asyncio.Future[None] = self._loop.create_future()
        self._reading = True
        self._loop.add_reader(fd, self._ready)

    def _ready(self) -> None:
        try:
            chunk = os.read(self._fd, _CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if not chunk:
            if self._partial and self._each_line is not None:
                self._each_line(self._partial)
            self.stop()
            return
        if self._capture is not None:
            self._capture.take(chunk)
        if self._each_line is not None:
            *lines, rest = (self._partial + chunk).split(b"\n")
            for line in lines:
                self._each_line(line + b"\n")
            self._partial = rest[:_LINE]

    def stop(self) -> None:
        """Stop reading (at EOF or not): the pipe is no longer registered."""
        if self._reading:
            self._reading = False
            self._loop.remove_reader(self._fd)
        if not self.done.done():
            self.done.set_result(None)


@dataclass
class StepSeen:
    """One step as the host saw it: its streams, its report, its clock, the limits it hit."""

    stdout: Capture
    stderr: Capture
    started_at: float | None = None  # when the host learnt the previous step (or spawn) ended
    ended_at: float | None = None  # when its end line was read
    report: Report | None = None
    started: bool = False  # the reaper started its program
    timed_out: bool = False
    output_limited: bool = False
    disk_limited: bool = False
    said: bytes = b""  # what the program wrote on its channel (descriptor 3), if it had one

    @property
    def wall_ms(self) -> float:
        """From its start to its end, as the host saw them."""
        if self.started_at is None or self.ended_at is None:
            return 0.0
        return (self.ended_at - self.started_at) * 1000
