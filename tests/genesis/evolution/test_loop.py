"""The evolution loop end to end: Nexus routing to a local OpenAI-compatible server that
answers with valid mutations, the real sandbox scoring circle packings, the program database
on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest

from evolve_support import CRASH, GROW, OVERLAP, evolution_process, rewrite
from genesis_support import require_bwrap
from helpers import eventually
from nexus_support import RunningNexus
from singularity.config import Settings
from singularity.genesis.evolution.loop import EvolveOptions
from singularity.postgres.cluster import Cluster
from singularity.testing.openai_server import MockOpenAI, Reply

INITIAL_SCORE = 2.5414


@pytest.fixture(autouse=True)
def _sandbox() -> None:
    require_bwrap()


async def test_a_run_makes_scores_and_stores_every_generation(
    nexus_settings: Settings,
    cluster: Cluster,
    nexus: RunningNexus,
    llm: MockOpenAI,
    db_url: str,
) -> None:
    replies = [rewrite(0.9995), GROW, CRASH, rewrite(0.5), OVERLAP, rewrite(0.99)]
    llm.script("gamma", *(Reply(text) for text in replies))
    seen: list[float] = []
    async with evolution_process(nexus_settings, cluster, db_url) as loop:
        outcome = await loop.run(EvolveOptions(generations=3, diff_ratio=0.5, seed=1), seen)
        programs = [p for g in range(4) for p in await loop.db.by_generation(g)]
        spend = await loop.asker.spend_usd()
    assert outcome.completed == 3 and not outcome.stopped_by_budget
    assert len(llm.calls_for("gamma")) == 6  # one usable answer per child: asked once each
    assert len(programs) == 2 + 6
    by_id = {p.id: p for p in programs}
    children = [p for p in programs if p.generation > 0]
    for child in children:
        parent = by_id[child.parent_id or ""]
        assert child.island_idx == parent.island_idx  # migration is off
        assert parent.correct and child.code != parent.code and child.code_diff
        assert child.metadata["mutation"] in ("diff", "full")
        assert child.metadata["cost_usd"] > 0 and child.metadata["models"] == ["gamma"]
        assert len(child.embedding) == 256 and child.complexity > 0
    assert {p.metadata["slot"] for p in children} == {f"{g}:{i}" for g in (1, 2, 3) for i in (0, 1)}
    assert spend == pytest.approx(sum(p.metadata["cost_usd"] for p in children))
    crashed = next(p for p in children if "no packing today" in p.code)
    assert not crashed.correct and crashed.combined_score == 0 and crashed.text_feedback
    overlapping = next(p for p in children if "gap * 1.5" in p.code)
    assert not overlapping.correct and "overlap" in overlapping.text_feedback
    best = outcome.best
    assert best is not None and best.combined_score > INITIAL_SCORE
    assert best.combined_score == max(p.combined_score for p in programs if p.correct)
    assert seen == sorted(seen) and seen[-1] == best.combined_score  # never decreases
    # The requests went through Nexus as the design's llm_requests, from Genesis.
    body = llm.calls_for("gamma")[0].body
    assert "circles" in body["messages"][-1]["content"]


async def test_an_unusable_answer_is_asked_again_with_the_reason(
    nexus_settings: Settings,
    cluster: Cluster,
    nexus: RunningNexus,
    llm: MockOpenAI,
    sqlite_url: str,
) -> None:
    no_match = "x\n<<<<<<< SEARCH\nnot in the program\n=======\ny\n>>>>>>> REPLACE\n"
    llm.script("gamma", Reply(no_match), Reply("no code at all"), Reply(rewrite(0.9)))
    async with evolution_process(nexus_settings, cluster, sqlite_url, islands=1) as loop:
        outcome = await loop.run(EvolveOptions(generations=1, seed=1))
        (child,) = await loop.db.by_generation(1)
    calls = llm.calls_for("gamma")
    assert len(calls) == 3 and outcome.completed == 1
    retry = calls[1].body["messages"][-1]["content"]
    assert "SEARCH block 1 matches 0 times" in retry
    assert child.metadata["attempts"] == 3 and "gap * 0.9" in child.code


async def test_a_slot_whose_answers_all_fail_is_recorded_as_failed(
    nexus_settings: Settings,
    cluster: Cluster,
    nexus: RunningNexus,
    llm: MockOpenAI,
    sqlite_url: str,
) -> None:
    llm.script("gamma", *(Reply("nothing useful") for _ in range(3)))
    async with evolution_process(nexus_settings, cluster, sqlite_url, islands=1) as loop:
        outcome = await loop.run(EvolveOptions(generations=1, seed=1))
        reason = await loop.db.get_metadata("failed_slot:1:0")
        assert await loop.db.count() == 1  # only the initial program
    assert outcome.completed == 1 and reason.startswith("the answer has no ")
    assert len(llm.calls_for("gamma")) == 3


async def test_the_budget_stops_the_run_and_a_larger_one_goes_on(
    nexus_settings: Settings,
    cluster: Cluster,
    nexus: RunningNexus,
    llm: MockOpenAI,
    sqlite_url: str,
) -> None:
    llm.script("gamma", *(Reply(rewrite(f)) for f in (0.91, 0.92, 0.93, 0.94)))
    async with evolution_process(nexus_settings, cluster, sqlite_url) as loop:
        stopped = await loop.run(EvolveOptions(generations=3, budget_usd=1e-9, seed=1))
        assert stopped.stopped_by_budget and stopped.completed == 1
        assert stopped.spend_usd >= 1e-9 and len(llm.calls_for("gamma")) == 2
        resumed = await loop.run(EvolveOptions(generations=2, seed=1))
    assert resumed.completed == 2 and not resumed.stopped_by_budget
    assert len(llm.calls_for("gamma")) == 4


async def test_a_run_stopped_mid_generation_resumes_without_asking_twice(
    nexus_settings: Settings,
    cluster: Cluster,
    nexus: RunningNexus,
    llm: MockOpenAI,
    db_url: str,
) -> None:
    # Island 0's answer comes at once, island 1's while the first process is gone.
    llm.script(
        "gamma",
        Reply(rewrite(0.95)),
        Reply(rewrite(0.96), delay_s=2.0),
        Reply(rewrite(0.97)),
        Reply(rewrite(0.98)),
    )
    options = EvolveOptions(generations=2, seed=5)
    async with evolution_process(nexus_settings, cluster, db_url) as first:
        running = asyncio.create_task(first.run(options))

        async def first_child_stored() -> bool:
            return await first.db.count() >= 3

        await eventually(first_child_stored, 60)
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
        run_id = first.asker.run_id
    assert len(llm.calls_for("gamma")) == 2
    async with evolution_process(nexus_settings, cluster, db_url) as second:
        assert second.asker.run_id == run_id  # the same run, from its database
        outcome = await second.run(options)
        programs = [p for g in range(3) for p in await second.db.by_generation(g)]
    assert outcome.completed == 2
    # Generation 1's second answer arrived while no process listened, and was used.
    assert len(llm.calls_for("gamma")) == 4
    slots = sorted(p.metadata["slot"] for p in programs if p.generation > 0)
    assert slots == ["1:0", "1:1", "2:0", "2:1"]  # each child once
