"""The learning flow's two ends: import artifact files into the database, export proven ones.

Import is idempotent (an unchanged file writes nothing) and file by file: a bad file is
reported with its reason and the others still load. Export writes one file per artifact whose
success rate passes the threshold, and rewrites a file only when its bytes would change.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from singularity.errors import UsageError
from singularity.orchestrator.knowledge.embeddings import Embedder, EmbeddingError
from singularity.orchestrator.knowledge.files import (
    ArtifactFileError,
    artifact_files,
    export_path,
    read_artifacts,
    render,
)
from singularity.orchestrator.knowledge.models import Artifact, ArtifactKey
from singularity.orchestrator.knowledge.store import Change, KnowledgeStore
from singularity.postgres.connect import describe_error

__all__ = [
    "ExportReport",
    "FileFailure",
    "ImportReport",
    "export_artifacts",
    "import_artifacts",
]

Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class FileFailure:
    """A file that was not loaded, and why (one line)."""

    path: Path
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass
class ImportReport:
    """What an import did, counted by artifact; files that failed are listed."""

    files: int = 0
    changes: Counter[Change] = field(default_factory=Counter)
    vectors: int = 0  # embeddings computed
    embeddings: str = "off"  # on (model), off, or why not
    failures: list[FileFailure] = field(default_factory=list)

    @property
    def loaded_files(self) -> int:
        return self.files - len(self.failures)

    def count(self, change: Change) -> int:
        return self.changes[change]


@dataclass
class ExportReport:
    """Files written (new or changed) and files left as they were."""

    written: list[Path] = field(default_factory=list)
    unchanged: list[Path] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.written) + len(self.unchanged)


async def import_artifacts(
    store: KnowledgeStore,
    root: Path,
    *,
    embedder: Embedder | None = None,
    progress: Progress | None = None,
) -> ImportReport:
    """Load every artifact file under `root` (or the file `root`), embedding when configured."""
    report = ImportReport()
    loaded = await asyncio.to_thread(_read_all, root, report)  # file reads off the loop
    report.embeddings = await _embedding_state(store, embedder)
    everything = [artifact for _, artifacts in loaded for artifact in artifacts]
    try:
        prepared = await store.prepare(everything, embedder=embedder, progress=progress)
    except EmbeddingError as exc:
        raise EmbeddingError(
            f"{exc}; nothing was imported (fix the embedding settings, or unset "
            "SINGULARITY_EMBEDDING_MODEL to import without vectors)"
        ) from None
    start = 0
    for number, (path, artifacts) in enumerate(loaded, 1):
        if progress:
            progress(f"writing {number}/{len(loaded)}: {path}")
        batch = prepared[start : start + len(artifacts)]
        start += len(artifacts)
        try:
            changes = await store.apply(batch)
        except psycopg.Error as exc:  # e.g. a value PostgreSQL refuses; the other files go on
            reason = f"refused by the database: {describe_error(exc)}"
            report.failures.append(FileFailure(path, reason))
            continue
        report.changes.update(changes)
        report.vectors += sum(1 for item in batch if item.embedding is not None)
    return report


def _read_all(root: Path, report: ImportReport) -> list[tuple[Path, list[Artifact]]]:
    """The artifacts of each readable file; the others (and duplicates) go to the report."""
    if not root.exists():
        raise UsageError(f"{root}: no such file or directory")
    paths = list(artifact_files(root))
    if not paths:
        raise UsageError(f"no .json files under {root}")
    report.files = len(paths)
    loaded: list[tuple[Path, list[Artifact]]] = []
    seen: dict[ArtifactKey, Path] = {}
    for path in paths:
        try:
            artifacts = read_artifacts(path)
        except ArtifactFileError as exc:
            report.failures.append(FileFailure(path, str(exc)))
            continue
        duplicate = _duplicate(artifacts, seen, path)
        if duplicate is not None:
            report.failures.append(FileFailure(path, duplicate))
            continue
        seen.update({artifact.key: path for artifact in artifacts})
        loaded.append((path, artifacts))
    return loaded


def _duplicate(artifacts: list[Artifact], seen: dict[ArtifactKey, Path], path: Path) -> str | None:
    mine: set[ArtifactKey] = set()
    for artifact in artifacts:
        key = artifact.key
        named = f"artifact {key[0]}/{key[1]}@{key[2]}"
        if key in mine:
            return f"{named} appears twice in this file"
        if key in seen:
            return f"{named} is also in {seen[key]}"
        mine.add(key)
    return None


async def _embedding_state(store: KnowledgeStore, embedder: Embedder | None) -> str:
    if embedder is None:
        return "off (SINGULARITY_EMBEDDING_MODEL is not set)"
    if not await store.vector_enabled():
        return "off (the database has no pgvector)"
    return f"on ({embedder.model})"


async def export_artifacts(
    store: KnowledgeStore,
    root: Path,
    *,
    min_success_rate: float = 0.8,
    min_usage: int = 1,
    artifact_type: str | None = None,
) -> ExportReport:
    """Write each artifact that passes the thresholds to `<root>/<type>/<id>@<version>.json`."""
    if not 0 <= min_success_rate <= 1:
        raise UsageError("--min-success-rate must be between 0 and 1")
    if min_usage < 0:
        raise UsageError("--min-usage must be 0 or more")
    rows = await store.export_candidates(
        min_success_rate=min_success_rate, min_usage=min_usage, artifact_type=artifact_type
    )
    return await asyncio.to_thread(_write_all, root, [row.to_artifact() for row in rows])


def _write_all(root: Path, artifacts: list[Artifact]) -> ExportReport:
    if root.exists() and not root.is_dir():
        raise UsageError(f"{root} is not a directory")
    report = ExportReport()
    for artifact in artifacts:
        path = export_path(root, artifact)
        text = render(artifact)
        if _holds(path, text):
            report.unchanged.append(path)
        else:
            _write(path, text)
            report.written.append(path)
    return report


def _holds(path: Path, text: str) -> bool:
    try:
        return path.read_bytes() == text.encode("utf-8")
    except OSError:
        return False


def _write(path: Path, text: str) -> None:
    """Replace the file at once (a reader never sees half of it)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(text.encode("utf-8"))
            os.chmod(temporary, 0o644)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
