"""Experiments on real git repositories: tests before and after a diff, in the sandbox, and
applying a diff to the repository then rolling it back."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from genesis_support import require_bwrap
from singularity.errors import UsageError
from singularity.genesis.experiments.outcome import measure
from singularity.genesis.experiments.recommendation import Recommendation
from singularity.genesis.experiments.reports import TestCase, TestOutcome, TestReport
from singularity.genesis.experiments.trial import (
    Baseline,
    DiffFailed,
    ExperimentStatus,
    RunUnavailable,
    apply_to_repository,
    rollback,
    run_experiment,
)
from singularity.genesis.limits import DEFAULT_LIMITS
from singularity.genesis.sandbox import Sandbox, SandboxUnavailable

MODULE = "def add(a, b):\n    return a + b\n"
TESTS = """\
import os
import unittest

from calc import add


class AddTest(unittest.TestCase):
    def test_small(self):
        self.assertEqual(add(1, 2), 3)

    def test_negative(self):
        self.assertEqual(add(-1, -2), -3)

    def test_zero(self):
        self.assertEqual(add(0, 0), 0)

    def test_commutes(self):
        self.assertEqual(add(2, 5), add(5, 2))
"""
GOOD_DIFF = """\
--- a/calc.py
+++ b/calc.py
@@ -1,2 +1,3 @@
 def add(a, b):
+    # integers and floats alike
     return a + b
"""
BREAKING_DIFF = """\
--- a/calc.py
+++ b/calc.py
@@ -1,2 +1,2 @@
 def add(a, b):
-    return a + b
+    return a * b
"""
STALE_DIFF = """\
--- a/calc.py
+++ b/calc.py
@@ -1,2 +1,2 @@
 def add(a, b):
-    return a - b
+    return b + a
"""
TEST_COMMAND = "python3 -m unittest -v"
GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@x",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@x",
    "PATH": os.environ["PATH"],
    "HOME": "/nonexistent",
}


def make_repo(root: Path, extra: dict[str, str] | None = None) -> Path:
    repo = root / "calc"
    repo.mkdir()
    for name, text in {"calc.py": MODULE, "test_calc.py": TESTS, **(extra or {})}.items():
        (repo / name).write_text(text)
    for args in (["init", "-q"], ["add", "."], ["commit", "-qm", "calc"]):
        git(repo, *args)
    return repo


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=repo, env=GIT_ENV, check=True, capture_output=True)
    return done.stdout.decode("utf-8", "surrogateescape")  # a diff's CRs kept as they are


def diff_of(
    repo: Path, change: dict[str, str | bytes | None], chmod: dict[str, int] | None = None
) -> str:
    """The `git diff --binary` of a change to a repository, which is then undone."""
    for name, content in change.items():
        path = repo / name
        if content is None:
            path.unlink()
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    for name, mode in (chmod or {}).items():
        (repo / name).chmod(mode)
    git(repo, "add", "-A")
    diff = git(repo, "diff", "--cached", "--binary")
    git(repo, "reset", "-q", "--hard")
    git(repo, "clean", "-qfd")
    for name in chmod or {}:
        (repo / name).chmod(0o644)
    return diff


def files_of(repo: Path) -> dict[str, tuple[int, bytes]]:
    """Every file but git's own, with its mode and bytes."""
    return {
        str(path.relative_to(repo)): (path.stat().st_mode, path.read_bytes())
        for path in sorted(repo.rglob("*"))
        if path.is_file() and ".git" not in path.parts
    }


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path)


@pytest.fixture
def sandbox() -> Sandbox:
    require_bwrap()
    return Sandbox()


async def experiment(repo: Path, diff: str, sandbox: Any, **options: Any) -> Any:
    root = repo.parent / "workspaces"
    outcome = await run_experiment(
        repo,
        diff,
        options.pop("test_command", TEST_COMMAND),
        sandbox=sandbox,
        limits=options.pop("limits", DEFAULT_LIMITS),
        workspace_root=root,
        **options,
    )
    assert list(root.iterdir()) == []  # the workspace is gone
    json.dumps(outcome.to_dict())  # what gets recorded and published
    return outcome


# -- measuring ---------------------------------------------------------------------------------


def report(outcomes: dict[str, TestOutcome] | None = None, **counts: int) -> TestReport:
    if outcomes is None:
        return TestReport("exit_code", counts.get("passed", 0), counts.get("failed", 0))
    cases = tuple(TestCase(name, outcome) for name, outcome in outcomes.items())
    count = {o: sum(c.outcome is o for c in cases) for o in TestOutcome}
    return TestReport(
        "unittest",
        count[TestOutcome.PASSED],
        count[TestOutcome.FAILED],
        count[TestOutcome.ERROR],
        count[TestOutcome.SKIPPED],
        cases,
    )


P, F, S = TestOutcome.PASSED, TestOutcome.FAILED, TestOutcome.SKIPPED


def test_regression_per_test_counts_the_baselines_passing_tests_lost() -> None:
    before = report({"a": P, "b": P, "c": P, "d": P, "e": F})
    # "b" now fails, "c" is skipped and "d" is gone; "e" was failing, so it does not count.
    after = report({"a": P, "b": F, "c": S, "e": F, "new": P})
    measured = measure(before, after)
    assert measured.basis == "per_test"
    assert measured.regressed == ("b", "c", "d")
    assert measured.regression == 0.75
    assert measured.success_rate == 0.5  # 2 of the 4 counted (the skipped one is not)


def test_regression_by_rate_when_a_side_does_not_name_its_tests() -> None:
    before = report({"a": P, "b": P, "c": P, "d": P})
    measured = measure(before, report(passed=0, failed=1))
    assert (measured.basis, measured.regression, measured.success_rate) == ("success_rate", 1, 0)
    better = measure(report(passed=0, failed=1), before)
    assert better.regression == 0.0 and better.success_rate == 1.0


def test_figures_are_exact_at_the_rules_bounds() -> None:
    # 1 - 19/20 in floats is 0.050000000000000044, which would miss rule 5's bound.
    measured = measure(report(passed=20), report(passed=19, failed=1))
    assert measured.success_rate == 0.95 and measured.regression == 0.05


def test_no_tests_on_either_side_is_no_success_and_no_regression() -> None:
    measured = measure(report(passed=0), report(passed=0))
    assert (measured.success_rate, measured.regression) == (0.0, 0.0)


# -- experiments in the sandbox ----------------------------------------------------------------


async def test_a_good_diff_is_merged(repo: Path, sandbox: Sandbox) -> None:
    steps: list[str] = []
    outcome = await experiment(repo, GOOD_DIFF, sandbox, progress=steps.append)
    assert outcome.status is ExperimentStatus.COMPLETED
    assert (outcome.recommendation, outcome.rule) == (Recommendation.MERGE, 4)
    assert (outcome.success_rate, outcome.regression) == (1.0, 0.0)
    assert outcome.regression_basis == "per_test" and outcome.paths == ("calc.py",)
    for run in (outcome.baseline, outcome.candidate):
        assert run.exit_code == 0 and run.report.passed == 4 and run.report.complete
    assert "integers and floats" not in (repo / "calc.py").read_text()  # on a copy only
    assert steps[0] == "copying the repository" and len(steps) == 4
    found = outcome.to_dict()
    assert found["baseline"]["passed"] == 4 and found["candidate"]["total"] == 4
    assert found["status"] == "completed" and found["recommendation"] == "merge"


async def test_a_diff_that_breaks_tests_is_rolled_back(repo: Path, sandbox: Sandbox) -> None:
    outcome = await experiment(repo, BREAKING_DIFF, sandbox)
    assert outcome.recommendation is Recommendation.ROLLBACK and outcome.rule == 1
    assert outcome.baseline.report.passed == 4
    # add(1, 2) and add(-1, -2) break; add(0, 0) and the commuting one still pass.
    assert outcome.regression == 0.5 and outcome.success_rate == 0.5
    assert outcome.regressed_tests == (
        "test_calc.AddTest.test_negative",
        "test_calc.AddTest.test_small",
    )
    assert outcome.candidate.exit_code == 1 and "FAILED" in outcome.candidate.stderr_tail


async def test_a_diff_that_does_not_apply_fails_without_running(repo: Path) -> None:
    # No test runs, so no sandbox is needed: one that cannot run would fail the test.
    outcome = await experiment(repo, STALE_DIFF, _NoSandbox())
    assert outcome.status is ExperimentStatus.DIFF_FAILED
    assert outcome.recommendation is Recommendation.ROLLBACK and outcome.rule is None
    assert outcome.error == "patch failed: calc.py:1; calc.py: patch does not apply"
    assert outcome.baseline is None and outcome.candidate is None
    assert outcome.to_dict()["status"] == "diff_failed"


async def test_a_baseline_that_cannot_run_is_an_error(repo: Path) -> None:
    with pytest.raises(RunUnavailable, match="the baseline tests could not run"):
        await experiment(repo, GOOD_DIFF, _NoSandbox())


async def test_a_symlink_to_a_host_file_is_copied_as_a_link(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("host secret")
    link_test = f"""\
import os
import unittest


class LinkTest(unittest.TestCase):
    def test_is_a_link(self):
        self.assertEqual(os.readlink("escape"), {str(secret)!r})

    def test_host_file_is_not_there(self):
        with self.assertRaises(OSError):
            open("escape").read()
"""
    repo = make_repo(tmp_path, {"test_link.py": link_test})
    (repo / "escape").symlink_to(secret)
    outcome = await experiment(repo, GOOD_DIFF, sandbox)
    assert outcome.baseline.report.outcomes() == {
        **{f"test_calc.AddTest.test_{n}": P for n in ("commutes", "negative", "small", "zero")},
        "test_link.LinkTest.test_host_file_is_not_there": P,
        "test_link.LinkTest.test_is_a_link": P,
    }
    assert "host secret" not in json.dumps(outcome.to_dict())


async def test_a_junit_report_counts_and_a_stale_one_is_not_read(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    stale = '<testsuite><testcase classname="c" name="t"/></testsuite>'
    repo = make_repo(tmp_path, {"report.xml": stale})
    fresh = (
        '<testsuite><testcase classname="c" name="t"/>'
        '<testcase classname="c" name="u"><failure/></testcase></testsuite>'
    )
    write = f"printf '%s' '{fresh}' > report.xml"
    outcome = await experiment(
        repo, GOOD_DIFF, sandbox, test_command=write, junit_path="report.xml"
    )
    assert outcome.baseline.report.source == "junit"
    assert outcome.baseline.report.outcomes() == {"c.t": P, "c.u": F}
    # The command writes no report: the one the repository holds must not stand for it.
    outcome = await experiment(
        repo, GOOD_DIFF, sandbox, test_command="exit 1", junit_path="report.xml"
    )
    assert outcome.baseline.report.source == "exit_code"
    assert outcome.baseline.report.note is not None


async def test_a_repository_larger_than_the_disk_limit_is_refused(repo: Path) -> None:
    (repo / "big.bin").write_bytes(b"\0" * (2 << 20))
    limits = dataclasses.replace(DEFAULT_LIMITS, disk_mb=1)
    with pytest.raises(UsageError, match="holds more than 1 MiB"):
        await experiment(repo, GOOD_DIFF, _NoSandbox(), limits=limits)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"test_command": "  "}, "empty"),
        ({"llm_reduction": float("nan")}, "finite"),
        ({"junit_path": "../outside.xml"}, "not inside"),
    ],
)
async def test_requests_no_experiment_can_serve_are_refused(
    repo: Path, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        await experiment(repo, GOOD_DIFF, _NoSandbox(), **options)


# -- applying to the repository ----------------------------------------------------------------


def test_apply_then_rollback_restores_the_files_byte_for_byte(repo: Path) -> None:
    (repo / "data.bin").write_bytes(b"\x00\x01\xfe\xff")
    (repo / "win.txt").write_bytes(b"line1\r\nline2")  # CRLF, no newline at the end
    (repo / "run.sh").write_text("#!/bin/sh\n")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "more")
    diff = diff_of(
        repo,
        {
            "calc.py": MODULE.replace("a + b", "b + a"),
            "win.txt": b"LINE1\r\nline2",
            "data.bin": None,
            "pkg/created.py": "created = True\n",
        },
        chmod={"run.sh": 0o755},
    )
    before = files_of(repo)
    baseline = apply_to_repository(repo, diff)
    assert set(baseline.paths) == {"calc.py", "data.bin", "pkg/created.py", "run.sh", "win.txt"}
    assert baseline.head == git(repo, "rev-parse", "HEAD").strip()
    assert (repo / "pkg" / "created.py").read_text() == "created = True\n"
    assert not (repo / "data.bin").exists() and os.access(repo / "run.sh", os.X_OK)
    recorded = Baseline.from_dict(json.loads(json.dumps(baseline.to_dict())))
    assert set(rollback(repo, recorded)) == set(baseline.paths)
    assert files_of(repo) == before
    assert not (repo / "pkg").exists()  # the directory the diff created went too
    assert git(repo, "status", "--porcelain") == ""
    assert rollback(repo, recorded) == ()


def test_apply_of_a_diff_that_does_not_apply_changes_nothing(repo: Path) -> None:
    with pytest.raises(DiffFailed, match="patch does not apply"):
        apply_to_repository(repo, STALE_DIFF)
    assert (repo / "calc.py").read_text() == MODULE


def test_apply_in_a_directory_without_git_records_no_head(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "calc.py").write_text(MODULE)
    baseline = apply_to_repository(plain, GOOD_DIFF)
    assert baseline.head is None
    assert rollback(plain, baseline) == ("calc.py",)
    assert (plain / "calc.py").read_text() == MODULE


def test_a_baseline_rolls_back_only_its_own_repository(repo: Path, tmp_path: Path) -> None:
    baseline = apply_to_repository(repo, GOOD_DIFF)
    other = tmp_path / "other"
    other.mkdir()
    with pytest.raises(UsageError, match="recorded in"):
        rollback(other, baseline)


class _NoSandbox:
    """A sandbox that cannot run anything."""

    async def run(self, *args: Any, **kwargs: Any) -> Any:
        raise SandboxUnavailable("bubblewrap cannot create a namespace here")
