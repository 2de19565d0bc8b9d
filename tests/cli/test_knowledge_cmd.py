"""`singularity knowledge ...`, run as a user runs them."""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from helpers import singularity
from singularity.orchestrator.knowledge import KnowledgeStore
from singularity.postgres.cluster import Cluster
from singularity.postgres.connect import open_pool
from singularity.postgres.topology import Database, Role
from singularity.testing.openai_server import MockOpenAI

QUERY = "keep retrying until the service answers"


@pytest.fixture
def kind(cluster: Cluster) -> str:
    return f"cli-{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def store(cluster: Cluster) -> AsyncIterator[KnowledgeStore]:
    pool = await open_pool(
        cluster.service(Role.SINGULARITY, Database.SINGULARITY), name="test-cli", max_size=2
    )
    yield KnowledgeStore(pool)
    await pool.close()


def library(root: Path, kind: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    artifacts = {
        "retry-with-backoff": {"description": "Retry a flaky network call with backoff"},
        "alembic-migration": {"description": "Write an Alembic migration for a new table"},
    }
    for name, content in artifacts.items():
        document = {"artifact_type": kind, "artifact_id": name, "content": content}
        (root / f"{name}.json").write_text(json.dumps(document))
    return root


def one_line_error(ran: object, *parts: str) -> None:
    stderr: str = ran.stderr  # type: ignore[attr-defined]
    assert "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert stderr.startswith("error: "), stderr
    for part in parts:
        assert part in stderr, stderr


def test_import_search_and_show(cluster: Cluster, kind: str, tmp_path: Path) -> None:
    root = library(tmp_path / "lib", kind)
    ran = singularity("knowledge", "import", str(root))
    assert ran.returncode == 0, ran.stderr
    assert "2 of 2 files loaded: 2 created, 0 updated, 0 embedded, 0 unchanged" in ran.stdout
    again = singularity("knowledge", "import", str(root))
    assert "0 created, 0 updated, 0 embedded, 2 unchanged" in again.stdout

    found = singularity("knowledge", "search", "flaky network retry", "--type", kind, "--json")
    assert found.returncode == 0, found.stderr
    hits = json.loads(found.stdout)
    assert [h["artifact_id"] for h in hits] == ["retry-with-backoff"]
    assert hits[0]["matched"] == "text" and hits[0]["content"]["description"].startswith("Retry")

    table = singularity("knowledge", "search", "alembic", "--type", kind)
    assert table.returncode == 0, table.stderr
    assert f"{kind}/alembic-migration@1" in table.stdout
    assert "Write an Alembic" in table.stdout and "(text search)" in table.stdout

    listed = json.loads(singularity("knowledge", "list", "--type", kind, "--json").stdout)
    assert [row["artifact_id"] for row in listed] == ["alembic-migration", "retry-with-backoff"]
    shown = json.loads(singularity("knowledge", "show", kind, "alembic-migration").stdout)
    assert shown["version"] == "1" and shown["usage_count"] == 0


def test_a_bad_file_is_one_line_and_the_others_load(
    cluster: Cluster, kind: str, tmp_path: Path
) -> None:
    root = library(tmp_path / "lib", kind)
    (root / "broken.json").write_text('{"artifact_type": "x", "content": {}}')
    ran = singularity("knowledge", "import", str(root))
    assert ran.returncode == 1
    one_line_error(ran, str(root / "broken.json"), "artifact_id: Field required")
    assert "2 of 3 files loaded: 2 created" in ran.stdout


async def test_export_writes_the_proven_artifacts(
    store: KnowledgeStore, kind: str, tmp_path: Path
) -> None:
    assert singularity("knowledge", "import", str(library(tmp_path / "lib", kind))).returncode == 0
    [proven] = await store.find(kind, "retry-with-backoff")
    [failed] = await store.find(kind, "alembic-migration")
    await store.record_usage([proven.id, failed.id], success=True)
    await store.record_usage([failed.id], success=False)
    out = tmp_path / "out"
    ran = singularity("knowledge", "export", str(out), "--type", kind)
    assert ran.returncode == 0, ran.stderr
    assert "1 artifacts passed (success rate >= 0.8, uses >= 1): 1 written" in ran.stdout
    written = json.loads((out / kind / "retry-with-backoff@1.json").read_text())
    assert written["content"] == proven.content
    loose = singularity(
        "knowledge", "export", str(out), "--type", kind, "--min-success-rate", "0.5"
    )
    assert "2 artifacts passed" in loose.stdout and "1 written, 1 unchanged" in loose.stdout


@pytest.mark.parametrize(
    ("args", "parts"),
    [
        (["search", "  "], ["the search query is empty"]),
        (
            ["export", "x", "--min-success-rate", "2"],
            ["--min-success-rate", "less than or equal to 1"],
        ),
        (["export", "x", "--min-usage", "-1"], ["--min-usage"]),
        (["search", "x", "--limit", "0"], ["--limit"]),
    ],
)
def test_bad_arguments_are_one_line(args: list[str], parts: list[str]) -> None:
    ran = singularity("knowledge", *args)
    assert ran.returncode == 2
    one_line_error(ran, *parts)


def test_missing_things_are_one_line(cluster: Cluster, kind: str, tmp_path: Path) -> None:
    absent = singularity("knowledge", "import", str(tmp_path / "absent"))
    assert absent.returncode == 2
    one_line_error(absent, "absent: no such file or directory")
    unknown = singularity("knowledge", "show", kind, "nope")
    assert unknown.returncode == 1
    one_line_error(unknown, f"no knowledge artifact {kind}/nope")


def test_search_with_embeddings_ranks_by_vector(
    cluster: Cluster,
    kind: str,
    tmp_path: Path,
    mock_llm_server: MockOpenAI,
    vector_available: bool,
) -> None:
    if not vector_available:
        pytest.skip("needs pgvector (the external test server has none)")
    env = {
        "SINGULARITY_EMBEDDING_MODEL": f"emb-{uuid.uuid4().hex[:6]}",
        "SINGULARITY_EMBEDDING_BASE_URL": mock_llm_server.base_url,
    }
    root = tmp_path / "lib"
    root.mkdir()
    semantic = {"artifact_type": kind, "artifact_id": "semantic", "content": {"k": "backoff"}}
    wordy = {
        "artifact_type": kind,
        "artifact_id": "wordy",
        "content": {"description": "keep retrying: the service answers eventually"},
    }
    (root / "all.json").write_text(json.dumps([{**semantic, "content_raw": QUERY}, wordy]))
    ran = singularity("knowledge", "import", str(root), env=env)
    assert ran.returncode == 0, ran.stderr
    assert f"embeddings on ({env['SINGULARITY_EMBEDDING_MODEL']})" in ran.stdout
    found = singularity("knowledge", "search", QUERY, "--type", kind, "--json", env=env)
    assert found.returncode == 0, found.stderr
    assert [(h["artifact_id"], h["matched"]) for h in json.loads(found.stdout)] == [
        ("semantic", "vector"),
        ("wordy", "text"),
    ]

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    broken = {**env, "SINGULARITY_EMBEDDING_BASE_URL": down}
    (root / "all.json").write_text(json.dumps([{**wordy, "content": {"new": "text"}}]))
    failed = singularity("knowledge", "import", str(root), env=broken)
    assert failed.returncode == 1
    one_line_error(failed, f"at {down} failed", "nothing was imported")


def test_embeddings_without_pgvector_warn_and_search_full_text(
    cluster: Cluster, kind: str, tmp_path: Path, vector_available: bool
) -> None:
    if vector_available:
        pytest.skip("needs a server without pgvector (the external test server)")
    env = {"SINGULARITY_EMBEDDING_MODEL": "openai/text-embedding-3-small"}
    ran = singularity("knowledge", "import", str(library(tmp_path / "lib", kind)), env=env)
    assert ran.returncode == 0, ran.stderr
    assert "embeddings off (the database has no pgvector)" in ran.stdout
    found = singularity("knowledge", "search", "alembic", "--type", kind, "--json", env=env)
    assert found.returncode == 0, found.stderr
    assert [h["artifact_id"] for h in json.loads(found.stdout)] == ["alembic-migration"]
    assert found.stderr.startswith("warning: embeddings are configured but the database has no")
