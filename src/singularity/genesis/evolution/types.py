"""The program record and the column type that stores JSON on either backend."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

__all__ = ["JSONValue", "Neighbour", "Program", "Sample", "dump_json"]


def dump_json(value: Any) -> str:
    """Canonical JSON: sorted keys, no spaces, NaN refused (PostgreSQL's JSONB refuses it)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


class JSONValue(TypeDecorator[Any]):
    """JSONB on PostgreSQL, TEXT holding JSON on SQLite; callers see Python values."""

    impl = Text
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(JSONB(none_as_null=True))
        return dialect.type_descriptor(Text())

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None or dialect.name == "postgresql":
            if value is not None:
                dump_json(value)  # the same refusal of NaN on both backends
            return value
        return dump_json(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        if value is None or dialect.name == "postgresql":
            return value
        return json.loads(value)


def _new_id() -> str:
    return uuid.uuid4().hex


class Program(BaseModel):
    """One program of the population, as stored in `programs`."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(default_factory=_new_id)
    code: str
    language: str = "python"
    parent_id: str | None = None
    archive_inspiration_ids: list[str] = Field(default_factory=list)
    top_k_inspiration_ids: list[str] = Field(default_factory=list)
    generation: int = 0
    timestamp: float = Field(default_factory=time.time, allow_inf_nan=False)
    code_diff: str | None = None
    combined_score: float = Field(default=0.0, allow_inf_nan=False)
    public_metrics: dict[str, Any] = Field(default_factory=dict)
    private_metrics: dict[str, Any] = Field(default_factory=dict)
    text_feedback: str = ""
    complexity: float = Field(default=0.0, allow_inf_nan=False)
    embedding: list[float] = Field(default_factory=list)
    correct: bool = False
    children_count: int = 0
    metadata: dict[str, Any] = Field(default_factory=dict)
    migration_history: list[dict[str, Any]] = Field(default_factory=list)
    # Set on add: a child always takes its parent's island; a program without a parent
    # keeps the island given here, or goes to the smallest island when None.
    island_idx: int | None = None


class Sample(BaseModel):
    """A parent to mutate and the programs shown to the model as inspiration."""

    model_config = ConfigDict(frozen=True)

    parent: Program
    archive_inspirations: list[Program]
    top_k_inspirations: list[Program]


class Neighbour(BaseModel):
    """The most similar stored program to an embedding, and its cosine similarity."""

    model_config = ConfigDict(frozen=True)

    program_id: str
    similarity: float
