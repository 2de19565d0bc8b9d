"""A worker's cache of snapshot blobs on disk, by content, bounded, least recently used first.

Blobs are files named by their sha256 under `<dir>/<first two hex digits>/`, in private
directories (0700, files 0600). A blob is written to a temporary name and renamed into place,
so a reader never sees half of one; its data is checked against its name when it is stored
and again when it is read, so a file damaged on disk is dropped and fetched again, never used.
Using a blob marks it (its mtime); `trim` removes the least recently used until the cache is
within its bound. Several workers sharing a directory only cost each other cache hits.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path

from singularity.private import FILE_MODE, private_dir

__all__ = ["BlobCache"]


class BlobCache:
    """Blobs by digest in one directory, at most `max_bytes` of them after each `trim`."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes

    def read(self, digest: str) -> bytes | None:
        """The blob's data, or None when it is missing or damaged (a damaged one is removed)."""
        path = self._path(digest)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        if hashlib.sha256(data).hexdigest() != digest:
            path.unlink(missing_ok=True)
            return None
        with contextlib.suppress(FileNotFoundError):
            os.utime(path)  # used now: the last to be evicted
        return data

    def has(self, digest: str) -> bool:
        """Whether the blob is here, whole (checked, and marked used)."""
        return self.read(digest) is not None

    def store(self, digest: str, data: bytes) -> None:
        """Keep a blob whose data the caller checked against its digest."""
        directory = private_dir(self._path(digest).parent)
        fd, temporary = tempfile.mkstemp(dir=directory, prefix=".in-")
        try:
            os.fchmod(fd, FILE_MODE)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(temporary, self._path(digest))
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise

    def trim(self) -> int:
        """Remove the least recently used blobs until the cache is within its bound; how many."""
        blobs = []
        for path in self.root.glob("??/*"):
            try:
                info = path.stat()
            except FileNotFoundError:
                continue
            blobs.append((info.st_mtime_ns, info.st_size, path))
        total = sum(size for _, size, _ in blobs)
        removed = 0
        for _, size, path in sorted(blobs, key=lambda blob: (blob[0], blob[2].name)):
            if total <= self.max_bytes:
                break
            path.unlink(missing_ok=True)
            total -= size
            removed += 1
        return removed

    def size(self) -> int:
        """The bytes the cache holds."""
        total = 0
        for path in self.root.glob("??/*"):
            with contextlib.suppress(FileNotFoundError):
                total += path.stat().st_size
        return total

    def _path(self, digest: str) -> Path:
        return self.root / digest[:2] / digest
