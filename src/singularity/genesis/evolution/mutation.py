"""Mutations: the prompt that asks a model to change a program, and reading its answer.

Two kinds, chosen per child by the run's ratio:
- `diff`: SEARCH/REPLACE blocks against the parent, each matching it exactly once;
- `full`: the whole new program in one fenced code block.
An answer that cannot be used raises `UnusableMutation` with the reason, which the next
attempt shows the model.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from enum import StrEnum

from singularity.genesis.evolution.types import Program, Sample

__all__ = ["Kind", "Mutation", "UnusableMutation", "apply_answer", "mutation_messages"]


class Kind(StrEnum):
    DIFF = "diff"
    FULL = "full"


class UnusableMutation(ValueError):
    """The model's answer gives no program (no block, a SEARCH that does not match...)."""


@dataclass(frozen=True, slots=True)
class Mutation:
    code: str
    code_diff: str


_BLOCK = re.compile(
    r"<{7} SEARCH\n(?P<search>.*?)\n?={7}\n(?P<replace>.*?)\n?>{7} REPLACE", re.DOTALL
)
_FENCE = re.compile(r"```[\w+-]*\n(?P<code>.*?)```", re.DOTALL)

_SYSTEM = """You improve programs by evolution. Each program you write is run and scored by an \
evaluator; a higher combined_score is better. Keep what the evaluator needs (the program's \
inputs, outputs and their format) and change how the program gets its result.

The problem:
{description}"""

_DIFF = """Propose one improvement to the current program as SEARCH/REPLACE blocks, and \
nothing else but a one-line summary first:

<<<<<<< SEARCH
lines copied exactly from the current program
=======
the lines that replace them
>>>>>>> REPLACE

Each SEARCH must match the current program exactly once; use several blocks for several places."""

_FULL = """Rewrite the current program to score higher. Answer with a one-line summary, then \
the complete new program in one ```{language} code block."""


def mutation_messages(
    sample: Sample, kind: Kind, description: str, *, retry_reason: str | None = None
) -> list[dict[str, str]]:
    """The chat messages that ask for one mutation of `sample.parent`."""
    parent = sample.parent
    parts = [_program("The current program", parent)]
    inspirations = [*sample.top_k_inspirations, *sample.archive_inspirations]
    if inspirations:
        parts.append("Other programs of the population, for inspiration:")
        parts.extend(_program(f"Program {p.id[:8]}", p) for p in inspirations)
    parts.append(_DIFF if kind is Kind.DIFF else _FULL.format(language=parent.language))
    if retry_reason:
        parts.append(f"Your previous answer could not be used: {retry_reason}. Try again.")
    return [
        {"role": "system", "content": _SYSTEM.format(description=description or "(none given)")},
        {"role": "user", "content": "\n\n".join(parts)},
    ]


def _program(title: str, program: Program) -> str:
    verdict = f"score {program.combined_score:g}" if program.correct else "incorrect"
    feedback = program.text_feedback.strip()
    text = f"## {title} ({verdict})\n```{program.language}\n{program.code.rstrip()}\n```"
    return f"{text}\nEvaluator's feedback: {feedback[:1500]}" if feedback else text


def apply_answer(parent_code: str, answer: str, kind: Kind) -> Mutation:
    """The child program the answer describes. SEARCH/REPLACE blocks are applied whichever
    kind was asked for; without any, the answer's (longest) code block is the program."""
    blocks = list(_BLOCK.finditer(answer))
    if blocks:
        code = parent_code
        for number, block in enumerate(blocks, 1):
            search, replace = block["search"], block["replace"]
            found = code.count(search) if search else 0
            if found != 1:
                times = "is empty" if not search else f"matches {found} times"
                raise UnusableMutation(f"SEARCH block {number} {times}, not exactly once")
            code = code.replace(search, replace, 1)
    else:
        fenced = [m["code"] for m in _FENCE.finditer(answer)]
        if not fenced:
            wanted = "SEARCH/REPLACE blocks" if kind is Kind.DIFF else "fenced code block"
            raise UnusableMutation(f"the answer has no {wanted}")
        code = max(fenced, key=len)
    if not code.strip():
        raise UnusableMutation("the new program is empty")
    if code.strip() == parent_code.strip():
        raise UnusableMutation("the new program is the current program unchanged")
    return Mutation(code=code, code_diff=unified_diff(parent_code, code))


def unified_diff(before: str, after: str) -> str:
    lines = difflib.unified_diff(
        before.splitlines(keepends=True), after.splitlines(keepends=True), "parent", "child"
    )
    return "".join(lines)
