"""What a run may add to a host directory bound as its work directory: a watchdog, not a wall.

A tmpfs at /work is bounded by the kernel (size and inodes). A host directory cannot be, short of
quotas the host may not have, so the run's additions are measured: once before the run, then
again and again while it goes on (by `tree.measure`, which never follows a link), and once after.
Past `disk_mb` more bytes, or past the inodes a tmpfs of that size could hold, the run is stopped
and its result says so (`RunResult.disk_limited`).

The guarantee is a bound on the excess, not on every byte: between two measures the program may
write more, at most what it can write in that time (each file capped by RLIMIT_FSIZE). The pause
between measures grows with the time a measure takes, so that watching costs at most about a
fifth of one core however large the tree.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

from singularity.genesis.limits import MIB, Limits
from singularity.genesis.sandbox import tree
from singularity.genesis.sandbox.command import inode_budget

__all__ = ["Quota"]

MIN_PAUSE_S = 0.05
_COST_SHARE = 5  # pause at least this many times the last measure's duration


@dataclass(frozen=True)
class Quota:
    """The most a tree may use: what it held before the run plus what the limits allow."""

    root: Path
    max_bytes: int
    max_entries: int

    @classmethod
    async def of(cls, root: Path, limits: Limits) -> Quota:
        """The quota of a run in `root`, measured now; TooDeep (a ValueError) for a tree nested
        deeper than can be measured."""
        before = await asyncio.to_thread(tree.measure, root)
        extra_entries = inode_budget(limits.disk_mb)
        return cls(root, before.bytes + limits.disk_mb * MIB, before.entries + extra_entries)

    def exceeded(self) -> bool:
        """Whether the tree now holds more than its quota (or became too deep to measure)."""
        try:
            used = tree.measure(self.root, max_bytes=self.max_bytes, max_entries=self.max_entries)
        except tree.TooDeep:
            return True
        except FileNotFoundError:
            return False  # the directory itself is gone: it holds nothing
        return used.bytes > self.max_bytes or used.entries > self.max_entries

    async def watch(self) -> None:
        """Return once the tree is over its quota (cancel it to stop watching)."""
        while True:
            started = time.monotonic()
            if await asyncio.to_thread(self.exceeded):
                return
            cost = time.monotonic() - started
            await asyncio.sleep(max(MIN_PAUSE_S, _COST_SHARE * cost))
