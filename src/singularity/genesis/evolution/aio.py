"""The program database for asyncio code: every call runs in a worker thread.

The database is synchronous on purpose (sqlite3 has no asyncio driver here, and one code
path for both backends keeps the behaviour identical); `asyncio.to_thread` keeps the event
loop free while a query runs, and the database's lock serialises the calls.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from singularity.genesis.evolution.database import ProgramDatabase
from singularity.genesis.evolution.islands import Move
from singularity.genesis.evolution.sampling import Strategy
from singularity.genesis.evolution.types import Neighbour, Program, Sample

__all__ = ["AsyncProgramDatabase"]


class AsyncProgramDatabase:
    """Awaitable versions of `ProgramDatabase`'s methods; `sync` is the wrapped database."""

    def __init__(self, sync: ProgramDatabase) -> None:
        self.sync = sync

    async def add(self, program: Program) -> str:
        return await asyncio.to_thread(self.sync.add, program)

    async def get(self, program_id: str) -> Program:
        return await asyncio.to_thread(self.sync.get, program_id)

    async def sample(self, island: int | None = None, strategy: Strategy | None = None) -> Sample:
        return await asyncio.to_thread(self.sync.sample, island, strategy)

    async def best(self, island: int | None = None) -> Program | None:
        return await asyncio.to_thread(self.sync.best, island)

    async def top_k(self, k: int, island: int | None = None) -> list[Program]:
        return await asyncio.to_thread(self.sync.top_k, k, island)

    async def by_generation(self, generation: int) -> list[Program]:
        return await asyncio.to_thread(self.sync.by_generation, generation)

    async def count(self, island: int | None = None) -> int:
        return await asyncio.to_thread(self.sync.count, island)

    async def island_sizes(self) -> dict[int, int]:
        return await asyncio.to_thread(self.sync.island_sizes)

    async def archive_ids(self) -> list[str]:
        return await asyncio.to_thread(self.sync.archive_ids)

    async def maybe_migrate(self, generation: int) -> list[Move]:
        return await asyncio.to_thread(self.sync.maybe_migrate, generation)

    async def migrate(self, generation: int) -> list[Move]:
        return await asyncio.to_thread(self.sync.migrate, generation)

    async def nearest(self, embedding: Sequence[float], island: int) -> Neighbour | None:
        return await asyncio.to_thread(self.sync.nearest, embedding, island)

    async def is_novel(
        self, embedding: Sequence[float], island: int, threshold: float | None = None
    ) -> bool:
        return await asyncio.to_thread(self.sync.is_novel, embedding, island, threshold)

    async def get_metadata(self, key: str, default: Any = None) -> Any:
        return await asyncio.to_thread(self.sync.get_metadata, key, default)

    async def set_metadata(self, key: str, value: Any) -> None:
        await asyncio.to_thread(self.sync.set_metadata, key, value)

    async def refresh(self) -> None:
        await asyncio.to_thread(self.sync.refresh)

    async def close(self) -> None:
        await asyncio.to_thread(self.sync.close)
