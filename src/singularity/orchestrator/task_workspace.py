"""A task's workspace: a private copy of the repository that the agent edits, and its diff.

When a task starts, the files of the repository's working tree (for a git repository: the
tracked files and the untracked ones git does not ignore; the same listing a workspace snapshot
takes, read without following a link) are copied twice under the task's directory: `base`, the
repository as the task found it, and `work`, what the agent's tools change. The user's own
tree is never written while the task runs: the change that reaches the reviewer is the diff
from `base` to `work`, and it reaches the repository only through `apply_change` once approved.
Keeping `base` makes that diff independent of what the user does meanwhile in their tree.

The diff is git's unified format (`a/` and `b/` prefixes, `/dev/null` for a created or deleted
file, the "No newline at end of file" marker), which `git apply` takes. Binary files cannot be
put in such a diff: a change to one is refused with the file's name. Links are copied as links
and left out of the diff: the agent's tools never create, follow or change one.
"""

from __future__ import annotations

import asyncio
import difflib
import os
import shutil
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from singularity.errors import UsageError
from singularity.shared_queue.manifest import Entry
from singularity.shared_queue.snapshots import Snapshot, snapshot_of

__all__ = ["TaskWorkspace", "WorkspaceChangeRefused"]

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
_NO_NEWLINE = "\\ No newline at end of file\n"


class WorkspaceChangeRefused(UsageError):
    """The workspace holds a change that cannot be shown as a text diff; says which."""


@dataclass(frozen=True)
class TaskWorkspace:
    """The directories of one task's workspace."""

    root: Path

    @property
    def base(self) -> Path:
        """The repository as the task found it (never changed)."""
        return self.root / "base"

    @property
    def work(self) -> Path:
        """What the agent works on."""
        return self.root / "work"

    @classmethod
    async def create(cls, repo: Path, root: Path) -> TaskWorkspace:
        """Copy the working tree of `repo` into a new workspace at `root` (which must not
        exist); SnapshotRefused (one line) for a tree too large or with names that cannot be
        copied."""
        snapshot = await asyncio.to_thread(snapshot_of, repo)
        workspace = cls(root)
        await asyncio.to_thread(workspace._fill, snapshot)
        return workspace

    def exists(self) -> bool:
        return self.base.is_dir() and self.work.is_dir()

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    async def diff(self) -> str:
        """The change from `base` to `work`, as `git apply` takes it ("" for none)."""
        return await asyncio.to_thread(self._diff)

    def _fill(self, snapshot: Snapshot) -> None:
        self.root.mkdir(mode=0o700, parents=True)
        entries = sorted(snapshot.manifest.entries, key=lambda entry: entry.path)
        for tree in (self.base, self.work):
            tree.mkdir(mode=0o700)
            for entry in entries:
                _write_entry(tree, entry, snapshot)

    def _diff(self) -> str:
        before, after = _files(self.base), _files(self.work)
        parts = []
        for path in sorted(before.keys() | after.keys()):
            old = _read(self.base, path) if path in before else None
            new = _read(self.work, path) if path in after else None
            if old != new:
                parts.append(_file_diff(path, old, new, before.get(path) or after[path]))
        return "".join(parts)


def _write_entry(tree: Path, entry: Entry, snapshot: Snapshot) -> None:
    target = tree / entry.path
    if entry.kind == "dir":
        target.mkdir(mode=0o755, parents=True, exist_ok=True)
        return
    target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    if entry.kind == "symlink":
        os.symlink(entry.target, target)
        return
    fd = os.open(target, _NEW, 0o755 if entry.mode & stat.S_IXUSR else 0o644)
    try:
        for _, data in snapshot.read_chunks(list(entry.chunks)):
            os.write(fd, data)
    finally:
        os.close(fd)


def _files(tree: Path) -> dict[str, str]:
    """The regular files below `tree` (relative paths) with git's mode for each, walked
    without following a link."""
    fd = os.open(tree, _DIR)
    try:
        return dict(_walk(fd, ""))
    finally:
        os.close(fd)


def _walk(fd: int, prefix: str) -> Iterator[tuple[str, str]]:
    with os.scandir(fd) as scan:
        entries = sorted((entry.name, entry.stat(follow_symlinks=False).st_mode) for entry in scan)
    for name, mode in entries:
        if stat.S_ISREG(mode):
            yield f"{prefix}{name}", "100755" if mode & stat.S_IXUSR else "100644"
        elif stat.S_ISDIR(mode):
            child = os.open(name, _DIR, dir_fd=fd)
            try:
                yield from _walk(child, f"{prefix}{name}/")
            finally:
                os.close(child)


def _read(tree: Path, path: str) -> bytes:
    fd = os.open(tree, _DIR)
    try:
        for part in path.split("/")[:-1]:
            child = os.open(part, _DIR, dir_fd=fd)
            os.close(fd)
            fd = child
        file_fd = os.open(path.rsplit("/", 1)[-1], _READ, dir_fd=fd)
    finally:
        os.close(fd)
    with os.fdopen(file_fd, "rb") as file:
        return file.read()


def _file_diff(path: str, old: bytes | None, new: bytes | None, mode: str) -> str:
    before, after = _text(path, old), _text(path, new)
    header = f"diff --git a/{path} b/{path}\n"
    if old is None:
        header += f"new file mode {mode}\n"
    elif new is None:
        header += f"deleted file mode {mode}\n"
    source = "/dev/null" if old is None else f"a/{path}"
    target = "/dev/null" if new is None else f"b/{path}"
    lines = difflib.unified_diff(before, after, source, target, n=3)
    body = []
    for line in lines:
        if line.startswith(("---", "+++")):
            body.append(line.rstrip("\n") + "\n")
        elif line.endswith("\n"):
            body.append(line)
        else:  # the last line of a file that does not end with a newline
            body.append(line + "\n" + _NO_NEWLINE)
    return header + "".join(body)


def _text(path: str, data: bytes | None) -> list[str]:
    if data is None:
        return []
    if b"\0" in data:
        raise WorkspaceChangeRefused(f"{path} is a binary file: its change cannot be reviewed")
    try:
        return data.decode("utf-8").splitlines(keepends=True)
    except UnicodeDecodeError:
        raise WorkspaceChangeRefused(
            f"{path} is not UTF-8 text: its change cannot be reviewed"
        ) from None
