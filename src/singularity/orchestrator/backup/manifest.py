"""The manifest of a backup: what it holds, how big, from which server, with checksums."""

from __future__ import annotations

import hashlib
import os
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, ValidationError

from singularity.errors import SingularityError
from singularity.private import open_private

__all__ = [
    "MANIFEST",
    "DatabaseDump",
    "Grant",
    "Manifest",
    "human_size",
    "read_manifest",
    "sha256_of",
]

MANIFEST = "manifest.json"
_FORMAT = 1


class Grant(BaseModel):
    """One database-level privilege (`grantee` None: PUBLIC)."""

    grantee: str | None
    privilege: str


class DatabaseDump(BaseModel):
    """One database of a backup: its `<name>.sql` and where it came from."""

    name: str
    database: str
    instance: int = 1
    file: str
    bytes: int
    sha256: str
    server: str
    server_version: str
    pg_dump_version: str
    owner: str | None
    acl: list[Grant] | None
    seconds: float


class Manifest(BaseModel):
    """`manifest.json` of one backup directory."""

    format: int = _FORMAT
    name: str
    kind: str
    started_at: datetime
    finished_at: datetime
    seconds: float
    databases: list[DatabaseDump]

    @property
    def bytes(self) -> int:
        return sum(d.bytes for d in self.databases)

    def write(self, directory: Path) -> None:
        with os.fdopen(open_private(directory / MANIFEST), "w") as handle:
            handle.write(self.model_dump_json(indent=2) + "\n")


def read_manifest(directory: Path) -> Manifest:
    """The manifest of a backup directory; a missing or damaged one is a one-line error."""
    path = directory / MANIFEST
    try:
        return Manifest.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        raise SingularityError(f"{directory} has no {MANIFEST}; it is not a backup") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(map(str, first["loc"])) or "manifest"
        raise SingularityError(f"{path} is damaged ({where}: {first['msg']})") from None


def sha256_of(path: Path) -> str:
    """The hex SHA-256 of a file, read in chunks."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def human_size(size: float) -> str:
    """`812 B`, `12.3 kB`, `1.5 GB`."""
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"
