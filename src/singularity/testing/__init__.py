"""Test utilities: a local OpenAI-compatible server with scripted behaviour.

Names are loaded on first use, so that importing the package costs nothing, and so that
`python -m singularity.testing.openai_server` does not find its module already imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from singularity.testing.openai_server import (
        Call,
        ContextTooLong,
        Hang,
        MockOpenAI,
        RateLimited,
        Reply,
        ScriptedToolCall,
        ServerError,
        Step,
        embedding_vector,
        estimate_tokens,
    )

__all__ = [
    "Call",
    "ContextTooLong",
    "Hang",
    "MockOpenAI",
    "RateLimited",
    "Reply",
    "ScriptedToolCall",
    "ServerError",
    "Step",
    "embedding_vector",
    "estimate_tokens",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from singularity.testing import openai_server

        return getattr(openai_server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
