"""What a sandboxed run ended with, and the error for a sandbox that cannot be set up."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RunResult", "SandboxUnavailable"]


class SandboxUnavailable(Exception):
    """The sandbox cannot be set up here; the message says what is missing and how to fix it."""


@dataclass(frozen=True)
class RunResult:
    """The end of one sandboxed process tree, as the program itself ended it or was ended."""

    exit_code: int | None  # None when killed by a signal
    signal: int | None
    stdout: bytes
    stderr: bytes
    stdout_truncated: bool
    stderr_truncated: bool
    timed_out: bool  # the wall-clock limit ran out
    output_limited: bool  # a stream went past output_bytes (the run was killed for it)
    cpu_exceeded: bool  # SIGXCPU, or SIGKILL at the CPU limit's hard value
    wall_ms: float
    cpu_ms: float  # user + system time of the whole tree
    max_rss_kb: int  # of the largest process in the tree
    # The host work directory grew past its quota (disk_mb, or the inodes of a tmpfs that
    # size): the run was stopped for it, or found over it when it ended.
    disk_limited: bool = False
    # What the program wrote on its descriptor 3, for a step given one (`Step.channel`; at
    # most a pipe's buffer), and when the step started on the host's clock (time.monotonic).
    channel: bytes = b""
    started_at: float = 0.0

    @property
    def ok(self) -> bool:
        """Exited with 0 and hit no limit."""
        return self.exit_code == 0 and not (
            self.timed_out or self.output_limited or self.disk_limited
        )
