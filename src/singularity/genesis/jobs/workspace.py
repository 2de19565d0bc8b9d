"""A command run in a workspace: a checkout of a snapshot from the bus, with its environment.

This is how an agent runs a repository's tests, or any command, on its current work from any
host: the requester publishes its workspace as a snapshot (only the files this worker's cache
lacks travel), and the job names the snapshot and the command. The worker checks the snapshot
out into a private directory, prepares the environment as an experiment does (the setup step
given, declared or recognised, built once through the registry proxy and cached as a
read-only layer), and runs `/bin/sh -c COMMAND` in the sandbox with the checkout as /work and
no network. What the command changes in the checkout is not sent back: the checkout is removed
when the job ends.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from pathlib import Path

import structlog

from singularity.errors import SingularityError
from singularity.genesis.environments import (
    Environments,
    Prepared,
    SetupChoice,
    SetupFailed,
    described,
    nothing_installed,
)
from singularity.genesis.jobs.execution import (
    Execution,
    Status,
    StepRecord,
    classify,
    ended,
    refused,
)
from singularity.genesis.limits import Limits
from singularity.genesis.sandbox import Sandbox, SandboxUnavailable
from singularity.genesis.workspaces.snapshots import Snapshots, WorkspaceRefused

__all__ = ["WorkspaceJob", "run_in_workspace"]

log = structlog.get_logger(__name__)

SHELL = "/bin/sh"


@dataclass(frozen=True)
class WorkspaceJob:
    """A command to run in a checkout of `workspace` (a snapshot id in the bus)."""

    workspace: str
    command: str
    limits: Limits
    setup: SetupChoice = None
    stdin: str | None = None


async def run_in_workspace(
    job: WorkspaceJob,
    sandbox: Sandbox,
    snapshots: Snapshots | None,
    environments: Environments | None,
) -> Execution:
    """Run the job; never raises for what the workspace or the command does."""
    if snapshots is None:
        return refused("this worker cannot fetch workspace snapshots from the bus")
    disk = job.limits.disk_mb << 20
    try:
        async with snapshots.checked_out(job.workspace, max_bytes=disk) as tree:
            try:
                prepared = await _environment(job, sandbox, environments, tree)
            except SetupFailed as failed:
                found = described(failed.step, None, failed.output)
                message = f"the setup step `{failed.step.description}` failed: {failed}"
                return replace(refused(message, Status.SETUP_FAILED), environment=found)
            except (ValueError, SingularityError) as exc:
                # A step declared wrongly, or a layer that was tampered with: the workspace's
                # doing, answered like a failing step.
                message = f"the environment cannot be prepared: {exc}"
                return refused(message, Status.SETUP_FAILED)
            with prepared:
                await asyncio.to_thread(prepared.link_into, tree)
                stdin = None if job.stdin is None else job.stdin.encode(errors="surrogateescape")
                result = await sandbox.run(
                    [SHELL, "-c", job.command],
                    limits=job.limits,
                    workdir=tree,
                    binds=prepared.binds,
                    env=prepared.env,
                    stdin=stdin,
                )
                environment = prepared.described() if prepared.step is not None else None
    except WorkspaceRefused as exc:
        return refused(str(exc))
    except (SandboxUnavailable, OSError) as exc:
        return refused(f"the sandbox failed: {exc}", Status.INTERNAL)
    except ValueError as exc:  # a limit, stdin or command the sandbox does not take
        return refused(f"the job cannot be run: {exc}")
    status = classify(result, None, job.limits)
    record = StepRecord(
        "run", status.value, result.exit_code, result.wall_ms, result.cpu_ms, result.max_rss_kb
    )
    execution = ended(status, "run", result, job.limits, (record,))
    return replace(execution, environment=environment)


async def _environment(
    job: WorkspaceJob, sandbox: Sandbox, environments: Environments | None, tree: Path
) -> Prepared:
    if job.setup is False:
        return nothing_installed()
    if environments is None:
        if isinstance(job.setup, str):
            raise SingularityError("this worker cannot install environments (unsafe mode)")
        return nothing_installed()
    return await environments.prepare(sandbox, tree, job.setup, job.command)
