"""Nexus fixtures: a local OpenAI-compatible server, a registry that points at it, a running
Nexus service, and reply queues the nexus role may answer on."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from psycopg_pool import AsyncConnectionPool

from nexus_support import RunningNexus
from singularity.config import Settings, load_settings
from singularity.nexus.providers import Providers
from singularity.nexus.registry import load_registry
from singularity.nexus.router import Router
from singularity.postgres.cluster import Cluster
from singularity.postgres.connect import async_connection, open_pool
from singularity.postgres.topology import Database, Role
from singularity.shared_queue import ensure_queue
from singularity.shared_queue.install import grant_publish
from singularity.testing.openai_server import MockOpenAI

KEY_VARIABLE = "NEXUS_TEST_LLM_KEY"

# Three models on the local server: two small ones and one with a large context window.
REGISTRY = """
[models.alpha]
provider = "local"
litellm_model = "openai/alpha"
api_base = "{base}"
api_key_env = "{key}"
context_window = 1000
input_usd_per_mtok = 1.0
output_usd_per_mtok = 2.0

[models.beta]
provider = "local"
litellm_model = "openai/beta"
api_base = "{base}"
api_key_env = "{key}"
context_window = 1000
input_usd_per_mtok = 0.5
output_usd_per_mtok = 1.0

[models.gamma]
provider = "local"
litellm_model = "openai/gamma"
api_base = "{base}"
api_key_env = "{key}"
context_window = 100000
input_usd_per_mtok = 3.0
output_usd_per_mtok = 6.0

[tiers]
simple = ["alpha", "beta"]
medium = ["alpha", "beta", "gamma"]
complex = ["gamma", "alpha"]
"""


@pytest.fixture(scope="session")
def mock_llm_server() -> Iterator[MockOpenAI]:
    with MockOpenAI() as server:
        yield server


@pytest.fixture
def llm(mock_llm_server: MockOpenAI, monkeypatch: pytest.MonkeyPatch) -> MockOpenAI:
    """The local model server, with a clean script, and its key in the environment."""
    mock_llm_server.reset()
    monkeypatch.setenv(KEY_VARIABLE, "test-key")
    return mock_llm_server


@pytest.fixture
def nexus_settings(
    platform_env: dict[str, str], tmp_path: Path, mock_llm_server: MockOpenAI
) -> Settings:
    registry = tmp_path / "models.toml"
    registry.write_text(REGISTRY.format(base=mock_llm_server.base_url, key=KEY_VARIABLE))
    return load_settings(
        _env_file=None,
        nexus_models_file=registry,
        nexus_request_timeout_s=10,
        nexus_attempt_timeout_s=5,
        nexus_rate_limit_max_wait_s=5,
        nexus_cooldown_failures=3,
        nexus_cooldown_s=60,
        shared_queue_poll_ms=50,
    )


@pytest.fixture
def router(nexus_settings: Settings, llm: MockOpenAI) -> Router:
    return Router(load_registry(nexus_settings), Providers(nexus_settings), nexus_settings)


@pytest.fixture
async def nexus(
    nexus_settings: Settings, cluster: Cluster, llm: MockOpenAI
) -> AsyncIterator[RunningNexus]:
    async with RunningNexus(nexus_settings, cluster) as running:
        yield running


@pytest.fixture
async def reply_queue(cluster: Cluster) -> AsyncIterator[str]:
    """A fresh queue that Nexus may answer on (as a Singularity instance's reply queue is)."""
    name = f"test_replies_{uuid.uuid4().hex[:8]}"
    async with async_connection(cluster.admin(Database.SHARED_QUEUE)) as conn:
        await ensure_queue(conn, name)
        await grant_publish(conn, cluster.role_name(Role.NEXUS), name)
    yield name
    async with async_connection(cluster.admin(Database.SHARED_QUEUE)) as conn:
        await conn.execute("SELECT pgmq.drop_queue(%s)", (name,))


@pytest.fixture
async def nexus_db(cluster: Cluster) -> AsyncIterator[AsyncConnectionPool]:
    """The nexus database, as its administrator (to look at what Nexus recorded)."""
    pool = await open_pool(cluster.admin(Database.NEXUS), name="test-nexus", max_size=4)
    yield pool
    await pool.close()
