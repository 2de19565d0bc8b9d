"""Load and check an evaluation suite: one directory per task.

A suite is a directory holding one directory per task, named by the task's id
(lower-case letters, digits and dashes). Each task directory holds:

- `task.toml`: `description`, `language` (python | javascript | bash), `test_command`
  (the repository's own tests), and a `[judge]` table with `fail_to_pass` and
  `pass_to_pass`, two non-empty lists of shell commands run in the repository's root
  with the hidden tests copied in. Any other key is an error (a typo must not pass).
- `repo/`: the repository as the agent finds it.
- `hidden/`: the judge's tests, copied over `repo/` (same relative paths) only to judge.
  A hidden file may replace a repository file only when it is a test file: its name
  starts with `test`, or is like `pages_test.py`, `pages-test.sh` or `cart.test.js`, or it
  lies under a `test/` or `tests/` directory.
- `solution.diff` (optional): a reference change that `git apply` takes in `repo/`.

No symbolic links are allowed in `repo/` or `hidden/`: copying a task must never read or
write outside it. Every error is one line that names the file at fault.
"""

from __future__ import annotations

import re
import shutil
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from singularity.errors import ConfigError

__all__ = [
    "LANGUAGES",
    "EvalTask",
    "SuiteError",
    "builtin_suite_path",
    "copy_hidden_tests",
    "copy_repo",
    "load_suite",
]

LANGUAGES = frozenset({"python", "javascript", "bash"})

_TASK_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,79}")
_TOP_KEYS = frozenset({"description", "language", "test_command", "judge"})
_JUDGE_KEYS = frozenset({"fail_to_pass", "pass_to_pass"})
_TEST_DIRS = frozenset({"test", "tests"})
_IGNORED = shutil.ignore_patterns("__pycache__")


class SuiteError(ConfigError):
    """An evaluation suite or one of its tasks is malformed."""


@dataclass(frozen=True)
class EvalTask:
    """One task of a suite: a repository, what to do in it, and how to judge the result."""

    id: str
    description: str
    language: str
    test_command: str
    fail_to_pass: tuple[str, ...]
    pass_to_pass: tuple[str, ...]
    repo: Path
    hidden: Path
    solution: Path | None
    # SWE-bench's instances (see `swebench`): the hidden tests as a patch, and the judge's
    # environment (False: nothing installed, as the built-in suite needs; None: detected).
    hidden_patch: str | None = None
    setup: str | bool | None = False


def builtin_suite_path() -> Path:
    """The directory of the suite shipped with singularity."""
    return Path(str(resources.files(__package__ or __name__).joinpath("suite")))


def load_suite(path: Path | None = None) -> list[EvalTask]:
    """Every task of the suite at `path` (None: the built-in suite), sorted by id."""
    root = builtin_suite_path() if path is None else path
    if not root.is_dir():
        raise SuiteError(f"suite directory {str(root)!r} does not exist")
    tasks = [_load_task(entry) for entry in sorted(root.iterdir()) if entry.is_dir()]
    if not tasks:
        raise SuiteError(f"suite directory {str(root)!r} holds no task directory")
    return tasks


def copy_repo(task: EvalTask, destination: Path) -> Path:
    """A fresh copy of the task's repository at `destination`, which must not exist."""
    # An installed package may hold byte-code caches beside the suite's Python files.
    shutil.copytree(task.repo, destination, ignore=_IGNORED)
    return destination


def copy_hidden_tests(task: EvalTask, repository: Path) -> None:
    """Copy the judge's tests into a copy of the task's repository, to judge it."""
    shutil.copytree(task.hidden, repository, ignore=_IGNORED, dirs_exist_ok=True)


def _load_task(directory: Path) -> EvalTask:
    if not _TASK_ID.fullmatch(directory.name):
        raise SuiteError(
            f"task directory {str(directory)!r}: the name must be lower-case letters, "
            "digits and dashes"
        )
    toml_path = directory / "task.toml"
    data = _read_toml(toml_path)
    judge = _judge_table(data, toml_path)
    repo, hidden = directory / "repo", directory / "hidden"
    _check_tree(repo)
    _check_tree(hidden)
    _check_hidden_overlap(repo, hidden)
    solution = directory / "solution.diff"
    if solution.is_symlink():
        raise SuiteError(f"{str(solution)!r} is a symbolic link")
    return EvalTask(
        id=directory.name,
        description=_text(data, "description", toml_path),
        language=_language(data, toml_path),
        test_command=_text(data, "test_command", toml_path),
        fail_to_pass=_commands(judge, "fail_to_pass", toml_path),
        pass_to_pass=_commands(judge, "pass_to_pass", toml_path),
        repo=repo,
        hidden=hidden,
        solution=solution if solution.is_file() else None,
    )


def _read_toml(path: Path) -> dict[str, Any]:
    if path.is_symlink() or not path.is_file():
        raise SuiteError(f"{str(path)!r} is missing")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise SuiteError(f"{str(path)!r} cannot be read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SuiteError(f"{str(path)!r} is not valid TOML: {exc}") from None
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise SuiteError(f"{str(path)!r}: unknown key {unknown[0]!r}")
    return data


def _judge_table(data: dict[str, Any], path: Path) -> dict[str, Any]:
    judge = data.get("judge")
    if not isinstance(judge, dict):
        raise SuiteError(f"{str(path)!r}: the [judge] table is missing")
    unknown = sorted(set(judge) - _JUDGE_KEYS)
    if unknown:
        raise SuiteError(f"{str(path)!r}: unknown key {unknown[0]!r} in [judge]")
    return judge


def _text(data: dict[str, Any], key: str, path: Path) -> str:
    value = data.get(key)
    if value is None:
        raise SuiteError(f"{str(path)!r}: the field {key!r} is missing")
    if not isinstance(value, str) or not value.strip():
        raise SuiteError(f"{str(path)!r}: the field {key!r} must be a non-empty string")
    return value.strip()


def _language(data: dict[str, Any], path: Path) -> str:
    language = _text(data, "language", path)
    if language not in LANGUAGES:
        known = ", ".join(sorted(LANGUAGES))
        raise SuiteError(f"{str(path)!r}: unknown language {language!r} (known: {known})")
    return language


def _commands(judge: dict[str, Any], key: str, path: Path) -> tuple[str, ...]:
    value = judge.get(key)
    if value is None:
        raise SuiteError(f"{str(path)!r}: the field 'judge.{key}' is missing")
    if not isinstance(value, list) or not all(isinstance(c, str) and c.strip() for c in value):
        raise SuiteError(f"{str(path)!r}: 'judge.{key}' must be a list of non-empty strings")
    if not value:
        raise SuiteError(f"{str(path)!r}: 'judge.{key}' is empty: list at least one command")
    return tuple(command.strip() for command in value)


def _check_tree(root: Path) -> None:
    """A task's `repo/` or `hidden/`: a directory with files and no symbolic link."""
    if root.is_symlink() or not root.is_dir():
        raise SuiteError(f"directory {str(root)!r} is missing")
    files = 0
    for entry in root.rglob("*"):
        if entry.is_symlink():
            raise SuiteError(f"{str(entry)!r} is a symbolic link: a task holds plain files")
        files += entry.is_file()
    if not files:
        raise SuiteError(f"directory {str(root)!r} holds no file")


def _check_hidden_overlap(repo: Path, hidden: Path) -> None:
    for entry in hidden.rglob("*"):
        if not entry.is_file() or "__pycache__" in entry.parts:
            continue
        relative = entry.relative_to(hidden)
        target = repo / relative
        if target.is_dir():
            raise SuiteError(f"{str(entry)!r} would replace the directory {str(target)!r}")
        if target.exists() and not _is_test_file(relative):
            raise SuiteError(
                f"{str(entry)!r} would overwrite {str(target)!r}, which is not a test file"
            )


def _is_test_file(relative: Path) -> bool:
    """Whether a path names a test: test*, *_test.*, *-test.*, *.test.*, or under tests/."""
    stem = relative.name.split(".", 1)[0]
    return (
        relative.name.startswith("test")
        or stem.endswith(("_test", "-test"))
        or ".test." in relative.name
        or any(part in _TEST_DIRS for part in relative.parts[:-1])
    )
