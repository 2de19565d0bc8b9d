"""Walking a directory tree that a sandboxed program may be changing: by descriptors, no links.

The walk opens each directory relative to its parent with O_NOFOLLOW, so a link (even one swapped
in for a directory during the walk) is seen as the link itself, never followed. It is iterative
(no recursion), holds descriptors only along the current path, and refuses a tree nested deeper
than MAX_DEPTH levels: a program can nest directories without end, and neither the walk's
descriptors nor its time may grow with that.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["MAX_DEPTH", "TooDeep", "Usage", "measure", "walk"]

MAX_DEPTH = 128
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NOT_A_DIRECTORY = (errno.ELOOP, errno.ENOTDIR)  # swapped for a link or a file meanwhile


class TooDeep(ValueError):
    """The tree is nested deeper than the walk goes."""

    def __init__(self, root: Path) -> None:
        super().__init__(f"{root} is nested deeper than {MAX_DEPTH} directories")


def walk(root: Path) -> Iterator[tuple[int, str | None]]:
    """Every entry under `root`: (its directory's descriptor, its name), or (fd, None) for a
    directory itself, `root` first. A descriptor is valid only until the next item."""
    stack: list[tuple[int, Iterator[os.DirEntry[str]]]] = []
    try:
        fd = os.open(root, _DIR_FLAGS)
        stack.append((fd, os.scandir(fd)))
        yield fd, None
        while stack:
            fd, entries = stack[-1]
            entry = next(entries, None)
            if entry is None:
                _close(stack.pop())
                continue
            if not entry.is_dir(follow_symlinks=False):
                yield fd, entry.name
                continue
            if len(stack) >= MAX_DEPTH:
                raise TooDeep(root)
            try:
                child = os.open(entry.name, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                continue  # removed meanwhile
            except OSError as exc:
                if exc.errno not in _NOT_A_DIRECTORY:
                    raise
                yield fd, entry.name
                continue
            stack.append((child, os.scandir(child)))
            yield child, None
    finally:
        for item in reversed(stack):
            _close(item)


def _close(item: tuple[int, Iterator[os.DirEntry[str]]]) -> None:
    fd, entries = item
    with contextlib.suppress(OSError):
        entries.close()  # type: ignore[attr-defined]  # a ScandirIterator
    with contextlib.suppress(OSError):
        os.close(fd)


@dataclass(frozen=True)
class Usage:
    """What a tree holds: bytes allocated (st_blocks) and entries (its own directory included)."""

    bytes: int
    entries: int


def measure(root: Path, *, max_bytes: int | None = None, max_entries: int | None = None) -> Usage:
    """The tree's usage; the walk stops once past either maximum (the usage is then over it).

    A file with several names is counted once per name: the measure errs on the high side.
    """
    used = entries = 0
    with contextlib.closing(walk(root)) as items:  # closed at once, its descriptors with it
        for fd, name in items:
            try:
                info = os.stat(name, dir_fd=fd, follow_symlinks=False) if name else os.fstat(fd)
            except FileNotFoundError:
                continue
            used += info.st_blocks * 512
            entries += 1
            if (max_bytes is not None and used > max_bytes) or (
                max_entries is not None and entries > max_entries
            ):
                break
    return Usage(used, entries)
