"""Genesis evolution: the program database's add() rate, sample() latency and novelty check.

On each backend (a SQLite file, and PostgreSQL: the embedded server or --database-url), N
programs with D-dimensional embeddings are added one by one on K islands, each child on a
random earlier program's island (migration off, archive of 100). Every add() is paired with
its anchor: a bare INSERT of the same row, in its own transaction, into a copy of the table
without indexes. The timed phases run after the script has dropped its own copies of the
programs (and collected garbage), as a loop that holds only its current programs would.
At N programs:

- sample() (a parent with 2 archive and 2 top-k inspirations) against its anchor, get() of
  one program by id;
- the novelty check, nearest() on an island, against its anchor, the naive check that reads
  and decodes the island's embeddings from the database each time; and the in-memory index
  alone with all N programs on one island (the worst case).

    python bench/evolution_db.py [-n 10000] [--dim 768] [--samples 300] [--islands 4]
                                 [--database-url URL] [--home HOME]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import random
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from psycopg import sql
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table as RichTable
from sqlalchemy import Column, MetaData, Table, select
from sqlalchemy.engine import Engine

from _common import add_server_arguments, console, emit_json, machine, open_server, progress_console
from _nexus import spread
from singularity.genesis.evolution import EvolutionConfig, Program, ProgramDatabase, open_engine
from singularity.genesis.evolution.novelty import NoveltyIndex
from singularity.genesis.evolution.rows import program_values
from singularity.genesis.evolution.schema import create_schema, programs
from singularity.postgres.connect import async_connection

NOVELTY_TARGET_MS = 5.0
SAMPLE_TARGET_MS = 10.0
NAIVE_ROUNDS = 5


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--programs", type=int, default=10_000, help="population size")
    parser.add_argument("--dim", type=int, default=768, help="embedding dimensions")
    parser.add_argument("--samples", type=int, default=300, help="timed sample() and checks")
    parser.add_argument("--islands", type=int, default=4, help="islands")
    add_server_arguments(parser)
    args = parser.parse_args()
    args.scratch_db = f"bench_evolution_{uuid.uuid4().hex[:6]}"
    return args


def population(n: int, dim: int, islands: int) -> list[Program]:
    """N programs: K roots, then children of random earlier programs."""
    rng = random.Random(1)
    vectors = np.random.default_rng(1).normal(size=(n, dim)).astype(np.float32)
    made: list[Program] = []
    for i in range(n):
        parent = made[rng.randrange(len(made))].id if i >= islands else None
        made.append(
            Program(
                code=f"def solve():\n    return {i}\n" * 20,
                parent_id=parent,
                generation=i // 100,
                combined_score=rng.random(),
                correct=rng.random() < 0.8,
                public_metrics={"score": rng.random(), "runtime_s": rng.random()},
                embedding=vectors[i].tolist(),
                island_idx=i if parent is None else None,
            )
        )
    return made


def anchor_table() -> Table:
    """The anchor's table: the same columns as `programs`, no index."""
    return Table("bench_anchor", MetaData(), *[Column(c.name, c.type) for c in programs.columns])


def ms(run: Callable[[], Any]) -> float:
    started = time.perf_counter()
    run()
    return (time.perf_counter() - started) * 1000


def fill(db: ProgramDatabase, made: list[Program], bar: Progress, label: str) -> dict[str, Any]:
    """Add every program, each paired with a bare INSERT of the same row."""
    anchor = anchor_table()
    anchor.create(db.engine)
    adds: list[float] = []
    inserts: list[float] = []

    def insert(values: dict[str, Any]) -> None:
        with db.engine.begin() as conn:
            conn.execute(anchor.insert().values(values))

    task = bar.add_task(f"{label}: add()", total=len(made))
    started = time.perf_counter()
    for program in made:
        values = program_values(program) | {"island_idx": 0}
        inserts.append(ms(lambda values=values: insert(values)))
        adds.append(ms(lambda program=program: db.add(program)))
        bar.advance(task)
    wall = time.perf_counter() - started
    anchor.drop(db.engine)
    add_p50, insert_p50 = spread(adds)["p50"], spread(inserts)["p50"]
    return {
        "add_ms": spread(adds),
        "insert_anchor_ms": spread(inserts),
        "add_per_s": round(len(adds) / (sum(adds) / 1000), 1),
        "add_over_insert_p50": round(add_p50 / insert_p50, 2),
        "wall_s": round(wall, 1),
    }


def sampling(db: ProgramDatabase, ids: list[str], samples: int) -> dict[str, Any]:
    rng = random.Random(2)
    for _ in range(20):  # warm the connection pool and caches
        db.sample()
    sample = [ms(db.sample) for _ in range(samples)]
    get = [ms(lambda: db.get(rng.choice(ids))) for _ in range(samples)]
    return {
        "sample_ms": spread(sample),
        "get_anchor_ms": spread(get),
        "sample_over_get_p50": round(spread(sample)["p50"] / spread(get)["p50"], 2),
    }


def naive_nearest(engine: Engine, island: int, query: np.ndarray) -> float:
    """The check without an index: read and decode the island's embeddings, then compare."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(programs.c.embedding).where(programs.c.island_idx == island)
        ).all()
    matrix = np.asarray([row[0] for row in rows], dtype=np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    return float(np.max(matrix @ (query / np.linalg.norm(query))))


def novelty(db: ProgramDatabase, dim: int, samples: int) -> dict[str, Any]:
    queries = np.random.default_rng(3).normal(size=(samples, dim)).astype(np.float32)
    load = ms(lambda: db.nearest(queries[0].tolist(), 0))  # the first check loads the index
    checks = [ms(lambda q=q: db.nearest(q.tolist(), 0)) for q in queries]
    naive = [ms(lambda q=q: naive_nearest(db.engine, 0, q)) for q in queries[:NAIVE_ROUNDS]]
    return {
        "island_programs": db.count(0),
        "index_load_ms": round(load, 1),
        "nearest_ms": spread(checks),
        "naive_anchor_ms": spread(naive),
        "naive_over_nearest_p50": round(spread(naive)["p50"] / spread(checks)["p50"], 1),
    }


def one_island_index(made: list[Program], dim: int, samples: int) -> dict[str, Any]:
    """The in-memory index with the whole population on one island."""
    index = NoveltyIndex()
    for program in made:
        index.add(0, program.id, program.embedding)
    made.clear()
    gc.collect()
    queries = np.random.default_rng(4).normal(size=(samples, dim)).astype(np.float32)
    checks = [ms(lambda q=q: index.nearest(0, q.tolist())) for q in queries]
    return {"programs": len(index), "nearest_ms": spread(checks)}


def run_backend(engine: Engine, label: str, args: argparse.Namespace) -> dict[str, Any]:
    create_schema(engine)
    config = EvolutionConfig(num_islands=args.islands, migration_interval=0, seed=1)
    db = ProgramDatabase(engine, config)
    made = population(args.programs, args.dim, args.islands)
    with bar() as progress:
        figures = {"add": fill(db, made, progress, label)}
    ids = [program.id for program in made]
    # The benchmark's own copies of 10,000 programs are not the database's to carry: drop
    # them so that the garbage collector's pauses are those of a loop, not of this script.
    del made
    gc.collect()
    figures["sample"] = sampling(db, ids, args.samples)
    figures["novelty"] = novelty(db, args.dim, args.samples)
    db.close()
    return figures


def bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=progress_console,
    )


@contextlib.contextmanager
def sqlite_engine() -> Iterator[Engine]:
    with tempfile.TemporaryDirectory(prefix="bench-evolution-") as tmp:
        engine = open_engine(f"sqlite:///{Path(tmp) / 'evolution.db'}")
        yield engine
        engine.dispose()


async def postgres_figures(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    async with open_server(args) as server:
        admin = server.endpoint.with_database("postgres")
        name = f"bench_evolution_{uuid.uuid4().hex[:6]}"
        async with async_connection(admin) as conn:
            await conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            engine = open_engine(admin.with_database(name).url())
            figures = await asyncio.to_thread(run_backend, engine, "postgresql", args)
            engine.dispose()
        finally:
            async with async_connection(admin) as conn:
                await conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )
        return figures, machine(server)


def report(results: dict[str, dict[str, Any]], worst: dict[str, Any]) -> list[dict[str, Any]]:
    table = RichTable("backend", "add/s", "add p50", "INSERT p50", "ratio", "sample p50",
                      "get p50", "ratio", "nearest p50", "naive p50", "speed-up")  # fmt: skip
    checks = []
    for backend, f in results.items():
        table.add_row(
            backend,
            f"{f['add']['add_per_s']:.0f}",
            f"{f['add']['add_ms']['p50']} ms",
            f"{f['add']['insert_anchor_ms']['p50']} ms",
            f"{f['add']['add_over_insert_p50']}x",
            f"{f['sample']['sample_ms']['p50']} ms",
            f"{f['sample']['get_anchor_ms']['p50']} ms",
            f"{f['sample']['sample_over_get_p50']}x",
            f"{f['novelty']['nearest_ms']['p50']} ms",
            f"{f['novelty']['naive_anchor_ms']['p50']} ms",
            f"{f['novelty']['naive_over_nearest_p50']}x",
        )
        checks.append(
            {"check": f"{backend} sample() p99", "value": f["sample"]["sample_ms"]["p99"],
             "target": SAMPLE_TARGET_MS, "met": f["sample"]["sample_ms"]["p99"] < SAMPLE_TARGET_MS}
        )  # fmt: skip
    one = worst["nearest_ms"]["p99"]
    checks.append(
        {"check": f"novelty p99, {worst['programs']} on one island", "value": one,
         "target": NOVELTY_TARGET_MS, "met": one < NOVELTY_TARGET_MS}
    )  # fmt: skip
    console.print(table)
    for check in checks:
        mark = "met" if check["met"] else "MISSED"
        console.print(
            f"{check['check']}: {check['value']} ms (target < {check['target']} ms) {mark}"
        )
    return checks


def main() -> None:
    args = parse()
    results: dict[str, dict[str, Any]] = {}
    with sqlite_engine() as engine:
        results["sqlite"] = run_backend(engine, "sqlite", args)
    results["postgresql"], facts = asyncio.run(postgres_figures(args))
    worst = one_island_index(population(args.programs, args.dim, 1), args.dim, args.samples)
    checks = report(results, worst)
    emit_json(
        {
            "benchmark": "evolution_db",
            "programs": args.programs,
            "dim": args.dim,
            "islands": args.islands,
            "samples": args.samples,
            "backends": results,
            "novelty_one_island": worst,
            "checks": checks,
            "machine": facts,
        }
    )


if __name__ == "__main__":
    main()
