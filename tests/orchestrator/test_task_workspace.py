"""A task's workspace: the repository copied twice, and the diff between the copies."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from singularity.orchestrator.repository import check_diff
from singularity.orchestrator.task_workspace import TaskWorkspace, WorkspaceChangeRefused

_GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@x",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@x",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def _git(repo: Path, *args: str) -> None:
    env = {**os.environ, **_GIT_ENV}
    subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "calc.py").write_text("def add(a, b):\n    return a + b\n")
    (root / "README.md").write_text("calc\nno newline at the end")
    (root / "run.sh").write_text("#!/bin/sh\necho run\n")
    (root / "run.sh").chmod(0o755)
    (root / ".gitignore").write_text("*.log\n")
    _git(root, "init", "-q")
    _git(root, "add", ".")
    _git(root, "commit", "-qm", "start")
    (root / "notes.txt").write_text("untracked, not ignored\n")
    (root / "debug.log").write_text("ignored\n")
    return root


async def test_the_work_tree_is_copied_twice_and_starts_with_no_diff(
    repo: Path, tmp_path: Path
) -> None:
    workspace = await TaskWorkspace.create(repo, tmp_path / "task-1")
    assert workspace.exists()
    for tree in (workspace.base, workspace.work):
        assert (tree / "pkg" / "calc.py").read_text() == "def add(a, b):\n    return a + b\n"
        assert (tree / "notes.txt").is_file() and not (tree / "debug.log").exists()
        assert not (tree / ".git").exists()
        assert os.access(tree / "run.sh", os.X_OK)
    assert await workspace.diff() == ""
    with pytest.raises(FileExistsError):
        await TaskWorkspace.create(repo, workspace.root)


async def test_the_diff_holds_every_kind_of_change_and_applies_to_the_repository(
    repo: Path, tmp_path: Path
) -> None:
    workspace = await TaskWorkspace.create(repo, tmp_path / "task-2")
    work = workspace.work
    (work / "pkg" / "calc.py").write_text("def add(a, b):\n    return a + b\n\n\nX = 1")
    (work / "pkg" / "new.py").write_text("Y = 2\n")
    (work / "empty.txt").write_text("")
    (work / "README.md").write_text("calc\nnow with a newline\n")
    (work / "run.sh").unlink()
    (work / "notes.txt").unlink()
    diff = await workspace.diff()
    assert "new file mode 100644" in diff and "deleted file mode 100755" in diff
    assert "\\ No newline at end of file" in diff
    assert await check_diff(repo, diff) is None  # git apply --check takes it
    target = tmp_path / "applied"
    shutil.copytree(repo, target, ignore=shutil.ignore_patterns(".git"))
    await asyncio.to_thread(
        subprocess.run, ["git", "apply", "-"], cwd=target, input=diff.encode(), check=True
    )
    for path in ("pkg/calc.py", "pkg/new.py", "empty.txt", "README.md"):
        assert (target / path).read_bytes() == (work / path).read_bytes(), path
    assert not (target / "run.sh").exists() and not (target / "notes.txt").exists()


async def test_the_users_tree_changing_meanwhile_does_not_change_the_diff(
    repo: Path, tmp_path: Path
) -> None:
    workspace = await TaskWorkspace.create(repo, tmp_path / "task-3")
    (repo / "pkg" / "calc.py").write_text("the user's own edit\n")
    (workspace.work / "notes.txt").write_text("edited by the agent\n")
    diff = await workspace.diff()
    assert "pkg/calc.py" not in diff and "+edited by the agent" in diff


async def test_a_link_is_copied_as_a_link_never_followed_and_left_out_of_the_diff(
    repo: Path, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("host secret\n")
    os.symlink(secret, repo / "leak")
    workspace = await TaskWorkspace.create(repo, tmp_path / "task-4")
    for tree in (workspace.base, workspace.work):
        assert (tree / "leak").is_symlink()
    os.symlink("/etc/passwd", workspace.work / "passwd")
    (workspace.work / "leak").unlink()
    os.symlink("/etc/hostname", workspace.work / "leak")
    diff = await workspace.diff()
    assert diff == "" and "host secret" not in diff
    assert secret.read_text() == "host secret\n"


@pytest.mark.parametrize(
    ("content", "reason"),
    [(b"\x00\x01binary", "is a binary file"), (b"caf\xe9\n", "is not UTF-8 text")],
)
async def test_a_change_that_cannot_be_shown_as_text_is_refused_with_its_name(
    repo: Path, tmp_path: Path, content: bytes, reason: str
) -> None:
    workspace = await TaskWorkspace.create(repo, tmp_path / "task-5")
    (workspace.work / "pkg" / "blob.bin").write_bytes(content)
    with pytest.raises(WorkspaceChangeRefused, match=f"pkg/blob.bin {reason}"):
        await workspace.diff()
