"""The evolution loop: generations of children, one per island, made by a model and scored
in the sandbox.

Generation 0 is the problem's initial program on every island. Each later generation makes
one child per island, concurrently: sample a parent and inspirations from the island, ask for
a mutation (a diff or a full rewrite, by the run's ratio), check that the child is new, score
it in the sandbox, and store it with its scores and cost. An answer that gives no usable
program (or a near-duplicate) is asked again with the reason, up to `attempts` times; a slot
whose attempts all fail is recorded as failed, with the reason.

Everything a run needs to go on is in its databases: the children (each names its slot,
`generation:island`), the failed slots and the last complete generation in the program
database, and each model call under its step in the genesis database. A run started again
on the same program database skips what is done and re-asks nothing that was answered.
"""

from __future__ import annotations

import asyncio
import functools
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from singularity.errors import NotFound, UsageError
from singularity.genesis.evolution.aio import AsyncProgramDatabase
from singularity.genesis.evolution.asker import Asked, LlmAsker
from singularity.genesis.evolution.evaluation import Evaluation, evaluate
from singularity.genesis.evolution.features import code_complexity, code_embedding
from singularity.genesis.evolution.mutation import (
    Kind,
    Mutation,
    UnusableMutation,
    apply_answer,
    mutation_messages,
)
from singularity.genesis.evolution.problem import Problem
from singularity.genesis.evolution.types import Program, Sample
from singularity.genesis.sandbox import Sandbox

__all__ = ["EvolutionOutcome", "EvolutionRun", "EvolveOptions", "RunProgress", "prepare_run"]

log = structlog.get_logger(__name__)

AGENT_ID = "genesis-evolution"
TASK_TYPE = "evolution"


@dataclass(frozen=True)
class EvolveOptions:
    """How a run goes: its length, the mutation mix, concurrency and its budget."""

    generations: int
    diff_ratio: float = 0.7  # the share of mutations asked as diffs; the rest are rewrites
    concurrency: int = 2  # evaluations at once
    budget_usd: float | None = None
    complexity: str = "complex"  # the routing tier asked of Nexus
    novelty_threshold: float = 0.999  # at or above this similarity a child is a duplicate
    attempts: int = 3  # model answers tried per child
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.generations < 1:
            raise UsageError("--generations must be at least 1")
        if not 0.0 <= self.diff_ratio <= 1.0:
            raise UsageError("--diff-ratio must be between 0 and 1")
        if self.concurrency < 1 or self.attempts < 1:
            raise UsageError("--concurrency and attempts must be at least 1")
        if self.budget_usd is not None and self.budget_usd <= 0:
            raise UsageError("--budget must be a positive amount of USD")
        if self.complexity not in ("simple", "medium", "complex"):
            raise UsageError("--complexity must be simple, medium or complex")


@dataclass
class RunProgress:
    """What the progress display shows; updated as children land."""

    generations: int
    completed: int = 0  # generations complete
    best_score: float | None = None
    spend_usd: float = 0.0
    children: int = 0  # programs stored, generation 0 included
    failed: int = 0  # slots that gave no child
    working: int = 0  # children being made now


@dataclass(frozen=True)
class EvolutionOutcome:
    completed: int
    generations: int
    best: Program | None
    spend_usd: float
    stopped_by_budget: bool


@dataclass
class _Slot:
    generation: int
    island: int
    kind: str | None = None  # of the mutation that made the child
    attempts: int = 0
    cost_usd: float = 0.0
    tokens: int = 0
    models: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.generation}:{self.island}"


class _BudgetReached(Exception):
    pass


async def prepare_run(db: AsyncProgramDatabase, problem: Problem) -> str:
    """The run id of the database's run (a new one for an empty database); a UsageError when
    the database holds a run of another problem or with another number of islands."""
    islands = db.sync.config.num_islands
    run = await db.get_metadata("run")
    if run is None:
        if await db.count() > 0:
            raise UsageError("the program database holds programs of no evolution run; use --db")
        run = {"run_id": uuid.uuid4().hex, "problem": problem.name, "islands": islands}
        await db.set_metadata("run", run)
        return str(run["run_id"])
    if run["problem"] != problem.name:
        raise UsageError(
            f"the program database holds a run of problem {run['problem']!r}; "
            "give another one with --db for a new run"
        )
    if run["islands"] != islands:
        raise UsageError(
            f"this run has {run['islands']} islands; resume it with --islands {run['islands']}"
        )
    return str(run["run_id"])


class EvolutionRun:
    """One run of the loop over a program database."""

    def __init__(
        self,
        problem: Problem,
        db: AsyncProgramDatabase,
        asker: LlmAsker,
        sandbox: Sandbox,
        options: EvolveOptions,
        on_progress: Callable[[RunProgress], None] = lambda _: None,
    ) -> None:
        self.problem = problem
        self.db = db
        self.asker = asker
        self.sandbox = sandbox
        self.options = options
        self.islands = db.sync.config.num_islands
        self.on_progress = on_progress
        self.progress = RunProgress(generations=options.generations)
        self._rng = random.Random(options.seed)
        self._evaluations = asyncio.Semaphore(options.concurrency)

    async def run(self) -> EvolutionOutcome:
        """Make the generations not made yet; stops early only when the budget is spent."""
        await self._report()
        await self._generation_zero()
        start = int(await self.db.get_metadata("completed_generation", 0)) + 1
        stopped = False
        for generation in range(start, self.options.generations + 1):
            try:
                await self._generation(generation)
            except _BudgetReached:
                stopped = True
                break
            await self.db.set_metadata("completed_generation", generation)
            log.info("evolution_generation_done", generation=generation, run=self.asker.run_id)
            await self._report()
        await self._report()
        best = await self.db.best()
        return EvolutionOutcome(
            completed=self.progress.completed,
            generations=self.options.generations,
            best=best,
            spend_usd=self.progress.spend_usd,
            stopped_by_budget=stopped,
        )

    # -- generations --------------------------------------------------------------------------

    async def _generation_zero(self) -> None:
        missing = await self._missing_slots(0)
        if not missing:
            return
        scored = await self._evaluate(self.problem.initial_code)
        if not scored.correct:
            log.warning("evolution_initial_incorrect", feedback=scored.text_feedback[:500])
        for island in missing:
            program = self._program(
                self.problem.initial_code, scored, _Slot(0, island), island_idx=island
            )
            await self.db.add(program)
        await self.db.set_metadata("completed_generation", 0)
        await self._report()

    async def _generation(self, generation: int) -> None:
        missing = await self._missing_slots(generation)
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(self._child(_Slot(generation, i))) for i in missing]
        if any(task.result() == "budget" for task in tasks):
            raise _BudgetReached

    async def _missing_slots(self, generation: int) -> list[int]:
        made = {p.metadata.get("slot") for p in await self.db.by_generation(generation)}
        missing = []
        for island in range(self.islands):
            key = f"{generation}:{island}"
            if key not in made and await self.db.get_metadata(f"failed_slot:{key}") is None:
                missing.append(island)
        return missing

    # -- one child ----------------------------------------------------------------------------

    async def _child(self, slot: _Slot) -> str:
        """'stored', 'failed' or 'budget' (nothing asked: the budget is spent)."""
        self.progress.working += 1
        try:
            return await self._make_child(slot)
        finally:
            self.progress.working -= 1
            await self._report()

    async def _make_child(self, slot: _Slot) -> str:
        reason: str | None = None
        first: dict[str, Any] | None = None
        for attempt in range(self.options.attempts):
            if await self._over_budget():
                return "budget"
            asked = await self.asker.ask(
                f"{slot.key}:{attempt}",
                functools.partial(self._request, slot, first, reason),
            )
            self._count(slot, asked)
            first = asked.context
            slot.kind = asked.context["kind"]
            sample = await self._sample_from(asked.context)
            try:
                mutation = apply_answer(
                    sample.parent.code, asked.result.result or "", Kind(asked.context["kind"])
                )
                embedding = await self._novel(mutation, sample.parent)
            except UnusableMutation as exc:
                reason = str(exc)
                log.info(
                    "evolution_mutation_unusable", slot=slot.key, attempt=attempt, reason=reason
                )
                continue
            scored = await self._evaluate(mutation.code)
            child = self._program(mutation.code, scored, slot, sample=sample, mutation=mutation)
            await self.db.add(child.model_copy(update={"embedding": embedding}))
            log.info(
                "evolution_child_stored",
                slot=slot.key,
                correct=scored.correct,
                score=scored.combined_score,
                kind=asked.context["kind"],
            )
            return "stored"
        await self.db.set_metadata(f"failed_slot:{slot.key}", reason or "no usable answer")
        self.progress.failed += 1
        log.warning("evolution_slot_failed", slot=slot.key, reason=reason)
        return "failed"

    async def _request(
        self, slot: _Slot, first: dict[str, Any] | None, reason: str | None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The request of one attempt: the first samples a parent; later ones ask about the
        same parent again, with the reason the previous answer could not be used."""
        if first is None:
            sample = await self._sample(slot.island)
            kind = Kind.DIFF if self._rng.random() < self.options.diff_ratio else Kind.FULL
            context = {
                "parent": sample.parent.id,
                "archive": [p.id for p in sample.archive_inspirations],
                "top_k": [p.id for p in sample.top_k_inspirations],
                "kind": kind.value,
            }
        else:
            context = first
            sample = await self._sample_from(context)
            kind = Kind(context["kind"])
        messages = mutation_messages(sample, kind, self.problem.description, retry_reason=reason)
        body = {
            "agent_id": AGENT_ID,
            "task_type": TASK_TYPE,
            "complexity": self.options.complexity,
            "messages": messages,
        }
        return body, context

    async def _sample(self, island: int) -> Sample:
        try:
            return await self.db.sample(island)
        except NotFound:  # every program of the island migrated away: any island will do
            return await self.db.sample()

    async def _sample_from(self, context: dict[str, Any]) -> Sample:
        return Sample(
            parent=await self.db.get(context["parent"]),
            archive_inspirations=[await self.db.get(i) for i in context["archive"]],
            top_k_inspirations=[await self.db.get(i) for i in context["top_k"]],
        )

    async def _novel(self, mutation: Mutation, parent: Program) -> list[float]:
        embedding = code_embedding(mutation.code)
        nearest = await self.db.nearest(embedding, int(parent.island_idx or 0))
        if nearest is not None and nearest.similarity >= self.options.novelty_threshold:
            raise UnusableMutation(
                f"the new program is a near-duplicate of program {nearest.program_id[:8]} "
                f"(similarity {nearest.similarity:.4f})"
            )
        return embedding

    async def _evaluate(self, code: str) -> Evaluation:
        async with self._evaluations:
            return await evaluate(self.problem, code, self.sandbox)

    def _count(self, slot: _Slot, asked: Asked) -> None:
        result = asked.result
        slot.attempts += 1
        slot.cost_usd += result.cost_usd or 0.0
        if result.usage is not None:
            slot.tokens += result.usage.prompt_tokens + result.usage.completion_tokens
        if result.model:
            slot.models.append(result.model)

    def _program(
        self,
        code: str,
        scored: Evaluation,
        slot: _Slot,
        *,
        sample: Sample | None = None,
        mutation: Mutation | None = None,
        island_idx: int | None = None,
    ) -> Program:
        language = self.problem.language
        metadata: dict[str, Any] = {
            "slot": slot.key,
            "status": scored.status,
            "wall_ms": scored.wall_ms,
            "cost_usd": slot.cost_usd,
            "tokens": slot.tokens,
            "models": slot.models,
        }
        if slot.kind is not None:
            metadata.update(mutation=slot.kind, attempts=slot.attempts)
        return Program(
            code=code,
            language=language,
            parent_id=sample.parent.id if sample else None,
            archive_inspiration_ids=[p.id for p in sample.archive_inspirations] if sample else [],
            top_k_inspiration_ids=[p.id for p in sample.top_k_inspirations] if sample else [],
            generation=slot.generation,
            code_diff=mutation.code_diff if mutation else None,
            combined_score=scored.combined_score,
            public_metrics=scored.public_metrics,
            private_metrics=scored.private_metrics,
            text_feedback=scored.text_feedback,
            complexity=code_complexity(code, language),
            embedding=code_embedding(code),
            correct=scored.correct,
            metadata=metadata,
            island_idx=island_idx,
        )

    # -- budget and progress ------------------------------------------------------------------

    async def _over_budget(self) -> bool:
        if self.options.budget_usd is None:
            return False
        return await self.asker.spend_usd() >= self.options.budget_usd

    async def _report(self) -> None:
        self.progress.completed = int(await self.db.get_metadata("completed_generation", 0))
        self.progress.best_score = await self.db.get_metadata("best_score")
        self.progress.spend_usd = await self.asker.spend_usd()
        self.progress.children = await self.db.count()
        self.on_progress(self.progress)
