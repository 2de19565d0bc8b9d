"""Workspace manifests: what a snapshot of a repository holds, in a form both sides agree on.

A manifest lists a tree's entries by relative path: regular files (mode 0644 or 0755, size,
and the sha256 digests of their 1 MiB chunks, which travel as blobs), symbolic links (their
target, as text: never followed) and empty directories. Its canonical JSON (sorted keys, no
spaces, entries sorted by path) hashes to the snapshot's id, so a snapshot is named by its
content and a manifest fetched from the database can be checked against its name.

A manifest read back is hostile input: `Manifest.from_json` refuses anything a tree written
from it could be led astray by (an absolute path, `..`, a duplicate, a path under a link or a
file, `.git`), and anything beyond the bounds it is given, before a single blob is fetched.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "CHUNK_BYTES",
    "FILE_MODES",
    "MAX_MANIFEST_BYTES",
    "MAX_WORKSPACE_BYTES",
    "MAX_WORKSPACE_DEPTH",
    "MAX_WORKSPACE_ENTRIES",
    "SNAPSHOT_ID",
    "Entry",
    "Manifest",
    "ManifestRefused",
    "canonical_json",
    "check_path",
    "chunk_sizes",
]

# A file travels in blobs of at most this size: a row of the blob table stays small.
CHUNK_BYTES = 1 << 20
# The bounds of an experiment's copy of a repository (genesis/workspaces/workspace.py uses the
# same entries and depth; its bytes are the request's disk_mb, at most 1 GiB).
MAX_WORKSPACE_ENTRIES = 200_000
MAX_WORKSPACE_DEPTH = 128
MAX_WORKSPACE_BYTES = 1 << 30
# A manifest of the most entries with long paths stays well below this.
MAX_MANIFEST_BYTES = 64 << 20
MAX_TARGET_BYTES = 4095  # PATH_MAX less its NUL: the longest link target Linux keeps
SNAPSHOT_ID = re.compile(r"^[0-9a-f]{64}$")
_DIGEST = SNAPSHOT_ID
_VERSION = 1
FILE_MODES = (0o644, 0o755)

Kind = Literal["file", "symlink", "dir"]


class ManifestRefused(ValueError):
    """A manifest that breaks a rule or a bound; the message says which, in words."""


@dataclass(frozen=True)
class Entry:
    """One entry of a tree."""

    path: str
    kind: Kind
    mode: int = 0
    size: int = 0
    chunks: tuple[str, ...] = ()
    target: str = ""

    def to_json(self) -> dict[str, Any]:
        if self.kind == "file":
            return {
                "path": self.path,
                "type": "file",
                "mode": self.mode,
                "size": self.size,
                "chunks": list(self.chunks),
            }
        if self.kind == "symlink":
            return {"path": self.path, "type": "symlink", "target": self.target}
        return {"path": self.path, "type": "dir"}

    @property
    def bytes(self) -> int:
        """What the entry costs a tree's byte bound (as the experiment copy counts it)."""
        return self.size if self.kind == "file" else len(self.target.encode())


@dataclass(frozen=True)
class Manifest:
    """A tree's entries, sorted by path."""

    entries: tuple[Entry, ...]

    @classmethod
    def of(cls, entries: Iterable[Entry]) -> Manifest:
        """The manifest of these entries, in canonical order."""
        return cls(tuple(sorted(entries, key=lambda e: e.path.encode())))

    def to_json(self) -> dict[str, Any]:
        return {"version": _VERSION, "entries": [entry.to_json() for entry in self.entries]}

    def canonical(self) -> bytes:
        return canonical_json(self.to_json())

    @property
    def id(self) -> str:
        """The snapshot's id: the sha256 of the canonical manifest."""
        return hashlib.sha256(self.canonical()).hexdigest()

    @property
    def total_bytes(self) -> int:
        return sum(entry.bytes for entry in self.entries)

    def chunk_lengths(self) -> dict[str, int]:
        """Every blob the tree needs, with the length its data must have."""
        lengths: dict[str, int] = {}
        for entry in self.entries:
            for digest, size in zip(entry.chunks, chunk_sizes(entry.size), strict=True):
                if lengths.setdefault(digest, size) != size:
                    raise ManifestRefused(f"chunk {digest} is given two different lengths")
        return lengths

    @classmethod
    def from_json(
        cls,
        data: Any,
        *,
        max_entries: int = MAX_WORKSPACE_ENTRIES,
        max_bytes: int = MAX_WORKSPACE_BYTES,
    ) -> Manifest:
        """A manifest read from a stranger; ManifestRefused (one line) for a bad one."""
        if not isinstance(data, dict) or data.get("version") != _VERSION:
            raise ManifestRefused(f"the manifest is not a version {_VERSION} manifest")
        raw = data.get("entries")
        if not isinstance(raw, list):
            raise ManifestRefused("the manifest has no list of entries")
        if len(raw) > max_entries:
            raise ManifestRefused(f"the snapshot holds more than {max_entries} entries")
        entries = tuple(_entry(item) for item in raw)
        _check_tree(entries)
        manifest = cls(entries)
        total = manifest.total_bytes
        if total > max_bytes:
            raise ManifestRefused(
                f"the snapshot holds {total / (1 << 20):.1f} MiB, more than the "
                f"{max_bytes / (1 << 20):g} MiB allowed (the disk limit, limits.disk_mb)"
            )
        manifest.chunk_lengths()  # one digest asked to be two lengths is refused here
        return manifest


def canonical_json(data: Any) -> bytes:
    """The one JSON text of `data` that its id is the hash of."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def chunk_sizes(size: int) -> list[int]:
    """The lengths of a file's chunks, in order."""
    full, rest = divmod(size, CHUNK_BYTES)
    return [CHUNK_BYTES] * full + ([rest] if rest else [])


def check_path(path: Any) -> tuple[str, ...]:
    """The components of a relative path in canonical form; ManifestRefused otherwise."""
    if not isinstance(path, str) or not path or "\0" in path or path.startswith("/"):
        raise ManifestRefused(f"path {_shown(path)} is not relative to the tree")
    parts = tuple(path.split("/"))
    if any(part in ("", ".", "..") for part in parts):
        raise ManifestRefused(f"path {_shown(path)} is not a plain path inside the tree")
    if ".git" in parts:
        raise ManifestRefused(f"path {_shown(path)} is in a .git directory")
    if len(parts) > MAX_WORKSPACE_DEPTH:
        raise ManifestRefused(f"path {_shown(path)} is nested deeper than {MAX_WORKSPACE_DEPTH}")
    return parts


def _entry(item: Any) -> Entry:
    if not isinstance(item, dict):
        raise ManifestRefused("a manifest entry is not an object")
    path, kind = item.get("path"), item.get("type")
    check_path(path)
    if kind == "file":
        return _file(path, item)
    if kind == "symlink":
        target = item.get("target")
        if not isinstance(target, str) or not target or "\0" in target:
            raise ManifestRefused(f"link {_shown(path)} has no valid target")
        if len(target.encode()) > MAX_TARGET_BYTES:
            raise ManifestRefused(f"link {_shown(path)} has a target longer than the system's")
        return Entry(path, "symlink", target=target)
    if kind == "dir":
        return Entry(path, "dir")
    raise ManifestRefused(f"entry {_shown(path)} has an unknown type {_shown(kind)}")


def _file(path: str, item: dict[str, Any]) -> Entry:
    mode, size, chunks = item.get("mode"), item.get("size"), item.get("chunks")
    if not _whole(mode) or not 0 <= mode <= 0o7777:
        raise ManifestRefused(f"file {_shown(path)} has no valid mode")
    if not _whole(size) or size < 0 or size > MAX_WORKSPACE_BYTES:
        raise ManifestRefused(f"file {_shown(path)} has no valid size")
    if not isinstance(chunks, list) or not all(
        isinstance(c, str) and _DIGEST.match(c) for c in chunks
    ):
        raise ManifestRefused(f"file {_shown(path)} has no valid list of chunk digests")
    if len(chunks) != len(chunk_sizes(size)):
        raise ManifestRefused(f"file {_shown(path)}: {len(chunks)} chunks for {size} bytes")
    # Only the owner's execute bit travels: a tree gets 0644 and 0755, never set-id bits.
    reduced = 0o755 if mode & 0o100 else 0o644
    return Entry(path, "file", mode=reduced, size=size, chunks=tuple(chunks))


def _check_tree(entries: tuple[Entry, ...]) -> None:
    """No duplicate path, and nothing under a link or a file."""
    kinds: dict[str, Kind] = {}
    for entry in entries:
        if entry.path in kinds:
            raise ManifestRefused(f"path {_shown(entry.path)} is listed twice")
        kinds[entry.path] = entry.kind
    for entry in entries:
        parts = entry.path.split("/")
        for depth in range(1, len(parts)):
            above = "/".join(parts[:depth])
            if kinds.get(above, "dir") != "dir":
                raise ManifestRefused(
                    f"path {_shown(entry.path)} lies under {_shown(above)}, "
                    f"which is a {kinds[above]}"
                )


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 200 else text[:200] + "..."
