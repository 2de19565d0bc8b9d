"""The singularity database's knowledge artifacts: writes, reads, usage, and search."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import structlog
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from singularity.errors import NotFound, UsageError
from singularity.orchestrator.knowledge.embeddings import Embedder, EmbeddingError, vector_literal
from singularity.orchestrator.knowledge.models import (
    Artifact,
    ArtifactKey,
    KnowledgeArtifact,
    KnowledgeHit,
    canonical_json,
)
from singularity.orchestrator.knowledge.sql import QUERIES

__all__ = [
    "DEFAULT_MIN_SIMILARITY",
    "RRF_K",
    "Change",
    "KnowledgeStore",
    "PreparedArtifact",
    "SearchResult",
]

log = structlog.get_logger(__name__)

# Reciprocal-rank fusion's constant (60 in the paper that introduced it, and in most systems
# since): it keeps one list's first place from outweighing good places in both.
RRF_K = 60
# A vector this close (cosine similarity) or closer is a candidate; unrelated texts score
# about 0.0-0.2 with common embedding models, related ones well above.
DEFAULT_MIN_SIMILARITY = 0.3
# Candidates taken from each ranking before fusion, at least.
_CANDIDATES = 50

Progress = Callable[[str], None]


class Change(StrEnum):
    """What writing an artifact did (or, before it is written, will do)."""

    CREATED = "created"
    UPDATED = "updated"
    EMBEDDED = "embedded"  # the same artifact, embedded anew (first time, or another model)
    UNCHANGED = "unchanged"


@dataclass(frozen=True, slots=True)
class PreparedArtifact:
    """An artifact ready to write: what it changes, and its vector when one was computed."""

    artifact: Artifact
    change: Change
    embedding: list[float] | None = None
    embedding_model: str | None = None


@dataclass(frozen=True, slots=True)
class SearchResult:
    """Hits, how they were found (hybrid, text, substring, none), and why not better."""

    hits: list[KnowledgeHit]
    mode: str
    warning: str | None = None


class KnowledgeStore:
    """Every query Singularity runs against `knowledge_artifacts`."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool
        self._vector: bool | None = None
        self._warned: str | None = None

    async def vector_enabled(self) -> bool:
        """True when the table has its `embedding` column (pgvector was installed)."""
        if self._vector is None:
            async with self._pool.connection() as conn:
                row = await (await conn.execute(QUERIES["vector_column"])).fetchone()
            self._vector = bool(row and row[0])
        return self._vector

    # -- writes -------------------------------------------------------------------------------

    async def upsert(self, artifact: Artifact, *, embedder: Embedder | None = None) -> Change:
        """Create or update one artifact, embedding it when an embedder is given."""
        (change,) = await self.apply(await self.prepare([artifact], embedder=embedder))
        return change

    async def prepare(
        self,
        artifacts: Sequence[Artifact],
        *,
        embedder: Embedder | None = None,
        progress: Progress | None = None,
    ) -> list[PreparedArtifact]:
        """Compare with what is stored and embed what needs it; writes nothing.

        Raises EmbeddingError before anything is written when the embedder fails.
        """
        keys = [artifact.key for artifact in artifacts]
        if len(set(keys)) != len(keys):
            raise UsageError("the same artifact (type, id, version) is given twice")
        states = await self._states(keys)
        model = embedder.model if embedder is not None and await self.vector_enabled() else None
        changes = [_change(artifact, states.get(artifact.key), model) for artifact in artifacts]
        wanted = [i for i, (_, embed) in enumerate(changes) if embed]
        vectors: dict[int, list[float]] = {}
        if wanted and embedder is not None:
            for start in range(0, len(wanted), embedder.batch_size):
                chunk = wanted[start : start + embedder.batch_size]
                if progress:
                    progress(f"embedding {start + len(chunk)}/{len(wanted)} with {embedder.model}")
                found = await embedder.embed([artifacts[i].raw for i in chunk])
                vectors.update(zip(chunk, found, strict=True))
        return [
            PreparedArtifact(artifact, change, vectors.get(i), model if i in vectors else None)
            for i, (artifact, (change, _)) in enumerate(zip(artifacts, changes, strict=True))
        ]

    async def apply(self, prepared: Sequence[PreparedArtifact]) -> list[Change]:
        """Write prepared artifacts in one transaction; returns what each write did."""
        vector = await self.vector_enabled()
        query = QUERIES["artifact_upsert_embedded" if vector else "artifact_upsert"]
        done: list[Change] = []
        async with self._pool.connection() as conn, conn.transaction():
            for item in prepared:
                if item.change is Change.UNCHANGED:
                    done.append(Change.UNCHANGED)
                    continue
                row = await (await conn.execute(query, _write_params(item))).fetchone()
                if row is None:  # someone else wrote the same in the meantime
                    done.append(Change.UNCHANGED)
                else:
                    done.append(Change.CREATED if row[1] else item.change)
        return done

    async def record_usage(self, ids: Sequence[int], *, success: bool) -> None:
        """Count one use of each artifact (and one success when `success`)."""
        if not ids:
            return
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                QUERIES["usage_record"], {"ids": [int(i) for i in ids], "success": bool(success)}
            )
        if cursor.rowcount < len(set(ids)):
            log.warning("knowledge_usage_unknown_ids", given=len(set(ids)), found=cursor.rowcount)

    async def delete(self, artifact_type: str, artifact_id: str, version: str | None = None) -> int:
        """Remove one artifact (every version unless one is named); returns the rows removed."""
        params = {"artifact_type": artifact_type, "artifact_id": artifact_id, "version": version}
        async with self._pool.connection() as conn:
            cursor = await conn.execute(QUERIES["artifact_delete"], params)
        return cursor.rowcount

    # -- reads --------------------------------------------------------------------------------

    async def artifacts(
        self, *, artifact_type: str | None = None, limit: int = 100
    ) -> list[KnowledgeArtifact]:
        """Artifacts by type, id and version."""
        rows = await self._rows("artifact_list", {"artifact_type": artifact_type, "limit": limit})
        return [_artifact(row) for row in rows]

    async def find(
        self, artifact_type: str, artifact_id: str, version: str | None = None
    ) -> list[KnowledgeArtifact]:
        """Every version of one artifact (or the one named), oldest first; NotFound if none."""
        params = {"artifact_type": artifact_type, "artifact_id": artifact_id, "version": version}
        rows = await self._rows("artifact_find", params)
        if not rows:
            named = f"{artifact_type}/{artifact_id}" + (f"@{version}" if version else "")
            raise NotFound(f"no knowledge artifact {named} (see `singularity knowledge list`)")
        return [_artifact(row) for row in rows]

    async def by_ids(self, ids: Sequence[int]) -> list[KnowledgeArtifact]:
        """The artifacts with these ids (those that exist), by id."""
        rows = await self._rows("artifact_by_ids", {"ids": [int(i) for i in ids]})
        return [_artifact(row) for row in rows]

    async def export_candidates(
        self, *, min_success_rate: float, min_usage: int, artifact_type: str | None = None
    ) -> list[KnowledgeArtifact]:
        """Artifacts used at least `min_usage` times with at least that success rate."""
        params = {
            "min_success_rate": min_success_rate,
            "min_usage": min_usage,
            "artifact_type": artifact_type,
        }
        return [_artifact(row) for row in await self._rows("export_candidates", params)]

    # -- search -------------------------------------------------------------------------------

    async def search(
        self,
        query: str,
        *,
        limit: int = 5,
        embedder: Embedder | None = None,
        artifact_type: str | None = None,
    ) -> list[KnowledgeHit]:
        """The artifacts that best match `query`, best first (see docs/knowledge.md).

        An embedder that fails (or a database without pgvector) leaves full-text search, and
        a warning in the log: a search never fails for want of vectors.
        """
        found = await self.search_detailed(
            query, limit=limit, embedder=embedder, artifact_type=artifact_type
        )
        if found.warning and found.warning != self._warned:
            # Once per store for a standing condition, not on every search of an agent.
            self._warned = found.warning
            log.warning("knowledge_search_fallback", reason=found.warning)
        elif found.warning is None:
            self._warned = None
        return found.hits

    async def search_detailed(
        self,
        query: str,
        *,
        limit: int = 5,
        embedder: Embedder | None = None,
        artifact_type: str | None = None,
        min_similarity: float = DEFAULT_MIN_SIMILARITY,
    ) -> SearchResult:
        """`search`, saying how it searched and why it fell back to full text, if it did
        (the caller reports the warning: nothing is logged here)."""
        text = query.strip()
        if not text or limit < 1:
            return SearchResult([], "none")
        base = {"query": text, "limit": limit, "artifact_type": artifact_type}
        vector, warning = await self._query_vector(text, embedder)
        has_words = await self._has_lexemes(text)
        if vector is not None:
            params = {
                **base,
                "embedding": vector_literal(vector),
                "dimensions": len(vector),
                "model": embedder.model if embedder else None,
                "use_text": has_words,
                "min_similarity": min_similarity,
                "candidates": max(_CANDIDATES, 4 * limit),
                "k": RRF_K,
            }
            return SearchResult(await self._hits("search_hybrid", params), "hybrid", warning)
        if has_words:
            return SearchResult(await self._hits("search_text", base), "text", warning)
        params = {**base, "pattern": f"%{escape_like(text)}%"}
        return SearchResult(await self._hits("search_substring", params), "substring", warning)

    async def _query_vector(
        self, text: str, embedder: Embedder | None
    ) -> tuple[list[float] | None, str | None]:
        if embedder is None:
            return None, None
        if not await self.vector_enabled():
            return (
                None,
                "embeddings are configured but the database has no pgvector: full text only",
            )
        try:
            return await embedder.embed_one(text), None
        except EmbeddingError as exc:
            return None, f"{exc}; full-text results only"

    async def _has_lexemes(self, text: str) -> bool:
        async with self._pool.connection() as conn:
            row = await (await conn.execute(QUERIES["lexeme_count"], {"query": text})).fetchone()
        return bool(row and row[0])

    async def _hits(self, query: str, params: dict[str, Any]) -> list[KnowledgeHit]:
        return [_hit(row, query) for row in await self._rows(query, params)]

    # -- shared -------------------------------------------------------------------------------

    async def _states(self, keys: Sequence[ArtifactKey]) -> dict[ArtifactKey, dict[str, Any]]:
        if not keys:
            return {}
        params = {
            "types": [k[0] for k in keys],
            "ids": [k[1] for k in keys],
            "versions": [k[2] for k in keys],
        }
        rows = await self._rows("artifact_states", params)
        return {(r["artifact_type"], r["artifact_id"], r["version"]): r for r in rows}

    async def _rows(self, query: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        async with self._pool.connection() as conn:
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(QUERIES[query], params)
            return list(await cursor.fetchall())


def escape_like(text: str) -> str:
    """`text` matched literally by LIKE (whose escape character is the backslash)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _change(
    artifact: Artifact, state: dict[str, Any] | None, model: str | None
) -> tuple[Change, bool]:
    """What writing `artifact` over `state` does, and whether it needs embedding with `model`."""
    if state is None:
        return Change.CREATED, model is not None
    same_raw = state["content_raw"] == artifact.raw
    # Compared as canonical JSON: Python's True == 1, but JSON's true is not 1.
    if not same_raw or canonical_json(state["content"]) != canonical_json(artifact.content):
        needs = model is not None and not (same_raw and state["embedding_model"] == model)
        return Change.UPDATED, needs
    if model is not None and state["embedding_model"] != model:
        return Change.EMBEDDED, True
    return Change.UNCHANGED, False


def _write_params(item: PreparedArtifact) -> dict[str, Any]:
    artifact = item.artifact
    return {
        "artifact_type": artifact.artifact_type,
        "artifact_id": artifact.artifact_id,
        "version": artifact.version,
        "content_raw": artifact.raw,
        "content": Jsonb(artifact.content),
        "embedding": vector_literal(item.embedding) if item.embedding else None,
        "embedding_model": item.embedding_model if item.embedding else None,
        "embedding_dimensions": len(item.embedding) if item.embedding else None,
    }


def _artifact(row: dict[str, Any]) -> KnowledgeArtifact:
    return KnowledgeArtifact(**row)


def _hit(row: dict[str, Any], query: str) -> KnowledgeHit:
    text_rank, similarity = row["text_rank"], row["similarity"]
    if query == "search_substring":
        matched = "substring"
    elif text_rank is not None and similarity is not None:
        matched = "text+vector"
    else:
        matched = "vector" if similarity is not None else "text"
    return KnowledgeHit(**row, matched=matched)
