"""Checking and applying an agent's diff to a repository, with git.

`check_diff` asks `git apply --check` whether the diff applies to the files as they are now;
its answer, cleaned up, is what the model is shown when it must fix the diff.

`apply_change` applies an approved diff. In a git repository it never touches the user's
work tree or checkout: the diff is applied to a temporary index built from HEAD (`git apply
--cached`), committed from there, and the commit becomes a new branch, so the user stays on
their branch and takes the change with `git switch BRANCH` or `git merge BRANCH`. Because the
commit is made from HEAD, touched files with uncommitted changes (or untracked files the
diff would create) are refused: the change would otherwise silently leave them behind. A
branch name already taken gets a suffix: `-2`, `-3`, ... In a directory that is not a git
repository the diff is applied in place (`git apply` works there as `patch -p1`), and there
is no branch or commit. A directory inside a git repository but not its top level is
refused, since its paths would not be the repository's.

Every git command runs with a fixed author and committer, without hooks
(`core.hooksPath=/dev/null`), without commit signing, and without the caller's `GIT_*`
variables; discovery stops at the repository's directory (GIT_CEILING_DIRECTORIES), so a
plain directory inside someone else's repository stays a plain directory.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from singularity.errors import SingularityError, UsageError
from singularity.orchestrator.diffs import diff_problem, touched_files

__all__ = ["AppliedChange", "apply_change", "check_diff", "is_git_repository"]

_NAME, _EMAIL = "Singularity", "singularity@localhost"
_CONFIG = (
    *("-c", "core.hooksPath=/dev/null"),
    *("-c", "core.fsmonitor=false"),
    *("-c", "commit.gpgsign=false"),
    *("-c", "core.quotePath=false"),
    *("-c", f"user.name={_NAME}"),
    *("-c", f"user.email={_EMAIL}"),
)
_GIT_TIMEOUT_S = 120.0
_MAX_ERROR_CHARS = 4000
_MAX_SUFFIX = 100


@dataclass(frozen=True)
class AppliedChange:
    """Where an applied diff went: its branch, commit and base commit (None outside git)."""

    branch: str | None
    commit: str | None
    files: list[str]
    base: str | None


@dataclass(frozen=True)
class _Run:
    code: int
    out: str
    err: str


async def check_diff(root: Path, diff: str) -> str | None:
    """None when the diff applies cleanly to the current files, else why not (git's words)."""
    base = _directory(root)
    problem = diff_problem(diff)
    if problem is not None:
        return problem
    run = await _git(base, "apply", "--check", "--verbose", "-", stdin=diff)
    return None if run.code == 0 else _cleaned(run.err, base)


async def is_git_repository(root: Path) -> bool:
    """Whether `root` is the top level of a git work tree.

    SingularityError when `root` has a `.git` that git refuses (e.g. a repository owned by
    another user), rather than treating it as a plain directory.
    """
    base = _directory(root)
    return await _toplevel(base) == base


async def apply_change(root: Path, diff: str, *, branch: str, message: str) -> AppliedChange:
    """Apply the diff: as a commit on a new branch in a git repository, else in place."""
    base = _directory(root)
    problem = diff_problem(diff)
    if problem is not None:
        raise SingularityError(f"the change cannot be applied: {problem}")
    files = touched_files(diff)
    top = await _toplevel(base)
    if top is None:
        run = await _git(base, "apply", "-", stdin=diff)
        if run.code != 0:
            raise SingularityError(f"the diff does not apply: {_cleaned(run.err, base)}")
        return AppliedChange(branch=None, commit=None, files=files, base=None)
    if top != base:
        raise UsageError(
            f"{str(base)!r} is inside the git repository {str(top)!r}: "
            "give the repository's top directory"
        )
    if not message.strip():
        raise UsageError("a change needs a commit message")
    await _check_branch_name(base, branch)
    head = await _head(base)
    await _refuse_uncommitted(base, files)
    commit = await _commit(base, head, diff, message)
    created = await _create_branch(base, branch, commit)
    return AppliedChange(branch=created, commit=commit, files=files, base=head)


def _directory(root: Path) -> Path:
    if not root.is_dir():
        raise UsageError(f"repository {str(root)!r} is not a directory")
    return root.resolve()


async def _toplevel(base: Path) -> Path | None:
    run = await _git(base, "rev-parse", "--show-toplevel", ceiling=False)
    if run.code == 0:
        return Path(run.out.strip())  # git gives the real path, as `base` is
    if (base / ".git").exists():
        raise SingularityError(
            f"git cannot use the repository in {str(base)!r}: {_cleaned(run.err, base)}"
        )
    return None


async def _head(base: Path) -> str:
    run = await _git(base, "rev-parse", "--verify", "--quiet", "HEAD^{commit}")
    if run.code != 0:
        raise SingularityError(f"the repository {str(base)!r} has no commit yet: commit first")
    return run.out.strip()


async def _check_branch_name(base: Path, branch: str) -> None:
    run = await _git(base, "check-ref-format", f"refs/heads/{branch}")
    if run.code != 0 or branch.startswith("-") or not branch:
        raise UsageError(f"{branch!r} is not a valid git branch name")


async def _refuse_uncommitted(base: Path, files: list[str]) -> None:
    """SingularityError when any touched file differs from HEAD in the index or work tree."""
    run = await _git(
        base,
        "--literal-pathspecs",
        "status",
        "--porcelain=v1",
        "-z",
        "--untracked-files=all",
        "--",
        *files,
    )
    if run.code != 0:
        raise SingularityError(f"git status failed in {str(base)!r}: {_cleaned(run.err, base)}")
    dirty = [entry[3:] for entry in run.out.split("\0") if len(entry) > 3 and entry[2] == " "]
    if dirty:
        raise SingularityError(
            f"uncommitted changes to {', '.join(dirty)} in {str(base)!r}: commit or stash "
            "them, then apply the change again"
        )


async def _commit(base: Path, head: str, diff: str, message: str) -> str:
    """The commit of the diff applied to `head`, made in a temporary index."""
    with tempfile.TemporaryDirectory(prefix="singularity-apply-") as scratch:
        env = {"GIT_INDEX_FILE": str(Path(scratch) / "index")}
        read = await _git(base, "read-tree", head, env=env)
        if read.code != 0:
            raise SingularityError(f"git could not read HEAD: {_cleaned(read.err, base, scratch)}")
        applied = await _git(base, "apply", "--cached", "-", stdin=diff, env=env)
        if applied.code != 0:
            reason = _cleaned(applied.err, base, scratch)
            raise SingularityError(f"the diff does not apply to HEAD ({head[:12]}): {reason}")
        tree = await _git(base, "write-tree", env=env)
        commit = await _git(
            base, "commit-tree", tree.out.strip(), "-p", head, "-F", "-", stdin=message
        )
        if tree.code != 0 or commit.code != 0:
            reason = _cleaned(tree.err + commit.err, base, scratch)
            raise SingularityError(f"git could not commit the change: {reason}")
    return commit.out.strip()


async def _create_branch(base: Path, branch: str, commit: str) -> str:
    """Point a new branch at `commit`: `branch`, or the first free `branch-N`."""
    for number in range(1, _MAX_SUFFIX + 1):
        name = branch if number == 1 else f"{branch}-{number}"
        # The empty old value makes update-ref create the ref only if it does not exist.
        run = await _git(
            base, "update-ref", "-m", "singularity: new branch", f"refs/heads/{name}", commit, ""
        )
        if run.code == 0:
            return name
        exists = await _git(base, "show-ref", "--verify", "--quiet", f"refs/heads/{name}")
        if exists.code != 0:
            raise SingularityError(
                f"git could not create branch {name!r}: {_cleaned(run.err, base)}"
            )
    raise SingularityError(f"branches {branch!r} to {branch}-{_MAX_SUFFIX} all exist already")


def _cleaned(stderr: str, base: Path, *scratch: str) -> str:
    """git's message for a model or a user: no progress lines, no local paths, bounded."""
    text = stderr
    for path in (*scratch, str(base)):
        text = text.replace(path + "/", "").replace(path, ".")
    text = text.replace("<stdin>:", "line ")
    lines = [line.rstrip() for line in text.split("\n") if not line.startswith("Checking patch ")]
    cleaned = "\n".join(lines).strip() or "git gave no reason"
    if len(cleaned) > _MAX_ERROR_CHARS:
        cleaned = cleaned[: _MAX_ERROR_CHARS - 4] + "\n..."
    return cleaned


async def _git(
    base: Path,
    *args: str,
    stdin: str | None = None,
    env: dict[str, str] | None = None,
    ceiling: bool = True,
) -> _Run:
    """Run git in `base`; discovery stops at `base` unless `ceiling` is False."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("GIT_")}
    environment |= {
        "LC_ALL": "C",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_AUTHOR_NAME": _NAME,
        "GIT_AUTHOR_EMAIL": _EMAIL,
        "GIT_COMMITTER_NAME": _NAME,
        "GIT_COMMITTER_EMAIL": _EMAIL,
        **(env or {}),
    }
    if ceiling:
        environment["GIT_CEILING_DIRECTORIES"] = str(base.parent)
    try:
        process = await asyncio.create_subprocess_exec(
            "git",
            *_CONFIG,
            *args,
            cwd=base,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=environment,
        )
    except FileNotFoundError:
        raise SingularityError("git is not installed: agents apply diffs with git") from None
    data = stdin.encode("utf-8", "surrogateescape") if stdin is not None else None
    try:
        out, err = await asyncio.wait_for(process.communicate(data), _GIT_TIMEOUT_S)
    except BaseException as exc:  # a timeout, or the task cancelled: git must not linger
        if process.returncode is None:
            process.kill()
            await process.wait()
        if isinstance(exc, TimeoutError):
            raise SingularityError(
                f"git {args[0]} took longer than {_GIT_TIMEOUT_S:.0f} s"
            ) from None
        raise
    return _Run(
        process.returncode or 0, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")
    )
