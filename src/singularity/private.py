"""Directories and files only their owner can read: the home, secrets, tokens, backups.

Everything the platform keeps holds something another local user must not see (the UI token,
role passwords, every table in a backup), so each directory is 0700 and each file 0600 from
the moment it is created, and a directory found looser (made by an older version, or widened
by a tool) is tightened again on the next command that uses it.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

from singularity.errors import ConfigError

__all__ = ["DIR_MODE", "FILE_MODE", "open_private", "private_dir"]

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path, *, within: Path | None = None) -> Path:
    """`path` as a directory only its owner can enter, created if missing.

    With `within` (the home), every directory from `within` down to `path` is made private
    too. A directory that belongs to another user, or that every user may write to, is
    refused: whoever can write there could swap our files.
    """
    chain = [path]
    if within is not None and path.is_relative_to(within):
        between = reversed(path.relative_to(within).parents[:-1])  # a, a/b for a/b/c
        chain = [within, *(within / step for step in between), path]
    for directory in dict.fromkeys(chain):
        _make_private(directory)
    return path


def open_private(path: Path, flags: int = os.O_WRONLY | os.O_CREAT | os.O_TRUNC) -> int:
    """`os.open` with mode 0600, never through a symbolic link; an existing file is tightened."""
    fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _make_private(directory: Path) -> None:
    # Missing ancestors too are created 0700 (mkdir -p would leave them 0755), once what
    # they are created in is known to be safe.
    missing = [d for d in [directory, *directory.parents] if not d.exists()]
    if missing:
        anchor = missing[-1].parent.resolve()
        _check_ancestors(directory, [anchor, *anchor.parents])
    for each in reversed(missing):
        try:
            each.mkdir(mode=DIR_MODE)
        except FileExistsError:
            pass
        except OSError as exc:
            raise ConfigError(f"cannot create {each}: {exc.strerror}") from None
    link = directory.lstat()
    if stat.S_ISLNK(link.st_mode) and link.st_uid not in (0, os.geteuid()):
        # Another user's link (planted in /tmp, say) would aim our chmod where they like.
        raise ConfigError(f"{directory} is a link made by user {link.st_uid}: {_OWN}")
    real = directory.resolve()
    _check_ancestors(directory, real.parents)
    info = real.stat()
    if not stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"{directory} is not a directory")
    if info.st_uid != os.geteuid():
        raise ConfigError(
            f"{directory} belongs to user {info.st_uid}, not to the user running the platform "
            f"({os.geteuid()}): {_OWN}"
        )
    if info.st_mode & stat.S_IWOTH:
        raise ConfigError(f"{directory} may be written by every user: {_OWN}")
    if stat.S_IMODE(info.st_mode) != DIR_MODE:
        os.chmod(real, DIR_MODE)


_OWN = "choose a directory of your own"


def _check_ancestors(directory: Path, parents: Iterable[Path]) -> None:
    """No directory above may let another user swap what is below (as ssh's StrictModes)."""
    for parent in parents:
        info = parent.stat()
        loose = info.st_mode & stat.S_IWOTH and not info.st_mode & stat.S_ISVTX
        if info.st_uid not in (0, os.geteuid()) or loose:
            raise ConfigError(f"{directory} lies in {parent}, which another user controls: {_OWN}")
