"""Where the embedded server's Unix socket lives: a directory only the server's user can enter.

Authentication on the socket is `trust`, so the directory is the whole of the access control:
whoever can reach the socket is the superuser. It is the data directory (0700) when its path
is short enough for a socket name; otherwise a fresh directory from `mkdtemp` in /tmp, whose
random name nobody can plant in advance, checked before use and removed when the server stops.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

from singularity.errors import DatabaseUnavailable

__all__ = ["PREFIX", "make_socket_dir", "remove_socket_dir", "verify_socket_dir"]

PREFIX = "singularity-pg-"
_SHORT_ROOT = Path("/tmp")  # short on every system; sticky, so no one can rename our entry
_MAX_SOCKET_PATH = 100  # sockaddr_un holds about 107 bytes


def make_socket_dir(pgdata: Path, owner: tuple[int, int] | None) -> Path:
    """pgdata if its socket path fits, else a new private directory owned by `owner` (uid,
    gid; None: this process's user)."""
    if len(str(pgdata / ".s.PGSQL.5432")) < _MAX_SOCKET_PATH:
        return pgdata
    _check_sticky(_SHORT_ROOT)
    directory = Path(tempfile.mkdtemp(prefix=PREFIX, dir=_SHORT_ROOT))  # 0700, ours
    uid, gid = owner if owner is not None else (os.geteuid(), os.getegid())
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        os.fchown(fd, uid, gid)
    finally:
        os.close(fd)
    verify_socket_dir(directory, uid)
    return directory


def verify_socket_dir(directory: Path, uid: int) -> None:
    """Refuse a socket directory that is a link, is not `uid`'s, or others may enter."""
    try:
        info = os.lstat(directory)
    except OSError as exc:
        raise DatabaseUnavailable(f"socket directory {directory}: {exc.strerror}") from None
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise DatabaseUnavailable(f"socket directory {directory} is not a plain directory")
    if info.st_uid != uid or stat.S_IMODE(info.st_mode) != 0o700:
        raise DatabaseUnavailable(
            f"socket directory {directory} has owner {info.st_uid} and mode "
            f"{stat.S_IMODE(info.st_mode):o}; it must be {uid}'s alone (0700)"
        )


def remove_socket_dir(directory: Path, pgdata: Path) -> None:
    """Remove a directory `make_socket_dir` created, once the server is gone (left if not empty)."""
    if directory == pgdata or directory.parent != _SHORT_ROOT:
        return
    if not directory.name.startswith(PREFIX):
        return
    with contextlib.suppress(OSError):
        directory.rmdir()


def _check_sticky(root: Path) -> None:
    info = os.stat(root)
    if info.st_mode & stat.S_IWOTH and not info.st_mode & stat.S_ISVTX:
        raise DatabaseUnavailable(
            f"{root} may be written by every user without the sticky bit; the server's socket "
            "cannot be placed there safely: choose a shorter SINGULARITY_HOME"
        )
