"""A job's steps in the sandbox, and the one status the job ends with.

Modes: `check` runs the language's checker; `lint` the checker, then the linter; `run` the
checker (when the language has one), then the program; `test` the checker, then the test
command over all the job's files. The steps run one after another in one sandbox, each with
the job's limits (and the language's address-space allowance), its own streams, wall clock and
figures. They share /work and /tmp, which is safe because only the last step runs the job's
code: the checker and the linter read it and write nothing the program could not write
itself. The first step that does not end OK ends the job; the job's figures (exit code, times,
memory) are those of that last step.

A language may fold the check into its program's start (`Language.checked`: Python's run and
test): then one process checks the source, says its verdict on a channel of its own, and only
then runs the code; the job still has its `check` step and record (its figures those of the
process up to the verdict: the interpreter's start and the compile; its memory not measured),
and the run's figures are the whole process's, as a `python3 main.py` of its own would have.
The wall clock, CPU and memory limits of the check and the program are then one process's.

Statuses: a failing checker is COMPILE_ERROR with its message in `error`. Lint findings are
COMPILE_ERROR too (the code is not acceptable as written), the findings in `error` and in
`output`. Then, for any step: the wall clock or the CPU limit running out is TIMEOUT; a stream
past its cap, a file past the file-size limit (SIGXFSZ), or a host work directory grown past
`disk_mb`, is OUTPUT_LIMIT; running out of
memory (the runtime says so on stderr, or a SIGKILL/SIGSEGV/SIGABRT/SIGBUS with the tree's
resident memory near the limit) is MEMORY_LIMIT; another signal is SIGNALED; a non-zero exit
is RUNTIME_ERROR. An unknown language, a missing toolchain or a mode the language does not have
is UNSUPPORTED (the message says what to install), and so is a job the sandbox refuses to start
as given (stdin past `stdin_bytes`, arguments past the command-line limit: the message says
which limit); a sandbox that cannot be set up is INTERNAL.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from singularity.genesis.jobs.languages import LANGUAGES, Language, language
from singularity.genesis.limits import DEFAULT_LIMITS, Limits
from singularity.genesis.sandbox import RunResult, Sandbox, SandboxUnavailable, Step
from singularity.genesis.sandbox.staging import checked_command, checked_stdin

__all__ = ["Execution", "JobSpec", "Mode", "Status", "StepRecord", "classify", "execute"]

_MEMORY_SIGNALS = (signal.SIGKILL, signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS)
_NEAR_LIMIT = 0.9  # of memory_mb: a resident size this close to the limit is running out
_TAIL = 16384  # bytes of stderr searched for signs of memory running out


class Mode(StrEnum):
    """What a job asks for."""

    CHECK = "check"
    LINT = "lint"
    RUN = "run"
    TEST = "test"


class Status(StrEnum):
    """How a job ended."""

    OK = "OK"
    COMPILE_ERROR = "COMPILE_ERROR"
    RUNTIME_ERROR = "RUNTIME_ERROR"
    TIMEOUT = "TIMEOUT"
    MEMORY_LIMIT = "MEMORY_LIMIT"
    OUTPUT_LIMIT = "OUTPUT_LIMIT"
    SIGNALED = "SIGNALED"
    UNSUPPORTED = "UNSUPPORTED"
    INTERNAL = "INTERNAL"
    SETUP_FAILED = "SETUP_FAILED"  # a command in a workspace: its environment's setup failed


@dataclass(frozen=True)
class JobSpec:
    """One job: code in a language, what to do with it, and its limits."""

    language: str
    code: str
    mode: Mode = Mode.RUN
    stdin: str | None = None
    args: tuple[str, ...] = ()
    files: Mapping[str, str] = field(default_factory=dict)
    limits: Limits = DEFAULT_LIMITS


@dataclass(frozen=True, slots=True)
class StepRecord:
    """One sandboxed step and how it ended, for `sandbox_history`."""

    step: str
    status: str
    exit_code: int | None
    wall_ms: float | None
    cpu_ms: float | None
    max_rss_kb: int | None


@dataclass(frozen=True)
class Execution:
    """How a job ended, with the output and figures of its last step, and every step run."""

    status: Status
    output: str
    error: str | None
    exit_code: int | None
    wall_ms: float
    cpu_ms: float
    max_rss_kb: int
    truncated: bool
    history: tuple[StepRecord, ...]
    environment: dict[str, Any] | None = None  # a command in a workspace: its setup step

    @property
    def steps(self) -> tuple[str, ...]:
        """The steps that ran, in order."""
        return tuple(record.step for record in self.history)

    def to_dict(self) -> dict[str, Any]:
        """The figures a `job_results` message carries."""
        return {
            "output": self.output,
            "error": self.error,
            "status": self.status.value,
            "exit_code": self.exit_code,
            "wall_ms": round(self.wall_ms, 3),
            "cpu_ms": round(self.cpu_ms, 3),
            "max_rss_kb": self.max_rss_kb,
            "truncated": self.truncated,
            **({} if self.environment is None else {"environment": self.environment}),
        }


async def execute(spec: JobSpec, sandbox: Sandbox) -> Execution:
    """Run the job's steps in the sandbox; never raises for what the job's code does."""
    mode = Mode(spec.mode)
    found = language(spec.language)
    if found is None:
        known = ", ".join(sorted(LANGUAGES))
        return refused(f"unknown language {spec.language!r}; supported: {known}")
    reason = found.missing(mode) or _mode_missing(found, mode)
    if reason is None and found.source in spec.files:
        reason = f"files may not replace {found.source}, which holds the code"
    if reason is not None:
        return refused(reason)
    try:
        # Counted in characters first, which a string's UTF-8 takes at least as many bytes
        # as: a stdin far too large is refused before a byte of it is copied.
        checked_stdin(len(spec.stdin or ""), spec.limits.stdin_bytes)
    except ValueError as exc:
        return refused(f"the job cannot be run: {exc}")
    return await _steps(spec, found, mode, sandbox)


def _mode_missing(lang: Language, mode: Mode) -> str | None:
    if getattr(lang, mode.value) is None:
        return f"{lang.name} has no {mode.value} step"
    return None


def _plan(lang: Language, mode: Mode) -> list[str]:
    """The steps of `mode`: the checker first (unless it is the whole job), then the mode's."""
    if mode is Mode.CHECK:
        return ["check"]
    return ["check", mode.value] if lang.check is not None else [mode.value]


async def _steps(spec: JobSpec, lang: Language, mode: Mode, sandbox: Sandbox) -> Execution:
    files = {**spec.files, lang.source: spec.code}
    limits = replace(spec.limits, memory_mb=spec.limits.memory_mb + lang.address_space_mb)
    plan = _plan(lang, mode)
    memory_mb = spec.limits.memory_mb
    folded = lang.checked_command(plan[-1], memory_mb=memory_mb, args=spec.args)
    if folded is not None and plan[0] == "check" and len(plan) == 2:
        argvs: list[tuple[str, ...] | None] = [folded]  # one process: the check, then the step
    else:
        folded = None
        argvs = [lang.command(step, memory_mb=memory_mb, args=spec.args) for step in plan]
    try:  # the whole plan, before a step runs: no check step for a program that cannot start
        for argv in argvs:
            assert argv is not None  # _mode_missing refused modes without a command
            checked_command(argv, {})
    except ValueError as exc:
        return refused(f"the job cannot be run: {exc}")
    encoded = None if spec.stdin is None else spec.stdin.encode(errors="surrogateescape")
    steps = [
        Step(argv, encoded if step == "run" else None, channel=folded is not None)
        for step, argv in zip(plan[-len(argvs) :], argvs, strict=True)
        if argv is not None
    ]
    binds = {target: path for step in plan for target, path in lang.binds(step).items()}
    try:
        results = await sandbox.run_steps(steps, limits=limits, files=files, binds=binds)
    except (SandboxUnavailable, OSError) as exc:
        return refused(f"the sandbox failed: {exc}", Status.INTERNAL)
    except ValueError as exc:
        return refused(f"the job cannot be run: {exc}")
    if folded is not None:
        return _unfolded(plan[-1], results[0], lang, spec.limits)
    ran: list[StepRecord] = []
    for step, result in zip(plan, results, strict=False):
        status = _step_status(step, classify(result, lang, spec.limits))
        ran.append(_record(step, status, result))
        if status is not Status.OK or step == plan[-1]:
            return ended(status, step, result, spec.limits, tuple(ran))
    # The sandbox ended a step the host took for OK: not expected, but never a silent OK.
    return refused("the sandbox ended the job early", Status.INTERNAL, tuple(ran))


def _unfolded(step: str, result: RunResult, lang: Language, limits: Limits) -> Execution:
    """The check and the step of one process that checked its source first (see `checked`)."""
    lines = result.channel.splitlines()
    words = lines[0].split() if len(lines) == 1 else []  # more than one line: not the checker's
    if not words or words[0] != b"ok":
        # No verdict, or "error": the process ended as the check (the code never ran).
        status = _step_status("check", classify(result, lang, limits))
        history = (_record("check", status, result),)
        if status is Status.OK:  # exit 0 without a verdict: not expected, never a silent OK
            return refused("the check gave no verdict", Status.INTERNAL, history)
        return ended(status, "check", result, limits, history)
    wall_ms = cpu_ms = None
    with contextlib.suppress(IndexError, ValueError):
        at, cpu_s = float(words[1]), float(words[2])
        wall_ms = min(max((at - result.started_at) * 1000, 0.0), result.wall_ms)
        cpu_ms = min(cpu_s * 1000, result.cpu_ms)
    check = StepRecord("check", Status.OK.value, 0, wall_ms, cpu_ms, None)
    status = classify(result, lang, limits)
    history = (check, _record(step, status, result))
    return ended(status, step, result, limits, history)


def _record(step: str, status: Status, result: RunResult) -> StepRecord:
    return StepRecord(
        step, status.value, result.exit_code, result.wall_ms, result.cpu_ms, result.max_rss_kb
    )


def _step_status(step: str, status: Status) -> Status:
    """A checker or linter that fails on its own (no limit hit) rejects the code."""
    if step in ("check", "lint") and status is Status.RUNTIME_ERROR:
        return Status.COMPILE_ERROR
    return status


def classify(
    result: RunResult, lang: Language | None = None, limits: Limits = DEFAULT_LIMITS
) -> Status:
    """The status of one sandboxed step."""
    if result.timed_out or result.cpu_exceeded:
        return Status.TIMEOUT
    if result.output_limited or result.disk_limited or result.signal == signal.SIGXFSZ:
        return Status.OUTPUT_LIMIT
    if result.exit_code == 0:
        return Status.OK
    if _out_of_memory(result, lang, limits):
        return Status.MEMORY_LIMIT
    if result.signal is not None:
        return Status.SIGNALED
    return Status.RUNTIME_ERROR


def _out_of_memory(result: RunResult, lang: Language | None, limits: Limits) -> bool:
    tail = result.stderr[-_TAIL:].decode(errors="replace")
    signs = lang.all_signs if lang is not None else ("MemoryError", "Cannot allocate memory")
    if any(sign in tail for sign in signs):
        return True
    near = result.max_rss_kb >= _NEAR_LIMIT * limits.memory_mb * 1024
    return result.signal in _MEMORY_SIGNALS and near


def ended(
    status: Status, step: str, result: RunResult, limits: Limits, history: tuple[StepRecord, ...]
) -> Execution:
    output = result.stdout.decode(errors="replace")
    error = result.stderr.decode(errors="replace")
    if step == "lint" and status is Status.COMPILE_ERROR:
        error = output + error  # ruff reports its findings on stdout
    note = _note(status, result, limits)
    if error and status in (Status.RUNTIME_ERROR, Status.COMPILE_ERROR):
        note = ""  # the program's (or the checker's) own message says it
    if note:
        error = f"{error}\n{note}" if error and not error.endswith("\n") else error + note
    return Execution(
        status=status,
        output=output,
        error=error or None,
        exit_code=result.exit_code,
        wall_ms=result.wall_ms,
        cpu_ms=result.cpu_ms,
        max_rss_kb=result.max_rss_kb,
        truncated=result.stdout_truncated or result.stderr_truncated,
        history=history,
    )


def _note(status: Status, result: RunResult, limits: Limits) -> str:
    """One line on the limit a step hit (or how it ended), for `error`."""
    if status is Status.TIMEOUT:
        if result.timed_out:
            return f"timed out: the wall-clock limit of {limits.wall_s:g} s ran out"
        return f"timed out: the CPU limit of {limits.cpu_s:g} s ran out"
    if status is Status.OUTPUT_LIMIT:
        if result.output_limited:
            return f"stopped: output went past {limits.output_bytes} bytes on a stream"
        if result.disk_limited:
            return f"stopped: the work directory grew past the {limits.disk_mb} MB disk limit"
        return f"stopped: a file went past the {limits.file_size_mb} MB file-size limit"
    if status is Status.MEMORY_LIMIT:
        return f"out of memory: the limit is {limits.memory_mb} MB"
    if status is Status.SIGNALED and result.signal is not None:
        return f"killed by {_signal_name(result.signal)}"
    if status in (Status.RUNTIME_ERROR, Status.COMPILE_ERROR):
        return f"exited with code {result.exit_code}"
    return ""


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def refused(
    message: str, status: Status = Status.UNSUPPORTED, history: tuple[StepRecord, ...] = ()
) -> Execution:
    return Execution(
        status=status,
        output="",
        error=message,
        exit_code=None,
        wall_ms=0.0,
        cpu_ms=0.0,
        max_rss_kb=0,
        truncated=False,
        history=history,
    )
