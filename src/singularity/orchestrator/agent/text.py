"""File bytes as text for the model: binary refused, undecodable bytes kept, lines numbered."""

from __future__ import annotations

from singularity.orchestrator.agent.output import ToolError

__all__ = ["decode", "encode", "is_binary", "numbered", "shown_line", "split_lines"]

_SNIFF_BYTES = 8192


def is_binary(data: bytes) -> bool:
    """Whether `data` looks binary: a NUL byte near the start, as git and grep decide."""
    return b"\0" in data[:_SNIFF_BYTES]


def decode(data: bytes) -> tuple[str, bool]:
    """(text, whether it was valid UTF-8); bytes that are not survive as lone surrogates, so
    an edit writes them back unchanged."""
    try:
        return data.decode("utf-8"), True
    except UnicodeDecodeError:
        return data.decode("utf-8", "surrogateescape"), False


def encode(text: str, what: str) -> bytes:
    """`text` as file bytes; a lone surrogate the model sent is refused, not written."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError as error:
        raise ToolError(f"{what} is not valid Unicode text ({error.reason})") from error


def split_lines(text: str) -> list[str]:
    """Lines as editors and grep number them: split on newline only, no empty last line."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def shown_line(line: str, max_chars: int) -> str:
    """A line as the model sees it: cut at `max_chars` with a note, undecodable bytes shown
    as U+FFFD."""
    line = line.removesuffix("\r")
    shown = line.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    if len(shown) > max_chars:
        shown = f"{shown[:max_chars]} [line cut: {len(shown) - max_chars} more characters]"
    return shown


def numbered(number: int, line: str, max_chars: int) -> str:
    """One line as `    12\ttext`, as `cat -n` shows it."""
    return f"{number:>6}\t{shown_line(line, max_chars)}"
