"""The `experiment_requests` consumer: conduct each experiment once, answer `reply_to`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import structlog

from singularity.config import Settings
from singularity.errors import UsageError
from singularity.genesis.environments import Environments
from singularity.genesis.experiments.lab import Lab, Trial
from singularity.genesis.limits import DEFAULT_LIMITS, limits_from_request
from singularity.genesis.sandbox import Sandbox
from singularity.genesis.store import GenesisStore
from singularity.genesis.workspaces.repositories import RepositoryPolicy
from singularity.genesis.workspaces.snapshots import Snapshots
from singularity.shared_queue import (
    Delivery,
    ExperimentRequest,
    ExperimentResult,
    PermanentFailure,
    Reply,
    ReplyTargets,
)

__all__ = ["DEFAULT_REPLY_TO", "ExperimentHandler", "experiment_result"]

log = structlog.get_logger(__name__)

DEFAULT_REPLY_TO = "experiment_results"


def experiment_result(request_id: str, outcome: dict[str, Any]) -> ExperimentResult:
    """The `experiment_results` message of one outcome."""
    result = {
        "request_id": request_id,
        "experiment_id": request_id,
        "status": outcome.get("status"),
        "recommendation": outcome.get("recommendation"),
        "success_rate": outcome.get("success_rate"),
        "regression": outcome.get("regression"),
        "error": outcome.get("error"),
        "basis": outcome.get("basis"),
        "warnings": outcome.get("warnings"),
        "environment": outcome.get("environment"),
    }
    for phase in ("baseline", "candidate"):
        if outcome.get(phase):
            result[phase] = outcome[phase]
    return ExperimentResult.model_validate(result)


def _recorded(request_id: str, outcome: dict[str, Any]) -> dict[str, Any]:
    """The answer as the experiment's record keeps it (what is published, as JSON)."""
    return experiment_result(request_id, outcome).model_dump(mode="json", exclude_none=True)


def _refusal(request_id: str, reason: str) -> ExperimentResult:
    return ExperimentResult(request_id=request_id, status="error", error=reason)


class ExperimentHandler:
    """Handles deliveries of `experiment_requests` for one Genesis process."""

    def __init__(
        self,
        sandbox: Sandbox,
        store: GenesisStore,
        targets: ReplyTargets,
        settings: Settings,
        snapshots: Snapshots,
        environments: Environments | None = None,
    ) -> None:
        self._store = store
        self._targets = targets
        self._lab = Lab(
            sandbox,
            store,
            settings.genesis_dir / "workspaces",
            unsafe=settings.genesis_unsafe_sandbox,
            policy=RepositoryPolicy.from_settings(settings),
            snapshots=snapshots,
            environments=environments,
        )

    async def __call__(self, delivery: Delivery[ExperimentRequest]) -> Reply:
        request = delivery.message
        request_id = delivery.request_id
        reply_to = request.reply_to or DEFAULT_REPLY_TO
        await self._targets.require(reply_to)
        recorded = await self._store.experiment_reply(request_id)
        if recorded is not None:
            log.info("experiment_answered_again", experiment_id=request_id)
            target, answer = recorded
            return Reply(target, ExperimentResult.model_validate(answer))
        try:
            trial = Trial(
                id=request_id,
                repo=Path(request.repo) if request.repo is not None else None,
                workspace=request.workspace,
                diff=request.diff,
                test_command=request.test_command,
                limits=limits_from_request(request.limits, defaults=DEFAULT_LIMITS),
                llm_reduction=request.llm_reduction or 0.0,
                junit_path=request.junit_path,
                agent_id=request.agent_id,
                over_bus=True,
                setup=request.setup,
            )
            outcome = await self._lab.conduct(
                trial, reply_to=reply_to, reply=lambda found: _recorded(request_id, found)
            )
        except (ValueError, UsageError) as exc:
            reason = str(exc)
            replies = [Reply(reply_to, _refusal(request_id, reason))]
            raise PermanentFailure(reason, replies=replies) from None
        return Reply(reply_to, experiment_result(request_id, outcome))

    async def on_invalid(self, body: Any, reason: str) -> Sequence[Reply]:
        """An unreadable request is dead-lettered; its asker still hears why, when it can."""
        return await self._targets.answer_invalid(
            body, DEFAULT_REPLY_TO, lambda rid: _refusal(rid, reason)
        )
