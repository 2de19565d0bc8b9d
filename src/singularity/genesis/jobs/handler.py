"""The `job_requests` consumer: run each job once in the sandbox, record it, answer `reply_to`.

Exactly one effect: the answer is recorded in the genesis database before it is published, and
a request whose answer is recorded (a redelivery, or the same id sent twice) is answered from
the record without running the code again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import structlog

from singularity.genesis.environments import Environments
from singularity.genesis.jobs.execution import Execution, JobSpec, Mode, Status, execute
from singularity.genesis.jobs.workspace import WorkspaceJob, run_in_workspace
from singularity.genesis.limits import Limits, limits_from_request
from singularity.genesis.sandbox import Sandbox
from singularity.genesis.store import ExecutionRecord, GenesisStore
from singularity.genesis.workspaces.snapshots import Snapshots
from singularity.shared_queue import (
    Delivery,
    JobRequest,
    JobResult,
    PermanentFailure,
    Reply,
    ReplyTargets,
)

__all__ = ["DEFAULT_REPLY_TO", "JobHandler", "job_result", "job_spec"]

log = structlog.get_logger(__name__)

DEFAULT_REPLY_TO = "job_results"
# How a command in a workspace is recorded among the executions (language, mode).
WORKSPACE_LANGUAGE = "shell"
WORKSPACE_MODE = "workspace"


def job_spec(request: JobRequest, defaults: Limits) -> JobSpec | WorkspaceJob:
    """The job a request asks for; ValueError (one line) for limits it may not have."""
    limits = limits_from_request(request.limits, defaults=defaults)
    if request.workspace is not None:
        assert request.command is not None  # the message's own check
        return WorkspaceJob(
            workspace=request.workspace,
            command=request.command,
            limits=limits,
            setup=request.setup,
            stdin=request.stdin,
        )
    assert request.code is not None and request.language is not None
    return JobSpec(
        language=request.language,
        code=request.code,
        mode=Mode(request.mode or "run"),
        stdin=request.stdin,
        args=tuple(request.args or ()),
        files=dict(request.files or {}),
        limits=limits,
    )


def job_result(request_id: str, execution: Execution) -> JobResult:
    """The `job_results` message of one execution."""
    return JobResult.model_validate({"request_id": request_id, **execution.to_dict()})


def refusal(request_id: str, reason: str) -> JobResult:
    """The answer to a request Genesis cannot serve as asked."""
    return JobResult(
        request_id=request_id, output="", error=reason, status=Status.UNSUPPORTED.value
    )


class JobHandler:
    """Handles deliveries of `job_requests` for one Genesis process.

    At most `runs` jobs are in the sandbox at once. The consumer may hand over more deliveries
    than that (see `deliveries`): while some run, another's bookkeeping (the lookup of an
    earlier answer before its run, the record after it) goes on, so that a sandbox slot does
    not wait for the database between two jobs.
    """

    def __init__(
        self,
        sandbox: Sandbox,
        store: GenesisStore,
        targets: ReplyTargets,
        defaults: Limits,
        *,
        unsafe: bool,
        runs: int = 1,
        snapshots: Snapshots | None = None,
        environments: Environments | None = None,
    ) -> None:
        self._sandbox = sandbox
        self._snapshots = snapshots
        self._environments = environments
        self._store = store
        self._targets = targets
        self._defaults = defaults
        self._unsafe = unsafe
        self._runs = asyncio.Semaphore(runs)
        self.deliveries = runs + 1  # the consumer's concurrency: one more than the runs

    async def __call__(self, delivery: Delivery[JobRequest]) -> Reply:
        request = delivery.message
        request_id = delivery.request_id
        reply_to = request.reply_to or DEFAULT_REPLY_TO
        await self._targets.require(reply_to)
        recorded = await self._store.job_reply(request_id)
        if recorded is not None:
            log.info("job_answered_again", request_id=request_id, msg_id=delivery.msg_id)
            target, answer = recorded
            return Reply(target, JobResult.model_validate(answer))
        try:
            spec = job_spec(request, self._defaults)
        except ValueError as exc:
            reason = f"limits: {exc}"
            replies = [Reply(reply_to, refusal(request_id, reason))]
            raise PermanentFailure(reason, replies=replies) from None
        async with self._runs:
            if isinstance(spec, WorkspaceJob):
                execution = await run_in_workspace(
                    spec, self._sandbox, self._snapshots, self._environments
                )
            else:
                execution = await execute(spec, self._sandbox)
        code = spec.command if isinstance(spec, WorkspaceJob) else spec.code
        record = ExecutionRecord(
            request_id=request_id,
            msg_id=delivery.msg_id,
            agent_id=request.agent_id,
            language=_language(spec),
            mode=_mode(spec),
            reply_to=reply_to,
            reply=job_result(request_id, execution).model_dump(mode="json", exclude_none=True),
            code_bytes=len(code.encode(errors="surrogateescape")),
            received_at=delivery.enqueued_at,
            unsafe=self._unsafe,
        )
        target, reply = await self._store.record_execution(record, execution.history)
        _log(request_id, spec, execution)
        return Reply(target, JobResult.model_validate(reply))

    async def on_invalid(self, body: Any, reason: str) -> Sequence[Reply]:
        """An unreadable request is dead-lettered; its asker still hears why, when it can."""
        return await self._targets.answer_invalid(
            body, DEFAULT_REPLY_TO, lambda rid: refusal(rid, reason)
        )


def _language(spec: JobSpec | WorkspaceJob) -> str:
    return WORKSPACE_LANGUAGE if isinstance(spec, WorkspaceJob) else spec.language


def _mode(spec: JobSpec | WorkspaceJob) -> str:
    return WORKSPACE_MODE if isinstance(spec, WorkspaceJob) else spec.mode.value


def _log(request_id: str, spec: JobSpec | WorkspaceJob, execution: Execution) -> None:
    event = "job_done" if execution.status is Status.OK else "job_failed"
    log.info(
        event,
        request_id=request_id,
        language=_language(spec),
        mode=_mode(spec),
        status=execution.status.value,
        exit_code=execution.exit_code,
        wall_ms=round(execution.wall_ms, 1),
        cpu_ms=round(execution.cpu_ms, 1),
        steps=",".join(execution.steps),
    )
