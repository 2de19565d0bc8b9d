"""The recommendation rules, each one and each boundary, in their order."""

from __future__ import annotations

import json
import math

import pytest

from singularity.genesis.recommendation import RULES, Recommendation, recommend

MERGE = Recommendation.MERGE
ADAPT = Recommendation.MERGE_WITH_ADAPTATIONS
ROLLBACK = Recommendation.ROLLBACK


@pytest.mark.parametrize(
    ("success", "regression", "llm", "expected", "rule"),
    [
        # 1: regression > 0.05 and success < 0.90
        (0.89, 0.06, 0.0, ROLLBACK, 1),
        (0.85, 0.10, 0.9, ROLLBACK, 1),  # before rule 3, however much the LLM saves
        (0.89, 0.05, 0.0, ROLLBACK, 7),  # regression at the bound: not rule 1
        (0.90, 0.06, 0.0, ROLLBACK, 7),  # success at the bound: not rule 1
        # 2: success < 0.70
        (0.69, 0.0, 0.0, ROLLBACK, 2),
        (0.50, 0.0, 0.9, ROLLBACK, 2),  # before rule 3
        (0.0, 0.0, 0.0, ROLLBACK, 2),
        (0.70, 0.0, 0.0, ROLLBACK, 7),  # at the bound: not rule 2
        # 3: llm_reduction > 0.30 and regression < 0.03
        (0.80, 0.02, 0.31, MERGE, 3),
        (0.70, 0.0, 1.0, MERGE, 3),
        (0.80, 0.0, 0.30, ADAPT, 6),  # reduction at the bound: rule 6 instead
        (0.80, 0.03, 0.50, ROLLBACK, 7),  # regression at the bound: not 3, and not 6
        # 4: success > 0.95 and regression < 0.02
        (0.96, 0.01, 0.0, MERGE, 4),
        (1.0, 0.0, 0.0, MERGE, 4),
        (0.95, 0.0, 0.0, ADAPT, 5),  # success at the bound: rule 5 instead
        (0.96, 0.02, 0.0, ADAPT, 5),  # regression at the bound: rule 5 instead
        # 5: success > 0.90 and regression < 0.05
        (0.91, 0.04, 0.0, ADAPT, 5),
        (0.999, 0.049, 0.0, ADAPT, 5),
        (0.90, 0.0, 0.0, ROLLBACK, 7),  # success at the bound
        (0.93, 0.05, 0.0, ROLLBACK, 7),  # regression at the bound
        # 6: llm_reduction > 0.20 and regression < 0.02
        (0.80, 0.01, 0.21, ADAPT, 6),
        (0.80, 0.01, 0.20, ROLLBACK, 7),  # reduction at the bound
        (0.80, 0.02, 0.25, ROLLBACK, 7),  # regression at the bound
        # 7: otherwise
        (0.80, 0.0, 0.0, ROLLBACK, 7),
    ],
)
def test_the_first_rule_that_holds_decides(
    success: float, regression: float, llm: float, expected: Recommendation, rule: int
) -> None:
    verdict = recommend(success, regression, llm)
    assert (verdict.recommendation, verdict.rule) == (expected, rule)


def test_llm_reduction_defaults_to_zero() -> None:
    assert recommend(0.80, 0.01).rule == 7


def test_the_rules_are_numbered_in_order_and_the_last_always_holds() -> None:
    assert [rule.number for rule in RULES] == list(range(1, 8))
    assert RULES[-1].holds(0.0, 1.0, 0.0)


def test_a_verdict_is_json_with_the_values_the_bus_carries() -> None:
    verdict = recommend(0.91, 0.04)
    assert json.loads(json.dumps(verdict.to_dict())) == {
        "recommendation": "merge_with_adaptations",
        "rule": 5,
        "reason": "success > 0.90 and regression < 0.05",
    }
    assert [r.value for r in Recommendation] == ["merge", "merge_with_adaptations", "rollback"]


@pytest.mark.parametrize("figures", [(math.nan, 0.0, 0.0), (1.0, math.inf, 0.0), (1, 0, math.nan)])
def test_figures_that_are_not_numbers_are_refused(figures: tuple[float, float, float]) -> None:
    with pytest.raises(ValueError, match="finite"):
        recommend(*figures)
