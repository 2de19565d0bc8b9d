"""What a knowledge artifact is: the document a file holds, the stored row, a search hit."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

__all__ = [
    "Artifact",
    "ArtifactKey",
    "KnowledgeArtifact",
    "KnowledgeHit",
    "canonical_json",
    "describe_invalid",
]

# Types, ids and versions name files on export and appear in tables: one line, not too long.
Name = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$"
    ),
]

ArtifactKey = tuple[str, str, str]  # (artifact_type, artifact_id, version)


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and two-space indents: the same value always gives the same text."""
    return json.dumps(value, sort_keys=True, indent=2, ensure_ascii=False)


class Artifact(BaseModel):
    """One artifact as a file (or a caller) gives it; `raw` is what `content_raw` stores.

    `content_raw` is optional: when absent it is the content serialised by `canonical_json`,
    so that reformatting a file changes nothing and an export reads back to the same row.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    artifact_type: Name
    artifact_id: Name
    version: Name = "1"
    content: dict[str, Any]
    content_raw: str | None = Field(default=None, min_length=1)

    @field_validator("version", mode="before")
    @classmethod
    def _number_is_a_version(cls, value: Any) -> Any:
        # `"version": 2` in a hand-written file means "2".
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return value

    @model_validator(mode="after")
    def _storable(self) -> Artifact:
        # PostgreSQL's text and jsonb cannot hold the NUL character: say so before it refuses.
        if "\x00" in self.raw or _holds_nul(self.content):
            raise ValueError("holds a NUL character (\\u0000), which PostgreSQL cannot store")
        return self

    @property
    def key(self) -> ArtifactKey:
        return (self.artifact_type, self.artifact_id, self.version)

    @property
    def raw(self) -> str:
        """The text stored as `content_raw` (and embedded)."""
        return self.content_raw if self.content_raw is not None else canonical_json(self.content)


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_holds_nul(item) for item in value)
    return False


def describe_invalid(exc: ValidationError) -> str:
    """A validation error as one line: `field: problem; field: problem`."""
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "artifact"
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown field (allowed: " + ", ".join(Artifact.model_fields) + ")"
        elif error["type"] == "string_pattern_mismatch":
            message = "must be one line of printable text"
        problems.append(f"{where}: {message}")
    return "; ".join(problems)


@dataclass(frozen=True, slots=True)
class KnowledgeArtifact:
    """One row of `knowledge_artifacts`, without its vectors."""

    id: int
    artifact_type: str
    artifact_id: str
    version: str
    content: dict[str, Any]
    content_raw: str
    usage_count: int
    success_count: int
    embedding_model: str | None
    created_at: datetime
    updated_at: datetime
    last_used_at: datetime | None

    @property
    def success_rate(self) -> float | None:
        """success_count / usage_count, or None before the first use."""
        return self.success_count / self.usage_count if self.usage_count else None

    def to_artifact(self) -> Artifact:
        """The document that reads back to this row (content_raw only when it is not derived)."""
        raw = None if self.content_raw == canonical_json(self.content) else self.content_raw
        return Artifact(
            artifact_type=self.artifact_type,
            artifact_id=self.artifact_id,
            version=self.version,
            content=self.content,
            content_raw=raw,
        )


@dataclass(frozen=True, slots=True)
class KnowledgeHit:
    """One search result; `matched` says how: text, vector, text+vector or substring.

    `score` is larger for a better hit; its scale depends on `matched` (see docs/knowledge.md).
    `text_rank` is PostgreSQL's ts_rank_cd when the words matched, `similarity` the cosine
    similarity when the vectors did.
    """

    id: int
    artifact_type: str
    artifact_id: str
    version: str
    content: dict[str, Any]
    content_raw: str
    score: float
    usage_count: int
    success_count: int
    matched: str
    text_rank: float | None = None
    similarity: float | None = None

    @property
    def success_rate(self) -> float | None:
        return self.success_count / self.usage_count if self.usage_count else None
