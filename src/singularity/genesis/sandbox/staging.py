"""Getting a run's inputs to its sandbox: file names checked, contents in sealed memfds.

Contents go to bubblewrap as memfds sealed against writes, so what the sandbox reads is what
the host checked, and no host path is involved. A host directory bound into the sandbox must
be reachable by name by the sandbox's uid (bubblewrap mounts as that uid); `reachable` tells,
and a root worker stages the others (see `command.staged`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from singularity.genesis.sandbox import tree
from singularity.genesis.sandbox.identity import Identity

__all__ = [
    "Bind",
    "checked_binds",
    "checked_command",
    "checked_env",
    "checked_files",
    "checked_stdin",
    "checked_workdir",
    "hand_over",
    "reachable",
    "sealed_memfd",
    "write_files",
]

MAX_FILES = 1000
MAX_ARG_BYTES = 32 * 4096  # one word with its NUL: the kernel's MAX_ARG_STRLEN
MAX_COMMAND_BYTES = 256 * 1024  # the program's argv and environment, with their NULs
_SEALS = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE
_BLOCK = 4096  # tmpfs rounds every file up to a page
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True)
class Bind:
    """A host path mounted into the sandbox."""

    source: Path
    target: str
    writable: bool = False


def checked_files(
    files: Mapping[str, str | bytes] | None, disk_bytes: int
) -> dict[PurePosixPath, bytes]:
    """The files by relative path; ValueError for a path that could leave the work directory."""
    found: dict[PurePosixPath, bytes] = {}
    for name, content in (files or {}).items():
        found[_relative(name)] = content.encode() if isinstance(content, str) else bytes(content)
    if len(found) > MAX_FILES:
        raise ValueError(f"at most {MAX_FILES} files may be given, not {len(found)}")
    used = sum(-(-len(data) // _BLOCK) * _BLOCK for data in found.values())
    if used > disk_bytes:
        raise ValueError(f"the files need {used} bytes, more than the disk limit {disk_bytes}")
    return found


def _relative(name: str) -> PurePosixPath:
    path = PurePosixPath(name)
    if (
        not name
        or "\0" in name
        or path.is_absolute()
        or any(part in ("", ".", "..") for part in name.split("/"))
    ):
        raise ValueError(f"file name {name!r} must be a relative path without '.' or '..'")
    return path


def checked_command(argv: Sequence[str], env: Mapping[str, str]) -> None:
    """ValueError when the kernel would refuse to start `argv` with `env` (E2BIG), or for a NUL.

    The budget is far below the kernel's (a quarter of the stack limit, 2 MiB by default),
    which the sandbox's own command line (launcher, bubblewrap, reaper) shares.
    """
    words = [*argv, *(f"{name}={value}" for name, value in env.items())]
    total = 0
    for word in words:
        size = len(word.encode(errors="surrogateescape")) + 1  # with its NUL
        if "\0" in word:
            raise ValueError("an argument or environment value holds a NUL byte")
        if size > MAX_ARG_BYTES:
            raise ValueError(
                f"an argument of {size - 1} bytes is longer than the limit of {MAX_ARG_BYTES - 1}"
            )
        total += size
    if total > MAX_COMMAND_BYTES:
        raise ValueError(
            f"the arguments and environment take {total} bytes, "
            f"more than the limit of {MAX_COMMAND_BYTES}"
        )


def checked_stdin(size: int, limit: int) -> None:
    """ValueError when `size` bytes of standard input are more than the limit."""
    if size > limit:
        raise ValueError(f"stdin is {size} bytes, more than limits.stdin_bytes ({limit})")


def checked_env(env: Mapping[str, str] | None) -> dict[str, str]:
    """Extra environment variables; ValueError for a name or value the environment cannot hold."""
    for name, value in (env or {}).items():
        if not name or "=" in name or "\0" in name or "\0" in value:
            raise ValueError(f"environment variable {name!r} has an invalid name or value")
    return dict(env or {})


def sealed_memfd(data: bytes, name: str = "sandbox-input") -> int:
    """A read-only in-memory file holding `data`, positioned at its start (close-on-exec)."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.lseek(fd, 0, os.SEEK_SET)
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _SEALS)
    except BaseException:
        os.close(fd)
        raise
    return fd


def reachable(path: Path, identity: Identity) -> bool:
    """Whether `identity` can walk to `path` and read it (list it, for a directory)."""
    parts = path.resolve().parts
    for depth in range(1, len(parts)):
        if not _allows(Path(*parts[:depth]), identity, stat.S_IXOTH):
            return False
    wanted = stat.S_IROTH | (stat.S_IXOTH if path.is_dir() else 0)
    return _allows(path.resolve(), identity, wanted)


def _allows(path: Path, identity: Identity, others_bits: int) -> bool:
    """The permission bits (given as the "others" bits) that apply to `identity` grant it."""
    info = os.stat(path)
    if info.st_uid == identity.uid:
        bits = others_bits << 6
    elif info.st_gid == identity.gid:
        bits = others_bits << 3
    else:
        bits = others_bits
    return info.st_mode & bits == bits


def hand_over(root: Path, identity: Identity) -> None:
    """Give a directory tree to the run's uid, so the program may write where it works.

    Walked by directory descriptors and never through a link, so a link planted by an earlier
    run (even one swapped in during the walk) cannot redirect a chown to a host file. TooDeep
    (a ValueError) for a tree nested deeper than the walk goes.
    """
    if not identity.dedicated:
        return
    with contextlib.closing(tree.walk(root)) as items:
        for fd, name in items:
            if name is None:
                os.chown(fd, identity.uid, identity.gid)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.chown(name, identity.uid, identity.gid, dir_fd=fd, follow_symlinks=False)


def write_files(root: Path, files: Mapping[PurePosixPath, bytes]) -> None:
    """Write files under `root` (the unsafe mode's way in), never through a link."""
    for path, data in files.items():
        parent = _open_dirs(root, path.parts[:-1])
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(path.name, flags, 0o644, dir_fd=parent)
            with os.fdopen(fd, "wb") as out:
                out.write(data)
        finally:
            os.close(parent)


def _open_dirs(root: Path, parts: tuple[str, ...]) -> int:
    flags = _DIR_FLAGS
    fd = os.open(root, flags)
    for part in parts:
        with contextlib.suppress(FileExistsError):
            os.mkdir(part, 0o755, dir_fd=fd)
        try:
            child = os.open(part, flags, dir_fd=fd)
        finally:
            os.close(fd)
        fd = child
    return fd


def checked_workdir(workdir: Path | None) -> Path | None:
    """The work directory, resolved; ValueError when it is not a directory."""
    if workdir is None:
        return None
    if not workdir.is_dir():
        raise ValueError(f"workdir {str(workdir)!r} is not a directory")
    return workdir.resolve()


def checked_binds(binds: Mapping[str, Path] | None, *, writable: bool = False) -> list[Bind]:
    """Binds by sandbox path (read-only unless `writable`); ValueError for a target in /work or
    a missing source."""
    found = []
    for target, source in (binds or {}).items():
        path = PurePosixPath(target)
        if not path.is_absolute() or ".." in path.parts or path.parts[1:2] in (("work",), ()):
            raise ValueError(f"bind target {target!r} must be an absolute path outside /work")
        if not Path(source).exists():
            raise ValueError(f"bind source {str(source)!r} does not exist")
        found.append(Bind(Path(source), target, writable))
    return found
