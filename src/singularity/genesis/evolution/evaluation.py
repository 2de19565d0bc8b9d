"""Scoring a program: its problem's evaluation script run in the Genesis sandbox.

The script runs as `main.py` with the candidate beside it as `program.py` (it runs the program
itself, under the sandbox's limits, and checks what it printed). Its last line of output is one
JSON object: `correct` (bool), `combined_score` (number), and optionally `public_metrics`,
`private_metrics` (objects) and `text_feedback` (text). A crash, a timeout, a limit breach or
an unreadable report scores as incorrect, with the reason as feedback.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from singularity.genesis.evolution.problem import Problem
from singularity.genesis.jobs.execution import Execution, JobSpec, Mode, Status, execute
from singularity.genesis.sandbox import Sandbox

__all__ = ["Evaluation", "evaluate"]


@dataclass(frozen=True)
class Evaluation:
    correct: bool
    combined_score: float
    text_feedback: str
    public_metrics: dict[str, Any] = field(default_factory=dict)
    private_metrics: dict[str, Any] = field(default_factory=dict)
    status: str = "OK"
    wall_ms: float = 0.0


async def evaluate(problem: Problem, code: str, sandbox: Sandbox) -> Evaluation:
    """The score of `code` on `problem`; never raises for what the code does."""
    spec = JobSpec(
        language="python",
        code=problem.evaluator,
        mode=Mode.RUN,
        files={"program.py": code},
        limits=problem.limits,
    )
    done = await execute(spec, sandbox)
    if done.status is not Status.OK:
        return _failed(done, f"evaluation {done.status.value}: {done.error or done.output[-500:]}")
    return _read_report(done)


def _read_report(done: Execution) -> Evaluation:
    lines = done.output.strip().splitlines()
    try:
        report = json.loads(lines[-1]) if lines else None
    except ValueError:
        report = None
    if not isinstance(report, dict) or not isinstance(report.get("correct"), bool):
        return _failed(done, "the evaluation script printed no report (a JSON object last)")
    score = report.get("combined_score", 0.0)
    if isinstance(score, bool) or not isinstance(score, int | float) or not math.isfinite(score):
        return _failed(done, f"the report's combined_score is not a finite number: {score!r}")
    return Evaluation(
        correct=report["correct"],
        combined_score=float(score) if report["correct"] else 0.0,
        text_feedback=str(report.get("text_feedback", "")),
        public_metrics=_object(report.get("public_metrics")),
        private_metrics=_object(report.get("private_metrics")),
        wall_ms=done.wall_ms,
    )


def _failed(done: Execution, reason: str) -> Evaluation:
    return Evaluation(
        correct=False,
        combined_score=0.0,
        text_feedback=reason,
        status=done.status.value,
        wall_ms=done.wall_ms,
    )


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
