"""Test outcomes: one test's, and the counts of a run, with what the output named.

A report's `basis` says what its counts rest on: a JUnit report or the runner's output
(both written by the run itself, so the code under test can forge them), or the exit status
alone. `warnings` say why the counts are in doubt; a report with warnings never earns a merge.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

__all__ = ["BASIS", "TestCase", "TestOutcome", "TestReport"]

# What a report's counts rest on, by its source; any runner's output is "runner output".
BASIS = {"junit": "junit report", "exit_code": "exit status"}
RUNNER_OUTPUT = "runner output"


class TestOutcome(StrEnum):
    """How one test ended."""

    __test__ = False  # not a pytest test class, though its name says Test

    PASSED = "passed"
    FAILED = "failed"
    ERROR = "error"
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)
class TestCase:
    """One test by name, with its outcome."""

    __test__ = False  # not a pytest test class, though its name says Test

    name: str
    outcome: TestOutcome

    def to_dict(self) -> dict[str, str]:
        """The case as JSON-friendly values."""
        return {"name": self.name, "outcome": self.outcome.value}


@dataclass(frozen=True, slots=True)
class TestReport:
    """Counts of one run; `cases` lists what the output named (maybe not every test)."""

    __test__ = False

    source: str
    passed: int
    failed: int
    errors: int = 0
    skipped: int = 0
    cases: tuple[TestCase, ...] = ()
    note: str | None = None
    warnings: tuple[str, ...] = ()

    @property
    def basis(self) -> str:
        """What the counts rest on: "junit report", "runner output" or "exit status"."""
        return BASIS.get(self.source, RUNNER_OUTPUT)

    @property
    def total(self) -> int:
        return self.passed + self.failed + self.errors

    @property
    def success_rate(self) -> float:
        return self.passed / self.total if self.total else 0.0

    @property
    def complete(self) -> bool:
        """Whether `cases` names every test counted, each once."""
        names = {case.name for case in self.cases}
        return bool(self.cases) and len(names) == len(self.cases) == self.total + self.skipped

    def outcomes(self) -> dict[str, TestOutcome]:
        """Each named test's outcome."""
        return {case.name: case.outcome for case in self.cases}

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-friendly values, with its total and success rate."""
        return {
            "source": self.source,
            "basis": self.basis,
            "passed": self.passed,
            "failed": self.failed,
            "errors": self.errors,
            "skipped": self.skipped,
            "total": self.total,
            "success_rate": self.success_rate,
            "cases_complete": self.complete,
            "cases": [case.to_dict() for case in self.cases],
            "note": self.note,
            "warnings": list(self.warnings),
        }
