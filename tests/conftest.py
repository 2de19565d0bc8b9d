"""Shared fixtures: one bootstrapped platform per test session, fresh queues per test.

By default the tests run on the embedded PostgreSQL (in a temporary SINGULARITY_HOME). With
SINGULARITY_TEST_DATABASE_URL set, they run on that server instead, under a unique prefix for
every database and role they create, all dropped at the end.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
from hypothesis import settings as hypothesis_settings
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool

from helpers import answer_queue
from nexus_support import RunningNexus
from singularity.bootstrap import bootstrap
from singularity.config import Settings, load_settings
from singularity.database import open_cluster
from singularity.nexus.providers import Providers
from singularity.nexus.registry import load_registry
from singularity.nexus.router import Router
from singularity.postgres.cluster import Cluster
from singularity.postgres.connect import async_connection, connection, open_pool
from singularity.postgres.endpoint import Endpoint
from singularity.postgres.topology import Database, Role
from singularity.shared_queue import ensure_queue
from singularity.testing.openai_server import MockOpenAI

TEST_DATABASE_URL = os.environ.get("SINGULARITY_TEST_DATABASE_URL")
EXTERNAL = TEST_DATABASE_URL is not None

embedded_only = pytest.mark.skipif(EXTERNAL, reason="needs the embedded server")

# Property-based tests: few examples by default, many with HYPOTHESIS_PROFILE=thorough (or
# --hypothesis-profile=thorough). No example database: a failure prints its seed and blob.
hypothesis_settings.register_profile("ci", max_examples=15, database=None, print_blob=True)
hypothesis_settings.register_profile("thorough", max_examples=200, database=None, print_blob=True)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_configure(config: pytest.Config) -> None:
    # Start from a clean environment: a developer's DB_* or SHARED_QUEUE_* must not leak in.
    for name in Settings.model_fields:
        os.environ.pop(name.upper(), None)
    os.environ.pop("SINGULARITY_LOG_LEVEL", None)


@pytest.fixture
def no_settings_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No platform variable in the environment (the session's are restored afterwards)."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)


def server_env(home: Path, prefix: str) -> dict[str, str]:
    """Environment variables that point the platform at the test server."""
    env = {"SINGULARITY_HOME": str(home)}
    if TEST_DATABASE_URL:
        parts = conninfo_to_dict(TEST_DATABASE_URL)
        env["DB_HOST"] = str(parts.get("host") or "localhost")
        env["DB_PORT"] = str(parts.get("port") or 5432)
        env["DB_USER"] = str(parts.get("user") or "postgres")
        if parts.get("password"):
            env["DB_PASSWORD"] = str(parts["password"])
        env["SINGULARITY_DB_PREFIX"] = prefix
    return env


@pytest.fixture(scope="session")
def platform_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The session's environment, also exported so that CLI subprocesses inherit it."""
    env = server_env(tmp_path_factory.mktemp("home"), f"t{uuid.uuid4().hex[:6]}_")
    # Tests' repositories live in their temporary directories: the roots Genesis may read.
    env["GENESIS_REPO_ROOTS"] = str(tmp_path_factory.getbasetemp())
    os.environ.update(env)
    yield env
    for name in env:
        os.environ.pop(name, None)


@pytest.fixture(scope="session")
def settings(platform_env: dict[str, str]) -> Settings:
    return load_settings(_env_file=None)


@pytest.fixture(scope="session")
def vector_available(settings: Settings) -> bool:
    if settings.embedded:
        return True
    assert TEST_DATABASE_URL is not None
    with psycopg.connect(TEST_DATABASE_URL) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_available_extensions WHERE name = 'vector'"
        ).fetchone()
    return bool(row and row[0])


@pytest.fixture(scope="session")
def cluster(settings: Settings, vector_available: bool) -> Iterator[Cluster]:
    """The bootstrapped platform of this session."""
    with open_cluster(settings) as opened:
        asyncio.run(bootstrap(opened, require_vector=vector_available))
        yield opened
        if not opened.embedded:
            drop_platform(opened)


def drop_platform(cluster: Cluster) -> None:
    """Remove every database and role a test platform created on an external server."""
    with connection(cluster.maintenance(Database.SHARED_QUEUE)) as conn:
        instances = conn.execute(
            "SELECT datname FROM pg_database WHERE datname ~ %s",
            ("^" + cluster.singularity_database(1) + "_[0-9]+$",),
        ).fetchall()
        names = [cluster.database_name(database) for database in Database]
        for name in names + [row["datname"] for row in instances]:
            conn.execute(
                psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    psycopg.sql.Identifier(name)
                )
            )
        for role in Role:
            conn.execute(
                psycopg.sql.SQL("DROP ROLE IF EXISTS {}").format(
                    psycopg.sql.Identifier(cluster.role_name(role))
                )
            )


@pytest.fixture
def bus_endpoint(cluster: Cluster) -> Endpoint:
    """The administrator on the shared_queue database."""
    return cluster.admin(Database.SHARED_QUEUE)


@pytest.fixture
async def bus_pool(bus_endpoint: Endpoint) -> AsyncIterator[AsyncConnectionPool]:
    pool = await open_pool(bus_endpoint, name="test-bus", max_size=6)
    yield pool
    await pool.close()


@pytest.fixture
async def queue(bus_endpoint: Endpoint) -> AsyncIterator[str]:
    """A fresh queue (with its dead-letter queue), dropped after the test."""
    name = f"test_{uuid.uuid4().hex[:10]}"
    async with async_connection(bus_endpoint) as conn:
        await ensure_queue(conn, name)
        await ensure_queue(conn, name + "_dlq", wake=False)
    yield name
    async with async_connection(bus_endpoint) as conn:
        for victim in (name, name + "_dlq"):
            await conn.execute("SELECT pgmq.drop_queue(%s)", (victim,))


@pytest.fixture
async def publisher_pool(cluster: Cluster) -> AsyncIterator[AsyncConnectionPool]:
    """The bus as Singularity (who publishes experiment requests, and so snapshots)."""
    pool = await open_pool(
        cluster.service(Role.SINGULARITY, Database.SHARED_QUEUE), name="t-snap-pub", max_size=2
    )
    yield pool
    await pool.close()


@pytest.fixture
async def worker_pool(cluster: Cluster) -> AsyncIterator[AsyncConnectionPool]:
    """The bus as Genesis (who consumes experiment requests, and so reads snapshots)."""
    pool = await open_pool(
        cluster.service(Role.GENESIS, Database.SHARED_QUEUE), name="t-snap-worker", max_size=2
    )
    yield pool
    await pool.close()


# -- Nexus ----------------------------------------------------------------------------------

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
    """A fresh queue that Nexus may answer on."""
    async with answer_queue(cluster, Role.NEXUS, "test_replies") as name:
        yield name


@pytest.fixture
async def nexus_db(cluster: Cluster) -> AsyncIterator[AsyncConnectionPool]:
    """The nexus database, as its administrator (to look at what Nexus recorded)."""
    pool = await open_pool(cluster.admin(Database.NEXUS), name="test-nexus", max_size=4)
    yield pool
    await pool.close()
