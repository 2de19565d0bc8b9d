"""Running git on a stranger's repository without running anything the repository names.

A repository's own configuration (`.git/config` and what it includes), its `info/attributes`
and its hooks can name programs: filter drivers, textconv, external diffs, fsmonitor, pagers,
credential and ssh helpers, hooks. git runs them as whoever runs git. Rather than switch off
each such key (a deny-list that the next git release outgrows), the platform never lets git
read those files at all: every git command runs against a *sealed* git directory that the
platform wrote itself.

- For a directory that is not a repository (or whose repository does not matter, as when
  applying a diff to a copy), the sealed directory is empty: git works on the tree as
  `patch -p1` would, with no repository above or inside it.
- For a repository's objects and refs (committing an approved change on a new branch), the
  sealed directory is a *shadow*: the platform's own `config` and `HEAD`, with links to the
  repository's `objects`, `refs`, `logs`, `packed-refs` and `shallow`, which hold only data.

No system or global configuration is read either (`GIT_CONFIG_NOSYSTEM`, `GIT_CONFIG_GLOBAL`,
`HOME` and `XDG_CONFIG_HOME` point into the scratch directory), and none of the caller's `GIT_*`
variables pass. Attributes in the work tree's `.gitattributes` are still read, but a filter
or diff driver they name does nothing without configuration that only the platform writes.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path

from singularity.errors import SingularityError

__all__ = [
    "UnsupportedRepository",
    "find_repository",
    "read_head",
    "sealed_env",
    "sealed_git_dir",
    "shadow_git_dir",
]

# What a shadow git directory links to in the repository's: data git reads and writes, never
# a file that can name a program.
_SHARED = ("objects", "refs", "logs", "packed-refs", "shallow")
_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
_MAX_REF_BYTES = 1 << 20
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class UnsupportedRepository(SingularityError):
    """A repository the platform will not run git on (a linked work tree, an unknown format)."""


def sealed_env(
    scratch: Path,
    git_dir: Path,
    work_tree: Path | str,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """git's whole environment: the sealed `git_dir`, no configuration but the platform's."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("GIT_")}
    env |= {
        "HOME": str(scratch),
        "XDG_CONFIG_HOME": str(scratch),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_ATTR_NOSYSTEM": "1",
        "GIT_DIR": str(git_dir),
        "GIT_WORK_TREE": str(work_tree),
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_OPTIONAL_LOCKS": "0",
        "LC_ALL": "C",
        **(extra or {}),
    }
    env.pop("EDITOR", None)
    env.pop("VISUAL", None)
    env.pop("PAGER", None)
    return env


def sealed_git_dir(scratch: Path) -> Path:
    """An empty git directory of the platform's own, under `scratch`."""
    git_dir = scratch / "sealed.git"
    git_dir.mkdir(mode=0o700)
    (git_dir / "objects").mkdir()
    (git_dir / "refs").mkdir()
    (git_dir / "HEAD").write_text("ref: refs/heads/main\n")
    (git_dir / "config").write_text(_config("sha1"))
    return git_dir


def shadow_git_dir(top: Path, scratch: Path) -> Path:
    """A git directory under `scratch` that shares `top`'s objects and refs, and nothing else.

    UnsupportedRepository for a `.git` that is a file (a linked work tree or submodule, whose
    directory is elsewhere) or a repository format the platform does not know.
    """
    dot_git = top / ".git"
    info = os.lstat(dot_git)
    if not stat.S_ISDIR(info.st_mode):
        raise UnsupportedRepository(
            f"{str(top)!r} is a linked work tree or a submodule (its .git is not a directory): "
            "use the main checkout"
        )
    git_dir = scratch / "shadow.git"
    git_dir.mkdir(mode=0o700)
    for name in _SHARED:
        if os.path.lexists(dot_git / name):
            os.symlink(dot_git / name, git_dir / name)
    (git_dir / "HEAD").write_bytes(_read_small(dot_git / "HEAD"))
    (git_dir / "config").write_text(_config(_object_format(dot_git)))
    return git_dir


def find_repository(directory: Path) -> Path | None:
    """The top of the git work tree holding `directory` (itself or an ancestor), else None.

    Only looks for a `.git` entry; nothing of it is read or run.
    """
    for candidate in (directory, *directory.parents):
        if os.path.lexists(candidate / ".git"):
            return candidate
    return None


def read_head(top: Path) -> str | None:
    """The commit checked out in the repository at `top`, read from its files; None outside
    git or before the first commit."""
    dot_git = top / ".git"
    try:
        head = _read_small(dot_git / "HEAD").decode().strip()
    except (OSError, UnicodeDecodeError):
        return None
    for _ in range(5):  # a symbolic ref may name another
        if _SHA.match(head):
            return head
        if not head.startswith("ref: "):
            return None
        head = _resolve_ref(dot_git, head[len("ref: ") :].strip())
        if head is None:
            return None
    return None


def _resolve_ref(dot_git: Path, ref: str) -> str | None:
    if not ref.startswith("refs/") or ".." in ref.split("/"):
        return None
    try:
        return _read_small(dot_git / ref).decode().strip()
    except FileNotFoundError:
        pass
    except (OSError, UnicodeDecodeError):
        return None
    try:
        packed = _read_small(dot_git / "packed-refs").decode()
    except (OSError, UnicodeDecodeError):
        return None
    for line in packed.splitlines():
        sha, _, name = line.partition(" ")
        if name == ref and _SHA.match(sha):
            return sha
    return None


def _object_format(dot_git: Path) -> str:
    """The repository's hash (sha1 or sha256), read as text from its config file."""
    try:
        text = _read_small(dot_git / "config").decode("utf-8", "replace")
    except OSError:
        return "sha1"
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("["):
            section = line.strip("[]").strip().lower()
        elif section == "extensions" and "=" in line:
            key, _, value = line.partition("=")
            key, value = key.strip().lower(), value.strip().strip('"').lower()
            if key == "objectformat" and value in ("sha1", "sha256"):
                return value
            if key == "objectformat" or (key == "refstorage" and value != "files"):
                raise UnsupportedRepository(
                    f"the repository uses {key} = {value}, which the platform does not support"
                )
    return "sha1"


def _config(object_format: str) -> str:
    version = 1 if object_format != "sha1" else 0
    text = f"[core]\n\trepositoryformatversion = {version}\n\tbare = false\n"
    text += "\thooksPath = /dev/null\n\tfsmonitor = false\n\tquotePath = false\n"
    text += "[commit]\n\tgpgsign = false\n"
    if object_format != "sha1":
        text += f"[extensions]\n\tobjectformat = {object_format}\n"
    return text


def _read_small(path: Path) -> bytes:
    """A small regular file's bytes, never through a symlink at its last component."""
    fd = os.open(path, _READ_FLAGS)
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise OSError(f"{path}: not a regular file")
        data = handle.read(_MAX_REF_BYTES + 1)
    if len(data) > _MAX_REF_BYTES:
        raise OSError(f"{path}: too large")
    return data
