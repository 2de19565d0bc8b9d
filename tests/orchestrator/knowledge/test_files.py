"""Artifact files: what a file may hold, the one-line reasons for a bad one, stable exports."""

from __future__ import annotations

import dataclasses
import importlib
import json
from pathlib import Path

import pytest

from singularity.orchestrator.knowledge import Artifact, ArtifactFileError, read_artifacts, render
from singularity.orchestrator.knowledge.files import artifact_files, export_path
from singularity.orchestrator.knowledge.models import KnowledgeArtifact, canonical_json


def write(path: Path, value: object) -> Path:
    path.write_text(value if isinstance(value, str) else json.dumps(value))
    return path


def test_one_artifact_or_a_list(tmp_path: Path) -> None:
    one = {"artifact_type": "pattern", "artifact_id": "retry", "version": 2, "content": {"a": 1}}
    [artifact] = read_artifacts(write(tmp_path / "one.json", one))
    assert artifact.key == ("pattern", "retry", "2")  # a number is a version too
    assert artifact.raw == canonical_json({"a": 1})
    listed = [
        {"artifact_type": "t", "artifact_id": "x", "content": {}},
        {"artifact_type": "t", "artifact_id": "y", "content": {}, "content_raw": "# Y\n"},
    ]
    x, y = read_artifacts(write(tmp_path / "many.json", listed))
    assert x.version == "1" and y.raw == "# Y\n"  # content_raw is kept as written


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{"artifact_type": ', "not JSON: Expecting value (line 1, column 19)"),
        ("[]", "an empty list: no artifact to load"),
        ('"hello"', "must hold a JSON object (one artifact) or a list of them"),
        ("[1]", "item 0: must be a JSON object"),
        ('{"artifact_type": "t", "artifact_id": "x"}', "content: Field required"),
        (
            '{"artifact_type": "t", "artifact_id": "x", "content": [1]}',
            "content: Input should be a valid dictionary",
        ),
        (
            '{"artifact_type": "t", "artifact_id": "", "content": {}}',
            "artifact_id: String should have at least 1 character",
        ),
        (
            '{"artifact_type": "t\\nu", "artifact_id": "x", "content": {}}',
            "artifact_type: must be one line of printable text",
        ),
        (
            '{"artifact_type": "t", "artifact_id": "x", "content": {}, "contents": {}}',
            "contents: unknown field (allowed: artifact_type, artifact_id, version, content,",
        ),
        (
            '{"artifact_type": "t", "artifact_id": "x", "content": {"a": NaN}}',
            "not JSON: NaN is not a JSON number",
        ),
        (
            '{"artifact_type": "t", "artifact_id": "x", "content": {"a": "\\u0000"}}',
            "holds a NUL character",
        ),
    ],
)
def test_a_bad_file_says_why_in_one_line(tmp_path: Path, text: str, reason: str) -> None:
    with pytest.raises(ArtifactFileError) as caught:
        read_artifacts(write(tmp_path / "bad.json", text))
    assert reason in str(caught.value)
    assert "\n" not in str(caught.value)


def test_unreadable_and_non_utf8_files(tmp_path: Path) -> None:
    (tmp_path / "latin.json").write_bytes(b'{"a": "\xe9"}')
    with pytest.raises(ArtifactFileError, match="not UTF-8 text"):
        read_artifacts(tmp_path / "latin.json")
    with pytest.raises(ArtifactFileError, match="cannot read it"):
        read_artifacts(tmp_path / "absent.json")


def test_files_are_found_in_name_order_without_hidden_ones(tmp_path: Path) -> None:
    for name in ("b/2.json", "a.json", ".git/x.json", "b/1.json", "notes.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("{}")
    found = [str(p.relative_to(tmp_path)) for p in artifact_files(tmp_path)]
    assert found == ["a.json", "b/1.json", "b/2.json"]
    assert list(artifact_files(tmp_path / "a.json")) == [tmp_path / "a.json"]


def test_render_is_stable_whatever_the_key_order() -> None:
    one = Artifact(
        artifact_type="t", artifact_id="x", content={"b": {"z": 1, "y": [{"d": 1, "c": 2}]}, "a": 0}
    )
    other = Artifact(
        artifact_type="t", artifact_id="x", content={"a": 0, "b": {"y": [{"c": 2, "d": 1}], "z": 1}}
    )
    assert render(one) == render(other)
    assert list(json.loads(render(one))) == ["artifact_type", "artifact_id", "version", "content"]
    assert render(one).endswith("}\n")
    assert render(one).index('"a"') < render(one).index('"b"')


def test_export_paths_are_safe_file_names(tmp_path: Path) -> None:
    def path(artifact_type: str, artifact_id: str, version: str = "1") -> str:
        artifact = Artifact(
            artifact_type=artifact_type, artifact_id=artifact_id, version=version, content={}
        )
        return str(export_path(tmp_path, artifact).relative_to(tmp_path))

    assert path("pattern", "retry-with_backoff.v2") == "pattern/retry-with_backoff.v2@1.json"
    assert path("..", "../../etc/passwd") == "%2E./%2E.%2F..%2Fetc%2Fpasswd@1.json"
    assert path("a b", "x@y", "2.0") == "a%20b/x%40y@2.0.json"


def test_a_stored_row_reads_back_as_the_document_it_came_from() -> None:
    written = Artifact(artifact_type="t", artifact_id="x", content={"k": "v"})
    row = KnowledgeArtifact(
        id=1,
        artifact_type="t",
        artifact_id="x",
        version="1",
        content={"k": "v"},
        content_raw=written.raw,
        usage_count=0,
        success_count=0,
        embedding_model=None,
        created_at=None,  # type: ignore[arg-type]
        updated_at=None,  # type: ignore[arg-type]
        last_used_at=None,
    )
    assert row.to_artifact() == written  # a derived content_raw is not written out
    assert row.success_rate is None
    raw = dataclasses.replace(row, content_raw="# written by hand\n")
    assert raw.to_artifact().content_raw == "# written by hand\n"


@pytest.mark.parametrize(
    "module",
    [
        "singularity.orchestrator.knowledge",
        "singularity.orchestrator.knowledge.embeddings",
        "singularity.orchestrator.knowledge.files",
        "singularity.orchestrator.knowledge.models",
        "singularity.orchestrator.knowledge.store",
        "singularity.orchestrator.knowledge.transfer",
    ],
)
def test_public_api_names_exist(module: str) -> None:
    package = importlib.import_module(module)
    for name in package.__all__:
        assert hasattr(package, name), name
