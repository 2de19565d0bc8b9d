"""Copies a repository into an experiment's workspace as an unprivileged user, never via a link.

Run by `/usr/bin/python3 -I -S -c` (standard library only, like the sandbox's reaper) under the
uid that reads the repository, with two inherited directory descriptors: the repository
(opened by the worker from an allowed root down) and the workspace. So the copy reads only
what that uid may read, whatever the worker's own rights, and no path is looked up from `/`.

Every directory is opened relative to its parent's descriptor with O_NOFOLLOW, every file with
O_NOFOLLOW | O_NONBLOCK and checked to be regular once open: a directory swapped for a link
while the copy runs is an error, never followed. Symlinks are copied as links; FIFOs, sockets
and devices are left out. Bounded in bytes, entries and depth (checked before each descent, so a
deep tree is refused long before the interpreter's stack runs out). The copy's owner keeps
read and write rights on everything, and set-id bits are dropped.

Arguments: SOURCE_FD WORKSPACE_FD MAX_BYTES MAX_ENTRIES MAX_DEPTH NAME...
The tree is copied to the first NAME under the workspace, and that copy to each further NAME.
The last line of output is JSON: {"bytes": N, "entries": N}, or {"error": "...", "refused": true}
for a tree that breaks a rule (too large, too deep, unreadable, changing), or {"error": "..."}.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import sys

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_CHUNK = 1 << 20


class Refused(Exception):
    """The tree cannot be copied; the message says why, in words."""


class Budget:
    """What a copy may still use."""

    def __init__(self, max_bytes: int, max_entries: int, max_depth: int) -> None:
        self.max_bytes, self.max_entries, self.max_depth = max_bytes, max_entries, max_depth
        self.bytes = self.entries = 0

    def spend(self, size: int, entries: int = 0) -> None:
        self.bytes += size
        self.entries += entries
        if self.bytes > self.max_bytes:
            raise Refused(
                f"the repository holds more than {self.max_bytes / (1 << 20):g} MiB, "
                "the disk limit (limits.disk_mb)"
            )
        if self.entries > self.max_entries:
            raise Refused(f"the repository holds more than {self.max_entries} files and folders")


def copy(source: int, parent: int, name: str, budget: Budget, where: str = "") -> None:
    """Copy the directory open at `source` to the new directory `name` under `parent`."""
    if where.count("/") > budget.max_depth:
        raise Refused(f"the repository is nested deeper than {budget.max_depth} folders")
    info = os.fstat(source)
    os.mkdir(name, 0o700, dir_fd=parent)
    target = os.open(name, _DIR, dir_fd=parent)
    try:
        # Its owner keeps the rights the copy, the diff and the tests need.
        os.fchmod(target, stat.S_IMODE(info.st_mode) & 0o777 | stat.S_IRWXU)
        try:
            entries = sorted(os.listdir(source))
        except PermissionError:
            raise Refused(_unreadable(where.rstrip("/") or ".")) from None
        for entry in entries:
            _copy_entry(source, target, entry, f"{where}{entry}", budget)
    finally:
        os.close(target)


def _copy_entry(src: int, dst: int, name: str, path: str, budget: Budget) -> None:
    try:
        info = os.lstat(name, dir_fd=src)
    except FileNotFoundError:
        return  # removed since the listing
    except PermissionError:
        raise Refused(_unreadable(path)) from None
    budget.spend(0, 1)
    if stat.S_ISLNK(info.st_mode):
        try:
            target = os.readlink(name, dir_fd=src)
        except OSError as exc:  # gone, or no longer a link, since the lstat
            if exc.errno in (errno.ENOENT, errno.EINVAL):
                raise Refused(f"{path} changed while the repository was copied") from None
            raise
        budget.spend(len(os.fsencode(target)))
        os.symlink(target, name, dir_fd=dst)
    elif stat.S_ISDIR(info.st_mode):
        child = _open(name, _DIR, src, path)
        try:
            copy(child, dst, name, budget, f"{path}/")
        finally:
            os.close(child)
    elif stat.S_ISREG(info.st_mode):
        _copy_file(src, dst, name, path, budget)


def _copy_file(src: int, dst: int, name: str, path: str, budget: Budget) -> None:
    reader = _open(name, _FILE, src, path)
    try:
        info = os.fstat(reader)
        if not stat.S_ISREG(info.st_mode):
            raise Refused(f"{path} changed while the repository was copied")
        writer = os.open(name, _NEW, 0o600, dir_fd=dst)
        try:
            while chunk := os.read(reader, _CHUNK):
                budget.spend(len(chunk))
                view = memoryview(chunk)
                while view:
                    view = view[os.write(writer, view) :]
            os.fchmod(writer, stat.S_IMODE(info.st_mode) & 0o777 | stat.S_IRUSR | stat.S_IWUSR)
            os.utime(writer, ns=(info.st_atime_ns, info.st_mtime_ns))
        finally:
            os.close(writer)
    finally:
        os.close(reader)


def _open(name: str, flags: int, dir_fd: int, path: str) -> int:
    try:
        return os.open(name, flags, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.ENOENT):
            raise Refused(f"{path} changed while the repository was copied") from None
        if exc.errno == errno.EACCES:
            raise Refused(_unreadable(path)) from None
        raise


def _unreadable(path: str) -> str:
    return (
        f"{path} is not readable by the user Genesis reads repositories as "
        "(make it readable by others, or keep it out of the repository)"
    )


def main(args: list[str]) -> dict[str, object]:
    """Copy as the arguments say; the JSON report."""
    source, workspace = int(args[0]), int(args[1])
    # The worker opened the repository's directory with its own rights; the copy goes on
    # only if this user could have opened it too (a descriptor lists what its opener may).
    if not os.access(f"/proc/self/fd/{source}", os.R_OK | os.X_OK):
        raise Refused(_unreadable("the repository's directory"))
    budget = Budget(int(args[2]), int(args[3]), int(args[4]))
    names = args[5:]
    copy(source, workspace, names[0], budget)
    first = os.open(names[0], _DIR, dir_fd=workspace)
    try:
        for name in names[1:]:
            again = Budget(budget.max_bytes, budget.max_entries, budget.max_depth)
            copy(first, workspace, name, again)
    finally:
        os.close(first)
    return {"bytes": budget.bytes, "entries": budget.entries}


if __name__ == "__main__":
    try:
        report = main(sys.argv[1:])
    except Refused as refused:
        report = {"error": str(refused), "refused": True}
    except OSError as exc:
        report = {"error": f"the repository could not be copied: {exc.strerror or exc}"}
    print(json.dumps(report))
