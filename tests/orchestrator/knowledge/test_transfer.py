"""Import and export of artifact files: the learning flow's two ends, on a real database."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from singularity.errors import UsageError
from singularity.orchestrator.knowledge import (
    Artifact,
    Change,
    Embedder,
    EmbeddingError,
    KnowledgeStore,
    export_artifacts,
    import_artifacts,
)
from singularity.testing.openai_server import EMBEDDINGS_PATH, MockOpenAI


def write(path: Path, value: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(value if isinstance(value, str) else json.dumps(value, indent=4))
    return path


def library(root: Path, kind: str) -> None:
    """Three artifacts in two files: one written by hand, a list of two."""
    write(
        root / "alpha.json",
        '{\n  "content": {"description": "Retry with backoff", "tags": ["net"]},\n'
        f'  "artifact_id": "alpha", "artifact_type": "{kind}", "version": 1\n}}\n',
    )
    write(
        root / "more" / "list.json",
        [
            {"artifact_type": kind, "artifact_id": "beta", "content": {"text": "Ünïcode ✓"}},
            {
                "artifact_type": kind,
                "artifact_id": "gamma",
                "version": "2.0",
                "content": {"nested": {"b": [1, 2.5, None, True], "a": {}}},
                "content_raw": "# Gamma\n\nWritten as markdown.\n",
            },
        ],
    )


async def rows(store: KnowledgeStore, kind: str) -> dict[str, tuple[Any, ...]]:
    return {
        r.artifact_id: (r.version, r.content, r.content_raw, r.updated_at)
        for r in await store.artifacts(artifact_type=kind)
    }


async def test_import_loads_every_file_and_again_changes_nothing(
    store: KnowledgeStore, kind: str, tmp_path: Path
) -> None:
    library(tmp_path, kind)
    report = await import_artifacts(store, tmp_path)
    assert (report.files, report.loaded_files, report.failures) == (2, 2, [])
    assert report.count(Change.CREATED) == 3
    assert report.embeddings == "off (SINGULARITY_EMBEDDING_MODEL is not set)"
    before = await rows(store, kind)
    assert before["alpha"][:2] == ("1", {"description": "Retry with backoff", "tags": ["net"]})
    assert before["gamma"][2] == "# Gamma\n\nWritten as markdown.\n"

    again = await import_artifacts(store, tmp_path)
    assert again.count(Change.UNCHANGED) == 3 and sum(again.changes.values()) == 3
    assert await rows(store, kind) == before  # updated_at included

    # Reformatting a file is no change either; editing its content is.
    data = json.loads((tmp_path / "alpha.json").read_text())
    write(tmp_path / "alpha.json", json.dumps(data, separators=(",", ":")))
    assert (await import_artifacts(store, tmp_path)).count(Change.UNCHANGED) == 3
    data["content"]["tags"].append("http")
    write(tmp_path / "alpha.json", data)
    changed = await import_artifacts(store, tmp_path / "alpha.json")  # one file works too
    assert (changed.files, changed.count(Change.UPDATED)) == (1, 1)


async def test_bad_files_are_named_and_the_others_still_load(
    store: KnowledgeStore, kind: str, tmp_path: Path
) -> None:
    good = {"artifact_type": kind, "artifact_id": "good", "content": {}}
    write(tmp_path / "1-good.json", good)
    write(tmp_path / "2-broken.json", '{"artifact_type": ')
    write(tmp_path / "3-copy.json", good)
    write(tmp_path / "4-list.json", [{**good, "artifact_id": "fine"}, {**good, "version": ""}])
    write(tmp_path / "5-twice.json", [{**good, "artifact_id": "t"}, {**good, "artifact_id": "t"}])
    report = await import_artifacts(store, tmp_path)
    reasons = {failure.path.name: failure.reason for failure in report.failures}
    assert reasons == {
        "2-broken.json": "not JSON: Expecting value (line 1, column 19)",
        "3-copy.json": f"artifact {kind}/good@1 is also in {tmp_path / '1-good.json'}",
        "4-list.json": "item 1: version: String should have at least 1 character",
        "5-twice.json": f"artifact {kind}/t@1 appears twice in this file",
    }
    assert str(report.failures[0]) == f"{tmp_path / '2-broken.json'}: {reasons['2-broken.json']}"
    assert (report.files, report.loaded_files, report.count(Change.CREATED)) == (5, 1, 1)
    assert [r.artifact_id for r in await store.artifacts(artifact_type=kind)] == ["good"]


async def test_a_missing_or_empty_directory_is_a_usage_error(
    store: KnowledgeStore, tmp_path: Path
) -> None:
    with pytest.raises(UsageError, match="no such file or directory"):
        await import_artifacts(store, tmp_path / "absent")
    with pytest.raises(UsageError, match=r"no \.json files under"):
        await import_artifacts(store, tmp_path)


async def used(store: KnowledgeStore, kind: str, name: str, uses: int, successes: int) -> None:
    await store.upsert(Artifact(artifact_type=kind, artifact_id=name, content={"name": name}))
    [row] = await store.find(kind, name)
    for use in range(uses):
        await store.record_usage([row.id], success=use < successes)


async def test_export_writes_only_artifacts_that_pass(
    store: KnowledgeStore, kind: str, tmp_path: Path
) -> None:
    await used(store, kind, "proven", 5, 4)  # 0.8: passes the default threshold exactly
    await used(store, kind, "weak", 5, 3)
    await used(store, kind, "unused", 0, 0)
    await used(store, kind, "once", 1, 1)

    async def exported(**thresholds: Any) -> list[str]:
        report = await export_artifacts(store, tmp_path / "out", artifact_type=kind, **thresholds)
        return sorted(path.name for path in report.written + report.unchanged)

    assert await exported() == ["once@1.json", "proven@1.json"]
    assert await exported(min_usage=2) == ["proven@1.json"]
    assert await exported(min_success_rate=0.5, min_usage=5) == ["proven@1.json", "weak@1.json"]
    assert len(await exported(min_success_rate=0, min_usage=0)) == 4
    files = sorted(p.relative_to(tmp_path) for p in (tmp_path / "out").rglob("*.json"))
    assert files == [Path("out", kind, f"{n}@1.json") for n in ("once", "proven", "unused", "weak")]

    again = await export_artifacts(store, tmp_path / "out", artifact_type=kind)
    assert again.written == [] and len(again.unchanged) == 2  # same bytes: files left alone
    with pytest.raises(UsageError, match="between 0 and 1"):
        await export_artifacts(store, tmp_path, min_success_rate=1.5)
    with pytest.raises(UsageError, match="is not a directory"):
        await export_artifacts(store, tmp_path / "out" / kind / "once@1.json")


async def test_export_then_import_gives_the_same_artifacts(
    store: KnowledgeStore, kind: str, tmp_path: Path
) -> None:
    library(tmp_path / "source", kind)
    await import_artifacts(store, tmp_path / "source")
    before = await rows(store, kind)
    out = tmp_path / "exported"
    report = await export_artifacts(store, out, min_success_rate=0, min_usage=0, artifact_type=kind)
    assert len(report.written) == 3
    gamma = json.loads((out / kind / "gamma@2.0.json").read_text())
    assert list(gamma) == ["artifact_type", "artifact_id", "version", "content", "content_raw"]
    assert list(gamma["content"]["nested"]) == ["a", "b"]  # sorted: clean diffs
    assert "content_raw" not in json.loads((out / kind / "alpha@1.json").read_text())

    # Into the same database: nothing changes.
    assert (await import_artifacts(store, out)).count(Change.UNCHANGED) == 3
    # Into an empty one: the same artifacts again.
    for name in before:
        await store.delete(kind, name)
    assert (await import_artifacts(store, out)).count(Change.CREATED) == 3
    after = await rows(store, kind)
    assert {k: v[:3] for k, v in after.items()} == {k: v[:3] for k, v in before.items()}
    # And exported once more, byte for byte the same files.
    second = await export_artifacts(store, out, min_success_rate=0, min_usage=0, artifact_type=kind)
    assert second.written == [] and len(second.unchanged) == 3


async def test_import_embeds_each_artifact_once(
    store: KnowledgeStore,
    kind: str,
    tmp_path: Path,
    embedder: Embedder,
    mock_llm_server: MockOpenAI,
    vector_available: bool,
) -> None:
    library(tmp_path, kind)

    def calls() -> int:
        model = embedder.model.removeprefix("openai/")
        return sum(1 for c in mock_llm_server.calls_for(model) if c.path == EMBEDDINGS_PATH)

    start = calls()
    report = await import_artifacts(store, tmp_path, embedder=embedder)
    assert report.count(Change.CREATED) == 3
    if not vector_available:  # no column to keep vectors in: none are asked for
        assert report.embeddings == "off (the database has no pgvector)"
        assert (report.vectors, calls()) == (0, start)
        return
    assert report.embeddings == f"on ({embedder.model})" and report.vectors == 3
    assert calls() == start + 1  # one batch
    again = await import_artifacts(store, tmp_path, embedder=embedder)
    assert (again.count(Change.UNCHANGED), again.vectors, calls()) == (3, 0, start + 1)
    assert {r.embedding_model for r in await store.artifacts(artifact_type=kind)} == {
        embedder.model
    }


async def test_an_embedding_failure_stops_the_import_before_it_writes(
    store: KnowledgeStore,
    kind: str,
    tmp_path: Path,
    broken_embedder: Embedder,
    needs_vector: None,
) -> None:
    library(tmp_path, kind)
    with pytest.raises(EmbeddingError) as caught:
        await import_artifacts(store, tmp_path, embedder=broken_embedder)
    assert str(caught.value).startswith(f"embedding with {broken_embedder.model} at ")
    assert "nothing was imported" in str(caught.value) and "\n" not in str(caught.value)
    assert await store.artifacts(artifact_type=kind) == []
