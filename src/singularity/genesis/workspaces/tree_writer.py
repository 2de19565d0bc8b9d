"""Writing a checked manifest's tree into a new directory, from the blob cache.

The manifest was checked (`Manifest.from_json`): relative paths, no `..`, no duplicates,
nothing under a link or a file. The writer still opens every folder relative to its parent
with O_NOFOLLOW and creates every file with O_EXCL | O_NOFOLLOW, so that even a manifest
that slipped past those rules could not make it write outside the tree. Links are created
with their target as text: the worker never follows one. Files get 0644 or 0755, folders 0755.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from singularity.errors import SingularityError
from singularity.genesis.workspaces.blob_cache import BlobCache
from singularity.shared_queue.manifest import Entry, Manifest

__all__ = ["write_tree"]

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_DIR_MODE = 0o755


def write_tree(manifest: Manifest, tree: Path, cache: BlobCache) -> None:
    """Create `tree` holding the manifest's entries (every blob must be in the cache)."""
    os.mkdir(tree, _DIR_MODE)
    os.chmod(tree, _DIR_MODE)
    cursor = _Folders(os.open(tree, _DIR))
    try:
        for entry in manifest.entries:
            parts = entry.path.split("/")
            _write(entry, cursor.open(parts[:-1]), parts[-1], cache)
    finally:
        cursor.close()


def _write(entry: Entry, parent: int, name: str, cache: BlobCache) -> None:
    if entry.kind == "dir":
        os.close(_mkdir(parent, name))
    elif entry.kind == "symlink":
        os.symlink(entry.target, name, dir_fd=parent)
    else:
        fd = os.open(name, _NEW, 0o600, dir_fd=parent)
        try:
            for digest in entry.chunks:
                data = cache.read(digest)
                if data is None:
                    raise SingularityError(f"blob {digest} left the cache during the checkout")
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            os.fchmod(fd, entry.mode)
        finally:
            os.close(fd)


def _mkdir(parent: int, name: str) -> int:
    """The folder `name` in `parent`, made if missing, open (never through a link)."""
    with contextlib.suppress(FileExistsError):  # made already for an earlier entry
        os.mkdir(name, _DIR_MODE, dir_fd=parent)
    fd = os.open(name, _DIR, dir_fd=parent)
    os.fchmod(fd, _DIR_MODE)
    return fd


class _Folders:
    """The open folder of the last entry written: entries in path order share it mostly."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.parts: list[str] = []
        self.fd = os.dup(root)

    def open(self, parts: list[str]) -> int:
        if parts == self.parts:
            return self.fd
        fd = os.dup(self.root)
        try:
            for part in parts:
                child = _mkdir(fd, part)
                os.close(fd)
                fd = child
        except BaseException:
            os.close(fd)
            raise
        os.close(self.fd)
        self.fd, self.parts = fd, parts
        return fd

    def close(self) -> None:
        os.close(self.fd)
        os.close(self.root)
