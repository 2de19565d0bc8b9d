"""What an experiment found: its two test runs, the figures compared, and the verdict.

Everything here is frozen and turns into JSON-friendly values with `to_dict()`: that is what
gets recorded and published.

The diff's author controls the candidate's run, output and exit status included; the
baseline runs without the diff. So the candidate's counts must match the baseline's tests:
when the diff changes no test file, the candidate runs the tests the baseline ran (as many,
by the same names when the baseline named them); and when the baseline named every test,
the candidate names some of them. Counts that do not match are not trusted (the exit status
decides instead, see `reports.distrusted`). A verdict whose runs carry warnings is never
`merge` (it becomes `merge_with_adaptations`: a human looks), and a `merge` that rests on what
the candidate's run wrote says so in `warnings`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from fractions import Fraction
from pathlib import PurePosixPath
from typing import Any

from singularity.genesis.experiments.recommendation import Recommendation, Verdict, recommend
from singularity.genesis.experiments.reports import (
    EXIT_STATUS_CASE,
    TestOutcome,
    TestReport,
    distrusted,
)

__all__ = ["ExperimentOutcome", "ExperimentStatus", "Measurement", "TestRun", "measure"]


class ExperimentStatus(StrEnum):
    """How far an experiment got."""

    COMPLETED = "completed"
    DIFF_FAILED = "diff_failed"
    SETUP_FAILED = "setup_failed"


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
        passing = [name for name, o in baseline.outcomes().items() if o is TestOutcome.PASSED]
        regressed = tuple(name for name in passing if after.get(name) is not TestOutcome.PASSED)
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
    not apply), `reason` that rule's condition or what went wrong. `basis` is what the
    candidate's counts rest on; `warnings` what the reviewer must know before trusting them.
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
    basis: str | None = None
    warnings: tuple[str, ...] = ()
    # The setup step the runs had (what it installs, whether it came from the cache), or of
    # the one that failed, with its output; None when the repository needed nothing installed.
    environment: dict[str, Any] | None = None

    @classmethod
    def completed(
        cls,
        baseline: TestRun,
        candidate: TestRun,
        llm_reduction: float,
        paths: tuple[str, ...],
    ) -> ExperimentOutcome:
        """The outcome of two runs, measured and judged."""
        candidate = _matched(baseline, candidate, paths)
        measured = measure(baseline.report, candidate.report)
        verdict = recommend(measured.success_rate, measured.regression, llm_reduction)
        verdict, warnings = _judged(verdict, baseline.report, candidate.report)
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
            basis=candidate.report.basis,
            warnings=warnings,
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

    @classmethod
    def setup_failed(
        cls, phase: str, reason: str, environment: dict[str, Any], llm_reduction: float
    ) -> ExperimentOutcome:
        """The outcome of a setup step that failed on one tree: rollback, no test run."""
        return cls(
            ExperimentStatus.SETUP_FAILED,
            Recommendation.ROLLBACK,
            None,
            f"the {phase}'s environment could not be set up: {reason}",
            None,
            None,
            None,
            (),
            llm_reduction,
            (),
            None,
            None,
            error=reason,
            environment=environment,
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
            "basis": self.basis,
            "warnings": list(self.warnings),
            "baseline": self.baseline.to_dict() if self.baseline else None,
            "candidate": self.candidate.to_dict() if self.candidate else None,
            "environment": self.environment,
        }


# Paths whose change may change which tests run: tests, and the runners' configuration.
_RUNNER_FILES = {"makefile", "pyproject.toml", "setup.cfg", "tox.ini", "noxfile.py", "package.json"}


def _changes_tests(paths: tuple[str, ...]) -> bool:
    """Whether the diff touches a test file or a runner's configuration (by name)."""
    for path in paths:
        parts = [part.lower() for part in PurePosixPath(path).parts]
        if parts[-1:] and parts[-1] in _RUNNER_FILES:
            return True
        if any("test" in part or "spec" in part for part in parts):
            return True
    return False


def _matched(baseline: TestRun, candidate: TestRun, paths: tuple[str, ...]) -> TestRun:
    """The candidate's run, its counts distrusted when they cannot be the baseline's tests."""
    if candidate.report.basis == "exit status":
        return candidate  # nothing read from what the run wrote
    before, after = _tests(baseline.report), _tests(candidate.report)
    reasons = []
    if baseline.report.complete and before and not before & after:
        reasons.append(
            f"the baseline named its {len(before)} tests; the candidate names none of them"
        )
    if not _changes_tests(paths):
        counts = (_count(candidate.report), _count(baseline.report))
        if counts[0] != counts[1]:
            reasons.append(
                "the candidate counts {} tests, the baseline {}, and the diff changes no "
                "test file".format(*counts)
            )
        elif baseline.report.complete and (new := sorted(after - before)):
            reasons.append(f"the candidate names tests the baseline never ran ({new[0]}, ...)")
    if not reasons:
        return candidate
    return replace(candidate, report=distrusted(candidate.report, candidate.exit_code, reasons))


def _tests(report: TestReport) -> set[str]:
    return {name for name in report.outcomes() if name != EXIT_STATUS_CASE}


def _count(report: TestReport) -> int:
    """How many tests ran (the failing case added for the exit status is not one)."""
    extra = EXIT_STATUS_CASE in report.outcomes()
    return report.total + report.skipped - int(extra)


def _judged(
    verdict: Verdict, baseline: TestReport, candidate: TestReport
) -> tuple[Verdict, tuple[str, ...]]:
    """The verdict, no `merge` when a run is in doubt, and what the reviewer must know."""
    warnings = [
        f"{phase}: {warning}"
        for phase, report in (("baseline", baseline), ("candidate", candidate))
        for warning in report.warnings
    ]
    if verdict.recommendation is Recommendation.MERGE and warnings:
        reason = f"{verdict.reason}; merge withheld: the test results are in doubt"
        verdict = Verdict(Recommendation.MERGE_WITH_ADAPTATIONS, verdict.rule, reason)
    elif verdict.recommendation is Recommendation.MERGE and candidate.basis != "exit status":
        warnings.append(
            f"merge rests only on the {candidate.basis} the candidate's run wrote: the code "
            "under test could have written it"
        )
    return verdict, tuple(warnings)
