"""Artifact files: reading one (an artifact, or a list of them) and writing one per artifact.

A file is UTF-8 JSON: an object with `artifact_type`, `artifact_id`, `version` (default "1"),
`content` (an object) and optionally `content_raw` (a string), or a list of such objects.
Exports write one object per file at `<type>/<artifact_id>@<version>.json`, with a fixed key
order and sorted content keys, so that the same artifact always gives the same bytes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pydantic import ValidationError

from singularity.orchestrator.knowledge.models import Artifact, describe_invalid

__all__ = ["ArtifactFileError", "artifact_files", "export_path", "read_artifacts", "render"]

# Files bigger than this are refused: an artifact is something an agent reads, not a dump.
MAX_FILE_BYTES = 4 * 1024 * 1024


class ArtifactFileError(Exception):
    """Why a file cannot be loaded, in one line (without the file's name)."""


def artifact_files(root: Path) -> Iterator[Path]:
    """`root` itself when it is a file, else its *.json files in name order, hidden ones out."""
    if root.is_file():
        yield root
        return
    for path in sorted(root.rglob("*.json")):
        hidden = any(part.startswith(".") for part in path.relative_to(root).parts)
        if path.is_file() and not hidden:
            yield path


def read_artifacts(path: Path) -> list[Artifact]:
    """The artifacts of one file, or ArtifactFileError saying what is wrong with it."""
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise ArtifactFileError(f"larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB")
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise ArtifactFileError(f"cannot read it: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ArtifactFileError("not UTF-8 text") from None
    try:
        document = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise ArtifactFileError(
            f"not JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    except ValueError as exc:
        raise ArtifactFileError(f"not JSON: {exc}") from None
    if isinstance(document, dict):
        return [_artifact(document, None)]
    if isinstance(document, list):
        if not document:
            raise ArtifactFileError("an empty list: no artifact to load")
        return [_artifact(item, index) for index, item in enumerate(document)]
    raise ArtifactFileError("must hold a JSON object (one artifact) or a list of them")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _artifact(document: Any, index: int | None) -> Artifact:
    where = "" if index is None else f"item {index}: "
    if not isinstance(document, dict):
        raise ArtifactFileError(f"{where}must be a JSON object")
    try:
        return Artifact.model_validate(document)
    except ValidationError as exc:
        raise ArtifactFileError(where + describe_invalid(exc)) from None


def render(artifact: Artifact) -> str:
    """The exported text: fixed key order, sorted content keys, a final newline."""
    document: dict[str, Any] = {
        "artifact_type": artifact.artifact_type,
        "artifact_id": artifact.artifact_id,
        "version": artifact.version,
        "content": _sorted(artifact.content),
    }
    if artifact.content_raw is not None:
        document["content_raw"] = artifact.content_raw
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _sorted(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [_sorted(item) for item in value]
    return value


def export_path(root: Path, artifact: Artifact) -> Path:
    """`<root>/<type>/<artifact_id>@<version>.json`, each part made safe as a file name."""
    name = f"{_safe(artifact.artifact_id)}@{_safe(artifact.version)}.json"
    return root / _safe(artifact.artifact_type) / name


def _safe(part: str) -> str:
    # Letters, digits and "_.-~" stay; "/", "@", spaces and the rest are %-escaped, and so is
    # a leading dot (no hidden files, no "..").
    quoted = quote(part, safe="")
    return "%2E" + quoted[1:] if quoted.startswith(".") else quoted
