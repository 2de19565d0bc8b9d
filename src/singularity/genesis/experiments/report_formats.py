"""Test runners' output read for counts, and per-test outcomes where it names the tests.

- Python unittest: the "Ran N tests" / "OK" or "FAILED (failures=, errors=)" summary, and
  the `-v` lines for per-test outcomes;
- pytest: its summary line, and the `-v` or `-rA` lines for per-test outcomes;
- node --test: the "# tests / # pass / # fail" summary of its TAP reporter (per-test from
  its "ok" lines), or the same counts from its spec reporter;
- a JUnit XML report: every <testcase>.

An expected failure counts as passed and an unexpected success as failed, as unittest and
pytest decide whether a run succeeded.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from xml.etree import ElementTree

from singularity.genesis.experiments.report_model import TestCase, TestOutcome, TestReport

__all__ = ["parse_junit", "parse_output", "summary_count"]


def parse_output(output: str) -> TestReport | None:
    """What the output's test summaries say, added up; None when it holds none."""
    found = [
        report
        for report in (_parse_unittest(output), _parse_pytest(output), _parse_node(output))
        if report is not None
    ]
    return _sum(found) if found else None


def summary_count(output: str) -> int:
    """How many runner summaries the output holds, of every runner known (a run prints one)."""
    return (
        len(_UNITTEST_SUMMARY.findall(output))
        + len(_PYTEST_SUMMARY.findall(output))
        + sum(word == "tests" for word, _ in _NODE_COUNT.findall(output))
    )


def parse_junit(xml: bytes) -> TestReport:
    """Every <testcase> of a JUnit XML report; ValueError when it is not one."""
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError as exc:
        raise ValueError(f"not XML ({exc})") from None
    if root.tag not in ("testsuites", "testsuite"):
        raise ValueError(f"not a JUnit report (root element <{root.tag}>)")
    cases = []
    for element in root.iter("testcase"):
        name, classname = element.get("name", ""), element.get("classname", "")
        tags = {child.tag for child in element}
        outcome = (
            TestOutcome.FAILED
            if "failure" in tags
            else TestOutcome.ERROR
            if "error" in tags
            else TestOutcome.SKIPPED
            if "skipped" in tags
            else TestOutcome.PASSED
        )
        cases.append(TestCase(f"{classname}.{name}" if classname else name, outcome))
    return _from_cases("junit", cases)


# -- Python unittest ---------------------------------------------------------------------------

_UNITTEST_SUMMARY = re.compile(
    r"^Ran (\d+) tests? in \S+\s*\n(?:\s*\n)?(OK|FAILED|NO TESTS RAN)(?: \(([^)]*)\))?\s*$",
    re.MULTILINE,
)
_UNITTEST_TEST = re.compile(r"^\s*(\w+) \(([\w.]+)\)(?: [\[(].*)?$")  # a subtest adds "(i=1)"
_UNITTEST_STATUS = {
    "ok": TestOutcome.PASSED,
    "FAIL": TestOutcome.FAILED,
    "ERROR": TestOutcome.ERROR,
    "expected failure": TestOutcome.PASSED,
    "unexpected success": TestOutcome.FAILED,
}


def _parse_unittest(output: str) -> TestReport | None:
    summaries = list(_UNITTEST_SUMMARY.finditer(output))
    if not summaries:
        return None
    passed = failed = errors = skipped = 0
    for summary in summaries:
        found = re.findall(r"([a-z ]+)=(\d+)", summary.group(3) or "")
        details = {key.strip(): int(value) for key, value in found}
        failures, unexpected = details.get("failures", 0), details.get("unexpected successes", 0)
        failed += failures + unexpected
        errors += details.get("errors", 0)
        skipped += details.get("skipped", 0)
        not_passed = failures + unexpected + details.get("errors", 0) + details.get("skipped", 0)
        passed += max(0, int(summary.group(1)) - not_passed)
    return TestReport("unittest", passed, failed, errors, skipped, _unittest_cases(output))


def _unittest_cases(output: str) -> tuple[TestCase, ...]:
    cases: dict[str, TestOutcome] = {}
    pending: str | None = None  # the test whose status is still to come
    for line in output.splitlines():
        description, dots, status = line.partition(" ... ")
        if test := _UNITTEST_TEST.match(description if dots else line):
            pending = _unittest_id(*test.groups())
            if not dots:
                continue  # its docstring's first line and its status follow
        if pending is None:
            continue
        # With nothing known after the dots, the test wrote output there: its status follows.
        if (outcome := _unittest_status(status if dots else line)) is not None:
            cases[pending] = outcome
            pending = None
    return tuple(TestCase(name, outcome) for name, outcome in cases.items())


def _unittest_id(method: str, where: str) -> str:
    # Python 3.11 prints "test_x (module.Class.test_x)", older ones "test_x (module.Class)".
    return where if where.endswith(f".{method}") else f"{where}.{method}"


def _unittest_status(text: str) -> TestOutcome | None:
    text = text.strip()
    if text.startswith("skipped"):
        return TestOutcome.SKIPPED
    return _UNITTEST_STATUS.get(text)


# -- pytest ------------------------------------------------------------------------------------

_PYTEST_WORDS = "passed|failed|errors?|skipped|xfailed|xpassed|deselected|warnings?|rerun"
_PYTEST_SUMMARY = re.compile(
    rf"^=*\s*((?:\d+ (?:{_PYTEST_WORDS})(?:, )?)+) in [\d.]+s(?: \([\d:]+\))?\s*=*\s*$",
    re.MULTILINE,
)
_PYTEST_VERBOSE = re.compile(r"^(\S+?::.+?) (PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)\b")
_PYTEST_SHORT = re.compile(r"^(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS) (\S+?::.+?)(?: - .*)?$")
_PYTEST_STATUS = {
    "PASSED": TestOutcome.PASSED,
    "XFAIL": TestOutcome.PASSED,
    "XPASS": TestOutcome.PASSED,
    "FAILED": TestOutcome.FAILED,
    "ERROR": TestOutcome.ERROR,
    "SKIPPED": TestOutcome.SKIPPED,
}


def _parse_pytest(output: str) -> TestReport | None:
    counts: dict[str, int] = {}
    summaries = _PYTEST_SUMMARY.findall(output)
    for summary in summaries:
        for number, word in re.findall(r"(\d+) ([a-z]+)", summary):
            counts[word] = counts.get(word, 0) + int(number)
    if not summaries:
        return None
    cases: dict[str, TestOutcome] = {}
    for line in output.splitlines():
        if verbose := _PYTEST_VERBOSE.match(line):
            cases[verbose.group(1)] = _PYTEST_STATUS[verbose.group(2)]
        elif short := _PYTEST_SHORT.match(line):
            cases[short.group(2)] = _PYTEST_STATUS[short.group(1)]
    return TestReport(
        "pytest",
        passed=sum(counts.get(word, 0) for word in ("passed", "xfailed", "xpassed")),
        failed=counts.get("failed", 0),
        errors=counts.get("error", 0) + counts.get("errors", 0),
        skipped=counts.get("skipped", 0),
        cases=tuple(TestCase(name, outcome) for name, outcome in cases.items()),
    )


# -- node --test -------------------------------------------------------------------------------

_NODE_COUNT = re.compile(r"^(?:#|\u2139) (tests|pass|fail|cancelled|skipped|todo) (\d+)\s*$", re.M)
_TAP_SUBTEST = re.compile(r"^( *)# Subtest: (.*)$")
_TAP_RESULT = re.compile(r"^( *)(ok|not ok) \d+ - (.*?)(?: # (SKIP|TODO)\b.*)?$")


def _parse_node(output: str) -> TestReport | None:
    counts: dict[str, int] = {}
    for word, number in _NODE_COUNT.findall(output):
        counts[word] = counts.get(word, 0) + int(number)
    if "tests" not in counts or "pass" not in counts:
        return None
    return TestReport(
        "node",
        passed=counts["pass"],
        failed=counts.get("fail", 0) + counts.get("cancelled", 0),
        skipped=counts.get("skipped", 0) + counts.get("todo", 0),
        cases=_tap_cases(output),
    )


def _tap_cases(output: str) -> tuple[TestCase, ...]:
    cases: list[TestCase] = []
    parents: list[str] = []
    for line in output.splitlines():
        if subtest := _TAP_SUBTEST.match(line):
            level = len(subtest.group(1)) // 4
            parents[level:] = [subtest.group(2)]
        elif result := _TAP_RESULT.match(line):
            indent, verdict, name, directive = result.groups()
            path = [*parents[: len(indent) // 4], name]
            outcome = TestOutcome.PASSED if verdict == "ok" else TestOutcome.FAILED
            cases.append(TestCase(" > ".join(path), TestOutcome.SKIPPED if directive else outcome))
        elif line.strip() == "type: 'suite'" and cases:
            cases.pop()  # a describe() block: node counts its tests, not the block
    return tuple(cases)


# -- shared ------------------------------------------------------------------------------------


def _from_cases(source: str, cases: Iterable[TestCase]) -> TestReport:
    cases = tuple(cases)
    count = {outcome: sum(case.outcome is outcome for case in cases) for outcome in TestOutcome}
    return TestReport(
        source,
        passed=count[TestOutcome.PASSED],
        failed=count[TestOutcome.FAILED],
        errors=count[TestOutcome.ERROR],
        skipped=count[TestOutcome.SKIPPED],
        cases=cases,
    )


def _sum(reports: list[TestReport]) -> TestReport:
    return TestReport(
        "+".join(report.source for report in reports),
        passed=sum(report.passed for report in reports),
        failed=sum(report.failed for report in reports),
        errors=sum(report.errors for report in reports),
        skipped=sum(report.skipped for report in reports),
        cases=tuple(case for report in reports for case in report.cases),
    )
