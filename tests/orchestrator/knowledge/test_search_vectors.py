"""Hybrid search with real vectors: the local server's hash-derived embeddings in pgvector.

The server's vectors mean nothing semantic: equal texts give equal vectors, unrelated texts
nearly orthogonal ones. So an artifact whose content_raw (the embedded text) is the query
itself, while its content shares no word with it, is found by its vector alone.
"""

from __future__ import annotations

import math
import uuid
from typing import Any

import pytest
from structlog.testing import capture_logs

from singularity.orchestrator.knowledge import (
    DEFAULT_MIN_SIMILARITY,
    Artifact,
    Change,
    Embedder,
    KnowledgeStore,
)
from singularity.testing.openai_server import EMBEDDINGS_PATH, MockOpenAI, embedding_vector

QUERY = "keep retrying until the service answers"


def art(kind: str, artifact_id: str, content: dict[str, Any], **extra: Any) -> Artifact:
    return Artifact(artifact_type=kind, artifact_id=artifact_id, content=content, **extra)


def cosine(a: str, b: str) -> float:
    x, y = embedding_vector(a), embedding_vector(b)
    return sum(p * q for p, q in zip(x, y, strict=True)) / math.hypot(*x) / math.hypot(*y)


def embedding_calls(server: MockOpenAI, embedder: Embedder) -> list[Any]:
    model = embedder.model.removeprefix("openai/")
    return [call for call in server.calls_for(model) if call.path == EMBEDDINGS_PATH]


@pytest.fixture
def unique_embedder(mock_llm_server: MockOpenAI) -> Embedder:
    """A model name of this test alone, so that its calls to the server can be counted."""
    return Embedder(
        model=f"openai/emb-{uuid.uuid4().hex[:8]}", api_base=mock_llm_server.base_url, api_key="k"
    )


async def upsert_all(
    store: KnowledgeStore, artifacts: list[Artifact], embedder: Embedder | None
) -> list[Change]:
    return await store.apply(await store.prepare(artifacts, embedder=embedder))


async def test_vectors_find_what_the_words_miss(
    store: KnowledgeStore, kind: str, embedder: Embedder, needs_vector: None
) -> None:
    semantic = art(
        kind, "semantic", {"steps": ["exponential backoff", "jitter"]}, content_raw=QUERY
    )
    wordy = art(kind, "wordy", {"description": "keep retrying: the service answers eventually"})
    both = art(kind, "both", {"description": "retrying, keep asking until the service answers"})
    both = both.model_copy(update={"content_raw": QUERY})
    # What the test stands on: the word-matching artifact's own text is no near neighbour.
    assert cosine(QUERY, wordy.raw) < DEFAULT_MIN_SIMILARITY
    await upsert_all(store, [semantic, wordy, both], embedder)

    words = await store.search(QUERY, artifact_type=kind)
    assert sorted(h.artifact_id for h in words) == ["both", "wordy"]  # semantic shares no word

    found = await store.search_detailed(QUERY, artifact_type=kind, embedder=embedder)
    assert found.mode == "hybrid" and found.warning is None
    ranked = [(h.artifact_id, h.matched) for h in found.hits]
    assert ranked == [("both", "text+vector"), ("semantic", "vector"), ("wordy", "text")]
    top, vector_only, text_only = found.hits
    assert top.similarity == pytest.approx(1.0, abs=1e-6) and top.text_rank is not None
    assert vector_only.similarity == pytest.approx(1.0, abs=1e-6) and vector_only.text_rank is None
    assert text_only.similarity is None
    # Reciprocal-rank fusion with k = 60: 1/(60 + place) in each list an artifact is in (two
    # in each list here, and equal similarities go by id).
    single = [pytest.approx(1 / 61), pytest.approx(1 / 62)]
    assert top.score in [pytest.approx(a + b) for a in (1 / 61, 1 / 62) for b in (1 / 61, 1 / 62)]
    assert vector_only.score in single and text_only.score in single


async def test_vectors_rank_first_only_with_an_embedder(
    store: KnowledgeStore, kind: str, embedder: Embedder, needs_vector: None
) -> None:
    semantic = art(kind, "semantic", {"steps": ["exponential backoff"]}, content_raw=QUERY)
    wordy = art(kind, "wordy", {"description": "keep retrying: the service answers eventually"})
    assert cosine(QUERY, wordy.raw) < DEFAULT_MIN_SIMILARITY
    await upsert_all(store, [semantic, wordy], embedder)
    with_vectors = await store.search(QUERY, artifact_type=kind, embedder=embedder)
    assert [h.artifact_id for h in with_vectors] == ["semantic", "wordy"]
    without = await store.search(QUERY, artifact_type=kind)
    assert [h.artifact_id for h in without] == ["wordy"]


async def test_a_query_without_words_is_searched_by_vector(
    store: KnowledgeStore, kind: str, embedder: Embedder, needs_vector: None
) -> None:
    await upsert_all(store, [art(kind, "marks", {"a": "b"}, content_raw="?!?")], embedder)
    found = await store.search_detailed("?!?", artifact_type=kind, embedder=embedder)
    assert found.mode == "hybrid"
    assert [(h.artifact_id, h.matched) for h in found.hits] == [("marks", "vector")]


async def test_vectors_of_another_model_are_not_compared(
    store: KnowledgeStore,
    kind: str,
    embedder: Embedder,
    unique_embedder: Embedder,
    needs_vector: None,
) -> None:
    await upsert_all(store, [art(kind, "semantic", {"a": "b"}, content_raw=QUERY)], embedder)
    # Same dimensions, same server: still another model's space, so no vector match.
    found = await store.search_detailed(QUERY, artifact_type=kind, embedder=unique_embedder)
    assert found.mode == "hybrid" and found.hits == []


async def test_only_new_or_changed_artifacts_are_embedded(
    store: KnowledgeStore,
    kind: str,
    unique_embedder: Embedder,
    embedder: Embedder,
    mock_llm_server: MockOpenAI,
    needs_vector: None,
) -> None:
    one, two = art(kind, "one", {"n": 1}), art(kind, "two", {"n": 2})
    assert await upsert_all(store, [one, two], unique_embedder) == [Change.CREATED] * 2
    assert [c.body["input"] for c in embedding_calls(mock_llm_server, unique_embedder)] == [
        [one.raw, two.raw]
    ]
    assert await upsert_all(store, [one, two], unique_embedder) == [Change.UNCHANGED] * 2
    changed = art(kind, "two", {"n": 3})
    assert await upsert_all(store, [one, changed], unique_embedder) == [
        Change.UNCHANGED,
        Change.UPDATED,
    ]
    calls = embedding_calls(mock_llm_server, unique_embedder)
    assert len(calls) == 2 and calls[1].body["input"] == [changed.raw]
    # Another model: the same artifacts, embedded anew.
    assert await upsert_all(store, [one], embedder) == [Change.EMBEDDED]
    [row] = await store.find(kind, "one")
    assert row.embedding_model == embedder.model and row.updated_at is not None


async def test_a_changed_text_without_an_embedder_drops_the_stale_vector(
    store: KnowledgeStore, kind: str, embedder: Embedder, needs_vector: None
) -> None:
    await upsert_all(store, [art(kind, "x", {"a": 1}, content_raw=QUERY)], embedder)
    # New content, same text: the vector still describes it.
    await upsert_all(store, [art(kind, "x", {"a": 2}, content_raw=QUERY)], None)
    [kept] = await store.find(kind, "x")
    assert kept.embedding_model == embedder.model
    await upsert_all(store, [art(kind, "x", {"a": 2}, content_raw="other text")], None)
    [dropped] = await store.find(kind, "x")
    assert dropped.embedding_model is None
    assert await store.search(QUERY, artifact_type=kind, embedder=embedder) == []


async def test_a_failing_embedder_falls_back_to_full_text(
    store: KnowledgeStore, kind: str, broken_embedder: Embedder, vector_available: bool
) -> None:
    await store.upsert(art(kind, "wordy", {"description": "keep retrying: the service answers"}))
    found = await store.search_detailed(QUERY, artifact_type=kind, embedder=broken_embedder)
    assert found.mode == "text"
    assert [h.artifact_id for h in found.hits] == ["wordy"]
    assert found.warning is not None
    if vector_available:
        assert found.warning.startswith(f"embedding with {broken_embedder.model} at ")
        assert found.warning.endswith("; full-text results only")
    else:
        assert "no pgvector" in found.warning
    # The service's search logs the fallback, once while it lasts.
    with capture_logs() as logs:
        for _ in range(3):
            hits = await store.search(QUERY, artifact_type=kind, embedder=broken_embedder)
            assert [h.artifact_id for h in hits] == ["wordy"]
    assert [(e["event"], e["reason"]) for e in logs] == [
        ("knowledge_search_fallback", found.warning)
    ]
