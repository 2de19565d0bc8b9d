"""The archive: the elite programs shown as inspiration, at most `archive_size` of them.

Eviction is by fitness: a full archive takes a new correct program only if it scores above
the worst member, which then leaves (on a tie, the member stays).
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from singularity.genesis.evolution.schema import archive, programs
from singularity.genesis.evolution.types import Program

__all__ = ["offer_to_archive"]


def offer_to_archive(conn: Connection, program: Program, cap: int) -> tuple[bool, str | None]:
    """Archive a correct program if there is room or it beats the worst member; returns
    whether it was archived and the id of the member it evicted."""
    size = conn.execute(select(func.count()).select_from(archive)).scalar_one()
    if size >= cap:
        worst = conn.execute(
            select(archive.c.program_id, programs.c.combined_score)
            .join(programs, programs.c.id == archive.c.program_id)
            .order_by(programs.c.combined_score, programs.c.id.desc())
            .limit(1)
        ).one()
        if program.combined_score <= worst.combined_score:
            return False, None
        conn.execute(archive.delete().where(archive.c.program_id == worst.program_id))
        conn.execute(archive.insert().values(program_id=program.id))
        return True, worst.program_id
    conn.execute(archive.insert().values(program_id=program.id))
    return True, None
