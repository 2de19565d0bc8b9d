"""Finding 8b: the author of a diff controls the candidate's run, its output and exit status.

Each diff below breaks `add` (two of the repository's three tests fail) and then forges what
the runner would report: a summary printed before leaving with status 0, a summary beside
the real one, a JUnit file. Each runs as a real experiment in the sandbox; none may earn
`merge`, the forged counts may not pass for the candidate's, and the reviewer is told why.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import pytest

from genesis_support import MODULE, TEST_COMMAND, make_repo, require_bwrap
from singularity.cli.common import console
from singularity.cli.genesis_cmd import _print_outcome
from singularity.genesis.experiments.handler import experiment_result
from singularity.genesis.experiments.recommendation import Recommendation
from singularity.genesis.experiments.trial import ExperimentOutcome, run_experiment
from singularity.genesis.limits import DEFAULT_LIMITS
from singularity.genesis.sandbox import Sandbox
from singularity.orchestrator.task_steps import experiment_summary

BROKEN = "def add(a, b):\n    return a - b\n"
NAMES = ("test_negative", "test_small", "test_zero")  # the order unittest runs them in
UNITTEST_SUMMARY = "-" * 70 + "\\nRan {n} tests in 0.012s\\n\\nOK\\n"

# Printed when calc is imported, before any test runs; then nothing else runs.
FAKE_UNITTEST = f"""
import os, sys
sys.stderr.write("{UNITTEST_SUMMARY.format(n=50)}")
sys.stderr.flush()
os._exit(0)
"""
FAKE_PYTEST = """
import os
print("=" * 30 + " 50 passed in 0.12s " + "=" * 30, flush=True)
os._exit(0)
"""
# The baseline's own output, test for test, with `add` broken all the same.
FAKE_SAME_SHAPE = f"""
import os, sys
for name in {NAMES!r}:
    sys.stderr.write(f"{{name}} (test_calc.AddTest.{{name}}) ... ok\\n")
sys.stderr.write("{UNITTEST_SUMMARY.format(n=3)}")
sys.stderr.flush()
os._exit(0)
"""
# A fake summary first; then the real run goes on and reports its two failures.
FAKE_BESIDE_REAL = f"""
import sys
sys.stdout.write("{UNITTEST_SUMMARY.format(n=1000)}")
sys.stdout.flush()
"""
# The real run reports its failures; on the way out, a fake summary and status 0.
FAKE_AT_EXIT = f"""
import atexit, os, sys

def _leave():
    sys.stdout.write("{UNITTEST_SUMMARY.format(n=1000)}")
    sys.stdout.flush()
    os._exit(0)

atexit.register(_leave)
"""
# A legitimate runner that writes a JUnit report, and a diff that writes its own.
JUNIT_RUNNER = """\
import sys, unittest
from xml.sax.saxutils import quoteattr

def flat(suite):
    for test in suite:
        yield from flat(test) if isinstance(test, unittest.TestSuite) else [test]

tests = list(flat(unittest.defaultTestLoader.discover(".")))
result = unittest.TestResult()
unittest.TestSuite(tests).run(result)
bad = {test.id() for test, _ in result.failures + result.errors}
with open("report.xml", "w") as out:
    out.write("<testsuite>")
    for test in tests:
        failure = "<failure/>" if test.id() in bad else ""
        out.write(f"<testcase name={quoteattr(test.id())}>{failure}</testcase>")
    out.write("</testsuite>")
sys.exit(1 if bad else 0)
"""
# The baseline's three tests, passing, and 47 more: no regression test for test.
FAKE_JUNIT = f"""
import os
names = [*("test_calc.AddTest." + name for name in {NAMES!r}), *(f"fast_{{i}}" for i in range(47))]
cases = "".join(f'<testcase name="{{name}}"/>' for name in names)
with open("report.xml", "w") as out:
    out.write(f"<testsuite>{{cases}}</testsuite>")
os._exit(0)
"""


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path)


@pytest.fixture
def sandbox() -> Sandbox:
    require_bwrap()
    return Sandbox()


def diff_to(new: str, old: str = MODULE, path: str = "calc.py") -> str:
    lines = difflib.unified_diff(
        old.splitlines(keepends=True), new.splitlines(keepends=True), f"a/{path}", f"b/{path}"
    )
    return "".join(lines)


async def experiment(
    repo: Path, payload: str, sandbox: Sandbox, **options: Any
) -> ExperimentOutcome:
    return await run_experiment(
        repo,
        diff_to(BROKEN + payload),
        options.pop("test_command", TEST_COMMAND),
        sandbox=sandbox,
        limits=DEFAULT_LIMITS,
        workspace_root=repo.parent / "workspaces",
        **options,
    )


def printed(outcome: ExperimentOutcome) -> str:
    with console.capture() as captured:
        _print_outcome("exp-test", outcome.to_dict())
    return captured.get()


def assert_contained(outcome: ExperimentOutcome) -> None:
    """No merge; the forged counts are not the candidate's; the reviewer sees why."""
    assert outcome.baseline is not None and outcome.candidate is not None
    assert outcome.baseline.report.passed == 3 and outcome.baseline.report.complete
    assert outcome.recommendation is not Recommendation.MERGE, outcome.to_dict()
    assert outcome.candidate.report.basis == "exit status"
    assert outcome.candidate.report.total == 1  # not the 50 or 1000 it printed
    assert outcome.warnings and all(w.startswith("candidate: ") for w in outcome.warnings)
    answer = experiment_result("e1", outcome.to_dict()).model_dump(mode="json", exclude_none=True)
    assert answer["recommendation"] != "merge"
    assert answer["candidate"]["basis"] == "exit status" and answer["candidate"]["warnings"]
    summary = experiment_summary(answer)
    assert "counts from the candidate's exit status" in summary and "WARNING: " in summary
    assert "warning" in printed(outcome)


@pytest.mark.parametrize("payload", [FAKE_UNITTEST, FAKE_PYTEST], ids=["unittest", "pytest"])
async def test_finding_8b_fake_runner_output_does_not_earn_merge(
    repo: Path, sandbox: Sandbox, payload: str
) -> None:
    outcome = await experiment(repo, payload, sandbox)
    assert_contained(outcome)
    assert outcome.recommendation is Recommendation.MERGE_WITH_ADAPTATIONS  # a human looks
    assert "merge withheld" in outcome.reason
    assert any("the candidate counts 50 tests, the baseline 3" in w for w in outcome.warnings)


async def test_finding_8b_merge_on_printed_output_says_so(repo: Path, sandbox: Sandbox) -> None:
    """A forgery of the baseline's exact output cannot be told apart: the verdict says so."""
    outcome = await experiment(repo, FAKE_SAME_SHAPE, sandbox)
    assert outcome.recommendation is Recommendation.MERGE  # undetectable, hence the warning
    assert outcome.basis == "runner output"
    (warning,) = outcome.warnings
    assert "merge rests only on the runner output" in warning
    assert "could have written it" in warning
    assert "merge rests only" in printed(outcome)
    answer = experiment_result("e1", outcome.to_dict()).model_dump(mode="json", exclude_none=True)
    summary = experiment_summary(answer)
    assert "counts from the candidate's runner output" in summary


async def test_attack_fake_summary_beside_real_failures(repo: Path, sandbox: Sandbox) -> None:
    outcome = await experiment(repo, FAKE_BESIDE_REAL, sandbox)
    assert_contained(outcome)
    assert outcome.candidate is not None and outcome.candidate.exit_code == 1
    assert outcome.recommendation is Recommendation.ROLLBACK and outcome.success_rate == 0
    assert any("2 test summaries" in w for w in outcome.warnings)


async def test_attack_status_zero_after_real_failures(repo: Path, sandbox: Sandbox) -> None:
    outcome = await experiment(repo, FAKE_AT_EXIT, sandbox)
    assert_contained(outcome)
    assert outcome.candidate is not None and outcome.candidate.exit_code == 0
    assert outcome.recommendation is Recommendation.ROLLBACK and outcome.success_rate == 0


async def test_attack_forged_junit_report(repo: Path, sandbox: Sandbox) -> None:
    (repo / "run_tests.py").write_text(JUNIT_RUNNER)
    outcome = await experiment(
        repo, FAKE_JUNIT, sandbox, test_command="python3 run_tests.py", junit_path="report.xml"
    )
    assert_contained(outcome)
    assert outcome.baseline is not None and outcome.baseline.report.basis == "junit report"
    assert any("counts 50 tests, the baseline 3" in w for w in outcome.warnings)
