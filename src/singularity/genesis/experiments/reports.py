"""What a test run says about its tests: counts, and per-test outcomes where known.

A JUnit XML report, when the request names one, is read in place of the output (from the
workspace, without following symlinks, and bounded: a test may plant a link to a host file
there). Otherwise the output (stdout and stderr) is read in every format `report_formats`
knows. Output in none of them counts as one test: passed when the command exited 0, else
failed. A command that fails while every test it reported passed (a crash after the summary,
a failing second command) gets one failing case more, "<exit status>".

The code under test runs in the same process as its runner: it can print a runner's summary
or write a JUnit file itself, then leave with any exit status. Counts are therefore trusted
only when nothing contradicts them; otherwise the exit status decides (see `distrusted`):

- the output holds more than one runner summary (a fake one beside the real one);
- the output names more tests of an outcome than its summary counts.

A command that exited 0 although its counts hold failing tests keeps its counts (they
cannot flatter it) with a warning. Every reason stays in the report's `warnings`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from singularity.genesis.experiments.report_formats import parse_junit, parse_output, summary_count
from singularity.genesis.experiments.report_model import TestCase, TestOutcome, TestReport
from singularity.genesis.paths import UnsafePath, read_regular

__all__ = [
    "EXIT_STATUS_CASE",
    "MAX_JUNIT_BYTES",
    "TestCase",
    "TestOutcome",
    "TestReport",
    "by_exit_status",
    "distrusted",
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
        report = _from_output(output, exit_code)
    report = _with_exit_status(report, exit_code)
    if exit_code == 0 and (report.failed or report.errors) and report.source != "exit_code":
        # Counts lower than the exit status claims are kept: they cannot flatter the run.
        bad = f"the command exited 0 although {report.failed + report.errors} tests failed"
        report = replace(report, warnings=(*report.warnings, bad))
    return replace(report, note=note) if note else report


def by_exit_status(exit_code: int | None, warnings: Sequence[str] = ()) -> TestReport:
    """One test, passed when the command exited 0."""
    return _one_test(exit_code == 0, warnings)


def distrusted(report: TestReport, exit_code: int | None, reasons: Sequence[str]) -> TestReport:
    """The exit status's report in place of `report`, whose counts are in doubt for `reasons`.

    It passes only when the exit status and the doubted report both say so (no test counted
    or named as failing): a doubted report can lower a run's result, never raise it.
    """
    counted = f"{report.passed} passed of {report.total}"
    ignored = f"{report.basis} ({counted}) not trusted; exit status {exit_code} decides"
    named = {case.outcome for case in report.cases}
    failing = report.failed or report.errors or named & {TestOutcome.FAILED, TestOutcome.ERROR}
    passed = exit_code == 0 and not failing
    return _one_test(passed, (*report.warnings, *reasons, ignored))


def _one_test(passed: bool, warnings: Sequence[str]) -> TestReport:
    return TestReport("exit_code", int(passed), int(not passed), warnings=tuple(warnings))


def _from_output(output: str, exit_code: int | None) -> TestReport:
    report = parse_output(output)
    if report is None:
        return by_exit_status(exit_code)
    doubts = _doubts(report, output)
    return distrusted(report, exit_code, doubts) if doubts else report


def _doubts(report: TestReport, output: str) -> list[str]:
    """Why the counts read from `output` cannot be taken as they are (nothing when they can)."""
    doubts = []
    if (summaries := summary_count(output)) > 1:
        doubts.append(f"the output holds {summaries} test summaries ({report.source}), not one")
    named = Counter(case.outcome for case in report.cases)
    counted = {
        TestOutcome.PASSED: report.passed,
        TestOutcome.FAILED: report.failed,
        TestOutcome.ERROR: report.errors,
        TestOutcome.SKIPPED: report.skipped,
    }
    if over := [outcome.value for outcome in TestOutcome if named[outcome] > counted[outcome]]:
        doubts.append(f"the output names more {'/'.join(over)} tests than its summary counts")
    return doubts


def _with_exit_status(report: TestReport, exit_code: int | None) -> TestReport:
    """One failing case more when the command failed although no test did."""
    if exit_code == 0 or report.failed or report.errors or report.source == "exit_code":
        return report
    case = TestCase(EXIT_STATUS_CASE, TestOutcome.FAILED)
    return replace(report, failed=report.failed + 1, cases=(*report.cases, case))
