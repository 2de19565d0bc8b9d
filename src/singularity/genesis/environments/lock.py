"""A layer's lock: exclusive while it is built or removed, shared while runs use it.

flock(2) on a file of its own, so it holds across worker processes and hosts' processes alike,
and it goes with the process: a worker that dies leaves no stale lock. Blocking waits run in a
thread, so the event loop goes on meanwhile.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
from pathlib import Path

from singularity.private import open_private

__all__ = ["LayerLock"]


class LayerLock:
    """An open lock file; `shared()`, `exclusive()` and `try_exclusive()` take or convert it."""

    def __init__(self, path: Path) -> None:
        self._fd: int | None = open_private(path, os.O_RDWR | os.O_CREAT)

    async def shared(self) -> None:
        """Wait for, then hold, the lock shared (any number of holders)."""
        await asyncio.to_thread(fcntl.flock, self._live(), fcntl.LOCK_SH)

    async def exclusive(self) -> None:
        """Wait for, then hold, the lock alone."""
        await asyncio.to_thread(fcntl.flock, self._live(), fcntl.LOCK_EX)

    def try_exclusive(self) -> bool:
        """Hold the lock alone if no one else holds it; False (and nothing held) otherwise."""
        try:
            fcntl.flock(self._live(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def close(self) -> None:
        """Let go of the lock (closing the file releases it)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _live(self) -> int:
        if self._fd is None:
            raise RuntimeError("the layer lock is closed")
        return self._fd
