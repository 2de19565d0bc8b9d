"""Paths inside a workspace, opened from its root downward one component at a time.

Every directory is opened with O_DIRECTORY | O_NOFOLLOW relative to its parent's descriptor,
and every file with O_NOFOLLOW relative to its directory's, so no symbolic link is ever
followed, whether it was there when the path was checked or swapped in afterwards. Nothing
resolves a path string and compares prefixes: there is no string to race.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from singularity.orchestrator.agent.output import ToolError

__all__ = [
    "DIR_FLAGS",
    "PathRefused",
    "create_regular",
    "delete_regular",
    "display",
    "open_directory",
    "read_entry",
    "read_regular",
    "relative_parts",
    "replace_regular",
    "writable_parts",
]

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: a FIFO planted where a file was expected must not hang the tool.
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE_MODE = 0o666  # narrowed by the umask, as any checkout would be
_GIT = ".git"


class PathRefused(ToolError):
    """A path that is absolute, climbs out, holds a NUL, or passes through a link."""


def relative_parts(path: str, max_chars: int) -> tuple[str, ...]:
    """The components of a path relative to the workspace root; () for the root itself."""
    if len(path) > max_chars:
        raise PathRefused(f"path is {len(path)} characters long; the limit is {max_chars}")
    if "\0" in path:
        raise PathRefused("path contains a NUL byte")
    if path.startswith("/"):
        raise PathRefused(f"path {path!r} is absolute; give it relative to the workspace root")
    parts = tuple(part for part in PurePosixPath(path).parts if part != ".")
    if ".." in parts:
        raise PathRefused(f"path {path!r} contains '..'; paths stay inside the workspace")
    return parts


def writable_parts(path: str, max_chars: int) -> tuple[str, ...]:
    """relative_parts for a path a tool may change: a file, never the root nor in `.git`."""
    parts = relative_parts(path, max_chars)
    if not parts:
        raise PathRefused("path names the workspace root, not a file")
    if _GIT in parts:
        raise PathRefused(f"path {path!r} is inside .git, which tools may read but never change")
    return parts


def display(parts: tuple[str, ...]) -> str:
    """The path as the model should write it back."""
    return "/".join(parts) or "."


@contextlib.contextmanager
def open_directory(root: Path, parts: tuple[str, ...], *, create: bool = False) -> Iterator[int]:
    """A descriptor of the directory at `parts`, made (0777 less the umask) when `create`."""
    try:
        fd = os.open(root, DIR_FLAGS)
    except OSError as error:
        raise ToolError(f"the workspace cannot be opened: {error.strerror}") from error
    try:
        for depth, part in enumerate(parts):
            child = _open_child_dir(fd, part, parts[: depth + 1], create=create)
            os.close(fd)
            fd = child
        yield fd
    finally:
        os.close(fd)


@contextlib.contextmanager
def _parent(root: Path, parts: tuple[str, ...], *, create: bool = False) -> Iterator[int]:
    with open_directory(root, parts[:-1], create=create) as fd:
        yield fd


def read_regular(root: Path, parts: tuple[str, ...], max_bytes: int) -> bytes:
    """The bytes of the regular file at `parts`; refused if larger than `max_bytes`."""
    with _parent(root, parts) as dir_fd:
        existing = _lstat(dir_fd, parts[-1])
        if existing is not None and not stat.S_ISLNK(existing.st_mode):
            _require_regular(existing, parts)  # before open: opening a device can act
        try:
            fd = os.open(parts[-1], _READ_FLAGS, dir_fd=dir_fd)
        except OSError as error:
            raise _refusal(error, dir_fd, parts) from error
        with os.fdopen(fd, "rb") as handle:
            _require_regular(os.fstat(fd), parts)
            data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ToolError(
            f"{display(parts)} is larger than {max_bytes} bytes; search it instead of reading it"
        )
    return data


def read_entry(dir_fd: int, name: str, max_bytes: int) -> bytes | None:
    """The bytes of a regular file met on a walk; None if it is anything else (a link, a FIFO,
    a file swapped since it was listed), unreadable, or larger than `max_bytes`."""
    try:
        fd = os.open(name, _READ_FLAGS, dir_fd=dir_fd)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > max_bytes:
            return None
        data = handle.read(max_bytes + 1)
    return data if len(data) <= max_bytes else None


def replace_regular(root: Path, parts: tuple[str, ...], data: bytes) -> bool:
    """Write `data` as the file at `parts`, atomically; True if the file is new.

    The new contents go to a fresh file beside it, renamed over the old name: a link swapped
    in at the last moment is replaced, never written through, and a reader never sees half.
    """
    with _parent(root, parts, create=True) as dir_fd:
        existing = _lstat(dir_fd, parts[-1])
        if existing is not None:
            _require_regular(existing, parts)
        temporary = f".tool-write-{secrets.token_hex(8)}.tmp"
        fd = os.open(temporary, _CREATE_FLAGS, _NEW_FILE_MODE, dir_fd=dir_fd)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                if existing is not None:
                    os.fchmod(fd, stat.S_IMODE(existing.st_mode))
            os.replace(temporary, parts[-1], src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary, dir_fd=dir_fd)
            raise
    return existing is None


def create_regular(root: Path, parts: tuple[str, ...], data: bytes) -> None:
    """Create the file at `parts` holding `data`; refused if anything exists there."""
    with _parent(root, parts, create=True) as dir_fd:
        try:
            fd = os.open(parts[-1], _CREATE_FLAGS, _NEW_FILE_MODE, dir_fd=dir_fd)
        except FileExistsError as error:
            raise ToolError(
                f"{display(parts)} already exists; use edit_file or write_file to change it"
            ) from error
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(parts[-1], dir_fd=dir_fd)
            raise


def delete_regular(root: Path, parts: tuple[str, ...]) -> None:
    """Remove the regular file at `parts` (the entry only: a link swapped in is what goes)."""
    with _parent(root, parts) as dir_fd:
        existing = _lstat(dir_fd, parts[-1])
        if existing is None:
            raise ToolError(f"{display(parts)}: no such file")
        _require_regular(existing, parts)
        os.unlink(parts[-1], dir_fd=dir_fd)


def _open_child_dir(fd: int, part: str, so_far: tuple[str, ...], *, create: bool) -> int:
    try:
        return os.open(part, DIR_FLAGS, dir_fd=fd)
    except FileNotFoundError:
        if not create:
            raise ToolError(f"{display(so_far)}: no such directory") from None
    except OSError as error:
        raise _refusal(error, fd, so_far) from error
    with contextlib.suppress(FileExistsError):  # made meanwhile: the open below decides
        os.mkdir(part, dir_fd=fd)
    try:
        return os.open(part, DIR_FLAGS, dir_fd=fd)
    except OSError as error:
        raise _refusal(error, fd, so_far) from error


def _lstat(dir_fd: int, name: str) -> os.stat_result | None:
    try:
        return os.lstat(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return None


def _require_regular(info: os.stat_result, parts: tuple[str, ...]) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise PathRefused(f"{display(parts)} is {_kind(info.st_mode)}, not a regular file")


def _refusal(error: OSError, dir_fd: int, parts: tuple[str, ...]) -> ToolError:
    """The model's view of a failed open: what sits at the path, rather than an errno."""
    info = _lstat(dir_fd, parts[-1])
    if info is None:
        return ToolError(f"{display(parts)}: no such file or directory")
    if stat.S_ISLNK(info.st_mode) or error.errno == errno.ELOOP:
        return PathRefused(f"{display(parts)} is a symbolic link; tools never follow links")
    if error.errno == errno.ENOTDIR:
        return ToolError(f"{display(parts)} is {_kind(info.st_mode)}, not a directory")
    return ToolError(f"{display(parts)}: {error.strerror}")


def _kind(mode: int) -> str:
    kinds = (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a device"),
        (stat.S_ISBLK, "a device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISREG, "a regular file"),
    )
    return next((name for test, name in kinds if test(mode)), "a special file")
