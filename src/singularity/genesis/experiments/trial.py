"""Experiments: a diff tried on a copy of a repository against its tests, and a verdict.

`run_experiment` copies the repository twice into a fresh workspace (the copy never follows a
symlink, and is bounded by the limits' disk size). Given a `policy` (a worker serving the bus),
the repository must lie under the roots it allows and is read by an unprivileged uid; without
one (the CLI acting for its own user), it is read with the caller's rights. It then checks and
applies the diff to the second copy, then runs the test command in the sandbox on each copy:
the baseline first, then the candidate. Each run gets a pristine tree, so nothing the
baseline's tests write can change the candidate's. A diff that does not apply ends the
experiment before any test runs: status "diff_failed", git's message, recommendation rollback.
A run the sandbox cannot start raises RunUnavailable. The workspace is removed in every case.

The figures (see `outcome.measure`):

- success_rate: the candidate's passed / total. Skipped tests are not in the total; a run
  with no tests has success 0.
- regression: when both runs name every test, the share of the baseline's passing tests that
  do not pass in the candidate (failed, errored, skipped or gone); otherwise
  max(0, baseline success_rate - candidate success_rate).

The verdict follows the rules of `recommendation`.

`apply_to_repository` puts a diff into the repository itself after recording its baseline
(git HEAD, and the exact prior state of every path the diff touches); `rollback` restores
that baseline. Both block: call them from a thread in async code.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from singularity.errors import SingularityError, UsageError
from singularity.genesis.environments import (
    Environments,
    Prepared,
    SetupChoice,
    SetupFailed,
    nothing_installed,
)
from singularity.genesis.environments import described as environment
from singularity.genesis.experiments.baseline import Baseline, restore_snapshot, take_snapshot
from singularity.genesis.experiments.outcome import ExperimentOutcome, ExperimentStatus, TestRun
from singularity.genesis.experiments.recommendation import Recommendation
from singularity.genesis.experiments.reports import report_for_run
from singularity.genesis.limits import Limits
from singularity.genesis.paths import relative_parts, remove_entry
from singularity.genesis.sandbox import RunResult, Sandbox, SandboxUnavailable
from singularity.genesis.sandbox.identity import Identity
from singularity.genesis.workspaces.patch import DiffFailed, apply_diff, check_diff, git_head
from singularity.genesis.workspaces.repositories import RepositoryPolicy, open_directory
from singularity.genesis.workspaces.workspace import copy_tree, create_workspace, remove_workspace

__all__ = [
    "MAX_SNAPSHOT_BYTES",
    "Baseline",
    "DiffFailed",
    "ExperimentOutcome",
    "ExperimentStatus",
    "Recommendation",
    "RunUnavailable",
    "TestRun",
    "apply_to_repository",
    "rollback",
    "run_experiment",
]

log = structlog.get_logger(__name__)

Progress = Callable[[str], None]

MAX_SNAPSHOT_BYTES = 64 << 20
_TAIL_CHARS = 8000


class RunUnavailable(SingularityError):
    """The sandbox could not run the test command at all."""

    def __init__(self, phase: str, cause: Exception) -> None:
        super().__init__(f"the {phase} tests could not run in the sandbox: {cause}")
        self.phase = phase


async def run_experiment(
    repo: Path,
    diff: str,
    test_command: str,
    *,
    sandbox: Sandbox,
    limits: Limits,
    workspace_root: Path,
    llm_reduction: float = 0.0,
    junit_path: str | None = None,
    progress: Progress | None = None,
    policy: RepositoryPolicy | None = None,
    environments: Environments | None = None,
    setup: SetupChoice = None,
) -> ExperimentOutcome:
    """Try `diff` on copies of `repo` against `test_command`; see the module's docstring."""
    _check_request(test_command, llm_reduction, junit_path)
    say = progress or (lambda _: None)
    # The worker's own rights open the directory (from an allowed root down, no link
    # followed); what is inside is read by the copier, as an unprivileged uid on the bus.
    source = policy.open(str(repo)) if policy is not None else open_directory(repo)
    say("copying the repository")
    try:
        if policy is None:
            workspace = await _copy(source, workspace_root, limits, None)
        else:
            async with sandbox.lease_identity() as reader:
                workspace = await _copy(source, workspace_root, limits, reader)
    finally:
        os.close(source)
    try:
        baseline_tree, candidate_tree = workspace / "baseline", workspace / "candidate"
        say("applying the diff")
        try:
            paths = await asyncio.to_thread(apply_diff, candidate_tree, diff)
        except DiffFailed as failed:
            return ExperimentOutcome.diff_failed(failed.reason, llm_reduction)
        run = _Runner(sandbox, limits, test_command, junit_path)
        ready = _Setup(sandbox, environments, setup, test_command, say)
        runs = []
        for phase, tree in (("baseline", baseline_tree), ("candidate", candidate_tree)):
            try:
                prepared = await ready(phase, tree)
            except RunUnavailable:
                raise
            except SetupFailed as failed:
                described = environment(failed.step, None, failed.output)
                return ExperimentOutcome.setup_failed(phase, str(failed), described, llm_reduction)
            except (ValueError, SingularityError) as refused:
                # A step declared wrongly, or one that tampered with its layer: the
                # repository's doing, answered like a failing step.
                described = environment(None, None, None)
                return ExperimentOutcome.setup_failed(phase, str(refused), described, llm_reduction)
            with prepared:
                say(f"running the tests {'without' if phase == 'baseline' else 'with'} the diff")
                runs.append(await run(phase, tree, prepared))
        outcome = ExperimentOutcome.completed(runs[0], runs[1], llm_reduction, paths)
        return dataclasses.replace(outcome, environment=ready.described)
    finally:
        await asyncio.to_thread(remove_workspace, workspace)


async def _copy(source: int, root: Path, limits: Limits, reader: Identity | None) -> Path:
    """A new workspace holding `baseline` and `candidate` copies of the open directory."""
    workspace = await asyncio.to_thread(create_workspace, root, reader)
    try:
        await asyncio.to_thread(
            copy_tree,
            source,
            workspace / "baseline",
            max_bytes=limits.disk_mb << 20,
            copies=("candidate",),
            user=reader,
        )
    except BaseException:
        await asyncio.to_thread(remove_workspace, workspace)
        raise
    return workspace


def apply_to_repository(repo: Path, diff: str, *, max_bytes: int = MAX_SNAPSHOT_BYTES) -> Baseline:
    """Apply `diff` to `repo` itself; returns the baseline recorded first, for `rollback`."""
    repo = _directory(repo)
    paths = check_diff(repo, diff)
    entries = take_snapshot(repo, paths, max_bytes=max_bytes)
    baseline = Baseline(str(repo), git_head(repo), paths, entries)
    try:
        apply_diff(repo, diff)
    except BaseException:
        restore_snapshot(repo, entries)  # the repository changed since the check
        raise
    return baseline


def rollback(repo: Path, baseline: Baseline) -> tuple[str, ...]:
    """Restore `baseline` in `repo` exactly; returns the paths it put back."""
    repo = _directory(repo)
    if Path(baseline.repo) != repo:
        raise UsageError(f"that baseline was recorded in {baseline.repo}, not in {repo}")
    head = git_head(repo)
    if head != baseline.head:
        # Files go back as they were; commits made since are left alone.
        log.warning("rollback_after_head_moved", repo=str(repo), was=baseline.head, now=head)
    changed = set(restore_snapshot(repo, baseline.entries))
    return tuple(path for path in baseline.paths if path in changed)


class _Runner:
    """Runs the test command on one tree and reads its report."""

    def __init__(
        self, sandbox: Sandbox, limits: Limits, command: str, junit_path: str | None
    ) -> None:
        self.sandbox = sandbox
        self.limits = limits
        self.argv = ("/bin/sh", "-c", command)
        self.junit_path = junit_path

    async def __call__(self, phase: str, tree: Path, prepared: Prepared) -> TestRun:
        if self.junit_path is not None:
            # A report that came with the repository must not pass for this run's.
            await asyncio.to_thread(remove_entry, tree, self.junit_path)
        await asyncio.to_thread(prepared.link_into, tree)
        try:
            result = await self.sandbox.run(
                self.argv, limits=self.limits, workdir=tree, binds=prepared.binds, env=prepared.env
            )
        except (SandboxUnavailable, OSError) as exc:
            raise RunUnavailable(phase, exc) from exc
        return await asyncio.to_thread(_test_run, result, tree, self.junit_path)


class _Setup:
    """Each tree's environment: prepared (from the cache, or built) before its tests run.

    The candidate's is prepared apart from the baseline's, as the diff may change what the
    step installs (a requirements file, package.json); when it does not, it is the same layer.
    """

    def __init__(
        self,
        sandbox: Sandbox,
        environments: Environments | None,
        setup: SetupChoice,
        test_command: str,
        say: Progress,
    ) -> None:
        self._sandbox = sandbox
        self._environments = environments
        self._setup = setup
        self._test_command = test_command
        self._say = say
        self.described: dict[str, Any] | None = None  # the last tree's, for the outcome

    async def __call__(self, phase: str, tree: Path) -> Prepared:
        if self._environments is None or self._setup is False:
            return nothing_installed()
        self._say(f"preparing the {phase}'s environment")
        try:
            prepared = await self._environments.prepare(
                self._sandbox, tree, self._setup, self._test_command
            )
        except SandboxUnavailable as exc:
            raise RunUnavailable(f"{phase} setup", exc) from exc
        if prepared.step is not None:
            self.described = prepared.described()
            self._say(
                f"environment: {prepared.step.description}"
                + (" (cached)" if prepared.cached else "")
            )
        return prepared


def _test_run(result: RunResult, tree: Path, junit_path: str | None) -> TestRun:
    stdout = result.stdout.decode("utf-8", "replace")
    stderr = result.stderr.decode("utf-8", "replace")
    report = report_for_run(
        f"{stdout}\n{stderr}", result.exit_code, tree=tree, junit_path=junit_path
    )
    return TestRun(
        report=report,
        exit_code=result.exit_code,
        signal=result.signal,
        timed_out=result.timed_out,
        cpu_exceeded=result.cpu_exceeded,
        output_limited=result.output_limited or result.disk_limited,
        output_truncated=result.stdout_truncated or result.stderr_truncated,
        wall_ms=result.wall_ms,
        cpu_ms=result.cpu_ms,
        max_rss_kb=result.max_rss_kb,
        stdout_tail=stdout[-_TAIL_CHARS:],
        stderr_tail=stderr[-_TAIL_CHARS:],
    )


def _check_request(test_command: str, llm_reduction: float, junit_path: str | None) -> None:
    """ValueError (one line) for a request no experiment can serve."""
    if not test_command.strip():
        raise ValueError("the test command is empty")
    if not math.isfinite(llm_reduction):
        raise ValueError(f"llm_reduction must be a finite number, not {llm_reduction}")
    if junit_path is not None:
        relative_parts(junit_path)  # a path inside the repository, or UnsafePath


def _directory(repo: Path) -> Path:
    """The repository's real path; UsageError when it is not a directory."""
    if not repo.is_dir():
        raise UsageError(f"repository {str(repo)!r} is not a directory")
    return repo.resolve()
