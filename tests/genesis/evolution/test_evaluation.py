"""Scoring programs in the real sandbox: the shipped circle-packing problem and its strict
validator, and every way a candidate can fail scored as incorrect with the reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from genesis_support import SLOTS, UIDS, require_bwrap
from singularity.errors import UsageError
from singularity.genesis.evolution.evaluation import evaluate
from singularity.genesis.evolution.problem import example_problem, load_problem
from singularity.genesis.sandbox import Sandbox


@pytest.fixture(scope="module")
def sandbox() -> Sandbox:
    require_bwrap()
    return Sandbox(uid_base=UIDS, slots=SLOTS)


def _printing(circles: object) -> str:
    return f"print({json.dumps(json.dumps(circles))})\n"


async def test_the_initial_circle_packing_is_valid_and_scores_its_sum_of_radii(
    sandbox: Sandbox,
) -> None:
    problem = load_problem(example_problem("circle_packing"))
    assert problem.limits.wall_s == 90
    result = await evaluate(problem, problem.initial_code, sandbox)
    assert result.correct, result.text_feedback
    assert result.combined_score == pytest.approx(2.5414, abs=1e-4)
    assert result.public_metrics["circles"] == 26


@pytest.mark.parametrize(
    ("circles", "feedback"),
    [
        ([[0.5, 0.5, 0.01]] * 25, "expected 26 circles, got 25"),
        ([[0.05 + 0.035 * i, 0.5, 0.02] for i in range(26)], "overlap by"),
        ([[0.5, 0.5, 0.6]] + [[0.1, 0.1, 0.0]] * 25, "leaves the unit square"),
        ([["a", 0, 0]] * 26, "is not three finite numbers"),
    ],
)
async def test_the_validator_refuses_invalid_packings(
    sandbox: Sandbox, circles: object, feedback: str
) -> None:
    problem = load_problem(example_problem("circle_packing"))
    result = await evaluate(problem, _printing(circles), sandbox)
    assert not result.correct
    assert result.combined_score == 0.0
    assert feedback in result.text_feedback


async def test_a_crash_and_a_timeout_score_as_incorrect_with_the_reason(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    problem = load_problem(example_problem("circle_packing"))
    crashed = await evaluate(problem, "raise SystemExit('no circles today')\n", sandbox)
    assert not crashed.correct and "program.py exited 1: no circles today" in crashed.text_feedback
    quick = tmp_path / "quick"
    quick.mkdir()
    (quick / "initial.py").write_text("print(1)\n")
    (quick / "evaluate.py").write_text(
        "import subprocess, sys\nsubprocess.run([sys.executable, 'program.py'])\n"
        'print(\'{"correct": true, "combined_score": 1}\')\n'
    )
    (quick / "problem.toml").write_text("[limits]\nwall_s = 1\n")
    hung = await evaluate(load_problem(quick), "import time\ntime.sleep(30)\n", sandbox)
    assert (hung.correct, hung.status) == (False, "TIMEOUT")
    assert "evaluation TIMEOUT" in hung.text_feedback


async def test_an_evaluator_without_a_report_scores_as_incorrect(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    (tmp_path / "initial.py").write_text("print(1)\n")
    (tmp_path / "evaluate.py").write_text("print('looks fine to me')\n")
    result = await evaluate(load_problem(tmp_path), "print(1)\n", sandbox)
    assert not result.correct
    assert "printed no report" in result.text_feedback


def test_a_problem_directory_missing_its_parts_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="is not a directory"):
        load_problem(tmp_path / "nope")
    with pytest.raises(UsageError, match="has no initial program"):
        load_problem(tmp_path)
    (tmp_path / "initial.py").write_text("print(1)\n")
    (tmp_path / "evaluate.py").write_text("print(1)\n")
    (tmp_path / "problem.toml").write_text("[limits]\nwall_s = 100000\n")
    with pytest.raises(UsageError, match=r"limits\.wall_s must be"):
        load_problem(tmp_path)
    with pytest.raises(UsageError, match="unknown example problem"):
        example_problem("tsp")
