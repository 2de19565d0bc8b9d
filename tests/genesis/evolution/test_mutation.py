"""Reading a model's answer into a child program, and the prompt that asks for it."""

from __future__ import annotations

import pytest

from singularity.genesis.evolution.features import code_complexity, code_embedding
from singularity.genesis.evolution.mutation import (
    Kind,
    UnusableMutation,
    apply_answer,
    mutation_messages,
)
from singularity.genesis.evolution.types import Program, Sample

PARENT = "def f(x):\n    return x + 1\n\n\nprint(f(2))\n"


def block(search: str, replace: str) -> str:
    return f"<<<<<<< SEARCH\n{search}\n=======\n{replace}\n>>>>>>> REPLACE\n"


def test_search_replace_blocks_apply_in_order_with_a_diff() -> None:
    answer = "Two changes.\n" + block("x + 1", "x * 2") + block("f(2)", "f(3)")
    child = apply_answer(PARENT, answer, Kind.DIFF)
    assert child.code == "def f(x):\n    return x * 2\n\n\nprint(f(3))\n"
    assert "-    return x + 1\n+    return x * 2" in child.code_diff


def test_a_full_rewrite_is_the_longest_fenced_block() -> None:
    answer = "Use this:\n```python\nprint(1)\n```\nor\n```python\nimport math\nprint(math.pi)\n```"
    assert apply_answer(PARENT, answer, Kind.FULL).code == "import math\nprint(math.pi)\n"
    # Asked for a diff, a whole program is taken too.
    assert apply_answer(PARENT, answer, Kind.DIFF).code.startswith("import math")


@pytest.mark.parametrize(
    ("answer", "kind", "reason"),
    [
        (block("absent", "y"), Kind.DIFF, "SEARCH block 1 matches 0 times"),
        (block("f(", "g("), Kind.DIFF, "matches 2 times"),
        ("I would change nothing.", Kind.DIFF, "has no SEARCH/REPLACE blocks"),
        ("I would change nothing.", Kind.FULL, "has no fenced code block"),
        (f"```python\n{PARENT}```", Kind.FULL, "unchanged"),
        ("```python\n   \n```", Kind.FULL, "is empty"),
    ],
)
def test_an_unusable_answer_says_why(answer: str, kind: Kind, reason: str) -> None:
    with pytest.raises(UnusableMutation, match=reason):
        apply_answer(PARENT, answer, kind)


def test_the_prompt_shows_the_parent_its_feedback_and_the_inspirations() -> None:
    parent = Program(code=PARENT, correct=True, combined_score=1.5, text_feedback="slow")
    other = Program(code="print(9)", correct=True, combined_score=2.0)
    sample = Sample(parent=parent, archive_inspirations=[], top_k_inspirations=[other])
    system, user = mutation_messages(sample, Kind.DIFF, "Make f fast.", retry_reason="bad diff")
    assert "Make f fast." in system["content"]
    text = user["content"]
    assert "score 1.5" in text and "slow" in text and PARENT.rstrip() in text
    assert "print(9)" in text and "<<<<<<< SEARCH" in text and "bad diff" in text
    _, full = mutation_messages(sample, Kind.FULL, "")
    assert "complete new program" in full["content"] and "SEARCH" not in full["content"]


def test_embeddings_tell_a_small_change_from_a_rewrite() -> None:
    def similarity(a: str, b: str) -> float:
        return sum(x * y for x, y in zip(code_embedding(a), code_embedding(b), strict=True))

    tweak = PARENT.replace("x + 1", "x + 2")
    rewrite = "import sys\nfor line in sys.stdin:\n    print(line.upper())\n"
    assert similarity(PARENT, PARENT) == pytest.approx(1.0)
    assert 0.9 < similarity(PARENT, tweak) < 0.999
    assert similarity(PARENT, rewrite) < 0.5
    assert code_complexity(PARENT, "python") > code_complexity("print(1)", "python")
    assert code_complexity("a\n\nb\n", "bash") == 2
