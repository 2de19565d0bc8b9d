"""Relative paths inside a directory tree, opened one component at a time, never through a
symlink: a tree written by a test run (or a diff) may point anywhere on the host."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

__all__ = ["UnsafePath", "parent_dir", "read_regular", "relative_parts", "remove_entry"]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafePath(ValueError):
    """A path that is absolute, empty, or climbs out of its tree."""


def relative_parts(path: str) -> tuple[str, ...]:
    """The components of a relative POSIX path; UnsafePath for '', '/x', '..' or a NUL."""
    if not path or "\0" in path or path.startswith("/"):
        raise UnsafePath(f"path {path!r} is not relative to the tree")
    parts = tuple(part for part in PurePosixPath(path).parts if part != ".")
    if not parts or ".." in parts:
        raise UnsafePath(f"path {path!r} is not inside the tree")
    return parts


@contextlib.contextmanager
def parent_dir(root: Path, path: str) -> Iterator[tuple[int | None, str]]:
    """(fd of the directory holding `path`, its last component); fd None when an ancestor
    is missing or is not a real directory (a symlink is not followed)."""
    parts = relative_parts(path)
    fd = os.open(root, _DIR_FLAGS)
    try:
        for part in parts[:-1]:
            try:
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError:  # missing, not a directory, or a symlink (ELOOP)
                os.close(fd)
                fd = -1
                break
            os.close(fd)
            fd = child
        yield (fd if fd >= 0 else None), parts[-1]
    finally:
        if fd >= 0:
            os.close(fd)


def read_regular(root: Path, path: str, max_bytes: int) -> bytes:
    """The contents of a regular file in the tree; OSError when it is missing, is not a
    regular file, sits beyond a symlink, or holds more than `max_bytes`."""
    with parent_dir(root, path) as (fd, name):
        if fd is None:
            raise FileNotFoundError(f"{path}: no such file in the tree")
        # O_NONBLOCK: a FIFO planted in place of the file must not hang the reader.
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        file_fd = os.open(name, flags, dir_fd=fd)
        with os.fdopen(file_fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise OSError(f"{path}: not a regular file")
            data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise OSError(f"{path}: larger than {max_bytes} bytes")
    return data


def remove_entry(root: Path, path: str) -> bool:
    """Remove whatever sits at `path` (a directory with its contents); False if nothing did."""
    with parent_dir(root, path) as (fd, name):
        if fd is None:
            return False
        try:
            mode = os.lstat(name, dir_fd=fd).st_mode
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(mode):
            shutil.rmtree(name, dir_fd=fd)
        else:
            os.unlink(name, dir_fd=fd)
        return True
