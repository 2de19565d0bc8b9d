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

Every git command runs with a fixed author and committer against a sealed git directory
(`singularity.safegit`): git never reads the repository's config, attributes file or hooks,
nor any system or global configuration, so nothing a repository names (a filter, a hook, an
fsmonitor, a pager, a helper) runs. A commit reaches the repository through a shadow
directory that shares only its objects and refs.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from singularity.errors import SingularityError, UsageError
from singularity.orchestrator.diffs import diff_problem, touched_files
from singularity.safegit import find_repository, sealed_env, sealed_git_dir, shadow_git_dir

__all__ = ["AppliedChange", "apply_change", "apply_in_place", "check_diff", "is_git_repository"]

_NAME, _EMAIL = "Singularity", "singularity@localhost"
_IDENTITY = {
    "GIT_AUTHOR_NAME": _NAME,
    "GIT_AUTHOR_EMAIL": _EMAIL,
    "GIT_COMMITTER_NAME": _NAME,
    "GIT_COMMITTER_EMAIL": _EMAIL,
}
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
    with _sealed(base, shadow=False) as git:
        run = await git("apply", "--check", "--verbose", "-", stdin=diff)
    return None if run.code == 0 else _cleaned(run.err, base)


async def is_git_repository(root: Path) -> bool:
    """Whether `root` is the top level of a git work tree.

    SingularityError when `root` has a `.git` that git refuses (e.g. a repository owned by
    another user), rather than treating it as a plain directory.
    """
    base = _directory(root)
    return _toplevel(base) == base


async def apply_change(root: Path, diff: str, *, branch: str, message: str) -> AppliedChange:
    """Apply the diff: as a commit on a new branch in a git repository, else in place."""
    base = _directory(root)
    problem = diff_problem(diff)
    if problem is not None:
        raise SingularityError(f"the change cannot be applied: {problem}")
    files = touched_files(diff)
    top = _toplevel(base)
    if top is None:
        problem = await apply_in_place(base, diff)
        if problem is not None:
            raise SingularityError(f"the diff does not apply: {problem}")
        return AppliedChange(branch=None, commit=None, files=files, base=None)
    if top != base:
        raise UsageError(
            f"{str(base)!r} is inside the git repository {str(top)!r}: "
            "give the repository's top directory"
        )
    if not message.strip():
        raise UsageError("a change needs a commit message")
    with _sealed(base, shadow=True) as git:
        await _check_branch_name(git, branch)
        head = await _head(git)
        await _refuse_uncommitted(git, files)
        commit = await _commit(git, head, diff, message)
        created = await _create_branch(git, branch, commit)
    return AppliedChange(branch=created, commit=commit, files=files, base=head)


async def apply_in_place(root: Path, diff: str) -> str | None:
    """Apply the diff to the files under `root` (as `patch -p1` would, with no repository and
    whatever holds `root`); None once applied, else why not (git's words)."""
    base = _directory(root)
    problem = diff_problem(diff)
    if problem is not None:
        return problem
    with _sealed(base, shadow=False) as git:
        run = await git("apply", "-", stdin=diff)
    return None if run.code == 0 else _cleaned(run.err, base)


def _directory(root: Path) -> Path:
    if not root.is_dir():
        raise UsageError(f"repository {str(root)!r} is not a directory")
    return root.resolve()


def _toplevel(base: Path) -> Path | None:
    """The top of the work tree holding `base`; SingularityError for one owned by another
    user (as git's own safe.directory check refuses it)."""
    top = find_repository(base)
    if top is not None and os.lstat(top / ".git").st_uid != os.geteuid():
        raise SingularityError(
            f"git cannot use the repository in {str(top)!r}: it is owned by another user"
        )
    return top


async def _head(git: _Git) -> str:
    run = await git("rev-parse", "--verify", "--quiet", "HEAD^{commit}")
    if run.code != 0:
        raise SingularityError(f"the repository {str(git.base)!r} has no commit yet: commit first")
    return run.out.strip()


async def _check_branch_name(git: _Git, branch: str) -> None:
    run = await git("check-ref-format", f"refs/heads/{branch}")
    if run.code != 0 or branch.startswith("-") or not branch:
        raise UsageError(f"{branch!r} is not a valid git branch name")


async def _refuse_uncommitted(git: _Git, files: list[str]) -> None:
    """SingularityError when any touched file differs from HEAD in the index or work tree."""
    base = git.base
    run = await git(
        "--literal-pathspecs",
        "status",
        "--porcelain=v1",
        "-z",
        "--untracked-files=all",
        "--",
        *files,
        env={"GIT_INDEX_FILE": str(base / ".git" / "index")},
    )
    if run.code != 0:
        raise SingularityError(f"git status failed in {str(base)!r}: {_cleaned(run.err, base)}")
    dirty = [entry[3:] for entry in run.out.split("\0") if len(entry) > 3 and entry[2] == " "]
    if dirty:
        raise SingularityError(
            f"uncommitted changes to {', '.join(dirty)} in {str(base)!r}: commit or stash "
            "them, then apply the change again"
        )


async def _commit(git: _Git, head: str, diff: str, message: str) -> str:
    """The commit of the diff applied to `head`, made in a temporary index."""
    base, scratch = git.base, str(git.scratch)
    env = {"GIT_INDEX_FILE": str(git.scratch / "index")}
    read = await git("read-tree", head, env=env)
    if read.code != 0:
        raise SingularityError(f"git could not read HEAD: {_cleaned(read.err, base, scratch)}")
    applied = await git("apply", "--cached", "-", stdin=diff, env=env)
    if applied.code != 0:
        reason = _cleaned(applied.err, base, scratch)
        raise SingularityError(f"the diff does not apply to HEAD ({head[:12]}): {reason}")
    tree = await git("write-tree", env=env)
    commit = await git("commit-tree", tree.out.strip(), "-p", head, "-F", "-", stdin=message)
    if tree.code != 0 or commit.code != 0:
        reason = _cleaned(tree.err + commit.err, base, scratch)
        raise SingularityError(f"git could not commit the change: {reason}")
    return commit.out.strip()


async def _create_branch(git: _Git, branch: str, commit: str) -> str:
    """Point a new branch at `commit`: `branch`, or the first free `branch-N`."""
    base = git.base
    for number in range(1, _MAX_SUFFIX + 1):
        name = branch if number == 1 else f"{branch}-{number}"
        # The empty old value makes update-ref create the ref only if it does not exist.
        run = await git(
            "update-ref", "-m", "singularity: new branch", f"refs/heads/{name}", commit, ""
        )
        if run.code == 0:
            return name
        exists = await git("show-ref", "--verify", "--quiet", f"refs/heads/{name}")
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


@contextmanager
def _sealed(base: Path, *, shadow: bool) -> Iterator[_Git]:
    """git for `base` on a sealed directory: the repository's shadow, or an empty one."""
    with tempfile.TemporaryDirectory(prefix="singularity-git-") as scratch:
        root = Path(scratch)
        git_dir = shadow_git_dir(base, root) if shadow else sealed_git_dir(root)
        yield _Git(base, root, sealed_env(root, git_dir, base, _IDENTITY))


class _Git:
    """git commands in one work tree, on one sealed git directory."""

    def __init__(self, base: Path, scratch: Path, env: dict[str, str]) -> None:
        self.base = base
        self.scratch = scratch
        self._env = env

    async def __call__(
        self, *args: str, stdin: str | None = None, env: dict[str, str] | None = None
    ) -> _Run:
        return await _git(self.base, args, self._env | (env or {}), stdin)


async def _git(base: Path, args: tuple[str, ...], env: dict[str, str], stdin: str | None) -> _Run:
    """Run git in `base` with exactly the environment `env`."""
    try:
        process = await asyncio.create_subprocess_exec(
            "git",
            *args,
            cwd=base,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
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
