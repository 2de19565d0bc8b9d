"""Conducting an experiment and keeping its record: what the consumer and the CLI share.

An experiment never changes the repository: it runs on a copy. `apply` puts a recorded
experiment's diff into the repository itself, keeping the baseline first; `rollback` restores
that baseline. Both are recorded.

A trial that came over the bus is held to the worker's repository policy (allowed roots, no
link followed, read as an unprivileged uid); so is applying or rolling back an experiment that
came over the bus, whoever runs the command. A trial the CLI makes for its own user is not.

A trial on a workspace snapshot (`workspace`, a snapshot id in the bus) runs on a private
checkout of that snapshot (`workspaces.snapshots`) and needs no policy: nothing of this host is
read. Its record names `snapshot:<id>`, and it cannot be applied or rolled back here: the
repository it came from is on another host.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from singularity.errors import UsageError
from singularity.genesis.environments import Environments, SetupChoice
from singularity.genesis.experiments import trial as trials
from singularity.genesis.jobs.execution import StepRecord
from singularity.genesis.limits import Limits
from singularity.genesis.sandbox import Sandbox
from singularity.genesis.store import ExperimentRecord, GenesisStore
from singularity.genesis.workspaces.repositories import RepositoryPolicy
from singularity.genesis.workspaces.snapshots import SNAPSHOT_PREFIX, Snapshots

__all__ = ["Lab", "Trial"]

log = structlog.get_logger(__name__)

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Trial:
    """What an experiment is asked to try."""

    id: str
    repo: Path | None  # a directory on this host; None for a trial on `workspace`
    diff: str
    test_command: str
    limits: Limits
    llm_reduction: float = 0.0
    junit_path: str | None = None
    agent_id: str | None = None
    over_bus: bool = False  # named by a message: held to the worker's repository policy
    workspace: str | None = None  # a snapshot in the bus, instead of `repo`
    setup: SetupChoice = None  # the environment's step: see `trial.run_experiment`


class Lab:
    """Runs experiments in workspaces under one directory and records them."""

    def __init__(
        self,
        sandbox: Sandbox,
        store: GenesisStore,
        workspaces: Path,
        *,
        unsafe: bool,
        policy: RepositoryPolicy,
        snapshots: Snapshots | None = None,
        environments: Environments | None = None,
    ) -> None:
        self._sandbox = sandbox
        self.store = store
        self._workspaces = workspaces
        self._unsafe = unsafe
        self._policy = policy
        self._snapshots = snapshots
        self._environments = environments

    async def conduct(
        self,
        trial: Trial,
        *,
        reply_to: str | None = None,
        reply: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        progress: Progress | None = None,
    ) -> dict[str, Any]:
        """Run the experiment and record it; returns its outcome (as a dict)."""
        self._workspaces.mkdir(parents=True, exist_ok=True, mode=0o700)
        if trial.workspace is not None:
            if self._snapshots is None:
                raise UsageError("this lab cannot fetch workspace snapshots from the bus")
            (progress or (lambda _: None))("fetching the workspace snapshot")
            disk = trial.limits.disk_mb << 20
            async with self._snapshots.checked_out(trial.workspace, max_bytes=disk) as tree:
                # The checkout is this worker's own private copy: no policy to hold it to.
                outcome = await self._run(trial, tree, None, progress)
            repo = f"{SNAPSHOT_PREFIX}{trial.workspace}"
        else:
            local = _local_repository(trial)
            policy = self._policy if trial.over_bus else None
            outcome = await self._run(trial, local, policy, progress)
            repo = str(local.resolve())
        found = outcome.to_dict()
        record = ExperimentRecord(
            id=trial.id,
            agent_id=trial.agent_id,
            repo=repo,
            diff=trial.diff,
            test_command=trial.test_command,
            llm_reduction=trial.llm_reduction,
            outcome=found,
            reply_to=reply_to,
            reply=reply(found) if reply is not None else None,
        )
        await self.store.record_experiment(
            record, _metrics(found), _steps(found), unsafe=self._unsafe
        )
        log.info(
            "experiment_done",
            experiment_id=trial.id,
            status=found.get("status"),
            recommendation=found.get("recommendation"),
            success_rate=found.get("success_rate"),
            regression=found.get("regression"),
        )
        return found

    async def _run(
        self,
        trial: Trial,
        repo: Path,
        policy: RepositoryPolicy | None,
        progress: Progress | None,
    ) -> trials.ExperimentOutcome:
        return await trials.run_experiment(
            repo,
            trial.diff,
            trial.test_command,
            sandbox=self._sandbox,
            limits=trial.limits,
            workspace_root=self._workspaces,
            llm_reduction=trial.llm_reduction,
            junit_path=trial.junit_path,
            progress=progress,
            policy=policy,
            environments=self._environments,
            setup=trial.setup,
        )

    async def apply(self, experiment_id: str) -> list[str]:
        """Apply a recorded experiment's diff to its repository; returns the files touched."""
        found = _on_this_host(await self.store.experiment(experiment_id), "apply")
        if found["applied_at"] is not None and found["rolled_back_at"] is None:
            raise UsageError(f"experiment {experiment_id!r} is applied already")
        repo = self._permitted(found)
        baseline = await asyncio.to_thread(trials.apply_to_repository, repo, found["diff"])
        await self.store.mark_applied(experiment_id, baseline.to_dict())
        log.info("experiment_applied", experiment_id=experiment_id, repo=str(repo))
        return list(baseline.paths)

    async def rollback(self, experiment_id: str, reason: str) -> list[str]:
        """Restore the baseline recorded when the experiment was applied."""
        found = _on_this_host(await self.store.experiment(experiment_id), "roll back")
        if found["baseline"] is None or found["applied_at"] is None:
            raise UsageError(
                f"experiment {experiment_id!r} was never applied: nothing to roll back"
            )
        if found["rolled_back_at"] is not None:
            raise UsageError(f"experiment {experiment_id!r} is rolled back already")
        baseline = trials.Baseline.from_dict(found["baseline"])
        restored = await asyncio.to_thread(trials.rollback, self._permitted(found), baseline)
        await self.store.record_rollback(experiment_id, reason, list(restored))
        log.info("experiment_rolled_back", experiment_id=experiment_id, files=len(restored))
        return list(restored)

    def _permitted(self, found: dict[str, Any]) -> Path:
        """The recorded repository; one named over the bus must pass the repository policy."""
        repo = Path(found["repo"])
        if found.get("reply_to") is not None:
            os.close(self._policy.open(str(repo)))
        return repo


def _on_this_host(found: dict[str, Any], action: str) -> dict[str, Any]:
    """The recorded experiment, unless it ran on a snapshot (its repository is elsewhere)."""
    if found["repo"].startswith(SNAPSHOT_PREFIX):
        raise UsageError(
            f"cannot {action} experiment {found['id']!r}: it ran on a workspace snapshot, and "
            "its repository is not on this host"
        )
    return found


def _local_repository(trial: Trial) -> Path:
    """The trial's repository on this host; one the CLI names must be a directory."""
    if trial.repo is None:
        raise UsageError("an experiment names its repository: a directory or a snapshot")
    if not trial.over_bus:  # the policy's own refusals say no more than its rules allow
        try:
            is_dir = trial.repo.is_dir()
        except OSError:  # a path too long for the system, say: no directory either
            is_dir = False
        if not is_dir:
            raise UsageError(f"repository {str(trial.repo)!r} is not a directory on this host")
    return trial.repo


def _metrics(outcome: dict[str, Any]) -> dict[str, float]:
    """The outcome's figures by name, for `experiment_metrics`."""
    figures: dict[str, float] = {}
    for name in ("success_rate", "regression", "llm_reduction"):
        if isinstance(outcome.get(name), int | float):
            figures[name] = float(outcome[name])
    for phase in ("baseline", "candidate"):
        run = outcome.get(phase) or {}
        for name, value in run.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                figures[f"{phase}_{name}"] = float(value)
    return figures


def _steps(outcome: dict[str, Any]) -> list[StepRecord]:
    steps = []
    for phase in ("baseline", "candidate"):
        run = outcome.get(phase)
        if run:
            steps.append(
                StepRecord(
                    step=phase,
                    status="OK" if run.get("exit_code") == 0 else "FAILED",
                    exit_code=run.get("exit_code"),
                    wall_ms=run.get("wall_ms"),
                    cpu_ms=run.get("cpu_ms"),
                    max_rss_kb=run.get("max_rss_kb"),
                )
            )
    return steps
