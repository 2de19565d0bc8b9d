"""Unified diffs: the paths they touch, and applying them with `git apply`.

A diff applies to a directory as its root, git repository or not: git runs against a sealed,
empty git directory of the platform's own (`singularity.safegit`), so paths are always relative
to that directory, `git apply` acts as `patch -p1`, and nothing in the directory's `.git` (its
config, attributes or hooks) is read or run. A diff is checked (`git apply --check`) before
anything is written, so it applies whole or not at all.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path

from singularity.errors import SingularityError
from singularity.genesis.paths import UnsafePath, relative_parts
from singularity.safegit import read_head, sealed_env, sealed_git_dir

__all__ = ["DiffFailed", "apply_diff", "check_diff", "git_head", "touched_paths"]

_GIT_TIMEOUT_S = 120
_HUNK = re.compile(r"^@@ -\d+(?:,(\d+))? \+\d+(?:,(\d+))? @@")
_NAMED = ("rename from ", "rename to ", "copy from ", "copy to ")
_ESCAPES = {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11, '"': 34, "\\": 92}


class DiffFailed(SingularityError):
    """A diff that does not apply; `reason` is git's own message, on one line."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"the diff does not apply: {reason}")
        self.reason = reason


def check_diff(tree: Path, diff: str) -> tuple[str, ...]:
    """The paths the diff touches in `tree`, or DiffFailed if it would not apply there."""
    result = _git(tree, diff, "apply", "--check", "--numstat", "-z", "-")
    if result.returncode != 0:
        raise DiffFailed(_reason(result.stderr))
    # git names each patch's resulting file, as its own name guessing sees it; our parse adds
    # what git leaves out here (the old side of renames).
    named_by_git = [
        record.split("\t", 2)[2]
        for record in result.stdout.decode("utf-8", "surrogateescape").split("\0")
        if record.count("\t") >= 2
    ]
    paths = tuple(dict.fromkeys([*touched_paths(diff), *named_by_git]))
    for path in paths:
        try:
            relative_parts(path)
        except UnsafePath as exc:
            raise DiffFailed(str(exc)) from None
    return paths


def apply_diff(tree: Path, diff: str) -> tuple[str, ...]:
    """Apply the diff to `tree` (checked first); returns the paths it touched."""
    paths = check_diff(tree, diff)
    result = _git(tree, diff, "apply", "-")
    if result.returncode != 0:
        raise DiffFailed(_reason(result.stderr))
    return paths


def git_head(directory: Path) -> str | None:
    """The commit checked out in `directory` if it is a git repository's root, else None."""
    return read_head(directory)


def touched_paths(diff: str) -> tuple[str, ...]:
    """Every path a unified diff names, before and after (as `git apply -p1` reads them)."""
    paths: list[str] = []
    old_left = new_left = 0  # lines still due in the current hunk
    # Split on newlines only: splitlines() also breaks at form feeds and other separators
    # that source lines may hold, which would throw the hunk's line count off.
    for line in diff.split("\n"):
        if old_left > 0 or new_left > 0:
            if line.startswith(("-", " ")) or line == "":
                old_left -= 1
            if line.startswith(("+", " ")) or line == "":
                new_left -= 1
            continue
        name = _header_name(line)
        if name is not None:
            paths.append(name)
        elif hunk := _HUNK.match(line):
            old_left = int(hunk.group(1) or 1)
            new_left = int(hunk.group(2) or 1)
    return tuple(dict.fromkeys(path for path in paths if path))


def _header_name(line: str) -> str | None:
    if line.startswith(("--- ", "+++ ")):
        name = _token(line[4:].split("\t", 1)[0].rstrip("\r"))
        return None if name == "/dev/null" else _strip_component(name)
    for prefix in _NAMED:
        if line.startswith(prefix):
            return _token(line[len(prefix) :])
    if line.startswith("diff --git "):
        return _git_header_name(line[len("diff --git ") :])
    return None


def _git_header_name(rest: str) -> str | None:
    """The name in `diff --git a/NAME b/NAME` (a rename's names come from its own lines)."""
    if rest.startswith('"'):
        end = _quoted_end(rest)
        return _strip_component(_token(rest[: end + 1]))
    half = (len(rest) - 1) // 2
    old, new = rest[:half], rest[half + 1 :]
    same = _strip_component(old) == _strip_component(new)
    return _strip_component(old) if rest[half : half + 1] == " " and same else None


def _strip_component(name: str) -> str:
    return name.split("/", 1)[1] if "/" in name else name


def _token(text: str) -> str:
    """A name as git writes it: plain, or C-quoted with escapes when it has odd bytes."""
    text = text.strip()
    if not (len(text) >= 2 and text.startswith('"') and text.endswith('"')):
        return text
    out = bytearray()
    body, i = text[1:-1], 0
    while i < len(body):
        char = body[i]
        if char != "\\" or i + 1 == len(body):
            out += char.encode("utf-8", "surrogateescape")
            i += 1
        elif body[i + 1] in _ESCAPES:
            out.append(_ESCAPES[body[i + 1]])
            i += 2
        else:
            out.append(int(body[i + 1 : i + 4], 8) & 0xFF)
            i += 4
    return out.decode("utf-8", "surrogateescape")


def _quoted_end(text: str) -> int:
    i = 1
    while i < len(text) and text[i] != '"':
        i += 2 if text[i] == "\\" else 1
    return i


def _reason(stderr: bytes) -> str:
    """git's complaint on one line: its error lines, without their `error: ` prefixes."""
    lines = [line.strip() for line in stderr.decode("utf-8", "replace").splitlines()]
    errors = [line.split(": ", 1)[1] for line in lines if line.startswith(("error: ", "fatal: "))]
    chosen = errors or [line for line in lines if line] or ["git apply failed"]
    reason = "; ".join(dict.fromkeys(chosen))
    return reason if len(reason) <= 500 else reason[:497] + "..."


def _git(directory: Path, stdin: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    with tempfile.TemporaryDirectory(prefix="singularity-git-") as scratch:
        env = sealed_env(Path(scratch), sealed_git_dir(Path(scratch)), directory.resolve())
        try:
            return subprocess.run(
                ["git", *args],
                cwd=directory,
                input=stdin.encode("utf-8", "surrogateescape"),
                capture_output=True,
                env=env,
                timeout=_GIT_TIMEOUT_S,
                check=False,
            )
        except FileNotFoundError:
            raise SingularityError(
                "git is not installed: Genesis applies diffs with `git apply`"
            ) from None
        except subprocess.TimeoutExpired:
            raise DiffFailed(f"git {args[0]} took longer than {_GIT_TIMEOUT_S} s") from None
