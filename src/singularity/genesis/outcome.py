"""What an experiment found: its two test runs, the figures compared, and the verdict.

Everything here is frozen and turns into JSON-friendly values with `to_dict()`: that is what
gets recorded and published.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from fractions import Fraction
from typing import Any

from singularity.genesis.recommendation import Recommendation, recommend
from singularity.genesis.reports import Outcome, TestReport

__all__ = ["ExperimentOutcome", "ExperimentStatus", "Measurement", "TestRun", "measure"]


class ExperimentStatus(StrEnum):
    """How far an experiment got."""

    COMPLETED = "completed"
    DIFF_FAILED = "diff_failed"


@dataclass(frozen=True, slots=True)
class TestRun:
    """One run of the test command in the sandbox, and what its output said."""

    __test__ = False  # not a pytest test class, though its name says Test

    report: TestReport
    exit_code: int | None
    signal: int | None
    timed_out: bool
    cpu_exceeded: bool
    output_limited: bool
    output_truncated: bool
    wall_ms: float
    cpu_ms: float
    max_rss_kb: int
    stdout_tail: str
    stderr_tail: str

    def to_dict(self) -> dict[str, Any]:
        """The run's figures and its report's counts side by side, as JSON-friendly values."""
        return {
            "exit_code": self.exit_code,
            "signal": self.signal,
            "timed_out": self.timed_out,
            "cpu_exceeded": self.cpu_exceeded,
            "output_limited": self.output_limited,
            "output_truncated": self.output_truncated,
            "wall_ms": round(self.wall_ms, 3),
            "cpu_ms": round(self.cpu_ms, 3),
            "max_rss_kb": self.max_rss_kb,
            **self.report.to_dict(),
            "stdout_tail": self.stdout_tail,
            "stderr_tail": self.stderr_tail,
        }


@dataclass(frozen=True, slots=True)
class Measurement:
    """The candidate's success rate and its regression against the baseline.

    `basis` is "per_test" when both runs named every test, else "success_rate"; `regressed`
    names the baseline's passing tests that no longer pass (per-test basis only).
    """

    success_rate: float
    regression: float
    basis: str
    regressed: tuple[str, ...] = ()


def measure(baseline: TestReport, candidate: TestReport) -> Measurement:
    """Compare two runs (exactly, so that 19 passed of 20 is 0.95 against the rules)."""
    success = _rate(candidate)
    if baseline.complete and candidate.complete:
        after = candidate.outcomes()
        passing = [name for name, o in baseline.outcomes().items() if o is Outcome.PASSED]
        regressed = tuple(name for name in passing if after.get(name) is not Outcome.PASSED)
        share = Fraction(len(regressed), len(passing)) if passing else Fraction(0)
        return Measurement(float(success), float(share), "per_test", regressed)
    drop = max(Fraction(0), _rate(baseline) - success)
    return Measurement(float(success), float(drop), "success_rate")


def _rate(report: TestReport) -> Fraction:
    return Fraction(report.passed, report.total) if report.total else Fraction(0)


@dataclass(frozen=True, slots=True)
class ExperimentOutcome:
    """An experiment's result; a diff that did not apply has no runs and no figures.

    `rule` is the number of the recommendation rule that decided (None for a diff that did
    not apply), `reason` that rule's condition or what went wrong.
    """

    status: ExperimentStatus
    recommendation: Recommendation
    rule: int | None
    reason: str
    success_rate: float | None
    regression: float | None
    regression_basis: str | None
    regressed_tests: tuple[str, ...]
    llm_reduction: float
    paths: tuple[str, ...]
    baseline: TestRun | None
    candidate: TestRun | None
    error: str | None = None

    @classmethod
    def completed(
        cls,
        baseline: TestRun,
        candidate: TestRun,
        llm_reduction: float,
        paths: tuple[str, ...],
    ) -> ExperimentOutcome:
        """The outcome of two runs, measured and judged."""
        measured = measure(baseline.report, candidate.report)
        verdict = recommend(measured.success_rate, measured.regression, llm_reduction)
        return cls(
            ExperimentStatus.COMPLETED,
            verdict.recommendation,
            verdict.rule,
            verdict.reason,
            measured.success_rate,
            measured.regression,
            measured.basis,
            measured.regressed,
            llm_reduction,
            paths,
            baseline,
            candidate,
        )

    @classmethod
    def diff_failed(cls, reason: str, llm_reduction: float) -> ExperimentOutcome:
        """The outcome of a diff that does not apply: rollback, nothing run."""
        return cls(
            ExperimentStatus.DIFF_FAILED,
            Recommendation.ROLLBACK,
            None,
            f"the diff does not apply: {reason}",
            None,
            None,
            None,
            (),
            llm_reduction,
            (),
            None,
            None,
            error=reason,
        )

    def to_dict(self) -> dict[str, Any]:
        """The outcome as JSON-friendly values."""
        return {
            "status": self.status.value,
            "recommendation": self.recommendation.value,
            "rule": self.rule,
            "reason": self.reason,
            "success_rate": self.success_rate,
            "regression": self.regression,
            "regression_basis": self.regression_basis,
            "regressed_tests": list(self.regressed_tests),
            "llm_reduction": self.llm_reduction,
            "paths": list(self.paths),
            "error": self.error,
            "baseline": self.baseline.to_dict() if self.baseline else None,
            "candidate": self.candidate.to_dict() if self.candidate else None,
        }
