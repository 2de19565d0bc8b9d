"""Making sure nothing of a run is left on the host once it is over.

The reaper kills the tree before it exits, and the kernel kills what is left in a PID namespace
when its PID 1 exits; the sweep checks it (and kills stragglers, logged as a fault) for the
namespace of a sandboxed run, or for the dedicated uid of an unsafe one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable
from pathlib import Path

import structlog

__all__ = ["in_namespace", "of_uid", "remaining", "sweep"]

log = structlog.get_logger(__name__)

Belongs = Callable[[int], bool]

_ATTEMPTS = 100
_PAUSE_S = 0.02


def in_namespace(inode: int) -> Belongs:
    """Whether a host process is in the PID namespace with this inode."""
    return lambda pid: _namespace(pid) == inode


def of_uid(uid: int) -> Belongs:
    """Whether a host process has `uid` as its real uid."""
    return lambda pid: _real_uid(pid) == uid


def remaining(belongs: Belongs) -> list[int]:
    """The host processes that belong to the run."""
    return [pid for pid in _pids() if belongs(pid)]


async def sweep(belongs: Belongs, *, what: str) -> int:
    """Kill the run's processes until none is left; returns how many there were at first."""
    found = remaining(belongs)
    first = len(found)
    for _ in range(_ATTEMPTS):
        if not found:
            break
        for pid in found:
            _kill(pid, belongs)
        await asyncio.sleep(_PAUSE_S)
        found = remaining(belongs)
    if first:
        log.warning("sandbox_leftovers", what=what, processes=first, remaining=len(found))
    return first


def _pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _namespace(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/pid").st_ino
    except OSError:
        return None


def _real_uid(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Uid:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def _kill(pid: int, belongs: Belongs) -> None:
    # Checked again once the pidfd is held: a pid that ended and was reused in between is not
    # the one signalled.
    with contextlib.suppress(OSError):
        fd = os.pidfd_open(pid)
        try:
            if belongs(pid):
                signal.pidfd_send_signal(fd, signal.SIGKILL)
        finally:
            os.close(fd)
