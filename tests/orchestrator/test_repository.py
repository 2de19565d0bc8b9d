"""Checking and applying diffs with real git: in repositories (a commit on a new branch, the
user's checkout untouched), in plain directories (in place), and refusing what is unsafe."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from singularity.errors import SingularityError, UsageError
from singularity.orchestrator.diffs import extract_diff
from singularity.orchestrator.repository import apply_change, check_diff, is_git_repository

# A blank context line is a single space, written \x20 here.
CHANGE = """\
--- a/cli.py
+++ b/cli.py
@@ -1,4 +1,5 @@
 import sys
+import argparse
\x20
 def main():
     pass
--- /dev/null
+++ b/tests/test_cli.py
@@ -0,0 +1,1 @@
+def test_cli(): ...
"""
STALE = CHANGE.replace(" import sys\n", " import os\n")
CLI = "import sys\n\ndef main():\n    pass\n"
CHANGED_CLI = "import sys\nimport argparse\n\ndef main():\n    pass\n"


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=Test", "-c", "user.email=test@example.com", *args],
        cwd=repo, check=True, capture_output=True, text=True,
    )  # fmt: skip
    return done.stdout.strip()


@pytest.fixture(autouse=True)
def no_user_git_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No global git configuration: the module must work without one."""
    (tmp_path / "home").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for name in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "EMAIL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "cli.py").write_text(CLI)
    (root / "README.md").write_text("# Demo\n")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "initial")
    return root


@pytest.fixture
def plain(tmp_path: Path) -> Path:
    root = tmp_path / "plain"
    root.mkdir()
    (root / "cli.py").write_text(CLI)
    return root


async def test_a_diff_that_applies(repo: Path, plain: Path) -> None:
    assert await check_diff(repo, CHANGE) is None
    assert await check_diff(plain, CHANGE) is None


async def test_a_sloppy_model_answer_applies_once_extracted(repo: Path) -> None:
    answer = (
        "Here is the change:\n\n```diff\n--- cli.py\n+++ cli.py\n@@ -1,2 +1,9 @@\n"
        " import sys\n+import argparse\n\n def main():\n```\nThat is all."
    )
    diff = extract_diff(answer)
    assert diff is not None
    assert await check_diff(repo, diff) is None
    change = await apply_change(repo, diff, branch="fix", message="m")
    assert git(repo, "show", f"{change.commit}:cli.py") + "\n" == CHANGED_CLI


async def test_a_diff_that_does_not_apply_gets_gits_reason(repo: Path, tmp_path: Path) -> None:
    error = await check_diff(repo, STALE)
    assert error is not None
    assert "error: patch failed: cli.py:1" in error
    assert "error: cli.py: patch does not apply" in error
    assert "while searching for:\nimport os\n" in error  # what the model got wrong
    assert str(tmp_path) not in error
    assert "Checking patch" not in error


async def test_a_corrupt_diff_gets_gits_reason(plain: Path) -> None:
    corrupt = "--- a/cli.py\n+++ b/cli.py\n@@ -1,9 +1,9 @@\n import sys\n+import argparse\n"
    error = await check_diff(plain, corrupt)
    assert error is not None and "corrupt patch at line" in error


async def test_check_diff_reports_static_problems_first(repo: Path) -> None:
    error = await check_diff(repo, CHANGE.replace("a/cli.py", "a/../cli.py"))
    assert error is not None and "climbs out of the repository" in error


async def test_check_diff_of_a_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="is not a directory"):
        await check_diff(tmp_path / "nope", CHANGE)


async def test_which_directories_are_git_repositories(repo: Path, plain: Path) -> None:
    (repo / "sub").mkdir()
    assert await is_git_repository(repo)
    assert not await is_git_repository(plain)
    assert not await is_git_repository(repo / "sub")


async def test_a_change_becomes_a_commit_on_a_new_branch(repo: Path) -> None:
    base = git(repo, "rev-parse", "HEAD")
    change = await apply_change(repo, CHANGE, branch="singularity/task-1", message="Add argparse")
    assert change.branch == "singularity/task-1"
    assert change.base == base
    assert change.files == ["cli.py", "tests/test_cli.py"]
    assert change.commit == git(repo, "rev-parse", "singularity/task-1")
    assert git(repo, "rev-parse", f"{change.commit}^") == base
    assert git(repo, "show", "-s", "--format=%an <%ae>|%cn|%B", change.commit) == (
        "Singularity <singularity@localhost>|Singularity|Add argparse"
    )
    assert git(repo, "show", f"{change.commit}:cli.py") + "\n" == CHANGED_CLI
    assert git(repo, "show", f"{change.commit}:tests/test_cli.py") == "def test_cli(): ..."
    # The user's checkout is as it was: same branch, same files, nothing staged.
    assert git(repo, "branch", "--show-current") == "main"
    assert git(repo, "rev-parse", "HEAD") == base
    assert (repo / "cli.py").read_text() == CLI
    assert not (repo / "tests").exists()
    assert git(repo, "status", "--porcelain") == ""


async def test_a_taken_branch_name_gets_a_suffix(repo: Path) -> None:
    first = await apply_change(repo, CHANGE, branch="fix", message="one")
    second = await apply_change(repo, CHANGE, branch="fix", message="two")
    third = await apply_change(repo, CHANGE, branch="fix", message="three")
    assert (first.branch, second.branch, third.branch) == ("fix", "fix-2", "fix-3")
    assert git(repo, "log", "-1", "--format=%s", "fix-3") == "three"


async def test_uncommitted_changes_to_touched_files_are_refused(repo: Path) -> None:
    (repo / "cli.py").write_text(CLI + "# mine\n")
    with pytest.raises(SingularityError, match=r"uncommitted changes to cli\.py"):
        await apply_change(repo, CHANGE, branch="fix", message="m")
    assert (repo / "cli.py").read_text() == CLI + "# mine\n"
    assert git(repo, "branch", "--list", "fix") == ""


async def test_staged_changes_and_untracked_files_the_diff_creates_are_refused(
    repo: Path,
) -> None:
    (repo / "tests").mkdir()
    (repo / "tests" / "test_cli.py").write_text("mine\n")
    with pytest.raises(SingularityError, match=r"tests/test_cli\.py"):
        await apply_change(repo, CHANGE, branch="fix", message="m")
    (repo / "tests" / "test_cli.py").unlink()
    (repo / "cli.py").write_text("staged\n")
    git(repo, "add", "cli.py")
    (repo / "cli.py").write_text(CLI)
    with pytest.raises(SingularityError, match="uncommitted changes"):
        await apply_change(repo, CHANGE, branch="fix", message="m")


async def test_changes_to_other_files_do_not_matter(repo: Path) -> None:
    (repo / "README.md").write_text("# Edited by the user\n")
    (repo / "notes.txt").write_text("untracked\n")
    change = await apply_change(repo, CHANGE, branch="fix", message="m")
    assert change.commit is not None
    assert git(repo, "show", f"{change.commit}:README.md") == "# Demo"
    assert (repo / "README.md").read_text() == "# Edited by the user\n"


async def test_a_diff_that_does_not_apply_to_head_creates_no_branch(repo: Path) -> None:
    with pytest.raises(SingularityError, match="does not apply to HEAD") as raised:
        await apply_change(repo, STALE, branch="fix", message="m")
    assert "patch does not apply" in str(raised.value)
    assert git(repo, "branch", "--list", "fix") == ""


async def test_a_plain_directory_is_changed_in_place(plain: Path) -> None:
    change = await apply_change(plain, CHANGE, branch="ignored", message="m")
    assert (change.branch, change.commit, change.base) == (None, None, None)
    assert change.files == ["cli.py", "tests/test_cli.py"]
    assert (plain / "cli.py").read_text() == CHANGED_CLI
    assert (plain / "tests" / "test_cli.py").read_text() == "def test_cli(): ...\n"


async def test_a_plain_directory_is_left_alone_when_the_diff_fails(plain: Path) -> None:
    partly = CHANGE + "--- a/missing.py\n+++ b/missing.py\n@@ -1 +1 @@\n-a\n+b\n"
    with pytest.raises(SingularityError, match=r"missing\.py"):
        await apply_change(plain, partly, branch="x", message="m")
    assert (plain / "cli.py").read_text() == CLI  # all or nothing
    assert not (plain / "tests").exists()


@pytest.mark.parametrize("where", ["repo", "plain"])
async def test_paths_outside_the_repository_are_refused(
    where: str, repo: Path, plain: Path, tmp_path: Path
) -> None:
    root = repo if where == "repo" else plain
    (tmp_path / "victim.txt").write_text("a\n")
    escape = "--- a/../victim.txt\n+++ b/../victim.txt\n@@ -1 +1 @@\n-a\n+b\n"
    with pytest.raises(SingularityError, match="climbs out"):
        await apply_change(root, escape, branch="x", message="m")
    absolute = f"--- {tmp_path}/victim.txt\n+++ {tmp_path}/victim.txt\n@@ -1 +1 @@\n-a\n+b\n"
    with pytest.raises(SingularityError, match="relative to the repository"):
        await apply_change(root, absolute, branch="x", message="m")
    assert (tmp_path / "victim.txt").read_text() == "a\n"


async def test_git_refuses_writing_through_a_symlink(plain: Path, tmp_path: Path) -> None:
    (tmp_path / "victim.txt").write_text("a\n")
    os.symlink(tmp_path, plain / "link")
    through = "--- a/link/victim.txt\n+++ b/link/victim.txt\n@@ -1 +1 @@\n-a\n+b\n"
    assert await check_diff(plain, through) is not None
    with pytest.raises(SingularityError):
        await apply_change(plain, through, branch="x", message="m")
    assert (tmp_path / "victim.txt").read_text() == "a\n"


async def test_a_subdirectory_of_a_repository_is_refused(repo: Path) -> None:
    (repo / "sub").mkdir()
    (repo / "sub" / "cli.py").write_text(CLI)
    with pytest.raises(UsageError, match="give the repository's top directory"):
        await apply_change(repo / "sub", CHANGE, branch="x", message="m")
    assert (repo / "sub" / "cli.py").read_text() == CLI


async def test_bad_branch_names_and_messages_are_usage_errors(repo: Path) -> None:
    for bad in ("two words", "-x", "a..b", "", "@{-1}"):
        with pytest.raises(UsageError, match="not a valid git branch name"):
            await apply_change(repo, CHANGE, branch=bad, message="m")
    with pytest.raises(UsageError, match="commit message"):
        await apply_change(repo, CHANGE, branch="ok", message="  ")


async def test_a_repository_without_commits(tmp_path: Path) -> None:
    root = tmp_path / "empty"
    root.mkdir()
    git(root, "init", "-q")
    (root / "cli.py").write_text(CLI)
    with pytest.raises(SingularityError, match="has no commit yet"):
        await apply_change(root, CHANGE, branch="x", message="m")


async def test_the_repositorys_hooks_never_run(repo: Path, tmp_path: Path) -> None:
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    marker = tmp_path / "hook-ran"
    for name in ("reference-transaction", "pre-commit", "post-commit", "post-checkout"):
        (hooks / name).write_text(f"#!/bin/sh\necho {name} >> {marker}\n")
        (hooks / name).chmod(0o755)
    git(repo, "config", "core.hooksPath", str(hooks))
    git(repo, "branch", "probe")  # the hook is live for git itself
    assert marker.exists()
    marker.unlink()
    await apply_change(repo, CHANGE, branch="fix", message="m")
    assert not marker.exists()


async def test_the_callers_git_variables_do_not_redirect_git(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = tmp_path / "other"
    other.mkdir()
    git(other, "init", "-q")
    monkeypatch.setenv("GIT_DIR", str(other / ".git"))
    monkeypatch.setenv("GIT_INDEX_FILE", str(tmp_path / "stray-index"))
    change = await apply_change(repo, CHANGE, branch="fix", message="m")
    monkeypatch.delenv("GIT_DIR")
    monkeypatch.delenv("GIT_INDEX_FILE")
    assert git(repo, "rev-parse", "fix") == change.commit
    assert not (tmp_path / "stray-index").exists()
