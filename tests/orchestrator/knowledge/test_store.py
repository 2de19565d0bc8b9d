"""The knowledge store on a real database: writes, usage, reads and full-text search.

Everything here runs on both servers (with and without pgvector).
"""

from __future__ import annotations

from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool

from singularity.errors import NotFound
from singularity.orchestrator.knowledge import Artifact, Change, KnowledgeStore


def art(kind: str, artifact_id: str, content: dict[str, Any], **extra: Any) -> Artifact:
    return Artifact(artifact_type=kind, artifact_id=artifact_id, content=content, **extra)


async def ids(store: KnowledgeStore, kind: str) -> dict[str, int]:
    return {row.artifact_id: row.id for row in await store.artifacts(artifact_type=kind)}


async def test_the_embedding_column_exists_only_with_pgvector(
    store: KnowledgeStore, vector_available: bool
) -> None:
    assert await store.vector_enabled() is vector_available


async def test_the_schema_is_the_designs(
    knowledge_pool: AsyncConnectionPool, vector_available: bool
) -> None:
    async with knowledge_pool.connection() as conn:
        columns = dict(
            await (
                await conn.execute(
                    "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
                    "WHERE attrelid = 'knowledge_artifacts'::regclass AND attnum > 0 "
                    "AND NOT attisdropped"
                )
            ).fetchall()
        )
        indexes = {
            row[0]
            for row in await (
                await conn.execute(
                    "SELECT indexdef FROM pg_indexes WHERE tablename = 'knowledge_artifacts'"
                )
            ).fetchall()
        }
    expected = {
        "id": "bigint",
        "artifact_type": "text",
        "artifact_id": "text",
        "version": "text",
        "content_raw": "text",
        "content": "jsonb",
        "usage_count": "integer",
        "success_count": "integer",
        "created_at": "timestamp with time zone",
        "updated_at": "timestamp with time zone",
        "search_vector": "tsvector",
    }
    assert expected.items() <= columns.items()
    assert columns.get("embedding") == ("vector" if vector_available else None)  # no dimensions
    assert any("USING gin (search_vector)" in index for index in indexes)
    assert any("UNIQUE" in i and "(artifact_type, artifact_id, version)" in i for i in indexes)


async def test_upsert_creates_then_changes_nothing_then_updates(
    store: KnowledgeStore, kind: str
) -> None:
    first = art(kind, "x", {"description": "one"})
    assert await store.upsert(first) is Change.CREATED
    [before] = await store.find(kind, "x")
    assert await store.upsert(first) is Change.UNCHANGED
    [same] = await store.find(kind, "x")
    assert same.updated_at == before.updated_at and same.content_raw == first.raw

    assert await store.upsert(art(kind, "x", {"description": "two"})) is Change.UPDATED
    [after] = await store.find(kind, "x")
    assert after.id == before.id and after.content == {"description": "two"}
    assert after.updated_at > before.updated_at

    assert await store.upsert(art(kind, "x", {"description": "three"}, version="2")) is (
        Change.CREATED
    )
    assert [row.version for row in await store.find(kind, "x")] == ["1", "2"]
    [two] = await store.find(kind, "x", "2")
    assert two.content == {"description": "three"}


async def test_a_new_content_raw_alone_is_a_change(store: KnowledgeStore, kind: str) -> None:
    await store.upsert(art(kind, "x", {"a": 1}, content_raw="first text"))
    assert await store.upsert(art(kind, "x", {"a": 1}, content_raw="second text")) is (
        Change.UPDATED
    )
    [row] = await store.find(kind, "x")
    assert row.content_raw == "second text"


async def test_record_usage_counts_uses_and_successes(store: KnowledgeStore, kind: str) -> None:
    for name in ("a", "b"):
        await store.upsert(art(kind, name, {}))
    known = await ids(store, kind)
    await store.record_usage([known["a"], known["a"], known["b"]], success=True)
    await store.record_usage([known["a"]], success=False)
    await store.record_usage([], success=True)
    await store.record_usage([known["b"], 2**62], success=False)  # an unknown id is ignored
    rows = {row.artifact_id: row for row in await store.by_ids(list(known.values()))}
    assert (rows["a"].usage_count, rows["a"].success_count) == (2, 1)  # once per call
    assert (rows["b"].usage_count, rows["b"].success_count) == (2, 1)
    assert rows["a"].success_rate == 0.5 and rows["a"].last_used_at is not None


async def test_an_unknown_artifact_is_not_found(store: KnowledgeStore, kind: str) -> None:
    with pytest.raises(NotFound, match=f"no knowledge artifact {kind}/nope@3"):
        await store.find(kind, "nope", "3")
    assert await store.delete(kind, "nope") == 0


async def test_knowledge_search_ranks_the_right_artifact_first(
    store: KnowledgeStore, kind: str
) -> None:
    artifacts = {
        "retry-with-backoff": {
            "description": "Retry a flaky network call with exponential backoff and jitter",
            "steps": ["catch the timeout", "sleep 2**attempt seconds", "give up after 5"],
        },
        "alembic-migration": {"description": "Write an Alembic migration for a new table"},
        "http-client": {"description": "Call HTTP APIs with httpx, setting timeouts"},
        "timeouts": {"description": "Pick deadlines for every remote call"},
        "structured-logging": {"description": "Log events with structlog, one line each"},
    }
    for name, content in artifacts.items():
        await store.upsert(art(kind, name, content))
    await store.upsert(art(kind + "-other", "retry-with-backoff", artifacts["retry-with-backoff"]))

    async def first(query: str) -> str:
        hits = await store.search(query, artifact_type=kind)
        assert hits and {hit.artifact_type for hit in hits} == {kind}
        assert all(hit.matched == "text" and hit.text_rank == hit.score for hit in hits)
        return hits[0].artifact_id

    assert await first("how do I retry a flaky network call") == "retry-with-backoff"
    assert await first("alembic migrations") == "alembic-migration"
    # A word in the id (weight A) outweighs the same word in the content (weight B).
    assert await first("timeouts") == "timeouts"
    assert [h.artifact_id for h in await store.search("timeouts", artifact_type=kind)] == [
        "timeouts",
        "retry-with-backoff",
        "http-client",
    ]
    assert await store.search("kubernetes", artifact_type=kind) == []
    everywhere = await store.search("flaky network retry", limit=50)
    assert {kind, kind + "-other"} <= {hit.artifact_type for hit in everywhere}


async def test_equal_ranks_go_to_the_artifact_that_worked(store: KnowledgeStore, kind: str) -> None:
    for name in ("tried", "proven"):
        await store.upsert(art(kind, name, {"description": "vacuum the table"}))
    known = await ids(store, kind)
    await store.record_usage([known["tried"]], success=False)
    await store.record_usage([known["proven"]], success=True)
    hits = await store.search("vacuum", artifact_type=kind)
    assert [hit.artifact_id for hit in hits] == ["proven", "tried"]
    assert hits[0].score == hits[1].score


async def test_a_query_without_words_matches_as_a_substring(
    store: KnowledgeStore, kind: str
) -> None:
    await store.upsert(art(kind, "operators", {"description": "what ?! and 100% mean"}))
    await store.upsert(art(kind, "other", {"description": "nothing of the sort"}))
    found = await store.search_detailed("?!", artifact_type=kind)
    assert found.mode == "substring"
    assert [(h.artifact_id, h.matched) for h in found.hits] == [("operators", "substring")]
    # Stop words alone have no lexeme either; % and _ are matched literally.
    assert [h.artifact_id for h in await store.search("the", artifact_type=kind)] == ["other"]
    assert [h.artifact_id for h in await store.search("%", artifact_type=kind)] == ["operators"]
    assert await store.search("_", artifact_type=kind) == []
    assert await store.search("   ") == []
    assert await store.search("vacuum", limit=0) == []


async def test_delete_removes_one_version_or_all(store: KnowledgeStore, kind: str) -> None:
    for version in ("1", "2"):
        await store.upsert(art(kind, "x", {}, version=version))
    assert await store.delete(kind, "x", "1") == 1
    assert [row.version for row in await store.find(kind, "x")] == ["2"]
    assert await store.delete(kind, "x") == 1
    assert await store.artifacts(artifact_type=kind) == []
