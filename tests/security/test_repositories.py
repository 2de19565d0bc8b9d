"""Findings 2 and 4: a publisher on `experiment_requests` names any path; a repository's author
races the copy. The worker reads only under its allowed roots, never as root, never through a
link; a refused path is answered with a clear status and nothing of it is copied."""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool

from genesis_support import GOOD_DIFF, TEST_COMMAND, RunningGenesis, make_repo, require_bwrap
from helpers import answer_queue
from nexus_support import wait_for_message
from singularity.config import Settings, load_settings
from singularity.genesis.experiments.trial import ExperimentOutcome, run_experiment
from singularity.genesis.limits import DEFAULT_LIMITS
from singularity.genesis.sandbox import Sandbox
from singularity.genesis.workspaces.repositories import RepositoryPolicy, RepositoryRefused
from singularity.genesis.workspaces.workspace import CopyRefused, remove_workspace
from singularity.postgres.cluster import Cluster
from singularity.postgres.topology import Role
from singularity.shared_queue import ExperimentRequest, Publisher

SECRET = "s3cr3t-never-to-leave-the-host"
STRANGER = 40_000  # a uid of no one: another local user
# Prints whatever the repository holds, as an attacker's test command would.
DUMP = "grep -r . . 2>&1 | head -c 20000; ls -laR . | head -c 20000"


@pytest.fixture
def roots(tmp_path: Path) -> Path:
    root = tmp_path / "checkouts"
    root.mkdir(mode=0o755)
    return root


@pytest.fixture
def worker_settings(platform_env: dict[str, str], tmp_path: Path, roots: Path) -> Settings:
    return load_settings(
        _env_file=None,
        shared_queue_poll_ms=50,
        genesis_data_dir=tmp_path / "genesis",
        genesis_repo_roots=(roots,),
    )


@pytest.fixture
async def genesis_replies(cluster: Cluster) -> AsyncIterator[str]:
    async with answer_queue(cluster, Role.GENESIS, "test_sec") as name:
        yield name


@pytest.fixture
async def worker(worker_settings: Settings, cluster: Cluster) -> Any:
    require_bwrap()
    async with RunningGenesis(worker_settings, cluster) as running:
        yield running


def private_file(directory: Path, owner: int = 0) -> Path:
    """A 0600 file holding SECRET in a 0700 directory, both owned by `owner`."""
    directory.mkdir(mode=0o700)
    secret = directory / "secret.txt"
    secret.write_text(SECRET)
    secret.chmod(0o600)
    os.chown(secret, owner, owner)
    os.chown(directory, owner, owner)
    return secret


async def ask(
    pool: AsyncConnectionPool, replies: str, repo: str, command: str = DUMP
) -> dict[str, Any]:
    request = ExperimentRequest(
        id=f"exp-{uuid.uuid4().hex[:8]}",
        repo=repo,
        diff=GOOD_DIFF,
        test_command=command,
        reply_to=replies,
    )
    await Publisher(pool).send("experiment_requests", request)
    return await wait_for_message(pool, replies, seconds=60, request_id=request.id)


async def experiment(
    repo: Path, command: str, workspaces: Path, policy: RepositoryPolicy | None = None
) -> ExperimentOutcome:
    """GOOD_DIFF tried on `repo` in the real sandbox; `policy` as a bus worker holds it."""
    return await run_experiment(
        repo,
        GOOD_DIFF,
        command,
        sandbox=Sandbox(),
        limits=DEFAULT_LIMITS,
        workspace_root=workspaces,
        policy=policy,
    )


async def test_finding_2_a_publisher_reads_nothing_outside_the_roots_or_private(
    worker: RunningGenesis,
    worker_settings: Settings,
    bus_pool: AsyncConnectionPool,
    genesis_replies: str,
    roots: Path,
    tmp_path: Path,
) -> None:
    outside = private_file(tmp_path / "outside").parent
    victim = roots / "victim"
    private_file(victim, owner=STRANGER)  # another user's 0700 directory, under a root
    app = make_repo_under(roots)
    private_file(app / "keys")  # root's own 0600 file, inside an allowed repository
    (roots / "to-etc").symlink_to("/etc")
    (roots / ".hidden").mkdir()
    attacks = {
        "/etc": "outside the directories",
        str(outside): "outside the directories",
        str(worker_settings.singularity_home): "outside the directories",
        str(roots / ".." / "outside"): "'..'",
        str(roots / "to-etc"): "symbolic link",
        str(roots / "to-etc" / "ssl"): "symbolic link",
        str(roots / ".hidden"): "hidden directory",
        str(victim): "not readable",
        str(app): "not readable",
        "relative/path": "absolute path",
    }
    for repo, why in attacks.items():
        answer = await ask(bus_pool, genesis_replies, repo)
        assert answer["status"] == "error", (repo, answer)
        assert why in answer["error"], (repo, answer)
        assert SECRET not in str(answer) and "root:" not in str(answer)
    # Nothing was copied and nothing is left behind.
    assert list((worker_settings.genesis_dir / "workspaces").iterdir()) == []
    # The worker keeps serving: a readable repository under the root is tested.
    good = make_repo_under(roots, "good")
    answer = await ask(bus_pool, genesis_replies, str(good), TEST_COMMAND)
    assert answer["status"] == "completed", answer
    assert answer["candidate"]["passed"] == 3


def test_finding_2_the_platform_home_is_refused_even_under_a_root(
    worker_settings: Settings, tmp_path: Path
) -> None:
    home = worker_settings.singularity_home
    policy = RepositoryPolicy(roots=(Path("/"),), platform=(home,), home=Path("/nonexistent"))
    for repo in (home, home / "nexus", home.parent):
        with pytest.raises(RepositoryRefused, match="platform's own data"):
            policy.open(str(repo))


def make_repo_under(root: Path, name: str = "app") -> Path:
    """A readable repository (0755 directories, 0644 files) at root/name."""
    holder = root / f"{name}-holder"
    holder.mkdir(mode=0o755)
    repo = make_repo(holder).rename(root / name)
    holder.rmdir()
    return repo


async def test_finding_4_a_directory_swapped_for_a_link_during_the_copy_is_never_followed(
    tmp_path: Path,
) -> None:
    """The CLI's own copy (as root, no policy): only the descriptor walk keeps the link out."""
    require_bwrap()
    secret = private_file(tmp_path / "private")
    repo = make_repo(tmp_path)
    bulk = repo / "bulk"
    bulk.mkdir()
    for index in range(300):  # enough entries that the swap lands mid-copy
        (bulk / f"f{index:03}.txt").write_text("x" * 200)
    stop = threading.Event()

    def swap() -> None:
        real = repo / "bulk-real"
        while not stop.is_set():
            try:
                bulk.rename(real)
                bulk.symlink_to(secret.parent)
                bulk.unlink()
                real.rename(bulk)
            except OSError:
                pass

    swapper = threading.Thread(target=swap, daemon=True)
    swapper.start()
    outcomes = []
    try:
        for _ in range(12):
            try:
                outcomes.append(
                    await experiment(repo, "cat bulk/secret.txt; " + DUMP, tmp_path / "workspaces")
                )
            except CopyRefused as refused:  # the copy saw the tree change under it
                assert "changed while" in str(refused)
    finally:
        stop.set()
        swapper.join()
    for outcome in outcomes:
        assert SECRET not in str(outcome.to_dict())
    # The host keeps working: the same repository, left alone, is tested as usual.
    if not bulk.is_dir():
        (repo / "bulk-real").rename(bulk)
    outcome = await experiment(repo, TEST_COMMAND, tmp_path / "workspaces")
    assert outcome.status.value == "completed"


async def test_attack_a_tree_nested_deeper_than_the_copy_allows_is_refused_at_once(
    tmp_path: Path,
) -> None:
    """1,100 nested folders: one clear refusal, no crash, no retry storm."""
    require_bwrap()
    repo = make_repo(tmp_path)
    deep = repo
    try:
        for _ in range(1100):
            deep = deep / "d"
            os.mkdir(deep)
        with pytest.raises(CopyRefused, match="nested deeper than"):
            await experiment(repo, TEST_COMMAND, tmp_path / "workspaces")
        assert list((tmp_path / "workspaces").iterdir()) == []
    finally:
        remove_workspace(repo)  # pytest's own clean-up recurses, and would not get through


async def test_attack_hard_link_to_a_private_file_is_not_read(
    worker_settings: Settings, roots: Path, tmp_path: Path
) -> None:
    """A repository author hard-links a file they cannot read: the copier cannot read it either."""
    require_bwrap()
    secret = private_file(roots / "private")
    app = make_repo_under(roots)
    os.link(secret, app / "linked.txt")
    with pytest.raises(CopyRefused, match="not readable"):
        policy = RepositoryPolicy.from_settings(worker_settings)
        await experiment(app, DUMP, tmp_path / "workspaces", policy)


async def test_attack_copies_drop_set_id_bits_and_keep_links_as_links(
    worker_settings: Settings, roots: Path, tmp_path: Path
) -> None:
    require_bwrap()
    app = make_repo_under(roots)
    (app / "suid").write_text("#!/bin/sh\nid -u\n")
    (app / "suid").chmod(0o4755)
    (app / "shadow").symlink_to("/etc/shadow")
    command = "ls -l suid; cat shadow; echo end"
    policy = RepositoryPolicy.from_settings(worker_settings)
    outcome = await experiment(app, command, tmp_path / "workspaces", policy)
    assert outcome.baseline is not None
    out = outcome.baseline.stdout_tail + outcome.baseline.stderr_tail
    assert "-rwxr-xr-x" in out and "rws" not in out
    assert "root:" not in out and "No such file" in out


def test_repository_policy_refuses_the_workers_home_and_what_holds_it() -> None:
    home = Path(os.path.realpath(Path.home()))
    policy = RepositoryPolicy(roots=(Path("/"),), platform=(), home=home)
    for repo in (home, home.parent):
        with pytest.raises(RepositoryRefused, match="home directory"):
            policy.open(str(repo))
    assert asyncio.iscoroutinefunction(run_experiment)
