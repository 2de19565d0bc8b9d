"""Which repositories a Genesis worker serving the bus may touch, and opening one safely.

A message on `experiment_requests` names a path on the worker's host; anyone who may publish
there could name `/etc` or the platform's own home. A worker therefore opens a repository only
under the roots its operator allows (`GENESIS_REPO_ROOTS`; by default the home directory of
the user the worker runs as), and:

- walks from the root down one component at a time without following a symbolic link, so a
  link planted under a root (even swapped in while the walk runs) leads nowhere;
- refuses hidden components below the root (`~/.ssh`, `~/.config/...`);
- refuses the platform's own directories (`SINGULARITY_HOME`, `GENESIS_DATA_DIR`) and any
  directory that holds them or the worker user's home;
- hands the open directory to a copier that runs as an unprivileged uid (see `copier.py`), so
  a file its owner keeps private stays unread even under an allowed root.

The CLI acting for its own user (`singularity genesis experiment --repo`) does not go through
these rules: it reads what its user may read.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from singularity.config import Settings
from singularity.errors import UsageError

__all__ = ["RepositoryPolicy", "RepositoryRefused", "open_directory"]

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


class RepositoryRefused(UsageError):
    """A repository this worker will not touch; the message says why."""


@dataclass(frozen=True)
class RepositoryPolicy:
    """The roots a bus request's repository must lie under, and the directories it must avoid."""

    roots: tuple[Path, ...]
    platform: tuple[Path, ...]  # the platform's own data: never inside, never holding it
    home: Path  # the worker user's home: never a repository, nor inside one

    @classmethod
    def from_settings(cls, settings: Settings) -> RepositoryPolicy:
        """The policy of this worker's settings."""
        home = _real(Path.home())
        roots = tuple(_real(root) for root in settings.genesis_repo_roots) or (home,)
        platform = (_real(settings.singularity_home), _real(settings.genesis_dir))
        return cls(roots, platform, home)

    def open(self, repo: str) -> int:
        """A descriptor of the repository's directory; RepositoryRefused (one line) if not."""
        path = _absolute(repo)
        for root in self.roots:
            if path == root or root in path.parents:
                self._refuse_private(path)
                return _walk(root, path.relative_to(root).parts, repo)
        allowed = ", ".join(str(root) for root in self.roots)
        raise RepositoryRefused(
            f"repository {_shown(repo)} is outside the directories this Genesis worker may read "
            f"({allowed}; set GENESIS_REPO_ROOTS to change them)"
        )

    def _refuse_private(self, path: Path) -> None:
        for private in self.platform:
            if path == private or private in path.parents or path in private.parents:
                raise RepositoryRefused(
                    f"repository {str(path)!r} is, or holds, the platform's own data "
                    f"({private}): Genesis does not read it"
                )
        if path == self.home or path in self.home.parents:
            raise RepositoryRefused(
                f"repository {str(path)!r} holds the home directory of the user Genesis runs "
                "as: name the repository's own directory"
            )


def open_directory(repo: Path) -> int:
    """A descriptor of a directory the caller names for itself (the CLI); follows its links."""
    try:
        return os.open(repo, _DIR)
    except OSError as exc:
        raise UsageError(f"repository {str(repo)!r} is not a directory: {exc.strerror}") from None


def _absolute(repo: str) -> Path:
    if not repo or "\0" in repo or not repo.startswith("/"):
        raise RepositoryRefused(f"repository {_shown(repo)} must be an absolute path on the worker")
    parts = PurePosixPath(repo).parts
    if ".." in parts:
        raise RepositoryRefused(f"repository {_shown(repo)} must not climb with '..'")
    return Path(*parts)


def _walk(root: Path, parts: tuple[str, ...], repo: str) -> int:
    """Open `root`, then each of `parts` below it without following a link."""
    for part in parts:
        if part.startswith("."):
            raise RepositoryRefused(
                f"repository {_shown(repo)} lies in a hidden directory ({part})"
            )
    fd = os.open(root, _DIR)
    try:
        for part in parts:
            try:
                child = os.open(part, _DIR | os.O_NOFOLLOW, dir_fd=fd)
            except OSError as exc:
                why = _why(exc, part, _is_link(fd, part))
                raise RepositoryRefused(f"repository {_shown(repo)}: {why}") from None
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def _is_link(fd: int, part: str) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(part, dir_fd=fd).st_mode)
    except OSError:
        return False


def _why(exc: OSError, part: str, link: bool) -> str:
    if link or exc.errno == errno.ELOOP:
        return f"{part} is a symbolic link, which Genesis does not follow"
    if exc.errno == errno.ENOTDIR:
        return f"{part} is not a directory"
    if exc.errno == errno.ENOENT:
        return f"{part} does not exist on this worker"
    return f"{part}: {exc.strerror}"


def _shown(repo: str) -> str:
    """The path as a message quotes it: bounded, whatever length a request gave."""
    return repr(repo if len(repo) <= 200 else repo[:200] + "...")


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))
