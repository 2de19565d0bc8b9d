"""What to do with a change, from its experiment's figures: the first rule that holds decides.

| rule | when | recommendation |
|---|---|---|
| 1 | regression > 0.05 and success < 0.90 | rollback |
| 2 | success < 0.70 | rollback |
| 3 | llm_reduction > 0.30 and regression < 0.03 | merge |
| 4 | success > 0.95 and regression < 0.02 | merge |
| 5 | success > 0.90 and regression < 0.05 | merge_with_adaptations |
| 6 | llm_reduction > 0.20 and regression < 0.02 | merge_with_adaptations |
| 7 | otherwise | rollback |
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["RULES", "Recommendation", "Rule", "Verdict", "recommend"]


class Recommendation(StrEnum):
    """What to do with a change."""

    MERGE = "merge"
    MERGE_WITH_ADAPTATIONS = "merge_with_adaptations"
    ROLLBACK = "rollback"


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule: when `holds(success, regression, llm_reduction)`, recommend."""

    number: int
    description: str
    recommendation: Recommendation
    holds: Callable[[float, float, float], bool]


RULES: tuple[Rule, ...] = (
    Rule(
        1,
        "regression > 0.05 and success < 0.90",
        Recommendation.ROLLBACK,
        lambda s, r, llm: r > 0.05 and s < 0.90,
    ),
    Rule(2, "success < 0.70", Recommendation.ROLLBACK, lambda s, r, llm: s < 0.70),
    Rule(
        3,
        "llm_reduction > 0.30 and regression < 0.03",
        Recommendation.MERGE,
        lambda s, r, llm: llm > 0.30 and r < 0.03,
    ),
    Rule(
        4,
        "success > 0.95 and regression < 0.02",
        Recommendation.MERGE,
        lambda s, r, llm: s > 0.95 and r < 0.02,
    ),
    Rule(
        5,
        "success > 0.90 and regression < 0.05",
        Recommendation.MERGE_WITH_ADAPTATIONS,
        lambda s, r, llm: s > 0.90 and r < 0.05,
    ),
    Rule(
        6,
        "llm_reduction > 0.20 and regression < 0.02",
        Recommendation.MERGE_WITH_ADAPTATIONS,
        lambda s, r, llm: llm > 0.20 and r < 0.02,
    ),
    Rule(7, "otherwise", Recommendation.ROLLBACK, lambda s, r, llm: True),
)


@dataclass(frozen=True, slots=True)
class Verdict:
    """A recommendation and the rule that gave it."""

    recommendation: Recommendation
    rule: int
    reason: str

    def to_dict(self) -> dict[str, str | int]:
        """The verdict as JSON-friendly values."""
        return {
            "recommendation": self.recommendation.value,
            "rule": self.rule,
            "reason": self.reason,
        }


def recommend(success_rate: float, regression: float, llm_reduction: float = 0.0) -> Verdict:
    """The verdict of the first rule that holds; ValueError for a figure that is not finite."""
    figures = (success_rate, regression, llm_reduction)
    if not all(math.isfinite(value) for value in figures):
        raise ValueError(f"figures must be finite numbers, not {figures}")
    rule = next(rule for rule in RULES if rule.holds(*figures))
    return Verdict(rule.recommendation, rule.number, rule.description)
