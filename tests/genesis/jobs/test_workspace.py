"""A command in a workspace: a snapshot from the bus checked out, its environment, one run."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool
from pydantic import ValidationError

from genesis_support import RunningGenesis, make_repo
from nexus_support import wait_for_message
from singularity.shared_queue import JobRequest, Publisher


class Workspaces:
    """A running Genesis, a repository published as a snapshot, and jobs run on it."""

    def __init__(
        self, publisher: AsyncConnectionPool, bus: AsyncConnectionPool, replies: str, repo: Path
    ) -> None:
        self.publisher, self.bus, self.replies, self.repo = publisher, bus, replies, repo

    async def published(self) -> str:
        return (await Publisher(self.publisher).publish_workspace(self.repo)).id

    async def run(self, command: str, *, workspace: str | None = None, **fields: Any) -> dict:
        request = JobRequest(
            id=f"ws-{uuid.uuid4().hex[:10]}",
            workspace=workspace or await self.published(),
            command=command,
            reply_to=self.replies,
            **fields,
        )
        await Publisher(self.publisher).send("job_requests", request)
        return await wait_for_message(self.bus, self.replies, seconds=60, request_id=request.id)


@pytest.fixture
def workspaces(
    genesis: RunningGenesis,
    publisher_pool: AsyncConnectionPool,
    bus_pool: AsyncConnectionPool,
    genesis_replies: str,
    tmp_path: Path,
) -> Workspaces:
    return Workspaces(publisher_pool, bus_pool, genesis_replies, make_repo(tmp_path))


async def test_a_command_runs_in_a_checkout_of_the_snapshot(
    workspaces: Workspaces, genesis_db: AsyncConnectionPool
) -> None:
    result = await workspaces.run("ls; python3 -m unittest -q 2>&1", setup=False)
    assert result["status"] == "OK", result
    assert "calc.py" in result["output"] and "Ran 3 tests" in result["output"]
    assert "environment" not in result  # nothing installed
    async with genesis_db.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT language, mode FROM executions WHERE request_id = %s",
                (result["request_id"],),
            )
        ).fetchone()
    assert row == ("shell", "workspace")


async def test_a_failing_command_says_how_it_failed(workspaces: Workspaces) -> None:
    result = await workspaces.run("echo broken >&2; exit 3")
    assert result["status"] == "RUNTIME_ERROR"
    assert result["exit_code"] == 3 and result["error"] == "broken\n"


async def test_a_given_setup_step_builds_the_environment_the_command_sees(
    workspaces: Workspaces,
) -> None:
    marker = uuid.uuid4().hex
    setup = f"echo {marker} > /env/marker"
    first = await workspaces.run("cat /env/marker", setup=setup)
    assert first["status"] == "OK", first
    assert first["output"] == f"{marker}\n"
    assert first["environment"]["origin"] == "given" and first["environment"]["cached"] is False
    again = await workspaces.run("cat /env/marker", setup=setup)
    assert again["output"] == f"{marker}\n" and again["environment"]["cached"] is True


async def test_a_failing_setup_step_is_answered_with_its_output(workspaces: Workspaces) -> None:
    result = await workspaces.run(
        "echo never", setup="echo fetching; echo 'no such index' >&2; exit 4"
    )
    assert result["status"] == "SETUP_FAILED"
    assert "failed" in result["error"] and result["output"] == ""
    assert "no such index" in result["environment"]["setup"]["stderr_tail"]


async def test_what_a_command_leaves_in_its_checkout_is_gone_for_the_next(
    workspaces: Workspaces,
) -> None:
    snapshot = await workspaces.published()
    planted = await workspaces.run(
        "echo 'raise SystemExit(9)' > sitecustomize.py; echo x >> calc.py; rm -f test_calc.py",
        workspace=snapshot,
    )
    assert planted["status"] == "OK", planted
    after = await workspaces.run("ls; python3 -m unittest -q 2>&1", workspace=snapshot)
    assert after["status"] == "OK", after
    assert "sitecustomize.py" not in after["output"] and "Ran 3 tests" in after["output"]
    assert "x" not in (workspaces.repo / "calc.py").read_text().splitlines()  # the requester's


async def test_an_unknown_snapshot_is_a_clear_error(workspaces: Workspaces) -> None:
    result = await workspaces.run("true", workspace="f" * 64)
    assert result["status"] == "UNSUPPORTED"
    assert f"snapshot {'f' * 64} is not in the bus" in result["error"]


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"code": "print(1)", "language": "python", "command": "true"}, "either `code`"),
        ({"command": "true"}, "names both `workspace` and `command`"),
        ({"workspace": "a" * 64, "command": "true", "mode": "test"}, "are for code"),
        ({"code": "print(1)", "language": "python", "setup": "pip install x"}, "`setup` is for"),
        ({"workspace": "a" * 64, "command": ""}, "at least 1 character"),
        ({"workspace": "../../etc", "command": "true"}, "should match pattern"),
    ],
)
def test_a_request_that_mixes_code_and_command_is_refused(
    fields: dict[str, Any], reason: str
) -> None:
    with pytest.raises(ValidationError, match=reason):
        JobRequest.model_validate({"id": "j", **fields})
