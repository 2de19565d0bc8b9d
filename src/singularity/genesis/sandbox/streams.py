"""What the host reads of a sandbox: capped output streams, and the reaper's report per step.

Each step of a sandbox has its own stdout and stderr pipes (the reaper gives them to that
step only), so its output, caps and figures are its own; the report pipe carries the reaper's
"pid K N" and "end K ..." lines (see `reaper.py`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO

__all__ = ["Capture", "Report", "StepSeen"]

_CHUNK = 1 << 16


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

    async def drain(
        self, pipe: IO[bytes], each_line: Callable[[bytes], None] | None = None
    ) -> None:
        """Read `pipe` to its EOF (calling `each_line` per line when given)."""
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
    readers: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def wall_ms(self) -> float:
        """From its start to its end, as the host saw them."""
        if self.started_at is None or self.ended_at is None:
            return 0.0
        return (self.ended_at - self.started_at) * 1000
