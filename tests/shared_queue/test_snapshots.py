"""Taking a snapshot of a repository and storing it in the bus: what it holds, what it uploads,
what it never reads or runs, and what the server itself refuses."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from singularity.shared_queue import SnapshotRefused, publish_snapshot, snapshot_of
from singularity.shared_queue.manifest import CHUNK_BYTES, Manifest
from singularity.shared_queue.workspace_store import WorkspaceStore
from workspace_support import BIG, make_workspace_repo


def _entries(manifest: Manifest) -> dict[str, tuple[str, int | str]]:
    return {
        entry.path: (entry.kind, entry.target if entry.kind == "symlink" else entry.mode)
        for entry in manifest.entries
    }


def test_a_snapshot_holds_the_working_tree_as_git_sees_it(tmp_path: Path) -> None:
    snapshot = snapshot_of(make_workspace_repo(tmp_path))
    assert _entries(snapshot.manifest) == {
        ".gitignore": ("file", 0o644),
        "README.md": ("file", 0o644),
        "alias.py": ("symlink", "pkg/mod.py"),
        "new.txt": ("file", 0o644),  # untracked, not ignored: it travels
        "passwd": ("symlink", "/etc/passwd"),  # the link travels, never the file
        "pkg/big.bin": ("file", 0o644),
        "pkg/mod.py": ("file", 0o644),
        "run.sh": ("file", 0o755),
    }  # no debug.log (ignored), no gone.txt (deleted), nothing of .git
    big = next(entry for entry in snapshot.manifest.entries if entry.path == "pkg/big.bin")
    assert big.size == len(BIG) and len(big.chunks) == 3
    assert big.chunks[0] == hashlib.sha256(BIG[:CHUNK_BYTES]).hexdigest()


def test_a_directory_outside_git_is_walked_without_its_git_folders(tmp_path: Path) -> None:
    (tmp_path / "plain" / "sub" / ".git").mkdir(parents=True)
    (tmp_path / "plain" / "sub" / ".git" / "config").write_text("[core]\n")
    (tmp_path / "plain" / "empty").mkdir()
    (tmp_path / "plain" / "a.txt").write_text("a")
    snapshot = snapshot_of(tmp_path / "plain")
    assert _entries(snapshot.manifest) == {
        "a.txt": ("file", 0o644),
        "empty": ("dir", 0),
        "sub": ("dir", 0),  # what is left of it without its .git
    }


def test_a_link_to_a_directory_outside_is_never_followed(tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    os.symlink("/etc", tmp_path / "plain" / "etc")
    snapshot = snapshot_of(tmp_path / "plain")
    assert _entries(snapshot.manifest) == {"etc": ("symlink", "/etc")}


def test_a_repository_config_that_names_programs_runs_nothing(tmp_path: Path) -> None:
    repo = make_workspace_repo(tmp_path)
    marker = tmp_path / "ran"
    touch = f"touch {marker}"
    with (repo / ".git" / "config").open("a") as config:
        config.write(
            f'[core]\n\tfsmonitor = "{touch}"\n\tpager = "{touch}"\n\thooksPath = hooks\n'
            f'[filter "evil"]\n\tclean = "{touch}"\n\tsmudge = "{touch}"\n\tprocess = "{touch}"\n'
            f'[diff "evil"]\n\ttextconv = "{touch}"\n\tcommand = "{touch}"\n'
        )
    (repo / ".gitattributes").write_text("* filter=evil diff=evil\n")
    for hook in ("post-index-change", "pre-commit", "fsmonitor-watchman"):
        (repo / ".git" / "hooks" / hook).write_text(f"#!/bin/sh\n{touch}\n")
        (repo / ".git" / "hooks" / hook).chmod(0o755)
    snapshot = snapshot_of(repo)
    assert "new.txt" in _entries(snapshot.manifest)
    assert not marker.exists()


def test_bounds_are_kept(tmp_path: Path) -> None:
    repo = make_workspace_repo(tmp_path)
    with pytest.raises(SnapshotRefused, match="more than 1 MiB"):
        snapshot_of(repo, max_bytes=1 << 20)
    with pytest.raises(SnapshotRefused, match="more than 3 entries"):
        snapshot_of(repo, max_entries=3)


async def test_publishing_again_sends_only_the_changed_chunks(
    publisher_pool: AsyncConnectionPool, tmp_path: Path
) -> None:
    repo = make_workspace_repo(tmp_path)
    (repo / "unique.txt").write_text(str(tmp_path))  # no other test's blob
    async with publisher_pool.connection() as conn:
        first = await publish_snapshot(conn, snapshot_of(repo))
        again = await publish_snapshot(conn, snapshot_of(repo))
        (repo / "unique.txt").write_text(f"{tmp_path} changed")
        changed = await publish_snapshot(conn, snapshot_of(repo))
    # Every chunk of the first is new but those another test stored already (same content).
    assert first.blobs_sent >= 1 and first.entries == 9
    assert (again.id, again.blobs_sent, again.bytes_sent) == (first.id, 0, 0)
    assert changed.id != first.id
    assert changed.blobs_sent == 1
    assert changed.bytes_sent == len(f"{tmp_path} changed")


async def test_a_fresh_repository_uploads_each_distinct_chunk_once(
    publisher_pool: AsyncConnectionPool, tmp_path: Path
) -> None:
    (tmp_path / "r").mkdir()
    salt = os.urandom(16)
    (tmp_path / "r" / "a").write_bytes(salt + b"a")
    (tmp_path / "r" / "b").write_bytes(salt + b"a")  # same content: one blob
    (tmp_path / "r" / "c").write_bytes(salt * (CHUNK_BYTES // 16) + b"tail")  # two chunks
    async with publisher_pool.connection() as conn:
        published = await publish_snapshot(conn, snapshot_of(tmp_path / "r"))
    assert published.blobs_sent == 3
    assert published.bytes_sent == 17 + CHUNK_BYTES + 4


async def test_the_server_refuses_a_blob_or_manifest_under_a_false_name(
    publisher_pool: AsyncConnectionPool,
) -> None:
    async with publisher_pool.connection() as conn:
        store = WorkspaceStore(conn)
        with pytest.raises(psycopg.errors.CheckViolation, match="sha256"):
            await store.store_blobs([("0" * 64, b"not the data of that name")])
        with pytest.raises(psycopg.errors.CheckViolation, match="sha256"):
            await store.store_snapshot("0" * 64, b'{"entries":[],"version":1}')


async def test_the_worker_reads_snapshots_but_cannot_store_them(
    worker_pool: AsyncConnectionPool, tmp_path: Path
) -> None:
    data = b"some data"
    async with worker_pool.connection() as conn:
        store = WorkspaceStore(conn)
        assert await store.manifest("0" * 64, max_bytes=1 << 20) is None
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            await store.store_blobs([(hashlib.sha256(data).hexdigest(), data)])
