"""Who a sandboxed tree runs as: an unprivileged uid of its own per concurrent run when root.

RLIMIT_NPROC never applies to real uid 0, so a root worker hands each run a uid of its own
from a dedicated range, and takes it back when the run is over. One uid per run at a time keeps
per-user counters (processes as bubblewrap sees them from outside, pending signals, inotify
instances) from being shared between concurrent jobs; on kernels from 5.14 on, the count the
program's RLIMIT_NPROC checks is per user namespace as well, so even runs with the same uid
could not starve each other. A worker that is not root runs everything as its own uid.

A uid is held with a lock file (flock, released by the kernel if the worker dies), so worker
processes on one host never share one, and a uid that still has processes (a leftover of a
crashed worker, a zombie its init has not reaped yet) is passed over. The range must be used by
nothing else on the host.

Finding a uid without processes takes a read of every host process's status (milliseconds on a
busy host), so a pool keeps the lock of a uid whose sandbox run ended cleanly (a run returns
only once its tree is gone) and hands it to the next run without a look: no other worker could
take it meanwhile. A run that ended otherwise (cancelled, failed), and any other lease, gives
its lock back to the kernel, and the next to take that uid looks first.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import itertools
import os
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import structlog

__all__ = ["DEFAULT_SLOTS", "DEFAULT_UID_BASE", "LOCK_DIR", "Identity", "UidPool"]

log = structlog.get_logger(__name__)

DEFAULT_UID_BASE = 2_000_000_000  # far from system, user and subordinate-id ranges
DEFAULT_SLOTS = 256
LOCK_DIR = Path("/run/singularity-sandbox")  # root's: only a root worker leases uids
_WAIT_S = 0.05


@dataclass(frozen=True)
class Identity:
    """The uid and gid a run's processes have on the host."""

    uid: int
    gid: int
    dedicated: bool  # a uid of the run's own, which the (root) worker switches to


class UidPool:
    """Leases a uid per run: one of the range when root, else the worker's own."""

    def __init__(self, base: int = DEFAULT_UID_BASE, slots: int = DEFAULT_SLOTS) -> None:
        if base <= 0 or slots <= 0 or base + slots > 2**31:
            raise ValueError("uid_base and slots must be positive and stay below 2**31")
        self.base = base
        self.slots = slots
        self._idle: dict[int, int] = {}  # uid: its held lock, of runs that ended cleanly
        weakref.finalize(self, _release_all, self._idle)

    @property
    def switching(self) -> bool:
        """Whether runs get uids of their own (the worker is root)."""
        return os.geteuid() == 0

    @asynccontextmanager
    async def lease(self, *, keep: bool = False) -> AsyncIterator[Identity]:
        """A uid no other run on this host holds, for the length of the block.

        `keep`: the block is a sandbox run, which leaves no process behind when it returns;
        the uid may then be kept for the next such block (see the module's docstring).
        """
        if not self.switching:
            yield Identity(os.getuid(), os.getgid(), dedicated=False)
            return
        if keep and self._idle:
            uid = min(self._idle)  # the lowest: a worker's runs keep to a few uids
            lock = self._idle.pop(uid)
        else:
            uid, lock = await self._take()
        clean = False
        try:
            yield Identity(uid, uid, dedicated=True)
            clean = True
        finally:
            if clean and keep:
                self._idle[uid] = lock
            else:
                os.close(lock)  # closing the descriptor releases the flock

    async def _take(self) -> tuple[int, int]:
        for attempt in itertools.count():
            busy = _uids_with_processes(self.base, self.slots)
            for uid in range(self.base, self.base + self.slots):
                if uid not in busy and (lock := _lock(uid)) is not None:
                    return uid, lock
            if attempt == 0:
                log.warning("sandbox_uids_exhausted", base=self.base, slots=self.slots)
            await asyncio.sleep(_WAIT_S)  # the next run to end frees one
        raise AssertionError("not reached")


def _release_all(idle: dict[int, int]) -> None:
    for lock in idle.values():
        with contextlib.suppress(OSError):
            os.close(lock)
    idle.clear()


def _lock(uid: int) -> int | None:
    """The held lock of `uid`, or None when another run holds it."""
    LOCK_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(LOCK_DIR / f"{uid}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _uids_with_processes(base: int, slots: int) -> set[int]:
    found = set()
    for name in os.listdir("/proc"):
        if name.isdigit():
            with contextlib.suppress(OSError):
                uid = _real_uid(name)
                if base <= uid < base + slots:
                    found.add(uid)
    return found


def _real_uid(pid: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("Uid:"):
                return int(line.split()[1])
    return -1
