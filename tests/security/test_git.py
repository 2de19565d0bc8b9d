"""Finding 1: a repository's git configuration names programs; none of them may run on the host.

Every hostile key of `hostile_repository` runs `touch MARKERS/<key>` if git ever obeys it. The
tests go through every step that runs git on a repository: an experiment (its copy and the diff
applied to the candidate), `genesis apply` and `rollback`, and Singularity's check and commit of
an approved change. Each must do its job and leave no marker.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from genesis_support import GOOD_DIFF, make_repo, require_bwrap
from singularity.genesis.experiments.trial import apply_to_repository, rollback, run_experiment
from singularity.genesis.limits import DEFAULT_LIMITS
from singularity.genesis.sandbox import Sandbox
from singularity.orchestrator.repository import apply_change, check_diff, is_git_repository

DIFF = GOOD_DIFF
HOOKS = (
    "pre-commit",
    "post-commit",
    "post-checkout",
    "reference-transaction",
    "post-index-change",
    "pre-applypatch",
    "post-applypatch",
)


def hostile_repository(root: Path, markers: Path) -> Path:
    """A repository whose config, attributes, hooks and includes each name a program."""
    root.mkdir()
    repo = make_repo(root)
    markers.mkdir()

    def touch(name: str) -> str:
        return f"touch {markers / name}"

    git_dir = repo / ".git"
    included = root / "included.gitconfig"
    included.write_text(f'[filter "inc"]\n\tclean = "{touch("include")}; cat"\n')
    hooks = root / "hooks"
    hooks.mkdir()
    for hook in (*(git_dir / "hooks" / name for name in HOOKS), *(hooks / h for h in HOOKS)):
        hook.write_text(f"#!/bin/sh\n{touch('hook-' + hook.name)}\n")
        hook.chmod(0o755)
    config = {
        "filter.evil.clean": f"{touch('filter-clean')}; cat",
        "filter.evil.smudge": f"{touch('filter-smudge')}; cat",
        "filter.evil.process": touch("filter-process"),
        "filter.evil.required": "true",
        "diff.evil.textconv": f"{touch('textconv')}; cat",
        "diff.external": touch("external-diff"),
        "core.fsmonitor": touch("fsmonitor"),
        "core.pager": touch("pager"),
        "core.hooksPath": str(hooks),
        "core.sshCommand": touch("ssh"),
        "core.editor": touch("editor"),
        "core.askPass": touch("askpass"),
        "credential.helper": f"!{touch('credential')}",
        "include.path": str(included),
        "core.worktree": str(root / "elsewhere"),
        "alias.apply": f"!{touch('alias')}",
    }
    for key, value in config.items():
        subprocess.run(["git", "config", key, value], cwd=repo, check=True)
    (repo / ".gitattributes").write_text("* filter=evil diff=evil\n*.py filter=inc\n")
    (git_dir / "info").mkdir(exist_ok=True)
    (git_dir / "info" / "attributes").write_text("* filter=evil\n")
    return repo


def committed_file(repo: Path, spec: str) -> bytes:
    """A file of a commit, read with git (hooks and filters off: the test's own look)."""
    return subprocess.run(
        ["git", "-c", "core.hooksPath=/dev/null", "cat-file", "blob", spec],
        cwd=repo,
        env={"PATH": os.environ["PATH"], "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(repo)},
        capture_output=True,
        check=True,
    ).stdout


def fired(markers: Path) -> list[str]:
    return sorted(os.listdir(markers))


@pytest.fixture
def hostile(tmp_path: Path) -> tuple[Path, Path]:
    markers = tmp_path / "markers"
    return hostile_repository(tmp_path / "src", markers), markers


async def test_finding_1_experiment_runs_nothing_the_repository_names(
    hostile: tuple[Path, Path], tmp_path: Path
) -> None:
    require_bwrap()
    repo, markers = hostile
    outcome = await run_experiment(
        repo,
        DIFF,
        "python3 -m unittest -v",
        sandbox=Sandbox(),
        limits=DEFAULT_LIMITS,
        workspace_root=tmp_path / "workspaces",
    )
    assert fired(markers) == []
    assert outcome.status.value == "completed", outcome
    assert outcome.candidate is not None and outcome.candidate.report.passed == 3
    assert outcome.paths == ("calc.py",)


def test_finding_1_genesis_apply_and_rollback_run_nothing(hostile: tuple[Path, Path]) -> None:
    repo, markers = hostile
    before = (repo / "calc.py").read_bytes()
    baseline = apply_to_repository(repo, DIFF)
    assert b"integers and floats" in (repo / "calc.py").read_bytes()
    assert baseline.head is not None and len(baseline.head) == 40
    assert rollback(repo, baseline) == ("calc.py",)
    assert (repo / "calc.py").read_bytes() == before
    assert fired(markers) == []


async def test_finding_1_singularity_check_and_commit_run_nothing(
    hostile: tuple[Path, Path],
) -> None:
    repo, markers = hostile
    assert await is_git_repository(repo)
    assert await check_diff(repo, DIFF) is None
    applied = await apply_change(repo, DIFF, branch="singularity/t1", message="Comment add")
    assert fired(markers) == []
    assert applied.branch == "singularity/t1" and applied.files == ["calc.py"]
    # The commit is real and holds the change; the user's checkout is untouched.
    assert b"integers and floats" in committed_file(repo, f"{applied.commit}:calc.py")
    assert b"integers" not in (repo / "calc.py").read_bytes()


async def test_attack_diff_cannot_write_into_dot_git(hostile: tuple[Path, Path]) -> None:
    """A diff that writes `.git/config` (to plant a driver for later) is refused."""
    repo, markers = hostile
    diff = (
        "--- a/.git/hooks/pre-commit\n+++ b/.git/hooks/pre-commit\n@@ -1,2 +1,2 @@\n"
        " #!/bin/sh\n-" + f"touch {markers / 'hook-pre-commit'}\n+touch /tmp/owned\n"
    )
    problem = await check_diff(repo, diff)
    assert problem is not None
    with pytest.raises(Exception, match=r"(?i)invalid path|\.git|does not apply"):
        apply_to_repository(repo, diff)
    assert fired(markers) == []


async def test_attack_linked_worktree_git_file_is_refused(tmp_path: Path) -> None:
    """A `.git` file redirects git to a directory elsewhere: refused with one line."""
    repo = make_repo(tmp_path)
    elsewhere = tmp_path / "elsewhere.git"
    (repo / ".git").rename(elsewhere)
    (repo / ".git").write_text(f"gitdir: {elsewhere}\n")
    with pytest.raises(Exception, match="linked work tree"):
        await apply_change(repo, DIFF, branch="b", message="m")
