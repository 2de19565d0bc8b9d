"""Starting the bridge: one `error:` line naming the fix when something it needs is missing."""

from __future__ import annotations

import asyncio

import pytest

from helpers import singularity
from nats_bridge.support import RunningBridge
from singularity.config import Settings
from singularity.errors import SingularityError
from singularity.nats_bridge import NatsBridge
from singularity.postgres.cluster import Cluster
from singularity.service_context import ServiceContext


def error_line(stderr: str) -> str:
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, stderr
    return errors[0]


def test_a_missing_instance_names_the_command_that_creates_it(cluster: Cluster) -> None:
    # Instance 900, the default, is never created by the tests; it is checked before NATS.
    result = singularity("run", "nats-bridge", env={"NATS_URL": "nats://127.0.0.1:1"})
    assert result.returncode == 1
    line = error_line(result.stderr)
    assert "the NATS bridge's instance 900 is not set up" in line
    assert "run `singularity db init --instance 900` once" in line


def test_an_unreachable_nats_server_is_named(cluster: Cluster, bridge_instance: int) -> None:
    env = {"NATS_URL": "nats://127.0.0.1:1", "NATS_BRIDGE_INSTANCE": str(bridge_instance)}
    result = singularity("run", "nats-bridge", env=env)
    assert result.returncode == 1
    line = error_line(result.stderr)
    assert "cannot reach NATS at nats://127.0.0.1:1" in line and "NATS_URL" in line


def test_up_does_not_start_the_bridge_but_run_knows_it() -> None:
    from singularity.services import RUN_ONLY, SERVICES, resolve_services

    assert "nats-bridge" not in SERVICES and "nats-bridge" in RUN_ONLY
    assert [s.name for s in resolve_services(["nats-bridge"])] == ["nats-bridge"]


async def test_a_second_bridge_on_the_same_instance_is_refused(
    bridge: RunningBridge, bridge_settings: Settings, cluster: Cluster
) -> None:
    """Two bridges reading one reply queue would take each other's answers."""
    with pytest.raises(SingularityError, match="another NATS bridge already runs as instance 901"):
        await asyncio.wait_for(
            NatsBridge().run(ServiceContext(bridge_settings, cluster), asyncio.Event()), 30
        )
