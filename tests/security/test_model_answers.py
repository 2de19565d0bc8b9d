"""A model's answer is a stranger's text: the diff in it may try to leave the repository, write
through a link the repository holds, or plant a git hook. Each is refused with a reason the
model is shown, nothing is written, and the next, honest answer is applied as usual."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from genesis_support import make_repo
from singularity.cli.common import console
from singularity.cli.task_cmd import _print_task
from singularity.errors import SingularityError
from singularity.orchestrator.diffs import diff_problem, extract_diff
from singularity.orchestrator.repository import apply_change, check_diff
from singularity.orchestrator.store import TaskRecord

HONEST = """\
Here is the change:

```diff
--- a/calc.py
+++ b/calc.py
@@ -1,2 +1,3 @@
 def add(a, b):
+    # integers and floats alike
     return a + b
```
"""


def answer(path: str, body: str = "owned\n") -> str:
    """A model's answer holding a diff that creates `path`."""
    lines = "".join(f"+{line}\n" for line in body.splitlines())
    count = len(body.splitlines())
    return f"```diff\n--- /dev/null\n+++ b/{path}\n@@ -0,0 +1,{count} @@\n{lines}```\n"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path)


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("../../outside.txt", "climbs out"),
        ("sub/../../outside.txt", "climbs out"),
        (".git/hooks/pre-commit", ".git"),
        ("./.git/config", ".git"),
    ],
)
async def test_attack_a_models_diff_cannot_leave_the_repository_or_reach_git(
    repo: Path, tmp_path: Path, path: str, why: str
) -> None:
    diff = extract_diff(answer(path, "#!/bin/sh\ntouch /tmp/owned\n"))
    assert diff is not None
    problem = diff_problem(diff)
    assert problem is not None and why in problem
    with pytest.raises(SingularityError, match="cannot be applied"):
        await apply_change(repo, diff, branch="singularity/evil", message="evil")
    assert not (tmp_path / "outside.txt").exists()
    assert not (repo / ".git" / "hooks" / "pre-commit").exists()
    applied = await apply_change(
        repo, extract_diff(HONEST) or "", branch="singularity/ok", message="ok"
    )
    assert applied.files == ["calc.py"]


async def test_attack_a_models_diff_cannot_write_through_a_link_the_repository_holds(
    repo: Path, tmp_path: Path
) -> None:
    """The repository holds `docs -> <outside>`; the model writes `docs/index.html`."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (repo / "docs").symlink_to(outside)
    for args in (["add", "docs"], ["commit", "-qm", "docs link"]):
        git(repo, *args)
    diff = extract_diff(answer("docs/index.html", "<script>alert(1)</script>\n")) or ""
    assert diff_problem(diff) is None  # nothing static to see: git itself must refuse
    problem = await check_diff(repo, diff)
    assert problem is not None and "symbolic link" in problem
    with pytest.raises(SingularityError, match="symbolic link"):
        await apply_change(repo, diff, branch="singularity/link", message="link")
    assert list(outside.iterdir()) == []


async def test_attack_a_models_diff_cannot_write_through_a_link_in_a_plain_directory(
    tmp_path: Path,
) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "app.py").write_text("x = 1\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (plain / "docs").symlink_to(outside)
    diff = extract_diff(answer("docs/index.html")) or ""
    with pytest.raises(SingularityError, match="symbolic link"):
        await apply_change(plain, diff, branch="unused", message="unused")
    assert list(outside.iterdir()) == []


def git(repo: Path, *args: str) -> None:
    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@x",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@x",
        "PATH": "/usr/bin:/bin",
    }
    subprocess.run(["git", *args], cwd=repo, check=True, env=env)


def test_attack_a_models_words_in_a_task_print_as_they_are() -> None:
    """Rich markup and terminal controls in what a model (or git) wrote are shown, not obeyed."""
    evil = "[bold green]applied, all tests pass[/] \x1b[2J\x1b]8;;http://x\x07link\u202e"
    now = datetime.now(UTC)
    record = TaskRecord(
        id=7,
        agent_id="agent[red]",
        kind="coder",
        description=evil,
        repo="/srv/app",
        test_command="pytest",
        state="failed",
        data={},
        outcome="failed",
        error=evil,
        runner=None,
        lease_until=None,
        created_at=now,
        updated_at=now,
        finished_at=now,
    )
    event = {"at": now.isoformat(), "state": "failed", "message": evil}
    with console.capture() as captured:
        _print_task(record, [event])
    out = captured.get()
    assert "[bold green]applied, all tests pass[/]" in out
    assert "\x1b" not in out and "\x07" not in out
    assert "<U+001B>" in out and "<U+202E>" in out and "agent[red]" in out
