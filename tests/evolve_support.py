"""Helpers of the evolution-loop tests: the loop's parts on the session's platform, and model
answers that are valid mutations of the circle-packing program."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from genesis_support import SLOTS, UIDS
from singularity.config import Settings
from singularity.genesis.evolution import AsyncProgramDatabase, EvolutionConfig, ProgramDatabase
from singularity.genesis.evolution.asker import LlmAsker
from singularity.genesis.evolution.engine import open_engine
from singularity.genesis.evolution.loop import (
    EvolutionOutcome,
    EvolutionRun,
    EvolveOptions,
    prepare_run,
)
from singularity.genesis.evolution.problem import Problem, example_problem, load_problem
from singularity.genesis.evolution.schema import create_schema
from singularity.genesis.sandbox import Sandbox
from singularity.genesis.store import GenesisStore
from singularity.postgres.cluster import Cluster
from singularity.postgres.connect import open_pool
from singularity.postgres.topology import Database, Role
from singularity.shared_queue import open_bus

PROBLEM = load_problem(example_problem("circle_packing"))
SUMMARY = "A variation.\n"


def rewrite(factor: float) -> str:
    """A full rewrite: the initial program with its small circle at `factor` of the gap."""
    code = PROBLEM.initial_code.replace("gap * 0.999", f"gap * {factor}")
    assert code != PROBLEM.initial_code
    return f"{SUMMARY}```python\n{code}```\n"


# A diff that applies to every correct program here: it grows the last circle a little.
GROW = (
    f"{SUMMARY}<<<<<<< SEARCH\n    return circles\n=======\n"
    "    circles[-1][2] *= 1.0004\n    return circles\n>>>>>>> REPLACE\n"
)
CRASH = f"{SUMMARY}```python\nraise SystemExit('no packing today')\n```\n"
OVERLAP = rewrite(1.5)


@dataclass
class Loop:
    """The parts of one evolution process: its program database, bus, store and asker."""

    db: AsyncProgramDatabase
    asker: LlmAsker
    store: GenesisStore
    sandbox: Sandbox
    problem: Problem

    async def run(
        self, options: EvolveOptions, seen: list[float] | None = None
    ) -> EvolutionOutcome:
        def progress(state: object) -> None:
            best = getattr(state, "best_score", None)
            if seen is not None and best is not None:
                seen.append(best)

        return await EvolutionRun(
            self.problem, self.db, self.asker, self.sandbox, options, progress
        ).run()


@contextlib.asynccontextmanager
async def evolution_process(
    settings: Settings,
    cluster: Cluster,
    db_url: str,
    *,
    islands: int = 2,
    seed: int = 3,
    timeout_s: float = 20.0,
) -> AsyncIterator[Loop]:
    """An evolution process on the platform: answers consumed while the block runs."""
    engine = open_engine(db_url)
    create_schema(engine)
    config = EvolutionConfig(num_islands=islands, migration_interval=0, seed=seed)
    db = AsyncProgramDatabase(ProgramDatabase(engine, config))
    endpoint = cluster.service(Role.GENESIS, Database.SHARED_QUEUE)
    pool = await open_pool(cluster.service(Role.GENESIS, Database.GENESIS), name="test-evolve")
    try:
        async with open_bus(endpoint, settings, name="test-evolve-bus") as bus:
            store = GenesisStore(pool)
            run_id = await prepare_run(db, PROBLEM)
            asker = LlmAsker(store, bus.publisher, run_id, timeout_s=timeout_s)
            stop = asyncio.Event()
            answers = asyncio.create_task(asker.consumer(bus).run(stop))
            try:
                yield Loop(db, asker, store, Sandbox(uid_base=UIDS, slots=SLOTS), PROBLEM)
            finally:
                stop.set()
                await asyncio.wait_for(answers, 30)
    finally:
        await pool.close()
        await db.close()
