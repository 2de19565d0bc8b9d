"""The program database: the population of an evolution run, in islands, on SQLite or
PostgreSQL through one API.

Calls are synchronous and serialised by a lock (the in-memory novelty index and the random
source are shared); an asyncio caller uses `AsyncProgramDatabase`, which runs each call in a
thread.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, StatementError

from singularity.config import Settings
from singularity.errors import NotFound, UsageError
from singularity.genesis.evolution.archive import offer_to_archive
from singularity.genesis.evolution.config import EvolutionConfig
from singularity.genesis.evolution.engine import open_engine, resolve_target
from singularity.genesis.evolution.islands import Move, plan_migration
from singularity.genesis.evolution.novelty import NoveltyIndex
from singularity.genesis.evolution.population import PopulationIndex
from singularity.genesis.evolution.rows import (
    program_from_row,
    program_values,
    put_metadata,
)
from singularity.genesis.evolution.sampling import Candidate, Strategy, choose_parent
from singularity.genesis.evolution.schema import (
    archive,
    create_schema,
    metadata_store,
    programs,
    require_schema,
)
from singularity.genesis.evolution.types import Neighbour, Program, Sample

__all__ = ["ProgramDatabase", "open_program_database"]

BY_SCORE = (programs.c.combined_score.desc(), programs.c.id)


class ProgramDatabase:
    """Programs, the archive, and run metadata of one evolution run."""

    def __init__(self, engine: Engine, config: EvolutionConfig | None = None) -> None:
        self.engine = engine
        self.config = config or EvolutionConfig()
        self.rng = random.Random(self.config.seed)
        self._lock = threading.RLock()
        # Both loaded from the database on first use, then kept up to date by our writes.
        self._novelty: NoveltyIndex | None = None
        self._population: PopulationIndex | None = None

    def close(self) -> None:
        """Release the engine's connections."""
        self.engine.dispose()

    def refresh(self) -> None:
        """Forget the in-memory indexes (to see rows another writer added)."""
        with self._lock:
            self._novelty = None
            self._population = None

    # -- writing ----------------------------------------------------------------------------

    def add(self, program: Program) -> str:
        """Store a program (on its parent's island) and return its id; may trigger migration."""
        with self._lock:
            try:
                with self.engine.begin() as conn:
                    stored, archived = self._insert(conn, program)
            except IntegrityError:
                raise UsageError(f"program {program.id} already exists") from None
            except StatementError as exc:
                if isinstance(exc.orig, ValueError):  # NaN or infinity in a JSON field
                    raise UsageError(f"program {program.id} cannot be stored: {exc.orig}") from None
                raise
            self._remember(stored, archived)
            self.maybe_migrate(stored.generation)
            return stored.id

    def _remember(self, stored: Program, archived: tuple[bool, str | None]) -> None:
        island = int(stored.island_idx or 0)
        if self._novelty is not None:
            self._novelty.add(island, stored.id, stored.embedding)
        population = self._population
        if population is not None:
            population.add(Candidate(stored.id, stored.combined_score, 0, stored.correct, island))
            if stored.parent_id is not None:
                population.child_added(stored.parent_id)
            added, evicted = archived
            if added:
                population.archive.add(stored.id)
            population.archive.discard(evicted or "")

    def _insert(
        self, conn: Connection, program: Program
    ) -> tuple[Program, tuple[bool, str | None]]:
        island = self._island_for(conn, program)
        stored = program.model_copy(update={"island_idx": island})
        conn.execute(programs.insert().values(program_values(stored)))
        if stored.parent_id is not None:
            conn.execute(
                update(programs)
                .where(programs.c.id == stored.parent_id)
                .values(children_count=programs.c.children_count + 1)
            )
        archived = (False, None)
        if stored.correct:
            archived = offer_to_archive(conn, stored, self.config.archive_size)
        self._note_progress(conn, stored)
        return stored, archived

    def _island_for(self, conn: Connection, program: Program) -> int:
        if program.parent_id is not None:
            island = conn.execute(
                select(programs.c.island_idx).where(programs.c.id == program.parent_id)
            ).scalar()
            if island is None:
                raise NotFound(f"no program {program.parent_id!r} (the parent)")
            return int(island)
        if program.island_idx is not None:
            if not 0 <= program.island_idx < self.config.num_islands:
                raise UsageError(
                    f"island {program.island_idx} is not in 0..{self.config.num_islands - 1}"
                )
            return program.island_idx
        sizes = self._sizes(conn)
        return min(range(self.config.num_islands), key=lambda i: (sizes.get(i, 0), i))

    def _note_progress(self, conn: Connection, program: Program) -> None:
        last = self._get_metadata(conn, "last_generation")
        if last is None or program.generation > last:
            put_metadata(conn, "last_generation", program.generation)
        best = self._get_metadata(conn, "best_score")
        if program.correct and (best is None or program.combined_score > best):
            put_metadata(conn, "best_score", program.combined_score)
            put_metadata(conn, "best_program_id", program.id)

    # -- reading ----------------------------------------------------------------------------

    def get(self, program_id: str) -> Program:
        """The program with this id; NotFound if there is none."""
        with self.engine.connect() as conn:
            row = conn.execute(select(programs).where(programs.c.id == program_id)).mappings()
            found = row.first()
        if found is None:
            raise NotFound(f"no program {program_id!r}")
        return program_from_row(found)

    def _many(self, conn: Connection, ids: Sequence[str]) -> list[Program]:
        if not ids:
            return []
        rows = conn.execute(select(programs).where(programs.c.id.in_(ids))).mappings()
        found = {row["id"]: program_from_row(row) for row in rows}
        return [found[i] for i in ids]

    def _query(self, statement: Any) -> list[Program]:
        with self.engine.connect() as conn:
            return [program_from_row(row) for row in conn.execute(statement).mappings()]

    def best(self, island: int | None = None) -> Program | None:
        """The correct program with the highest score (on one island, or overall)."""
        statement = select(programs).where(programs.c.correct).order_by(*BY_SCORE).limit(1)
        if island is not None:
            statement = statement.where(programs.c.island_idx == island)
        found = self._query(statement)
        return found[0] if found else None

    def top_k(self, k: int, island: int | None = None) -> list[Program]:
        """The k correct programs with the highest scores, best first."""
        statement = select(programs).where(programs.c.correct).order_by(*BY_SCORE).limit(k)
        if island is not None:
            statement = statement.where(programs.c.island_idx == island)
        return self._query(statement)

    def by_generation(self, generation: int) -> list[Program]:
        """Every program of one generation, best first."""
        return self._query(
            select(programs).where(programs.c.generation == generation).order_by(*BY_SCORE)
        )

    def count(self, island: int | None = None) -> int:
        """How many programs there are (on one island, or overall)."""
        statement = select(func.count()).select_from(programs)
        if island is not None:
            statement = statement.where(programs.c.island_idx == island)
        with self.engine.connect() as conn:
            return int(conn.execute(statement).scalar_one())

    def island_sizes(self) -> dict[int, int]:
        """Programs per island (every island, empty ones too)."""
        with self.engine.connect() as conn:
            sizes = self._sizes(conn)
        return {i: sizes.get(i, 0) for i in range(self.config.num_islands)}

    @staticmethod
    def _sizes(conn: Connection) -> dict[int, int]:
        rows = conn.execute(
            select(programs.c.island_idx, func.count()).group_by(programs.c.island_idx)
        )
        return {int(island): int(n) for island, n in rows}

    def archive_ids(self) -> list[str]:
        """The ids of the archive's programs, best first."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(archive.c.program_id)
                .join(programs, programs.c.id == archive.c.program_id)
                .order_by(*BY_SCORE)
            )
            return [row[0] for row in rows]

    # -- sampling ---------------------------------------------------------------------------

    def sample(self, island: int | None = None, strategy: Strategy | None = None) -> Sample:
        """A parent and its inspirations, all from one island (a random non-empty one if None)."""
        with self._lock:
            population = self._population_index()
            if island is None:
                occupied = population.occupied()
                if not occupied:
                    raise NotFound("the program database is empty")
                island = self.rng.choice(occupied)
            ranked = population.ranked(island)
            if not ranked:
                raise NotFound(f"island {island} has no program")
            parent = choose_parent(
                ranked,
                strategy or self.config.strategy,
                self.rng,
                alpha=self.config.power_law_alpha,
                lambda_=self.config.weighted_lambda,
            )
            archived = population.archived_on(island, exclude=parent.id)
            picked = self.rng.sample(
                archived, min(len(archived), self.config.num_archive_inspirations)
            )
            top = self._top_ids(ranked, {parent.id, *picked})
            with self.engine.connect() as conn:
                found = self._many(conn, [parent.id, *picked, *top])
        return Sample(
            parent=found[0],
            archive_inspirations=found[1 : 1 + len(picked)],
            top_k_inspirations=found[1 + len(picked) :],
        )

    def _top_ids(self, ranked: Sequence[Candidate], taken: set[str]) -> list[str]:
        wanted = self.config.num_top_k_inspirations
        top: list[str] = []
        for candidate in ranked:
            if len(top) == wanted:
                break
            if candidate.id not in taken:
                top.append(candidate.id)
        return top

    def _population_index(self) -> PopulationIndex:
        if self._population is None:
            with self.engine.connect() as conn:
                self._population = PopulationIndex.load(conn)
        return self._population

    # -- islands ----------------------------------------------------------------------------

    def maybe_migrate(self, generation: int) -> list[Move]:
        """Migrate if `migration_interval` generations have passed since the last migration."""
        interval = self.config.migration_interval
        if interval <= 0 or self.config.num_islands < 2:
            return []
        with self._lock:
            last = self.get_metadata("last_migration_generation", 0)
            if generation < last + interval:
                return []
            return self.migrate(generation)

    def migrate(self, generation: int) -> list[Move]:
        """One migration round now (see `islands` for who moves where); returns the moves."""
        with self._lock, self.engine.begin() as conn:
            rows = conn.execute(
                select(programs.c.id, programs.c.combined_score, programs.c.island_idx)
            ).all()
            islands: dict[int, list[Candidate]] = {}
            for row in rows:
                islands.setdefault(row.island_idx, []).append(
                    Candidate(row.id, row.combined_score, 0)
                )
            moves = plan_migration(
                islands, self.config.num_islands, self.config.migration_rate, self.rng
            )
            for move in moves:
                self._move(conn, move, generation)
            put_metadata(conn, "last_migration_generation", generation)
        for move in moves:
            if self._novelty is not None:
                self._novelty.move(move.program_id, move.source, move.target)
            if self._population is not None:
                self._population.move(move.program_id, move.target)
        return moves

    @staticmethod
    def _move(conn: Connection, move: Move, generation: int) -> None:
        history = conn.execute(
            select(programs.c.migration_history).where(programs.c.id == move.program_id)
        ).scalar_one()
        entry = {"generation": generation, "from": move.source, "to": move.target}
        conn.execute(
            update(programs)
            .where(programs.c.id == move.program_id)
            .values(island_idx=move.target, migration_history=[*history, entry])
        )

    # -- novelty ----------------------------------------------------------------------------

    def nearest(self, embedding: Sequence[float], island: int) -> Neighbour | None:
        """The most similar program on the island by cosine similarity of embeddings."""
        with self._lock:
            return self._novelty_index().nearest(island, embedding)

    def is_novel(
        self, embedding: Sequence[float], island: int, threshold: float | None = None
    ) -> bool:
        """False if a program on the island is at least `threshold` similar."""
        limit = self.config.novelty_threshold if threshold is None else threshold
        found = self.nearest(embedding, island)
        return found is None or found.similarity < limit

    def _novelty_index(self) -> NoveltyIndex:
        if self._novelty is None:
            index = NoveltyIndex()
            with self.engine.connect() as conn:
                rows = conn.execute(
                    select(programs.c.id, programs.c.island_idx, programs.c.embedding)
                )
                for row in rows:
                    index.add(row.island_idx, row.id, row.embedding)
            self._novelty = index
        return self._novelty

    # -- metadata ---------------------------------------------------------------------------

    def get_metadata(self, key: str, default: Any = None) -> Any:
        """A value of the run's key/value store (e.g. last_generation, best_program_id)."""
        with self.engine.connect() as conn:
            value = self._get_metadata(conn, key)
        return default if value is None else value

    def set_metadata(self, key: str, value: Any) -> None:
        """Set a value (any JSON) of the run's key/value store."""
        with self.engine.begin() as conn:
            put_metadata(conn, key, value)

    @staticmethod
    def _get_metadata(conn: Connection, key: str) -> Any:
        return conn.execute(
            select(metadata_store.c.value).where(metadata_store.c.key == key)
        ).scalar()


def open_program_database(
    settings: Settings, db: str | None = None, config: EvolutionConfig | None = None
) -> ProgramDatabase:
    """The run's database: `db`, else GENESIS_DATABASE_URL, else SQLite in the genesis dir.

    The platform's database must have been migrated (`singularity db migrate`); any other
    database gets its missing tables created.
    """
    target = resolve_target(settings, db)
    engine = open_engine(target.url)
    if target.platform:
        require_schema(engine)
    else:
        create_schema(engine)
    return ProgramDatabase(engine, config)
