"""How hard a request is: the tier that picks its candidate models, with the reason why.

A request's own `complexity` wins; a known task type has a fixed tier; anything else is scored
by a heuristic over its messages that costs microseconds (keywords and length, no tokenizer).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from singularity.shared_queue.messages import ChatMessage

__all__ = ["TASK_TIERS", "Tier", "TierChoice", "choose_tier", "score_messages"]


class Tier(StrEnum):
    SIMPLE = "simple"
    MEDIUM = "medium"
    COMPLEX = "complex"


TASK_TIERS: dict[str, Tier] = {
    **dict.fromkeys(
        (
            "architect",
            "code_generation",
            "pattern_analyzer",
            "refactoring",
            "code_analysis",
            "qa",
        ),
        Tier.COMPLEX,
    ),
    **dict.fromkeys(("coder", "decomposition", "planning", "pseudocode", "chat"), Tier.MEDIUM),
    **dict.fromkeys(("classifier", "parser", "simple_chat", "web_search"), Tier.SIMPLE),
}

# Matched on lower-cased text: a case-insensitive scan costs several times more.
_COMPLEX_WORDS = re.compile(
    r"\b(architect\w*|refactor\w*|distributed|security|secure|concurren\w*|scalab\w*|"
    r"migrat\w*|optimi[sz]\w*|design|vulnerab\w*|consisten\w*|performance)\b"
)
_MEDIUM_WORDS = re.compile(
    r"\b(create|implement|fix|bug|test\w*|api|function|class|endpoint|write|debug|"
    r"explain|convert|parse)\b"
)
# Characters of conversation beyond which a request is at least medium, and complex.
_MEDIUM_LENGTH = 2_000
_COMPLEX_LENGTH = 12_000
# Distinct keyword hits that make a request complex (or medium) on their own.
_COMPLEX_HITS = 2
_MEDIUM_HITS = 1


@dataclass(frozen=True, slots=True)
class TierChoice:
    tier: Tier
    reason: str


def choose_tier(
    task_type: str, messages: Sequence[ChatMessage], requested: str | None = None
) -> TierChoice:
    """The tier of a request: asked for, by task type, or scored from the messages."""
    if requested is not None:
        return TierChoice(Tier(requested), "requested by the sender")
    known = TASK_TIERS.get(task_type)
    if known is not None:
        return TierChoice(known, f"task type {task_type!r}")
    return score_messages(messages, task_type)


def score_messages(messages: Sequence[ChatMessage], task_type: str = "") -> TierChoice:
    """The heuristic for an unknown task type: length and keywords of the conversation.

    Length decides first, so that a long conversation is never scanned; a shorter one is
    scanned once per keyword list, lower-cased once.
    """
    text = " ".join(_text(m) for m in messages)
    if task_type:
        text = f"{task_type.replace('_', ' ')} {text}"
    length = len(text)
    if length >= _COMPLEX_LENGTH:
        return TierChoice(Tier.COMPLEX, f"heuristic: {length} chars")
    lowered = text.lower()
    complex_hits = set(_COMPLEX_WORDS.findall(lowered))
    if len(complex_hits) >= _COMPLEX_HITS:
        return TierChoice(Tier.COMPLEX, f"heuristic: {_why(complex_hits, length, _COMPLEX_LENGTH)}")
    if length >= _MEDIUM_LENGTH:
        return TierChoice(Tier.MEDIUM, f"heuristic: {_why(complex_hits, length, _MEDIUM_LENGTH)}")
    medium_hits = set(_MEDIUM_WORDS.findall(lowered)) | complex_hits
    if len(medium_hits) >= _MEDIUM_HITS:
        return TierChoice(Tier.MEDIUM, f"heuristic: {_why(medium_hits, length, _MEDIUM_LENGTH)}")
    return TierChoice(Tier.SIMPLE, f"heuristic: short ({length} chars), no task keywords")


def _why(hits: set[str], length: int, threshold: int) -> str:
    parts = []
    if hits:
        parts.append("keywords " + ", ".join(sorted(hits)[:4]))
    if length >= threshold:
        parts.append(f"{length} chars")
    return "; ".join(parts)


def _text(message: ChatMessage) -> str:
    content = message.content
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # multi-part content: keep the text parts
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""
