"""Walking a workspace directory without following links: sorted, bounded in depth."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

from singularity.orchestrator.agent.paths import DIR_FLAGS

__all__ = ["Entry", "walk"]

_MAX_DEPTH = 64  # deeper directories are listed but not entered
_GIT = ".git"


@dataclass(frozen=True)
class Entry:
    """One directory entry: its path from the workspace root and what it is."""

    path: str
    kind: str  # "file", "dir", "link" or "other" (a FIFO, socket or device)
    dir_fd: int  # the open directory holding it, valid only until the walk moves on
    name: str


def walk(dir_fd: int, prefix: str, *, recursive: bool, skip_git: bool) -> Iterator[Entry]:
    """The entries under `dir_fd` in sorted tree order, paths starting with `prefix`."""
    yield from _walk(dir_fd, prefix, recursive=recursive, skip_git=skip_git, depth=0)


def _walk(
    dir_fd: int, prefix: str, *, recursive: bool, skip_git: bool, depth: int
) -> Iterator[Entry]:
    with os.scandir(dir_fd) as scan:
        entries = sorted(scan, key=lambda entry: entry.name)
    for entry in entries:
        kind = _kind(entry)
        path = f"{prefix}{entry.name}"
        yield Entry(path, kind, dir_fd, entry.name)
        if not recursive or kind != "dir" or depth >= _MAX_DEPTH:
            continue
        if skip_git and entry.name == _GIT:
            continue
        try:
            child = os.open(entry.name, DIR_FLAGS, dir_fd=dir_fd)
        except OSError:  # gone, or swapped for a link since it was listed
            continue
        try:
            yield from _walk(child, f"{path}/", recursive=True, skip_git=skip_git, depth=depth + 1)
        finally:
            os.close(child)


def _kind(entry: os.DirEntry[str]) -> str:
    try:
        if entry.is_symlink():
            return "link"
        if entry.is_dir(follow_symlinks=False):
            return "dir"
        if entry.is_file(follow_symlinks=False):
            return "file"
    except OSError:
        pass
    return "other"
