"""Workspaces: private directories that hold copies of a repository for sandboxed runs.

A copy never follows a symlink: a link is copied as a link, so a repository (or a test that
planted one) cannot make the copy read a host file. Special files (FIFOs, sockets, devices)
are left out. The copy is bounded: the contents of its files and links may not exceed the
given size.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from pathlib import Path

from singularity.errors import UsageError

__all__ = ["RepositoryTooLarge", "copy_tree", "create_workspace", "remove_workspace"]

_CHUNK = 1 << 20
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class RepositoryTooLarge(UsageError):
    """A repository holds more than a workspace may."""


def create_workspace(root: Path) -> Path:
    """A fresh directory under `root` that only its owner may enter."""
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    return Path(tempfile.mkdtemp(prefix="experiment-", dir=root))


def copy_tree(source: Path, target: Path, *, max_bytes: int) -> int:
    """Copy `source` to the new directory `target`; returns the bytes copied.

    RepositoryTooLarge (with `target` removed) when the contents exceed `max_bytes`.
    """
    if not source.is_dir() or source.is_symlink():
        raise UsageError(f"repository {str(source)!r} is not a directory")
    budget = _Budget(source, max_bytes)
    try:
        _copy_dir(source, target, budget)
    except BaseException:
        remove_workspace(target)
        raise
    return budget.used


def remove_workspace(path: Path) -> None:
    """Remove a workspace, however its runs left permissions; a missing one is fine."""

    def unlock(_func: object, failed: str, _exc: object) -> None:
        # A run may leave directories without write permission; open them up and retry.
        os.chmod(os.path.dirname(failed), 0o700)
        if os.path.isdir(failed) and not os.path.islink(failed):
            os.chmod(failed, 0o700)
            shutil.rmtree(failed)
        else:
            os.unlink(failed)

    if path.is_symlink():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path, onerror=unlock)


class _Budget:
    """Bytes left for a copy, with the error that names the repository."""

    def __init__(self, source: Path, max_bytes: int) -> None:
        self.source = source
        self.max_bytes = max_bytes
        self.used = 0

    def spend(self, size: int) -> None:
        self.used += size
        if self.used > self.max_bytes:
            raise RepositoryTooLarge(
                f"repository {str(self.source)!r} holds more than "
                f"{self.max_bytes / (1 << 20):g} MiB, the disk limit (limits.disk_mb)"
            )


def _copy_dir(source: Path, target: Path, budget: _Budget) -> None:
    # Created private and filled before it gets the source's mode, which may be read-only.
    os.mkdir(target, 0o700)
    with os.scandir(source) as entries:
        for entry in entries:
            _copy_entry(entry, target / entry.name, budget)
    _copy_metadata(source, target)


def _copy_entry(entry: os.DirEntry[str], target: Path, budget: _Budget) -> None:
    if entry.is_symlink():
        link = os.readlink(entry.path)
        budget.spend(len(os.fsencode(link)))
        os.symlink(link, target)
    elif entry.is_dir(follow_symlinks=False):
        _copy_dir(Path(entry.path), target, budget)
    elif entry.is_file(follow_symlinks=False):
        _copy_file(Path(entry.path), target, budget)


def _copy_file(source: Path, target: Path, budget: _Budget) -> None:
    fd = os.open(source, _FILE_FLAGS)
    with os.fdopen(fd, "rb") as reader:
        if not stat.S_ISREG(os.fstat(reader.fileno()).st_mode):
            return  # replaced by something else since the directory was listed
        out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(out, "wb") as writer:
            while chunk := reader.read(_CHUNK):
                budget.spend(len(chunk))
                writer.write(chunk)
    _copy_metadata(source, target)


def _copy_metadata(source: Path, target: Path) -> None:
    """Permission bits (set-id bits dropped) and times."""
    info = os.lstat(source)
    os.chmod(target, stat.S_IMODE(info.st_mode) & 0o777)
    os.utime(target, ns=(info.st_atime_ns, info.st_mtime_ns))
