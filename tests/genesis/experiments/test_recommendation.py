"""The recommendation rules, each one and each boundary, in their order; and what a verdict
rests on."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from singularity.genesis.experiments.outcome import ExperimentOutcome, TestRun
from singularity.genesis.experiments.recommendation import RULES, Recommendation, recommend
from singularity.genesis.experiments.reports import report_for_run

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


# -- what a verdict rests on -------------------------------------------------------------------

UNITTEST_3 = (
    "".join(f"test_{n} (t.C.test_{n}) ... ok\n" for n in "abc") + "Ran 3 tests in 0s\n\nOK\n"
)


def run(output: str, exit_code: int = 0) -> TestRun:
    return TestRun(
        report=report_for_run(output, exit_code),
        exit_code=exit_code,
        signal=None,
        timed_out=False,
        cpu_exceeded=False,
        output_limited=False,
        output_truncated=False,
        wall_ms=1.0,
        cpu_ms=1.0,
        max_rss_kb=1,
        stdout_tail="",
        stderr_tail=output,
    )


def judge(candidate: str, paths: tuple[str, ...] = ("app.py",), exit_code: int = 0) -> Any:
    return ExperimentOutcome.completed(run(UNITTEST_3), run(candidate, exit_code), 0.0, paths)


def test_a_merge_on_runner_output_says_what_it_rests_on() -> None:
    outcome = judge(UNITTEST_3)
    assert (outcome.recommendation, outcome.basis) == (MERGE, "runner output")
    assert len(outcome.warnings) == 1 and "merge rests only on" in outcome.warnings[0]
    assert outcome.to_dict()["warnings"] == list(outcome.warnings)


def test_a_merge_on_the_exit_status_alone_has_no_warning() -> None:
    outcome = ExperimentOutcome.completed(run("ok\n"), run("ok\n"), 0.0, ("app.py",))
    assert (outcome.recommendation, outcome.basis, outcome.warnings) == (MERGE, "exit status", ())


def test_a_merge_is_withheld_when_a_run_is_in_doubt() -> None:
    outcome = judge(UNITTEST_3 + "===== 3 passed in 0.1s =====\n")
    assert (outcome.recommendation, outcome.rule) == (ADAPT, 4)
    assert outcome.reason.endswith("merge withheld: the test results are in doubt")
    assert all(warning.startswith("candidate: ") for warning in outcome.warnings)


def test_counts_that_are_not_the_baselines_tests_are_not_trusted() -> None:
    outcome = judge("Ran 50 tests in 0s\n\nOK\n")
    assert outcome.candidate is not None and outcome.candidate.report.basis == "exit status"
    assert outcome.recommendation is ADAPT
    assert any("counts 50 tests, the baseline 3" in w for w in outcome.warnings)
    assert any("names none of them" in w for w in outcome.warnings)
    renamed = UNITTEST_3.replace("test_c (t.C.test_c)", "test_z (t.C.test_z)")
    assert any("never ran (t.C.test_z" in w for w in judge(renamed).warnings)


def test_a_diff_that_changes_tests_may_change_their_count() -> None:
    more = (
        "".join(f"test_{n} (t.C.test_{n}) ... ok\n" for n in "abcd") + "Ran 4 tests in 0s\n\nOK\n"
    )
    for paths in (("tests/test_app.py",), ("app.py", "pyproject.toml"), ("src/app.spec.js",)):
        outcome = judge(more, paths)
        assert outcome.recommendation is MERGE and outcome.candidate is not None
        assert outcome.candidate.report.total == 4
    # Naming none of the baseline's tests is in doubt whatever the diff changes.
    assert judge("Ran 4 tests in 0s\n\nOK\n", ("test_app.py",)).recommendation is ADAPT


def test_a_failing_candidate_is_judged_on_its_counts_as_before() -> None:
    failing = UNITTEST_3.replace("test_c (t.C.test_c) ... ok", "test_c (t.C.test_c) ... FAIL")
    failing = failing.replace("\nOK\n", "\nFAILED (failures=1)\n")
    outcome = judge(failing, exit_code=1)
    assert outcome.regressed_tests == ("t.C.test_c",) and outcome.recommendation is ROLLBACK
    assert outcome.warnings == ()
