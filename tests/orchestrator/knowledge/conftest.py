"""Fixtures of the knowledge tests: the store as the singularity role, a fresh artifact type per
test (the database is shared by the whole session), and embeddings from the local server."""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator

import pytest
from psycopg_pool import AsyncConnectionPool

from singularity.orchestrator.knowledge import Embedder, KnowledgeStore
from singularity.postgres.cluster import Cluster
from singularity.postgres.connect import open_pool
from singularity.postgres.topology import Database, Role
from singularity.testing.openai_server import MockOpenAI

EMBEDDING_MODEL = "openai/knowledge-test-embedding"


@pytest.fixture
async def knowledge_pool(cluster: Cluster) -> AsyncIterator[AsyncConnectionPool]:
    pool = await open_pool(
        cluster.service(Role.SINGULARITY, Database.SINGULARITY), name="test-knowledge", max_size=4
    )
    yield pool
    await pool.close()


@pytest.fixture
def store(knowledge_pool: AsyncConnectionPool) -> KnowledgeStore:
    return KnowledgeStore(knowledge_pool)


@pytest.fixture
def kind() -> str:
    """An artifact type no other test uses: searches filtered by it see only this test's rows."""
    return f"test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def needs_vector(vector_available: bool) -> None:
    if not vector_available:
        pytest.skip("needs pgvector (the external test server has none)")


@pytest.fixture
def embedder(mock_llm_server: MockOpenAI) -> Embedder:
    """An embedder on the local OpenAI-compatible server (hash-derived unit vectors)."""
    return Embedder(model=EMBEDDING_MODEL, api_base=mock_llm_server.base_url, api_key="test")


@pytest.fixture
def broken_embedder(unused_port: int) -> Embedder:
    """An embedder whose server is down: every call fails at once."""
    return Embedder(
        model=EMBEDDING_MODEL,
        api_base=f"http://127.0.0.1:{unused_port}/v1",
        api_key="test",
        retries=0,
    )


@pytest.fixture
def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
