"""What sampling reads, kept in memory: each program's score, children, island, and the
archive's members, by island and ranked best first.

Loaded once from the database and updated by the database object's own writes, so that
sample() reads only the handful of programs it returns. One `ProgramDatabase` writes a run
at a time; another writer's rows are seen after `ProgramDatabase.refresh()`.
"""

from __future__ import annotations

import bisect

from sqlalchemy import select
from sqlalchemy.engine import Connection

from singularity.genesis.evolution.sampling import Candidate, rank_key
from singularity.genesis.evolution.schema import archive, programs

__all__ = ["PopulationIndex"]


class PopulationIndex:
    """Candidates by id and by island (all, and correct ones), and the archive."""

    def __init__(self) -> None:
        self.members: dict[str, Candidate] = {}
        self._everyone: dict[int, list[Candidate]] = {}
        self._correct: dict[int, list[Candidate]] = {}
        self.archive: set[str] = set()

    @classmethod
    def load(cls, conn: Connection) -> PopulationIndex:
        """The index of what the database holds now."""
        index = cls()
        columns = (programs.c.id, programs.c.combined_score, programs.c.children_count,
                   programs.c.correct, programs.c.island_idx)  # fmt: skip
        for row in conn.execute(select(*columns)):
            index.add(Candidate(row.id, row.combined_score, row.children_count, row.correct,
                                row.island_idx))  # fmt: skip
        index.archive = {row[0] for row in conn.execute(select(archive.c.program_id))}
        return index

    def add(self, member: Candidate) -> None:
        """A new program."""
        self.members[member.id] = member
        self._insert(member)

    def _insert(self, member: Candidate) -> None:
        bisect.insort(self._everyone.setdefault(member.island, []), member, key=rank_key)
        if member.correct:
            bisect.insort(self._correct.setdefault(member.island, []), member, key=rank_key)

    def _remove(self, member: Candidate) -> None:
        for lists in (self._everyone, self._correct):
            ranked = lists.get(member.island, [])
            at = bisect.bisect_left(ranked, rank_key(member), key=rank_key)
            if at < len(ranked) and ranked[at] is member:
                del ranked[at]

    def child_added(self, parent_id: str) -> None:
        """The parent's children count grew by one."""
        self.members[parent_id].children += 1

    def move(self, program_id: str, target: int) -> None:
        """A program migrated to island `target`."""
        member = self.members[program_id]
        self._remove(member)
        member.island = target
        self._insert(member)

    def occupied(self) -> list[int]:
        """The islands that hold programs."""
        return sorted(island for island, ranked in self._everyone.items() if ranked)

    def ranked(self, island: int) -> list[Candidate]:
        """Parents to choose from, best first: correct programs, or all while none is."""
        return self._correct.get(island) or self._everyone.get(island, [])

    def archived_on(self, island: int, exclude: str) -> list[str]:
        """The archive's members on an island, in id order."""
        return sorted(
            pid for pid in self.archive if pid != exclude and self.members[pid].island == island
        )
