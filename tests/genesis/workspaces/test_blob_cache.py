"""The worker's blob cache: private, checked on every read, least recently used evicted first."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from singularity.genesis.workspaces.blob_cache import BlobCache


def _blob(text: str) -> tuple[str, bytes]:
    data = text.encode() * 100
    return hashlib.sha256(data).hexdigest(), data


def test_the_least_recently_used_blobs_go_first(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path / "blobs", max_bytes=250)
    blobs = [_blob(name) for name in ("a", "b", "c")]
    for age, (digest, data) in enumerate(blobs):
        cache.store(digest, data)
        when = 1_000_000 + age * 10  # stored in this order
        os.utime(cache.root / digest[:2] / digest, (when, when))
    assert cache.read(blobs[0][0]) == blobs[0][1]  # used now: the newest
    assert cache.trim() == 1
    assert [cache.has(digest) for digest, _ in blobs] == [True, False, True]
    assert cache.size() == 200


def test_a_damaged_blob_is_dropped_never_used(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path / "blobs", max_bytes=1 << 20)
    digest, data = _blob("x")
    cache.store(digest, data)
    (cache.root / digest[:2] / digest).write_bytes(b"damaged")
    assert cache.read(digest) is None
    assert not (cache.root / digest[:2] / digest).exists()


def test_the_cache_is_private(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path / "blobs", max_bytes=1 << 20)
    digest, data = _blob("p")
    cache.store(digest, data)
    path = cache.root / digest[:2] / digest
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert oct(path.parent.stat().st_mode & 0o777) == "0o700"
    assert oct(cache.root.stat().st_mode & 0o777) == "0o700"


def test_a_bound_of_zero_keeps_nothing(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path / "blobs", max_bytes=0)
    digest, data = _blob("z")
    cache.store(digest, data)
    cache.trim()
    assert cache.size() == 0
