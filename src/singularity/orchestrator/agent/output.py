"""What a workspace tool hands back, and the error it raises for the model to read."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["ToolError", "ToolOutput", "bounded"]


class ToolError(Exception):
    """A refusal or failure the model can act on; `str()` is the whole message."""


class ToolOutput(BaseModel):
    """Plain text for the model, whether the call worked, and the files it changed."""

    model_config = ConfigDict(frozen=True)

    text: str
    ok: bool = True
    changed: tuple[str, ...] = ()


def bounded(text: str, max_chars: int) -> str:
    """`text` cut to `max_chars` with a note of what was left out, and valid UTF-8 throughout
    (a file name that is not UTF-8 reaches us as lone surrogates)."""
    if len(text) > max_chars:
        left_out = len(text) - max_chars
        text = f"{text[:max_chars]}\n[output cut: {left_out} more characters not shown]"
    return text.encode("utf-8", "replace").decode("utf-8")
