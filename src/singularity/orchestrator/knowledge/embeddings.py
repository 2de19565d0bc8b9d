"""Embeddings through LiteLLM, to OpenAI or any OpenAI-compatible server (Ollama's /v1, vLLM).

LiteLLM is imported on the first embedding, not with this module: it takes seconds to import,
which a full-text search or an export should not pay.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from singularity.config import Settings
from singularity.errors import SingularityError

__all__ = ["Embedder", "EmbeddingError", "embedder_from_settings", "vector_literal"]

# Local OpenAI-compatible servers take any key, but the OpenAI client insists on one.
_ANY_KEY = "not-needed"

_litellm: ModuleType | None = None


class EmbeddingError(SingularityError):
    """The embedding model could not be reached, or answered with something unusable."""


def _load_litellm() -> ModuleType:
    global _litellm
    if _litellm is None:
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no fetch at import
        os.environ.setdefault("LITELLM_LOG", "ERROR")
        import litellm

        litellm.suppress_debug_info = True
        litellm.telemetry = False
        _litellm = litellm
    return _litellm


@dataclass(frozen=True, slots=True)
class Embedder:
    """One embedding model: `model` as configured (it is recorded beside every vector)."""

    model: str
    api_base: str | None = None
    api_key: str | None = field(default=None, repr=False)
    timeout_s: float = 60.0
    batch_size: int = 64
    retries: int = 2  # the OpenAI client's own, with backoff: rate limits and blips

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text, in order; EmbeddingError names what went wrong."""
        vectors: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            vectors += await self._batch(list(texts[start : start + self.batch_size]))
        return vectors

    async def embed_one(self, text: str) -> list[float]:
        return (await self.embed([text]))[0]

    async def _batch(self, texts: list[str]) -> list[list[float]]:
        litellm = _load_litellm()
        try:
            response = await litellm.aembedding(
                model=self._litellm_model(litellm),
                input=texts,
                api_base=self.api_base,
                api_key=self.api_key,
                timeout=self.timeout_s,
                max_retries=self.retries,
            )
        except Exception as exc:
            raise EmbeddingError(f"{self._where()} failed: {_message(exc)}") from exc
        return self._vectors(response, len(texts))

    def _litellm_model(self, litellm: ModuleType) -> str:
        # With a server address, a bare name ("nomic-embed-text") is a model of that
        # OpenAI-compatible server; LiteLLM wants the provider said.
        provider = self.model.split("/", 1)[0] if "/" in self.model else None
        if self.api_base and provider not in litellm.provider_list:
            return f"openai/{self.model}"
        return self.model

    def _vectors(self, response: Any, expected: int) -> list[list[float]]:
        items = list(getattr(response, "data", None) or [])
        if len(items) != expected:
            raise EmbeddingError(f"{self._where()} returned {len(items)} vectors for {expected}")
        items.sort(key=_index)  # in the order of the inputs, which servers need not keep
        vectors = []
        for item in items:
            values = _field(item, "embedding")
            if not isinstance(values, list) or not values:
                raise EmbeddingError(f"{self._where()} returned something that is not a vector")
            vector = [float(x) for x in values]
            if not all(math.isfinite(x) for x in vector) or not any(vector):
                raise EmbeddingError(f"{self._where()} returned a zero or non-finite vector")
            vectors.append(vector)
        if len({len(v) for v in vectors}) > 1:
            raise EmbeddingError(f"{self._where()} returned vectors of different lengths")
        return vectors

    def _where(self) -> str:
        return f"embedding with {self.model}" + (f" at {self.api_base}" if self.api_base else "")


def _field(item: Any, name: str) -> Any:
    return item.get(name) if isinstance(item, dict) else getattr(item, name, None)


def _index(item: Any) -> int:
    index = _field(item, "index")
    return index if isinstance(index, int) else 0


def _message(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    for prefix in ("litellm.", "OpenAIException - "):
        text = text.replace(prefix, "")
    return text.splitlines()[0][:300]


def vector_literal(vector: Sequence[float]) -> str:
    """pgvector's text form, `[x,y,...]`, bound as a parameter and cast to `vector`."""
    return "[" + ",".join(repr(float(x)) for x in vector) + "]"


def embedder_from_settings(settings: Settings) -> Embedder | None:
    """The configured embedding model, or None when SINGULARITY_EMBEDDING_MODEL is unset."""
    model = settings.singularity_embedding_model
    if not model:
        return None
    base = settings.singularity_embedding_base_url
    provider = model.split("/", 1)[0] if "/" in model else None
    key = _secret(settings.singularity_embedding_api_key)
    if key is None and provider in (None, "openai"):
        key = _secret(settings.openai_api_key)
    if key is None and base:
        key = _ANY_KEY
    # Without a key of ours, LiteLLM looks for the provider's own variable (COHERE_API_KEY...).
    return Embedder(model=model, api_base=base, api_key=key)


def _secret(value: Any) -> str | None:
    secret = value.get_secret_value() if value is not None else ""
    return secret or None
