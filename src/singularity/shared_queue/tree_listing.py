"""Which files of a working tree a snapshot holds, and opening them without following a link.

In a git repository: the tracked files of the working tree and the untracked files git does
not ignore (`git ls-files --cached --others --exclude-standard`), listed by git on a sealed
git directory (`singularity.safegit`): the repository's objects and refs, its index, and no
configuration, attributes or hooks of its own, so nothing the repository names runs. The
ignore rules are the `.gitignore` files of the tree; `.git/info/exclude` and the user's global
excludes are not read. Elsewhere: every entry below the directory, `.git` left out, empty
folders kept.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from singularity.errors import SingularityError, UsageError
from singularity.safegit import find_repository, sealed_env, shadow_git_dir
from singularity.shared_queue.manifest import MAX_WORKSPACE_DEPTH

__all__ = ["Listing", "SnapshotRefused", "list_tree", "open_parent"]

_GIT_TIMEOUT_S = 120
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class SnapshotRefused(UsageError):
    """A tree that cannot be snapshot (too large, an odd name, git failing); says why."""


@dataclass
class Listing:
    """The paths a snapshot reads, relative to its root."""

    paths: list[str] = field(default_factory=list)  # files and links, as found or as listed
    empty_dirs: list[str] = field(default_factory=list)


def list_tree(root: Path, *, max_entries: int) -> Listing:
    """What a snapshot of `root` holds (see the module's docstring)."""
    top = find_repository(root)
    if top is None:
        listing = Listing()
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            _walk(fd, "", listing, max_entries)
        finally:
            os.close(fd)
        return listing
    return Listing(paths=_git_listing(root, top))


@contextlib.contextmanager
def open_parent(root_fd: int, path: str) -> Iterator[tuple[int | None, str]]:
    """(fd of the directory holding `path`, its name); fd None when a folder on the way is
    missing or is not a real directory (a link is never followed)."""
    parts = path.split("/")
    fd = os.dup(root_fd)
    try:
        for part in parts[:-1]:
            try:
                child = os.open(part, _DIR, dir_fd=fd)
            except OSError:
                yield None, parts[-1]
                return
            os.close(fd)
            fd = child
        yield fd, parts[-1]
    finally:
        os.close(fd)


def _git_listing(root: Path, top: Path) -> list[str]:
    with tempfile.TemporaryDirectory(prefix="singularity-git-") as scratch:
        git_dir = shadow_git_dir(top, Path(scratch))
        index = {"GIT_INDEX_FILE": str(top / ".git" / "index")}
        env = sealed_env(Path(scratch), git_dir, top, index)
        argv = ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"]
        try:
            done = subprocess.run(
                argv, cwd=root, env=env, capture_output=True, timeout=_GIT_TIMEOUT_S, check=False
            )
        except FileNotFoundError:
            raise SingularityError("git is not installed: snapshots list files with git") from None
        except subprocess.TimeoutExpired:
            raise SnapshotRefused(
                f"git took longer than {_GIT_TIMEOUT_S} s to list the files"
            ) from None
    if done.returncode != 0:
        reason = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["?"]
        raise SnapshotRefused(f"git could not list the repository's files: {reason[0]}")
    # A path listed twice is an unmerged file (one line per stage); a trailing slash marks a
    # nested repository, which is not part of this one.
    names = (os.fsdecode(raw) for raw in done.stdout.split(b"\0") if raw)
    return list(dict.fromkeys(name for name in names if not name.endswith("/")))


def _walk(fd: int, prefix: str, listing: Listing, max_entries: int) -> None:
    with os.scandir(fd) as entries:
        names = sorted((entry.name, entry.is_dir(follow_symlinks=False)) for entry in entries)
    for name, is_dir in names:
        if name == ".git":
            continue
        path = f"{prefix}{name}"
        if len(listing.paths) + len(listing.empty_dirs) > max_entries:
            raise SnapshotRefused(f"the repository holds more than {max_entries} entries")
        if not is_dir:
            listing.paths.append(path)
            continue
        try:
            child = os.open(name, _DIR, dir_fd=fd)
        except OSError:
            continue  # gone, or swapped for a link since the listing
        try:
            if path.count("/") >= MAX_WORKSPACE_DEPTH:
                raise SnapshotRefused(
                    f"the repository is nested deeper than {MAX_WORKSPACE_DEPTH} folders"
                )
            before = len(listing.paths) + len(listing.empty_dirs)
            _walk(child, f"{path}/", listing, max_entries)
            if len(listing.paths) + len(listing.empty_dirs) == before:
                listing.empty_dirs.append(path)
        finally:
            os.close(child)
