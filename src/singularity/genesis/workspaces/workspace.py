"""Workspaces: private directories that hold copies of a repository for sandboxed runs.

The copy is made by `copier.py` in a process of its own, as the user the caller names (an
unprivileged uid when a root worker serves the bus), from a directory descriptor: it walks by
descriptors and never follows a symlink, so a repository (or a test that planted one, or a
directory swapped for a link during the copy) cannot make it read a host file. Links are copied
as links; FIFOs, sockets and devices are left out. The copy is bounded in bytes (the contents
of its files and links), in entries and in depth.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from singularity.errors import SingularityError, UsageError
from singularity.genesis.sandbox.command import PYTHON
from singularity.genesis.sandbox.identity import Identity

# The sandbox hands over and measures no deeper tree; the copier recurses, well within Python's
# default 1000 frames.
from singularity.genesis.sandbox.tree import MAX_DEPTH

__all__ = [
    "MAX_ENTRIES",
    "CopyRefused",
    "copy_tree",
    "create_workspace",
    "remove_workspace",
]

MAX_ENTRIES = 200_000
_COPY_TIMEOUT_S = 600.0
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


class CopyRefused(UsageError):
    """A repository the copy refuses: too large, too deep, unreadable, or changing under it."""


def create_workspace(root: Path, owner: Identity | None = None) -> Path:
    """A fresh directory under `root` that only its owner (`owner`, else this user) may enter."""
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    workspace = Path(tempfile.mkdtemp(prefix="experiment-", dir=root))
    if owner is not None and owner.dedicated:
        os.chown(workspace, owner.uid, owner.gid)
    return workspace


def copy_tree(
    source: Path | int,
    target: Path,
    *,
    max_bytes: int,
    copies: Sequence[str] = (),
    user: Identity | None = None,
) -> int:
    """Copy `source` (a path, or an open directory) to the new directory `target`, then that
    copy to each of `copies` beside it; returns the bytes of one copy.

    CopyRefused (with the copies removed) for a tree that breaks a rule of the copy.
    """
    source_fd = _open_source(source) if not isinstance(source, int) else os.dup(source)
    parent_fd = os.open(target.parent, _DIR)
    names = [target.name, *copies]
    try:
        report = _run_copier(source_fd, parent_fd, names, max_bytes, user)
    except BaseException:
        for name in names:
            remove_workspace(target.parent / name)
        raise
    finally:
        os.close(source_fd)
        os.close(parent_fd)
    return int(report["bytes"])


def _open_source(source: Path) -> int:
    try:
        return os.open(source, _DIR | os.O_NOFOLLOW)
    except OSError:
        raise UsageError(f"repository {str(source)!r} is not a directory") from None


def _run_copier(
    source_fd: int, parent_fd: int, names: list[str], max_bytes: int, user: Identity | None
) -> dict[str, object]:
    numbers = (source_fd, parent_fd, max_bytes, MAX_ENTRIES, MAX_DEPTH)
    switch = user is not None and user.dedicated
    try:
        done = subprocess.run(
            [PYTHON, "-I", "-S", "-c", _copier_source(), *map(str, numbers), *names],
            pass_fds=(source_fd, parent_fd),
            env={"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"},
            capture_output=True,
            timeout=_COPY_TIMEOUT_S,
            check=False,
            user=user.uid if switch and user else None,
            group=user.gid if switch and user else None,
            extra_groups=[] if switch else None,
        )
    except subprocess.TimeoutExpired:
        raise CopyRefused(
            f"copying the repository took longer than {_COPY_TIMEOUT_S:.0f} s"
        ) from None
    lines = done.stdout.decode("utf-8", "replace").strip().splitlines()
    try:
        report = json.loads(lines[-1])
    except (IndexError, ValueError):
        detail = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
        raise SingularityError(f"the repository copier failed: {detail[0]}") from None
    if "error" in report:
        error = CopyRefused if report.get("refused") else SingularityError
        raise error(str(report["error"]))
    return dict(report)


@functools.cache
def _copier_source() -> str:
    return (Path(__file__).parent / "copier.py").read_text()


def remove_workspace(path: Path) -> None:
    """Remove a workspace, however deep its runs made it and whatever permissions they left;
    a missing one is fine."""
    if path.is_symlink():
        path.unlink()
        return
    if not path.exists():
        return
    # coreutils walk a tree of any depth (Python's rmtree recurses) and never follow a link;
    # rights first, as a run may leave directories its owner cannot write.
    subprocess.run(["chmod", "-R", "u+rwx", "--", str(path)], capture_output=True, check=False)
    done = subprocess.run(["rm", "-rf", "--", str(path)], capture_output=True, check=False)
    if done.returncode != 0 and path.exists():
        reason = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["?"]
        raise SingularityError(f"cannot remove the workspace {path}: {reason[0]}")
