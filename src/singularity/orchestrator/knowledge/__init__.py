"""Singularity's knowledge artifacts: stored, searched (full text and pgvector), imported and
exported as JSON files for review in Git. See docs/knowledge.md."""

from __future__ import annotations

from singularity.orchestrator.knowledge.embeddings import (
    Embedder,
    EmbeddingError,
    embedder_from_settings,
)
from singularity.orchestrator.knowledge.files import ArtifactFileError, read_artifacts, render
from singularity.orchestrator.knowledge.models import (
    Artifact,
    KnowledgeArtifact,
    KnowledgeHit,
    canonical_json,
)
from singularity.orchestrator.knowledge.store import (
    DEFAULT_MIN_SIMILARITY,
    RRF_K,
    Change,
    KnowledgeStore,
    PreparedArtifact,
    SearchResult,
)
from singularity.orchestrator.knowledge.transfer import (
    ExportReport,
    FileFailure,
    ImportReport,
    export_artifacts,
    import_artifacts,
)

__all__ = [
    "DEFAULT_MIN_SIMILARITY",
    "RRF_K",
    "Artifact",
    "ArtifactFileError",
    "Change",
    "Embedder",
    "EmbeddingError",
    "ExportReport",
    "FileFailure",
    "ImportReport",
    "KnowledgeArtifact",
    "KnowledgeHit",
    "KnowledgeStore",
    "PreparedArtifact",
    "SearchResult",
    "canonical_json",
    "embedder_from_settings",
    "export_artifacts",
    "import_artifacts",
    "read_artifacts",
    "render",
]
