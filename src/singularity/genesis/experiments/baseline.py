"""Snapshots of the paths a diff touches, and restoring them exactly.

A snapshot records each path and every directory above it (inside the tree): a file's bytes
and mode, a symlink's target, a directory's mode, or that nothing was there. Restoring puts
each back and removes what was not there. Directories the diff created are removed only when
empty: anything added to them since is not ours to delete. Every path is opened one component
at a time without following symlinks, so a link the diff planted is replaced, never followed.
"""

from __future__ import annotations

import base64
import os
import secrets
import stat
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from singularity.errors import SingularityError
from singularity.genesis.paths import parent_dir, read_regular, relative_parts, remove_entry

__all__ = ["Baseline", "Entry", "Kind", "SnapshotTooLarge", "restore_snapshot", "take_snapshot"]

_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class SnapshotTooLarge(SingularityError):
    """The files a diff touches hold more than a snapshot may keep."""


class Kind(StrEnum):
    """What was at a path."""

    ABSENT = "absent"
    FILE = "file"
    SYMLINK = "symlink"
    DIRECTORY = "directory"


@dataclass(frozen=True, slots=True)
class Entry:
    """One path as it was: `content` is a file's bytes in base64, `target` a link's target."""

    path: str
    kind: Kind
    mode: int | None = None
    content: str | None = None
    target: str | None = None

    @property
    def data(self) -> bytes:
        return base64.b64decode(self.content or "")

    @property
    def depth(self) -> int:
        return len(relative_parts(self.path))

    def to_dict(self) -> dict[str, Any]:
        """The entry as JSON-friendly values."""
        return {key: value for key, value in asdict(self).items() if value is not None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Entry:
        """An entry from `to_dict()`'s output; ValueError for anything else."""
        try:
            entry = cls(
                path=str(data["path"]),
                kind=Kind(data["kind"]),
                mode=None if data.get("mode") is None else int(data["mode"]),
                content=data.get("content"),
                target=data.get("target"),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a snapshot entry: {data!r}") from exc
        relative_parts(entry.path)
        return entry


@dataclass(frozen=True, slots=True)
class Baseline:
    """A repository before a diff went in: its git HEAD (None outside git), the paths the
    diff touches, and the entries recorded for them and for the directories above them."""

    repo: str
    head: str | None
    paths: tuple[str, ...]
    entries: tuple[Entry, ...]

    def to_dict(self) -> dict[str, Any]:
        """The baseline as JSON-friendly values."""
        return {
            "repo": self.repo,
            "head": self.head,
            "paths": list(self.paths),
            "entries": [entry.to_dict() for entry in self.entries],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Baseline:
        """A baseline from `to_dict()`'s output; ValueError for anything else."""
        try:
            paths = tuple(str(path) for path in data["paths"])
            entries = tuple(Entry.from_dict(entry) for entry in data["entries"])
            baseline = cls(str(data["repo"]), data.get("head"), paths, entries)
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a recorded baseline ({exc!r})") from exc
        for path in paths:
            relative_parts(path)
        return baseline


def take_snapshot(root: Path, paths: Iterable[str], *, max_bytes: int) -> tuple[Entry, ...]:
    """The state of each path and of its ancestors under `root`, shallowest first."""
    entries: dict[str, Entry] = {}
    budget = [max_bytes]
    for path in paths:
        parts = relative_parts(path)
        for depth in range(1, len(parts) + 1):
            prefix = "/".join(parts[:depth])
            if prefix not in entries:
                entries[prefix] = _record(root, prefix, budget)
    return tuple(sorted(entries.values(), key=lambda entry: (entry.depth, entry.path)))


def restore_snapshot(root: Path, entries: Iterable[Entry]) -> tuple[str, ...]:
    """Put every entry back under `root`; returns the paths that changed."""
    ordered = sorted(entries, key=lambda entry: (entry.depth, entry.path))
    changed: dict[str, None] = {}
    # Deepest first: clear what the diff added, so that its directories can go.
    for entry in reversed(ordered):
        if entry.kind is not Kind.DIRECTORY and _clear(root, entry):
            changed[entry.path] = None
    # Shallowest first: directories exist before what they hold is written into them.
    for entry in ordered:
        if _put_back(root, entry):
            changed[entry.path] = None
    return tuple(path for path in (entry.path for entry in ordered) if path in changed)


def _record(root: Path, path: str, budget: list[int]) -> Entry:
    with parent_dir(root, path) as (fd, name):
        info = _lstat(fd, name)
        if info is None:
            return Entry(path, Kind.ABSENT)
        mode = stat.S_IMODE(info.st_mode)
        if stat.S_ISDIR(info.st_mode):
            return Entry(path, Kind.DIRECTORY, mode=mode)
        if stat.S_ISLNK(info.st_mode):
            return Entry(path, Kind.SYMLINK, target=os.readlink(name, dir_fd=fd))
    if not stat.S_ISREG(info.st_mode):
        raise SingularityError(f"{path} is neither a file, a directory nor a symlink")
    if info.st_size > budget[0]:
        raise SnapshotTooLarge(f"the files the diff touches are too large to keep ({path})")
    data = read_regular(root, path, budget[0])
    budget[0] -= len(data)
    return Entry(path, Kind.FILE, mode=mode, content=base64.b64encode(data).decode())


def _lstat(fd: int | None, name: str) -> os.stat_result | None:
    if fd is None:
        return None  # an ancestor is missing or is not a directory: nothing is here
    try:
        return os.lstat(name, dir_fd=fd)
    except FileNotFoundError:
        return None


def _clear(root: Path, entry: Entry) -> bool:
    """Remove what is at a non-directory entry's path when it must not stay there."""
    with parent_dir(root, entry.path) as (fd, name):
        info = _lstat(fd, name)
        if info is None or fd is None or _same(fd, name, info, entry):
            return False
        if not stat.S_ISDIR(info.st_mode):
            if entry.kind is Kind.ABSENT:
                os.unlink(name, dir_fd=fd)
                return True
            return False  # a file or link is replaced in place later
        if entry.kind is Kind.ABSENT:
            try:
                os.rmdir(name, dir_fd=fd)
            except OSError:
                return False  # holds files added since: keep them
            return True
    return remove_entry(root, entry.path)  # a directory where a file must be


def _put_back(root: Path, entry: Entry) -> bool:
    if entry.kind is Kind.ABSENT:
        return False
    with parent_dir(root, entry.path) as (fd, name):
        if fd is None:
            raise SingularityError(f"cannot restore {entry.path}: its directory is missing")
        info = _lstat(fd, name)
        if info is not None and _same(fd, name, info, entry):
            return False
        if entry.kind is Kind.DIRECTORY:
            _make_dir(fd, name, info, entry.mode or 0o755)
        elif entry.kind is Kind.SYMLINK:
            _replace_with(fd, name, lambda tmp: os.symlink(entry.target or "", tmp, dir_fd=fd))
        else:
            _replace_with(fd, name, lambda tmp: _write(fd, tmp, entry.data, entry.mode))
        return True


def _same(fd: int, name: str, info: os.stat_result, entry: Entry) -> bool:
    mode = stat.S_IMODE(info.st_mode)
    if entry.kind is Kind.DIRECTORY:
        return stat.S_ISDIR(info.st_mode) and mode == entry.mode
    if entry.kind is Kind.SYMLINK:
        return stat.S_ISLNK(info.st_mode) and os.readlink(name, dir_fd=fd) == entry.target
    if entry.kind is Kind.FILE and stat.S_ISREG(info.st_mode) and mode == entry.mode:
        data = entry.data
        if info.st_size != len(data):
            return False
        file_fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
        with os.fdopen(file_fd, "rb") as handle:
            return handle.read(len(data) + 1) == data
    return False


def _make_dir(fd: int, name: str, info: os.stat_result | None, mode: int) -> None:
    if info is not None and not stat.S_ISDIR(info.st_mode):
        os.unlink(name, dir_fd=fd)  # a file or link the diff put where a directory was
        info = None
    if info is None:
        os.mkdir(name, 0o700, dir_fd=fd)
    dir_fd = os.open(name, _DIR_FLAGS, dir_fd=fd)
    try:
        os.fchmod(dir_fd, mode)
    finally:
        os.close(dir_fd)


def _replace_with(fd: int, name: str, make: Callable[[str], None]) -> None:
    """Create the new entry beside the old one, then rename it into place in one step."""
    tmp = f".genesis-restore-{secrets.token_hex(6)}"
    make(tmp)
    try:
        os.replace(tmp, name, src_dir_fd=fd, dst_dir_fd=fd)
    except OSError:
        os.unlink(tmp, dir_fd=fd)
        raise


def _write(fd: int, name: str, data: bytes, mode: int | None) -> None:
    out = os.open(name, _NEW_FILE, 0o600, dir_fd=fd)
    with os.fdopen(out, "wb") as handle:
        handle.write(data)
        os.fchmod(handle.fileno(), 0o644 if mode is None else mode)
