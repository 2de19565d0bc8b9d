"""Test runs read for counts and per-test outcomes: unittest, pytest, node, JUnit, exit codes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from singularity.genesis.experiments.reports import (
    EXIT_STATUS_CASE,
    MAX_JUNIT_BYTES,
    TestOutcome,
    TestReport,
    distrusted,
    parse_junit,
    parse_output,
    report_for_run,
)

# What `python3 -m unittest -v` (3.11) prints for a module with one test of each kind.
UNITTEST_VERBOSE = """\
test_err (test_u.C.test_err) ... ERROR
test_fail (test_u.C.test_fail) ... FAIL
test_ok (test_u.C.test_ok)
Docstring line. ... ok
test_print (test_u.C.test_print) ... noise
ok
test_skip (test_u.C.test_skip) ... skipped 'why'
test_xf (test_u.C.test_xf) ... expected failure
test_xs (test_u.C.test_xs) ... unexpected success

======================================================================
ERROR: test_err (test_u.C.test_err)
----------------------------------------------------------------------
RuntimeError: x

----------------------------------------------------------------------
Ran 7 tests in 0.001s

FAILED (failures=1, errors=1, skipped=1, expected failures=1, unexpected successes=1)
"""

PYTEST_VERBOSE = """\
============================= test session starts ==============================
test_p.py::test_a PASSED                                                 [ 14%]
test_p.py::test_b FAILED                                                 [ 28%]
test_p.py::test_c SKIPPED (unconditional skip)                           [ 42%]
test_p.py::test_d XFAIL                                                  [ 57%]
test_p.py::test_e[a b] PASSED                                            [ 71%]
test_p.py::test_e[c] PASSED                                              [ 85%]
test_p.py::test_f ERROR                                                  [100%]
=========================== short test summary info ============================
FAILED test_p.py::test_b - assert 0
ERROR test_p.py::test_f - RuntimeError
========== 1 failed, 3 passed, 1 skipped, 1 xfailed, 1 error in 0.04s ==========
"""

NODE_TAP = """\
TAP version 13
# Subtest: adds
ok 1 - adds
  ---
  duration_ms: 0.5
  ...
# Subtest: fails
not ok 2 - fails
  ---
  failureType: 'testCodeFailure'
  ...
# Subtest: skipped
ok 3 - skipped # SKIP
# Subtest: suite
    # Subtest: inner ok
    ok 1 - inner ok
    1..1
ok 4 - suite
  ---
  duration_ms: 1
  type: 'suite'
  ...
# Subtest: parent
    # Subtest: child
    ok 1 - child
    1..1
ok 5 - parent
1..5
# tests 6
# suites 1
# pass 4
# fail 1
# cancelled 0
# skipped 1
# todo 0
# duration_ms 256.9
"""

JUNIT = b"""<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" tests="4">
<testcase classname="test_m" name="test_a" time="0.001"/>
<testcase classname="test_m" name="test_b"><failure message="no">trace</failure></testcase>
<testcase classname="test_m" name="test_c"><error message="boom"/></testcase>
<testcase classname="test_m" name="test_d"><skipped/></testcase>
</testsuite></testsuites>
"""


def outcomes(report: TestReport) -> dict[str, str]:
    return {name: outcome.value for name, outcome in report.outcomes().items()}


def test_unittest_verbose_gives_counts_and_every_test() -> None:
    report = parse_output(UNITTEST_VERBOSE)
    assert report is not None and report.source == "unittest"
    # The expected failure passes; the unexpected success fails, as unittest decides.
    assert (report.passed, report.failed, report.errors, report.skipped) == (3, 2, 1, 1)
    assert report.total == 6 and report.success_rate == 0.5
    assert outcomes(report) == {
        "test_u.C.test_err": "error",
        "test_u.C.test_fail": "failed",
        "test_u.C.test_ok": "passed",  # its docstring line came between name and status
        "test_u.C.test_print": "passed",  # it printed after the dots
        "test_u.C.test_skip": "skipped",
        "test_u.C.test_xf": "passed",
        "test_u.C.test_xs": "failed",
    }
    assert report.complete


def test_unittest_without_v_gives_counts_only() -> None:
    report = parse_output("..F\n------\nRan 3 tests in 0.002s\n\nFAILED (failures=1)\n")
    assert report is not None
    assert (report.passed, report.failed, report.total) == (2, 1, 3)
    assert report.cases == () and not report.complete


def test_a_subtest_failure_fails_its_test() -> None:
    output = (
        "test_sub (m.C.test_sub) ... \n  test_sub (m.C.test_sub) (i=1) ... FAIL\n"
        "Ran 1 test in 0.001s\n\nFAILED (failures=1)\n"
    )
    report = parse_output(output)
    assert report is not None and outcomes(report) == {"m.C.test_sub": "failed"}


def test_older_unittest_names_are_completed_with_the_method() -> None:
    report = parse_output("test_a (m.C) ... ok\n\nRan 1 test in 0.0s\n\nOK\n")
    assert report is not None and outcomes(report) == {"m.C.test_a": "passed"}
    assert (report.passed, report.total) == (1, 1) and report.complete


def test_pytest_summary_and_verbose_lines() -> None:
    report = parse_output(PYTEST_VERBOSE)
    assert report is not None and report.source == "pytest"
    assert (report.passed, report.failed, report.errors, report.skipped) == (4, 1, 1, 1)
    assert outcomes(report)["test_p.py::test_e[a b]"] == "passed"
    assert outcomes(report)["test_p.py::test_d"] == "passed"  # xfail: expected
    assert outcomes(report)["test_p.py::test_f"] == "error"
    assert report.complete


def test_pytest_quiet_summary_without_per_test_lines() -> None:
    report = parse_output("..F\n1 failed, 2 passed, 3 warnings in 0.10s\n")
    assert report is not None
    assert (report.passed, report.failed, report.skipped) == (2, 1, 0)
    assert not report.complete


def test_pytest_short_summary_names_only_some_tests() -> None:
    output = "FAILED t.py::test_b - assert 0\n1 failed, 5 passed in 0.1s\n"
    report = parse_output(output)
    assert report is not None and outcomes(report) == {"t.py::test_b": "failed"}
    assert not report.complete  # five passing tests are not named


def test_node_tap_counts_tests_not_suites() -> None:
    report = parse_output(NODE_TAP)
    assert report is not None and report.source == "node"
    assert (report.passed, report.failed, report.skipped, report.total) == (4, 1, 1, 5)
    assert outcomes(report) == {
        "adds": "passed",
        "fails": "failed",
        "skipped": "skipped",
        "suite > inner ok": "passed",
        "parent > child": "passed",
        "parent": "passed",
    }
    assert report.complete


def test_node_spec_reporter_summary() -> None:
    output = "\u2139 tests 3\n\u2139 suites 0\n\u2139 pass 2\n\u2139 fail 0\n\u2139 cancelled 1\n"
    report = parse_output(output)
    assert report is not None and (report.passed, report.failed, report.total) == (2, 1, 3)


def test_two_suites_in_one_command_are_added_up() -> None:
    report = parse_output("Ran 2 tests in 0.0s\n\nOK\n" + "# tests 1\n# pass 0\n# fail 1\n")
    assert report is not None and report.source == "unittest+node"
    assert (report.passed, report.failed) == (2, 1)


def test_unknown_output_is_one_test_decided_by_the_exit_code() -> None:
    assert parse_output("all good\n") is None
    passed = report_for_run("all good\n", 0)
    failed = report_for_run("", 3)
    killed = report_for_run("", None)
    assert (passed.source, passed.passed, passed.total, passed.success_rate) == (
        "exit_code",
        1,
        1,
        1.0,
    )
    assert (failed.passed, failed.failed, failed.success_rate) == (0, 1, 0.0)
    assert (killed.passed, killed.failed) == (0, 1)


def test_a_failing_command_whose_tests_all_passed_gets_a_failing_case() -> None:
    report = report_for_run("test_a (m.C.test_a) ... ok\nRan 1 test in 0s\n\nOK\n", 1)
    assert (report.passed, report.failed) == (1, 1)
    assert outcomes(report) == {"m.C.test_a": "passed", EXIT_STATUS_CASE: "failed"}
    assert report.complete


def test_no_tests_is_no_success() -> None:
    report = report_for_run("\nRan 0 tests in 0.000s\n\nOK\n", 0)
    assert report.total == 0 and report.success_rate == 0.0


def test_junit_report_gives_every_test_case() -> None:
    report = parse_junit(JUNIT)
    assert (report.source, report.passed, report.failed, report.errors, report.skipped) == (
        "junit",
        1,
        1,
        1,
        1,
    )
    assert outcomes(report) == {
        "test_m.test_a": "passed",
        "test_m.test_b": "failed",
        "test_m.test_c": "error",
        "test_m.test_d": "skipped",
    }
    assert report.complete


@pytest.mark.parametrize("xml", [b"not xml", b"<html/>"])
def test_what_is_not_junit_is_refused(xml: bytes) -> None:
    with pytest.raises(ValueError, match="not"):
        parse_junit(xml)


def test_a_named_junit_file_is_read_in_place_of_the_output(tmp_path: Path) -> None:
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "junit.xml").write_bytes(JUNIT)
    report = report_for_run(
        "Ran 9 tests in 0s\n\nOK\n", 1, tree=tmp_path, junit_path="reports/junit.xml"
    )
    assert report.source == "junit" and report.total == 3 and report.note is None


def test_a_junit_symlink_to_a_host_file_is_not_followed(tmp_path: Path) -> None:
    secret = tmp_path / "secret.xml"
    secret.write_bytes(JUNIT)
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "junit.xml").symlink_to(secret)
    (tree / "dir").symlink_to(tmp_path)
    for path in ("junit.xml", "dir/secret.xml"):
        report = report_for_run("", 0, tree=tree, junit_path=path)
        assert report.source == "exit_code" and report.passed == 1
        assert report.note is not None and path in report.note


def test_a_junit_file_that_is_too_large_missing_or_a_fifo_is_noted(tmp_path: Path) -> None:
    (tmp_path / "big.xml").write_bytes(b" " * (MAX_JUNIT_BYTES + 1))
    os.mkfifo(tmp_path / "fifo.xml")  # opened without blocking: nothing ever writes it
    notes = {
        path: report_for_run("", 0, tree=tmp_path, junit_path=path).note
        for path in ("big.xml", "fifo.xml", "absent.xml", "../outside.xml")
    }
    assert "larger than" in str(notes["big.xml"])
    assert "not a regular file" in str(notes["fifo.xml"])
    assert all(note is not None for note in notes.values())


def test_a_report_is_json_friendly_with_total_and_success_rate() -> None:
    report = parse_output("test_a (m.C.test_a) ... ok\nRan 1 test in 0s\n\nOK\n")
    assert report is not None
    assert report.to_dict() == {
        "source": "unittest",
        "basis": "runner output",
        "passed": 1,
        "failed": 0,
        "errors": 0,
        "skipped": 0,
        "total": 1,
        "success_rate": 1.0,
        "cases_complete": True,
        "cases": [{"name": "m.C.test_a", "outcome": "passed"}],
        "note": None,
        "warnings": [],
    }
    assert TestOutcome("error") is TestOutcome.ERROR


def test_real_unittest_output_is_read(tmp_path: Path) -> None:
    """Guards against the format drifting in the Python that runs the tests."""
    (tmp_path / "test_m.py").write_text(
        "import unittest\n"
        "class C(unittest.TestCase):\n"
        "    def test_a(self): pass\n"
        "    def test_b(self): self.fail('no')\n"
        "    @unittest.skip('later')\n"
        "    def test_c(self): pass\n"
    )
    ran = subprocess.run(
        [sys.executable, "-m", "unittest", "-v"], cwd=tmp_path, capture_output=True, text=True
    )
    report = report_for_run(ran.stdout + ran.stderr, ran.returncode)
    assert outcomes(report) == {
        "test_m.C.test_a": "passed",
        "test_m.C.test_b": "failed",
        "test_m.C.test_c": "skipped",
    }
    assert report.complete and report.success_rate == 0.5


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_real_node_test_output_is_read(tmp_path: Path) -> None:
    (tmp_path / "m.test.mjs").write_text(
        "import test from 'node:test';\n"
        "test('a', () => {});\n"
        "test('b', () => { throw new Error('no'); });\n"
    )
    ran = subprocess.run(["node", "--test"], cwd=tmp_path, capture_output=True, text=True)
    report = report_for_run(ran.stdout + ran.stderr, ran.returncode)
    assert outcomes(report) == {"a": "passed", "b": "failed"} and report.complete


# -- what the counts rest on, and when they are not trusted --------------------------------------


def test_a_report_says_what_its_counts_rest_on(tmp_path: Path) -> None:
    (tmp_path / "junit.xml").write_bytes(JUNIT)
    assert report_for_run(UNITTEST_VERBOSE, 1).basis == "runner output"
    assert report_for_run("all good\n", 0).basis == "exit status"
    assert report_for_run("", 1, tree=tmp_path, junit_path="junit.xml").basis == "junit report"
    assert report_for_run(UNITTEST_VERBOSE, 1).warnings == ()


@pytest.mark.parametrize(
    ("output", "exit_code", "passed"),
    [
        # A fake summary before the real one, which reports failures: the exit status decides.
        ("Ran 50 tests in 0.0s\n\nOK\n" + "Ran 3 tests in 0.0s\n\nFAILED (failures=2)\n", 1, 0),
        # Two runners' summaries: the same.
        ("Ran 2 tests in 0.0s\n\nOK\n" + "===== 50 passed in 0.12s =====\n", 0, 1),
        # Summaries that hold failures never pass, whatever the exit status says.
        ("Ran 1 test in 0.0s\n\nFAILED (failures=1)\n" + "Ran 50 tests in 0.0s\n\nOK\n", 0, 0),
    ],
)
def test_several_summaries_are_not_trusted(output: str, exit_code: int, passed: int) -> None:
    report = report_for_run(output, exit_code)
    assert (report.basis, report.passed, report.total) == ("exit status", passed, 1)
    assert "test summaries" in report.warnings[0] and "not trusted" in report.warnings[-1]


def test_more_failing_tests_named_than_counted_is_not_trusted() -> None:
    output = "test_a (m.C.test_a) ... FAIL\ntest_b (m.C.test_b) ... ok\nRan 2 tests in 0s\n\nOK\n"
    report = report_for_run(output, 0)
    assert (report.basis, report.passed, report.failed) == ("exit status", 0, 1)
    assert any("names more failed tests" in warning for warning in report.warnings)


def test_exit_status_zero_with_failing_tests_is_flagged_and_the_counts_kept() -> None:
    report = report_for_run("Ran 4 tests in 0s\n\nFAILED (failures=1)\n", 0)
    assert (report.basis, report.passed, report.failed) == ("runner output", 3, 1)
    assert report.warnings == ("the command exited 0 although 1 tests failed",)


def test_a_distrusted_report_can_lower_a_run_never_raise_it() -> None:
    failing = report_for_run("Ran 4 tests in 0s\n\nFAILED (failures=1)\n", 0)
    assert distrusted(failing, 0, ["why"]).passed == 0
    passing = report_for_run("Ran 4 tests in 0s\n\nOK\n", 0)
    assert distrusted(passing, 0, ["why"]).passed == 1
    assert distrusted(passing, 1, ["why"]).passed == 0
    assert distrusted(passing, None, ["why"]).warnings[0] == "why"
