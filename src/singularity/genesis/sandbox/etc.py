"""The sandbox's /etc: one read-only directory per uid, prepared once, bound in one mount.

What a program needs of /etc (the loader's cache, alternatives, time zone, Python's config;
never passwd, shadow or anything secret) is copied from the host, with the sandbox's own
passwd, group and hosts, into a directory of the run's uid, which bubblewrap binds read-only
at /etc: one mount per run, where a bind per entry and a file per generated entry took about
fifteen (each bind is a mount, a read-only remount and a read of the mount table), about 2 ms
of every run. A file is copied only if any user may read it on the host, a directory only if
any user may list it; links are copied as links (they resolve inside the sandbox).

The copy is made again when the host's entries change (their inode, size or time, as `lstat`
sees them: package managers replace files by renaming, which changes the inode; a change
inside a copied directory is seen only when the directory's own entries change) or when the
directory was replaced by another worker process. A root worker keeps it beside the uid's
stage, root's, which only the run holding the uid's lock uses; any other worker in a private
temporary directory of its own, removed when it exits.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import stat
import tempfile
import threading
from pathlib import Path

from singularity.genesis.sandbox.identity import Identity

__all__ = ["ENTRIES", "etc_files", "prepare", "ready"]

ENTRIES = (
    "alternatives",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "mime.types",
    "nsswitch.conf",
    "os-release",
    "protocols",
    "python3",
    "services",
    "timezone",
)
_HOST = Path("/etc")
_MAX_DEPTH = 4
_MAX_FILES = 4096
_PREFIX = "etc-"

Signature = tuple[tuple[int, int, int] | None, ...]


class _Made:
    """The directory of one uid, and what it was made from."""

    def __init__(self, path: Path, names: tuple[str, ...], signature: Signature) -> None:
        self.path = path
        self.names = names
        self.signature = signature
        self.inode = os.lstat(path).st_ino


_made: dict[int, _Made] = {}
_lock = threading.Lock()
_private: list[Path] = []  # a worker that is not root: its temporary directory


def ready(identity: Identity) -> str | None:
    """The prepared directory of `identity`, if it is still current (cheap: a few `lstat`)."""
    made = _made.get(identity.uid)
    if made is None or _signature(made.names) != made.signature:
        return None
    try:
        if os.lstat(made.path).st_ino != made.inode:
            return None
    except OSError:
        return None
    return str(made.path)


def prepare(identity: Identity, stage: Path | None) -> str:
    """Make the directory of `identity` (blocking: call it in a thread), in `stage` when given.

    `stage` is the uid's own directory of a root worker, used only by the run holding the uid:
    what an earlier copy (of any worker process) left there is removed.
    """
    with _lock:
        found = ready(identity)
        if found is not None:
            return found
        base = stage if stage is not None else _private_base()
        if stage is not None:
            for entry in stage.iterdir():
                if entry.name.startswith(_PREFIX):
                    shutil.rmtree(entry, ignore_errors=True)
        path = Path(tempfile.mkdtemp(prefix=_PREFIX, dir=base))
        names = _names()
        signature = _signature(names)
        try:
            os.chmod(path, 0o755)
            for name in names:
                _copy(_HOST / name, path / name, 0)
            for name, data in etc_files(identity).items():
                _write(path / name, data)
        except BaseException:
            shutil.rmtree(path, ignore_errors=True)
            raise
        _made[identity.uid] = _Made(path, names, signature)
        return str(path)


def _names() -> tuple[str, ...]:
    versions = sorted(p.name for p in _HOST.glob("python3.*"))
    return (*ENTRIES, *versions)


def _signature(names: tuple[str, ...]) -> Signature:
    # /etc itself first: an entry added or removed (a new python3.N) changes its time.
    found: list[tuple[int, int, int] | None] = []
    for path in (str(_HOST), *(f"/etc/{name}" for name in names)):
        try:
            info = os.lstat(path)
        except OSError:
            found.append(None)
            continue
        found.append((info.st_ino, info.st_mtime_ns, info.st_size))
    return tuple(found)


def _copy(source: Path, target: Path, depth: int) -> None:
    try:
        info = os.lstat(source)
    except OSError:
        return
    if stat.S_ISLNK(info.st_mode):
        os.symlink(os.readlink(source), target)
    elif stat.S_ISREG(info.st_mode) and info.st_mode & stat.S_IROTH:
        with contextlib.suppress(OSError):
            _write(target, source.read_bytes())
    elif stat.S_ISDIR(info.st_mode) and info.st_mode & 0o005 == 0o005 and depth < _MAX_DEPTH:
        target.mkdir(mode=0o755)
        os.chmod(target, 0o755)
        with os.scandir(source) as entries:
            for count, entry in enumerate(entries):
                if count >= _MAX_FILES:
                    break
                _copy(Path(entry.path), target / entry.name, depth + 1)


def _write(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.chmod(path, 0o644)


def _private_base() -> Path:
    if not _private:
        base = Path(tempfile.mkdtemp(prefix="sandbox-etc-"))
        atexit.register(shutil.rmtree, base, ignore_errors=True)
        _private.append(base)
    return _private[0]


def etc_files(identity: Identity) -> dict[str, bytes]:
    """passwd, group and hosts of the sandbox: its user, root and nobody, localhost."""
    uid, gid = identity.uid, identity.gid
    passwd = (
        "root:x:0:0:root:/root:/usr/sbin/nologin\n"
        f"sandbox:x:{uid}:{gid}:sandbox:/work:/bin/sh\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
    )
    group = f"root:x:0:\nsandbox:x:{gid}:\nnogroup:x:65534:\n"
    hosts = "127.0.0.1 localhost sandbox\n::1 localhost\n"
    return {"passwd": passwd.encode(), "group": group.encode(), "hosts": hosts.encode()}
