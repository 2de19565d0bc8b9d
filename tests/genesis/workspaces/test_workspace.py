"""Workspaces: bounded copies that never follow symlinks, diffs applied by git, and snapshots
of the paths a diff touches restored exactly."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from singularity.genesis.experiments.baseline import (
    Baseline,
    Entry,
    Kind,
    SnapshotTooLarge,
    restore_snapshot,
    take_snapshot,
)
from singularity.genesis.paths import UnsafePath, read_regular, relative_parts, remove_entry
from singularity.genesis.workspaces.patch import (
    DiffFailed,
    apply_diff,
    check_diff,
    git_head,
    touched_paths,
)
from singularity.genesis.workspaces.workspace import (
    CopyRefused,
    copy_tree,
    create_workspace,
    remove_workspace,
)

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@x",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@x",
    "PATH": os.environ["PATH"],
    "HOME": "/nonexistent",
}


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=repo, env=GIT_ENV, check=True, capture_output=True, text=True
    )
    return done.stdout


def git_repo(path: Path, files: dict[str, str]) -> Path:
    path.mkdir(parents=True)
    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    git(path, "init", "-q")
    git(path, "add", ".")
    git(path, "commit", "-qm", "start")
    return path


def diff_of(repo: Path, change: dict[str, str | None]) -> str:
    """The `git diff` of a change to a repository, which is then undone."""
    for name, text in change.items():
        if text is None:
            (repo / name).unlink()
        else:
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            (repo / name).write_text(text)
    git(repo, "add", "-A")
    diff = git(repo, "diff", "--cached", "--binary")
    git(repo, "reset", "-q", "--hard")
    git(repo, "clean", "-qfd")
    return diff


# -- paths -------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["", "/etc/passwd", "../x", "a/../../x", "a/\0b", "."])
def test_paths_outside_the_tree_are_refused(path: str) -> None:
    with pytest.raises(UnsafePath):
        relative_parts(path)


def test_reading_and_removing_never_go_through_a_symlink(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "f").write_text("host")
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "link").symlink_to(outside)
    (tree / "file_link").symlink_to(outside / "f")
    with pytest.raises(OSError):
        read_regular(tree, "link/f", 100)
    with pytest.raises(OSError):
        read_regular(tree, "file_link", 100)
    assert remove_entry(tree, "link/f") is False
    assert remove_entry(tree, "file_link") is True  # the link goes, not its target
    assert (outside / "f").read_text() == "host"


# -- copies ------------------------------------------------------------------------------------


def test_a_workspace_is_private_and_fresh(tmp_path: Path) -> None:
    first, second = create_workspace(tmp_path / "root"), create_workspace(tmp_path / "root")
    assert first != second and first.parent == tmp_path / "root"
    assert stat.S_IMODE(first.stat().st_mode) == 0o700


def test_a_copy_keeps_files_modes_and_links_as_links(tmp_path: Path) -> None:
    host = tmp_path / "host_secret"
    host.write_text("secret")
    repo = tmp_path / "repo"
    (repo / "pkg").mkdir(parents=True)
    (repo / "pkg" / "mod.py").write_text("x = 1\n")
    (repo / "run.sh").write_text("#!/bin/sh\n")
    (repo / "run.sh").chmod(0o755)
    (repo / "escape").symlink_to(host)
    (repo / "escape_dir").symlink_to(tmp_path)
    (repo / "dangling").symlink_to("nowhere")
    os.mkfifo(repo / "fifo")
    copy = tmp_path / "copy"
    copied = copy_tree(repo, copy, max_bytes=1 << 20)
    assert (copy / "pkg" / "mod.py").read_text() == "x = 1\n"
    assert stat.S_IMODE((copy / "run.sh").stat().st_mode) == 0o755
    assert os.readlink(copy / "escape") == str(host)  # a link, not the secret's contents
    assert (copy / "escape").is_symlink() and (copy / "escape_dir").is_symlink()
    assert os.readlink(copy / "dangling") == "nowhere"
    assert not (copy / "fifo").exists()
    assert copied == len("x = 1\n#!/bin/sh\n") + len(str(host)) + len(str(tmp_path)) + 7


def test_a_copy_larger_than_the_bound_fails_and_leaves_nothing(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "big").write_bytes(b"x" * 2048)
    with pytest.raises(CopyRefused, match="holds more than"):
        copy_tree(repo, tmp_path / "copy", max_bytes=2047)
    assert not (tmp_path / "copy").exists()
    assert copy_tree(repo, tmp_path / "copy", max_bytes=2048) == 2048


def test_a_workspace_is_removed_even_with_read_only_directories(tmp_path: Path) -> None:
    workspace = create_workspace(tmp_path)
    (workspace / "ro" / "deep").mkdir(parents=True)
    (workspace / "ro" / "deep" / "f").write_text("x")
    (workspace / "ro" / "deep").chmod(0o500)
    (workspace / "ro").chmod(0o500)
    remove_workspace(workspace)
    assert not workspace.exists()
    remove_workspace(workspace)  # already gone: fine


# -- diffs -------------------------------------------------------------------------------------


def test_touched_paths_of_a_git_diff(tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "r", {"a.py": "a\nb\n", "old.py": "o\n", "gone.py": "g\n"})
    git(repo, "mv", "old.py", "renamed.py")
    git(repo, "commit", "-qm", "staged rename")
    git(repo, "reset", "-q", "--soft", "HEAD~1")
    diff = git(repo, "diff", "--cached", "-M")
    git(repo, "reset", "-q", "--hard")
    diff += diff_of(repo, {"a.py": "a\n-- b\n", "gone.py": None, "new dir/empty": ""})
    assert touched_paths(diff) == ("old.py", "renamed.py", "a.py", "gone.py", "new dir/empty")


def test_touched_paths_of_traditional_and_quoted_diffs() -> None:
    traditional = "--- calc.py.orig\t2024-01-01\n+++ calc.py\t2024-01-02\n@@ -1 +1 @@\n-a\n+b\n"
    assert touched_paths(traditional) == ("calc.py.orig", "calc.py")
    quoted = (
        'diff --git "a/t\\303\\251st\\tx" "b/t\\303\\251st\\tx"\n'
        "new file mode 100644\nindex 0000000..e69de29\n"
    )
    assert touched_paths(quoted) == ("t\u00e9st\tx",)


def test_lines_inside_hunks_are_not_taken_for_headers() -> None:
    # A form feed inside a line must not end it (str.splitlines would split there).
    diff = (
        "--- a/q.sql\n+++ b/q.sql\n@@ -1,3 +1,3 @@\n"
        " page\x0c\n--- comment\n+++ other\n--- a/x\n+++ b/y\n"
    )
    assert touched_paths(diff) == ("q.sql",)


@pytest.mark.parametrize("with_git", [True, False])
def test_a_diff_applies_to_git_and_plain_directories(tmp_path: Path, with_git: bool) -> None:
    files = {"calc.py": "x = 1\n", "sub/m.py": "m\n"}
    source = git_repo(tmp_path / "src", files)
    diff = diff_of(source, {"calc.py": "x = 2\n", "sub/new.py": "n\n"})
    target = tmp_path / "target"
    if with_git:
        copy_tree(source, target, max_bytes=1 << 20)
    else:
        target.mkdir()
        for name, text in files.items():
            (target / name).parent.mkdir(exist_ok=True)
            (target / name).write_text(text)
    assert apply_diff(target, diff) == ("calc.py", "sub/new.py")
    assert (target / "calc.py").read_text() == "x = 2\n"
    assert (target / "sub" / "new.py").read_text() == "n\n"


def test_a_plain_directory_inside_another_repository_is_its_own_root(tmp_path: Path) -> None:
    outer = git_repo(tmp_path / "outer", {"README": "r\n"})
    inner = outer / "vendored"
    inner.mkdir()
    (inner / "calc.py").write_text("x = 1\n")
    diff = "--- a/calc.py\n+++ b/calc.py\n@@ -1 +1 @@\n-x = 1\n+x = 2\n"
    apply_diff(inner, diff)
    assert (inner / "calc.py").read_text() == "x = 2\n"
    assert git_head(inner) is None and git_head(outer) is not None


def test_a_diff_that_does_not_apply_fails_with_gits_reason_and_changes_nothing(
    tmp_path: Path,
) -> None:
    repo = git_repo(tmp_path / "r", {"a.py": "one\n", "b.py": "two\n"})
    diff = (
        "--- a/a.py\n+++ b/a.py\n@@ -1 +1 @@\n-one\n+ONE\n"
        "--- a/b.py\n+++ b/b.py\n@@ -1 +1 @@\n-zwei\n+TWO\n"
    )
    with pytest.raises(DiffFailed) as failed:
        apply_diff(repo, diff)
    assert failed.value.reason == "patch failed: b.py:1; b.py: patch does not apply"
    assert "\n" not in str(failed.value)
    assert (repo / "a.py").read_text() == "one\n"  # checked whole before anything was written
    with pytest.raises(DiffFailed, match="No valid patches"):
        apply_diff(repo, "")


@pytest.mark.parametrize(
    "diff",
    [
        "--- a/../escape\n+++ b/../escape\n@@ -0,0 +1 @@\n+x\n",
        "--- /dev/null\n+++ b/link/planted\n@@ -0,0 +1 @@\n+x\n",
    ],
)
def test_a_diff_may_not_write_outside_the_tree(tmp_path: Path, diff: str) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tmp_path / "outside").mkdir()
    (tree / "link").symlink_to(tmp_path / "outside")
    with pytest.raises(DiffFailed):
        apply_diff(tree, diff)
    assert not (tmp_path / "escape").exists() and not (tmp_path / "outside" / "planted").exists()


def test_check_diff_names_what_git_would_touch(tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "r", {"a.py": "a\n"})
    diff = diff_of(repo, {"a.py": "b\n"})
    assert check_diff(repo, diff) == ("a.py",)
    assert (repo / "a.py").read_text() == "a\n"


# -- snapshots ---------------------------------------------------------------------------------


def tree_state(root: Path) -> dict[str, tuple[str, int, bytes | str]]:
    """Every entry under root but .git: kind, mode, and contents or link target."""
    state: dict[str, tuple[str, int, bytes | str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != ".git"]
        for name in [*dirnames, *filenames]:
            path = Path(dirpath) / name
            info = path.lstat()
            rel = str(path.relative_to(root))
            if path.is_symlink():
                state[rel] = ("link", 0, os.readlink(path))
            elif path.is_dir():
                state[rel] = ("dir", stat.S_IMODE(info.st_mode), b"")
            else:
                state[rel] = ("file", stat.S_IMODE(info.st_mode), path.read_bytes())
    return state


def test_a_snapshot_records_paths_and_their_directories(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "m.py").write_bytes(b"\x00\xffbinary")
    (tmp_path / "ln").symlink_to("pkg/m.py")
    entries = take_snapshot(tmp_path, ["pkg/m.py", "new/dir/f.py", "ln"], max_bytes=100)
    kinds = {entry.path: entry.kind for entry in entries}
    assert kinds == {
        "ln": Kind.SYMLINK,
        "new": Kind.ABSENT,
        "pkg": Kind.DIRECTORY,
        "new/dir": Kind.ABSENT,
        "pkg/m.py": Kind.FILE,
        "new/dir/f.py": Kind.ABSENT,
    }
    assert [entry.path for entry in entries][:3] == ["ln", "new", "pkg"]  # shallowest first
    assert next(e for e in entries if e.path == "pkg/m.py").data == b"\x00\xffbinary"
    with pytest.raises(SnapshotTooLarge):
        take_snapshot(tmp_path, ["pkg/m.py"], max_bytes=5)


def test_restore_undoes_every_kind_of_change(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("untouched")
    (tmp_path / "edit.py").write_text("before\n")
    (tmp_path / "gone" / "deep").mkdir(parents=True)
    (tmp_path / "gone" / "deep" / "f.py").write_text("deleted later\n")
    (tmp_path / "mode.sh").write_text("#!/bin/sh\n")
    (tmp_path / "ln").symlink_to("edit.py")
    (tmp_path / "was_dir").mkdir()
    (tmp_path / "was_dir" / "x").write_text("x")
    before = tree_state(tmp_path)
    paths = ["edit.py", "gone/deep/f.py", "mode.sh", "ln", "new/sub/created.py", "was_dir/x"]
    entries = take_snapshot(tmp_path, paths, max_bytes=1 << 20)
    # What a diff (or anything else) might do to those paths:
    (tmp_path / "edit.py").write_text("after\n")
    (tmp_path / "gone" / "deep" / "f.py").unlink()
    (tmp_path / "gone" / "deep").rmdir()
    (tmp_path / "gone").rmdir()
    (tmp_path / "mode.sh").chmod(0o755)
    (tmp_path / "ln").unlink()
    (tmp_path / "ln").symlink_to("/etc/passwd")
    (tmp_path / "new" / "sub").mkdir(parents=True)
    (tmp_path / "new" / "sub" / "created.py").write_text("new\n")
    (tmp_path / "was_dir" / "x").unlink()
    (tmp_path / "was_dir").rmdir()
    (tmp_path / "was_dir").symlink_to(tmp_path / "outside")
    changed = restore_snapshot(tmp_path, entries)
    assert tree_state(tmp_path) == before
    assert set(changed) == {
        "edit.py",
        "gone",
        "gone/deep",
        "gone/deep/f.py",
        "mode.sh",
        "ln",
        "new",
        "new/sub",
        "new/sub/created.py",
        "was_dir",
        "was_dir/x",
    }
    assert restore_snapshot(tmp_path, entries) == ()  # nothing left to do


def test_restore_keeps_what_was_added_to_a_created_directory(tmp_path: Path) -> None:
    entries = take_snapshot(tmp_path, ["new/created.py"], max_bytes=100)
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "created.py").write_text("by the diff")
    (tmp_path / "new" / "mine.txt").write_text("by the user since")
    assert restore_snapshot(tmp_path, entries) == ("new/created.py",)
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == ["mine.txt"]


def test_restore_never_writes_through_a_planted_symlink(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "f.py").write_text("host file")
    tree = tmp_path / "tree"
    (tree / "pkg").mkdir(parents=True)
    (tree / "pkg" / "f.py").write_text("ours")
    entries = take_snapshot(tree, ["pkg/f.py"], max_bytes=100)
    (tree / "pkg" / "f.py").unlink()
    (tree / "pkg").rmdir()
    (tree / "pkg").symlink_to(outside)
    restore_snapshot(tree, entries)
    assert (outside / "f.py").read_text() == "host file"
    assert not (tree / "pkg").is_symlink() and (tree / "pkg" / "f.py").read_text() == "ours"


def test_a_baseline_survives_json(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"\x00bytes")
    entries = take_snapshot(tmp_path, ["a", "b/c"], max_bytes=100)
    baseline = Baseline(str(tmp_path), "abc123", ("a", "b/c"), entries)
    assert Baseline.from_dict(json.loads(json.dumps(baseline.to_dict()))) == baseline
    assert Entry.from_dict({"path": "x", "kind": "absent"}) == Entry("x", Kind.ABSENT)
    for bad in ({"paths": []}, {"repo": "/r", "paths": ["../x"], "entries": []}):
        with pytest.raises(ValueError):
            Baseline.from_dict(bad)
    with pytest.raises(ValueError):
        Entry.from_dict({"path": "x", "kind": "socket"})
