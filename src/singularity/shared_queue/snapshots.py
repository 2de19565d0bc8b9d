"""Snapshots of a repository for a worker on another host: taken here, stored in the bus.

`snapshot_of` reads a working tree (what `tree_listing` says it holds: uncommitted changes
included, ignored files left out) into a manifest: files by the digests of their 1 MiB chunks,
symbolic links as their target text (a link to `/etc/passwd` travels as that text, never as
the file), empty folders. No link is followed and `.git` is never read.

`publish_snapshot` asks the bus which blobs it holds already and uploads only the others,
then the manifest, under its content's hash: publishing the same tree again sends nothing
but the manifest, and a small change sends only the changed files' chunks. A chunk is read
again for the upload and must still hash to its digest (else the tree changed meanwhile).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg_pool import AsyncConnectionPool

from singularity.shared_queue.manifest import (
    CHUNK_BYTES,
    FILE_MODES,
    MAX_WORKSPACE_BYTES,
    MAX_WORKSPACE_ENTRIES,
    Entry,
    Manifest,
    ManifestRefused,
    check_path,
)
from singularity.shared_queue.tree_listing import SnapshotRefused, list_tree, open_parent
from singularity.shared_queue.workspace_store import WorkspaceStore

__all__ = [
    "Published",
    "Snapshot",
    "SnapshotRefused",
    "publish_snapshot",
    "publish_workspace",
    "snapshot_of",
]

_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_ROOT = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_UPLOAD_BYTES = 8 * CHUNK_BYTES  # blobs per statement: a few MiB in flight
_ASK_DIGESTS = 10_000  # digests per "which do you hold"


@dataclass(frozen=True)
class Snapshot:
    """A tree's manifest, and where each of its chunks lies in the tree."""

    root: Path
    manifest: Manifest
    sources: dict[str, tuple[str, int, int]]  # digest: (path, offset, length)

    @property
    def id(self) -> str:
        return self.manifest.id

    def read_chunks(self, digests: list[str]) -> list[tuple[str, bytes]]:
        """The chunks' data, read from the tree again and checked against their digests."""
        fd = os.open(self.root, _ROOT)
        try:
            return [(digest, self._chunk(fd, digest)) for digest in digests]
        finally:
            os.close(fd)

    def _chunk(self, root_fd: int, digest: str) -> bytes:
        path, offset, length = self.sources[digest]
        with _opened(root_fd, path) as (file_fd, _):
            data = os.pread(file_fd, length, offset) if file_fd is not None else b""
        if hashlib.sha256(data).hexdigest() != digest:
            raise SnapshotRefused(f"{path} changed while the snapshot was taken: take it again")
        return data


@dataclass(frozen=True)
class Published:
    """A snapshot stored in the bus, and what its publishing sent."""

    id: str
    blobs_sent: int
    bytes_sent: int
    entries: int


def snapshot_of(
    repo: Path, *, max_bytes: int = MAX_WORKSPACE_BYTES, max_entries: int = MAX_WORKSPACE_ENTRIES
) -> Snapshot:
    """The snapshot of the working tree at `repo` (blocking: call it from a thread)."""
    if not repo.is_dir():
        raise SnapshotRefused(f"repository {str(repo)!r} is not a directory")
    root = repo.resolve()
    listing = list_tree(root, max_entries=max_entries)
    reader = _Reader(max_bytes, max_entries)
    fd = os.open(root, _ROOT)
    try:
        for path in listing.paths:
            reader.add(fd, path)
    finally:
        os.close(fd)
    for path in listing.empty_dirs:
        reader.add_dir(path)
    return Snapshot(root, Manifest.of(reader.entries), reader.sources)


async def publish_snapshot(conn: psycopg.AsyncConnection, snapshot: Snapshot) -> Published:
    """Store the snapshot in the bus (only the blobs it lacks); idempotent."""
    store = WorkspaceStore(conn)
    needed = list(snapshot.manifest.chunk_lengths())
    present: set[str] = set()
    for start in range(0, len(needed), _ASK_DIGESTS):
        present |= await store.present(needed[start : start + _ASK_DIGESTS])
    missing = [digest for digest in needed if digest not in present]
    blobs_sent = bytes_sent = 0
    for group in _groups(missing, snapshot.sources):
        chunks = await asyncio.to_thread(snapshot.read_chunks, group)
        blobs_sent += await store.store_blobs(chunks)
        bytes_sent += sum(len(data) for _, data in chunks)
    await store.store_snapshot(snapshot.id, snapshot.manifest.canonical())
    return Published(snapshot.id, blobs_sent, bytes_sent, len(snapshot.manifest.entries))


async def publish_workspace(
    pool: AsyncConnectionPool, repo: Path, *, max_bytes: int = MAX_WORKSPACE_BYTES
) -> Published:
    """Snapshot the working tree at `repo` and store it in the bus."""
    snapshot = await asyncio.to_thread(snapshot_of, repo, max_bytes=max_bytes)
    async with pool.connection() as conn:
        return await publish_snapshot(conn, snapshot)


class _Reader:
    """Reads entries into a manifest, within its bounds."""

    def __init__(self, max_bytes: int, max_entries: int) -> None:
        self.max_bytes, self.max_entries = max_bytes, max_entries
        self.entries: list[Entry] = []
        self.sources: dict[str, tuple[str, int, int]] = {}
        self.bytes = 0

    def add(self, root_fd: int, path: str) -> None:
        _checked(path)
        with _opened(root_fd, path) as (file_fd, link):
            if link is not None:
                self._spend(len(link.encode()))
                self._append(Entry(path, "symlink", target=link))
            elif file_fd is not None:
                self._append(self._file(file_fd, path))
            # else: gone since the listing, under a link, or not a file: not in the tree

    def add_dir(self, path: str) -> None:
        _checked(path)
        self._append(Entry(path, "dir"))

    def _file(self, fd: int, path: str) -> Entry:
        info = os.fstat(fd)
        digests, offset = [], 0
        while chunk := os.read(fd, CHUNK_BYTES):
            self._spend(len(chunk))
            digest = hashlib.sha256(chunk).hexdigest()
            self.sources.setdefault(digest, (path, offset, len(chunk)))
            digests.append(digest)
            offset += len(chunk)
        mode = FILE_MODES[1] if info.st_mode & stat.S_IXUSR else FILE_MODES[0]
        return Entry(path, "file", mode=mode, size=offset, chunks=tuple(digests))

    def _append(self, entry: Entry) -> None:
        self.entries.append(entry)
        if len(self.entries) > self.max_entries:
            raise SnapshotRefused(f"the repository holds more than {self.max_entries} entries")

    def _spend(self, size: int) -> None:
        self.bytes += size
        if self.bytes > self.max_bytes:
            raise SnapshotRefused(
                f"the repository holds more than {self.max_bytes / (1 << 20):g} MiB"
            )


def _checked(path: str) -> None:
    try:
        path.encode()
    except UnicodeEncodeError:
        raise SnapshotRefused(f"{path!r}: a file name that is not UTF-8 cannot travel") from None
    try:
        check_path(path)
    except ManifestRefused as exc:
        raise SnapshotRefused(str(exc)) from None


class _opened:
    """(fd of a regular file, None) or (None, a link's target) or (None, None) for `path`."""

    def __init__(self, root_fd: int, path: str) -> None:
        self.root_fd, self.path = root_fd, path
        self.fd: int | None = None

    def __enter__(self) -> tuple[int | None, str | None]:
        with open_parent(self.root_fd, self.path) as (parent, name):
            if parent is None:
                return None, None
            try:
                info = os.lstat(name, dir_fd=parent)
            except OSError:
                return None, None
            if stat.S_ISLNK(info.st_mode):
                return None, _target(os.readlink(name, dir_fd=parent), self.path)
            if not stat.S_ISREG(info.st_mode):
                return None, None
            try:
                self.fd = os.open(name, _FILE, dir_fd=parent)
            except OSError:
                return None, None
        if not stat.S_ISREG(os.fstat(self.fd).st_mode):
            os.close(self.fd)
            self.fd = None
            raise SnapshotRefused(f"{self.path} changed while the snapshot was taken")
        return self.fd, None

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            os.close(self.fd)


def _target(target: str, path: str) -> str:
    try:
        target.encode()
    except UnicodeEncodeError:
        raise SnapshotRefused(f"link {path!r} has a target that is not UTF-8") from None
    return target


def _groups(digests: list[str], sources: dict[str, tuple[str, int, int]]) -> Iterator[list[str]]:
    """The digests in groups of about _UPLOAD_BYTES of data."""
    group: list[str] = []
    size = 0
    for digest in digests:
        group.append(digest)
        size += sources[digest][2]
        if size >= _UPLOAD_BYTES:
            yield group
            group, size = [], 0
    if group:
        yield group
