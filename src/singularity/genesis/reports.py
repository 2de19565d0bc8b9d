"""What a test run says about its tests: counts, and per-test outcomes where known.

A JUnit XML report, when the request names one, is read in place of the output (from the
workspace, without following symlinks, and bounded: a test may plant a link to a host file
there). Otherwise the output (stdout and stderr) is read in every format `report_formats`
knows, and what each finds is added up, so a command that runs two suites counts both.
Output in none of them counts as one test: passed when the command exited 0, else failed.
A command that fails while every test it reported passed (a crash after the summary, a
failing second command) gets one failing case more, "<exit status>".
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from singularity.genesis.paths import UnsafePath, read_regular
from singularity.genesis.report_formats import parse_junit, parse_output
from singularity.genesis.report_model import Outcome, TestCase, TestReport

__all__ = [
    "EXIT_STATUS_CASE",
    "MAX_JUNIT_BYTES",
    "Outcome",
    "TestCase",
    "TestReport",
    "parse_junit",
    "parse_output",
    "report_for_run",
]

MAX_JUNIT_BYTES = 16 << 20
EXIT_STATUS_CASE = "<exit status>"


def report_for_run(
    output: str, exit_code: int | None, *, tree: Path | None = None, junit_path: str | None = None
) -> TestReport:
    """A run's report: from its JUnit file in `tree` if named and readable, else its output."""
    report: TestReport | None = None
    note = None
    if junit_path is not None and tree is not None:
        try:
            report = parse_junit(read_regular(tree, junit_path, MAX_JUNIT_BYTES))
        except (OSError, UnsafePath, ValueError) as exc:
            note = f"JUnit report {junit_path!r} not used: {exc}"
    if report is None:
        report = parse_output(output) or _by_exit_code(exit_code)
    report = _with_exit_status(report, exit_code)
    return replace(report, note=note) if note else report


def _by_exit_code(exit_code: int | None) -> TestReport:
    return TestReport("exit_code", passed=int(exit_code == 0), failed=int(exit_code != 0))


def _with_exit_status(report: TestReport, exit_code: int | None) -> TestReport:
    """One failing case more when the command failed although no test did."""
    if exit_code == 0 or report.failed or report.errors or report.source == "exit_code":
        return report
    case = TestCase(EXIT_STATUS_CASE, Outcome.FAILED)
    return replace(report, failed=report.failed + 1, cases=(*report.cases, case))
