"""The tier of a request: asked for, by task type, or by the heuristic."""

from __future__ import annotations

import pytest

from singularity.nexus.complexity import TASK_TIERS, Tier, choose_tier, score_messages
from singularity.shared_queue.messages import ChatMessage


def said(text: str) -> list[ChatMessage]:
    return [ChatMessage(role="user", content=text)]


@pytest.mark.parametrize(
    ("task_type", "tier"),
    [
        *(
            (t, Tier.COMPLEX)
            for t in (
                "architect",
                "code_generation",
                "pattern_analyzer",
                "refactoring",
                "code_analysis",
                "qa",
            )
        ),
        *((t, Tier.MEDIUM) for t in ("coder", "decomposition", "planning", "pseudocode", "chat")),
        *((t, Tier.SIMPLE) for t in ("classifier", "parser", "simple_chat", "web_search")),
    ],
)
def test_known_task_types_have_the_designs_tier(task_type: str, tier: Tier) -> None:
    choice = choose_tier(task_type, said("anything at all"))
    assert (choice.tier, choice.reason) == (tier, f"task type {task_type!r}")


def test_the_table_has_exactly_the_designs_task_types() -> None:
    assert len(TASK_TIERS) == 15


def test_a_requested_complexity_wins_over_the_task_type() -> None:
    choice = choose_tier("architect", said("design it"), "simple")
    assert (choice.tier, choice.reason) == (Tier.SIMPLE, "requested by the sender")


@pytest.mark.parametrize(
    ("text", "tier", "because"),
    [
        ("Refactor the distributed cache for security", Tier.COMPLEX, "distributed"),
        ("Please review the architecture and the security model", Tier.COMPLEX, "security"),
        ("Create an API endpoint", Tier.MEDIUM, "api"),
        ("fix the failing test", Tier.MEDIUM, "fix"),
        ("hello", Tier.SIMPLE, "no task keywords"),
        ("x " * 1_500, Tier.MEDIUM, "3015 chars"),
        ("y " * 7_000, Tier.COMPLEX, "chars"),
    ],
)
def test_unknown_task_types_are_scored_by_the_heuristic(
    text: str, tier: Tier, because: str
) -> None:
    choice = choose_tier("summarize_logs", said(text))
    assert choice.tier == tier
    assert choice.reason.startswith("heuristic: ")
    assert because in choice.reason


def test_the_heuristic_reads_text_parts_of_multi_part_messages() -> None:
    message = ChatMessage(
        role="user",
        content=[{"type": "text", "text": "refactor for scalability"}, {"type": "image_url"}],
    )
    assert score_messages([message]).tier == Tier.COMPLEX
