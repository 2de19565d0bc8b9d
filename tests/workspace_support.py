"""Helpers of the workspace snapshot tests: a repository with every kind of entry, and a tree's
exact description to compare a checkout with."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@x",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@x",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "PATH": "/usr/bin:/bin",
}
# Three chunks: two whole ones and a tail.
BIG = bytes(range(256)) * (10 << 10)


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, env=GIT_ENV, capture_output=True)


def make_workspace_repo(root: Path) -> Path:
    """A git repository whose working tree differs from its last commit in every way a snapshot
    must see: a changed file, a deleted one, untracked ones (one ignored), a link out of it."""
    repo = root / "project"
    (repo / "pkg").mkdir(parents=True)
    (repo / "README.md").write_text("read me\n")
    (repo / "pkg" / "mod.py").write_text("X = 1\n")
    (repo / "pkg" / "big.bin").write_bytes(BIG)
    (repo / "run.sh").write_text("#!/bin/sh\necho run\n")
    (repo / "run.sh").chmod(0o755)
    (repo / "gone.txt").write_text("deleted in the working tree\n")
    (repo / ".gitignore").write_text("*.log\n")
    os.symlink("/etc/passwd", repo / "passwd")
    os.symlink("pkg/mod.py", repo / "alias.py")
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "first")
    (repo / "pkg" / "mod.py").write_text("X = 2\n")  # the working diff
    (repo / "gone.txt").unlink()
    (repo / "new.txt").write_text("untracked, not ignored\n")
    (repo / "debug.log").write_text("ignored\n")
    return repo


def tree_of(root: Path) -> dict[str, tuple[str, int | str | bytes]]:
    """Every entry below `root` but `.git`: files as (mode, content), links as their target."""
    found: dict[str, tuple[str, int | str | bytes]] = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        if relative == ".git" or relative.startswith(".git/"):
            continue
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            found[relative] = ("link", os.readlink(path))
        elif stat.S_ISREG(info.st_mode):
            found[relative] = (oct(stat.S_IMODE(info.st_mode)), path.read_bytes())
        elif stat.S_ISDIR(info.st_mode) and not any(path.iterdir()):
            found[relative] = ("dir", "")
    return found
