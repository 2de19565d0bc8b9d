"""One backup or restore at a time per backup directory: an exclusive lock on a file in it.

The lock is `flock`'s, so it is released by the kernel when its process dies; a crash never
leaves it held.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO

from singularity.errors import SingularityError
from singularity.private import open_private, private_dir

__all__ = ["BackupBusy", "backup_lock"]

_LOCK_FILE = ".lock"
_POLL_S = 0.2


class BackupBusy(SingularityError):
    """Another process is backing up or restoring with this backup directory."""


@contextlib.asynccontextmanager
async def backup_lock(root: Path, *, wait_s: float = 0.0) -> AsyncIterator[None]:
    """Hold the backup directory's lock; BackupBusy (naming the holder) after `wait_s`."""
    path = root / _LOCK_FILE
    with _open(path) as handle:
        deadline = time.monotonic() + wait_s
        while not _try_lock(handle):
            if time.monotonic() >= deadline:
                raise BackupBusy(
                    f"a backup or restore is already running {_holder(handle)} (lock {path}); "
                    "try again when it has finished"
                )
            await asyncio.sleep(_POLL_S)
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield
        finally:
            handle.truncate(0)
            fcntl.flock(handle, fcntl.LOCK_UN)


def _open(path: Path) -> IO[str]:
    # Every backup and restore passes here: the directory (and files, 0600) for its owner only.
    private_dir(path.parent)
    return os.fdopen(open_private(path, os.O_RDWR | os.O_CREAT | os.O_APPEND), "a+")


def _try_lock(handle: IO[str]) -> bool:
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _holder(handle: IO[str]) -> str:
    handle.seek(0)
    pid = handle.read().strip()
    return f"in process {pid}" if pid.isdigit() else "in another process"
